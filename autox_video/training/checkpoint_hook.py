"""Epoch checkpoints that a kill cannot tear: mmengine's CheckpointHook with atomic writes.

mmengine 0.10.7 writes `epoch_N.pth` and the `last_checkpoint` pointer in place, and deletes the
oldest kept checkpoint *before* writing the new one. A kill mid-write left a truncated file that the
next resume died on. Here the checkpoint goes through a temporary file + rename (our file backend),
then the pointer (also atomic), and only then are old checkpoints removed.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from mmaction.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from autox_video.storage import atomic

BACKEND = "autox_atomic"


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with put/put_text through a temporary file + fsync + rename."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        """Write bytes atomically."""
        atomic.write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        """Write text atomically."""
        atomic.write_text(filepath, obj)


register_backend(BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """CheckpointHook whose files are written atomically, new checkpoint first, pruning last."""

    def before_train(self, runner: Any) -> None:
        """As mmengine's, but keep the kept-ids list unbounded: we prune after a save, not before."""
        super().before_train(runner)
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids)

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict[str, Any]) -> None:
        name = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        keep = list(self.keep_ckpt_ids)
        if not keep or keep[-1] != step:
            keep.append(step)
        limit = self.max_keep_ckpts if self.max_keep_ckpts > 0 else len(keep)
        runner.message_hub.update_info("keep_ckpt_ids", keep[-limit:])  # what a resume from this one keeps
        runner.save_checkpoint(
            self.out_dir,
            name,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        self.keep_ckpt_ids = deque(keep[-limit:])
        if not is_main_process():
            return
        atomic.write_text(Path(runner.work_dir) / "last_checkpoint", self.last_ckpt)
        for old in keep[:-limit]:  # only now: the new checkpoint and the pointer to it exist
            path = Path(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old)))
            path.unlink(missing_ok=True)
