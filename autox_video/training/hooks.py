"""ProgressHook: best.pth, metrics.jsonl and progress.json, exactly once per epoch across kills;
on rank 0 it also shows the run's progress (training/display.py: a bar on a terminal, else plain lines).

Order within an epoch (ValidateThenSaveLoop): validate -> [after_val_epoch: stage best.pending.epoch_N.pth,
remember metrics in the message hub] -> CheckpointHook saves epoch_N.pth (the message hub rides in
it) -> [after_train_epoch, lowest priority: promote best, append metrics.jsonl, write progress.json,
publish]. A kill anywhere resumes from the last epoch checkpoint; before_train then finishes the
bookkeeping of that epoch if the kill came after its checkpoint, and drops anything newer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmaction.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from autox_video.storage import atomic
from autox_video.training.display import TrainDisplay

BEST = "best.pth"


def _pending(epoch: int) -> str:
    """Staged best weights of one epoch: the name says which, so a resume never promotes a discarded epoch's."""
    return f"best.pending.epoch_{epoch}.pth"


PENDING_KEY = "autox_pending"
BEST_KEY = "autox_best"

# Set by train.fit(): called on rank 0 with the work dir after each epoch's files are written
# (uploads them when the output is S3), and the meta stored in every checkpoint.
Publisher = Callable[[Path, int, bool], None]


class StopRequest:
    """Ctrl-C (SIGINT) during training stops it between iterations, never inside a decoder.

    Python raises KeyboardInterrupt wherever the main thread happens to be; inside decord/PyAV it can
    surface as a decode error, which the dataset treats as a bad video and skips: the run went on.
    The first SIGINT only sets a flag that ProgressHook checks after each iteration; a second one
    interrupts at once, as usual.
    """

    requested = False

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[None]:
        """Handle SIGINT this way while training (main thread only; elsewhere nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        cls.requested = False

        def on_sigint(signum: int, frame: Any) -> None:
            if cls.requested:
                raise KeyboardInterrupt
            cls.requested = True

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @classmethod
    def check(cls) -> None:
        """Raise KeyboardInterrupt if a stop was requested."""
        if cls.requested:
            raise KeyboardInterrupt


def _ends_cleanly(path: Path) -> bool:
    """Whether a JSON-lines file is missing, empty or ends with a newline (no torn last line)."""
    if not path.is_file() or path.stat().st_size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _now(at: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).isoformat(timespec="seconds")


def _measured_epochs(path: Path, epochs: int) -> list[float | None]:
    """epoch_seconds of the first `epochs` epochs from an earlier progress.json (None where not measured)."""
    try:
        old = json.loads(path.read_text()).get("epoch_seconds")
    except (OSError, ValueError, AttributeError):
        old = None
    old = old if isinstance(old, list) else []
    kept = [t if isinstance(t, int | float) and not isinstance(t, bool) else None for t in old[:epochs]]
    return kept + [None] * (epochs - len(kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of metrics.jsonl (empty if missing; a line torn by a kill is skipped)."""
    return atomic.read_jsonl(path)


@HOOKS.register_module()
class ProgressHook(Hook):
    """Keeps best.pth, metrics.jsonl and progress.json in the work dir (rank 0 writes)."""

    priority = "LOWEST"  # after CheckpointHook (VERY_LOW): the epoch checkpoint exists first
    progress_every = 30.0  # seconds between progress.json writes within an epoch (local file only)

    def __init__(self, total_epochs: int, validate: bool, output: str | None = None, log_interval: int = 10) -> None:
        self.total_epochs = total_epochs
        self.display = TrainDisplay(total_epochs, log_interval)
        self.validate = validate
        self.output = output  # where files end up (an s3:// URI or None = the work dir itself)
        self.publisher: Publisher | None = None
        self.checkpoint_meta: dict[str, Any] = {}
        self._loss_sum = 0.0
        self._loss_n = 0
        self._epoch_start = time.time()
        # For progress.json's ETA: each epoch's wall time, from the end of the previous epoch's bookkeeping
        # (so its upload counts) to the end of this one's checkpoint; kept across resumes via progress.json.
        self._epoch_seconds: list[float | None] = []
        self._clock = time.time()
        self._iter = 0
        self._last_write = 0.0

    # --- helpers -----------------------------------------------------------------------------
    def _dir(self, runner: Any) -> Path:
        return Path(runner.work_dir)

    def _uri(self, runner: Any, name: str | None) -> str | None:
        if name is None:
            return None
        base = self.output or str(self._dir(runner))
        return base.rstrip("/") + "/" + name

    def _best(self, runner: Any) -> dict[str, Any]:
        return runner.message_hub.get_info(BEST_KEY, {"top1": None, "epoch": None})

    def _iters_per_epoch(self, runner: Any) -> int | None:
        try:
            return len(runner.train_dataloader)
        except (TypeError, AttributeError):  # an iterable dataset has no length
            return None

    def _write_progress(self, runner: Any, epoch: int, phase: str) -> None:
        best = self._best(runner)
        last = runner.message_hub.get_info("last_ckpt")
        self._last_write = time.time()
        atomic.write_json(
            self._dir(runner) / "progress.json",
            {
                "phase": phase,
                "epoch": epoch,
                "total_epochs": self.total_epochs,
                "best_top1": best["top1"],
                "best_epoch": best["epoch"],
                "best_checkpoint": self._uri(runner, BEST) if best["epoch"] is not None else None,
                "latest_checkpoint": self._uri(runner, Path(last).name) if last else None,
                "epoch_seconds": list(self._epoch_seconds),
                "epoch_started": _now(self._clock) if phase == "running" else None,
                "epoch_iter": self._iter,
                "epoch_iters": self._iters_per_epoch(runner),
                "updated": _now(self._last_write),
            },
        )

    def _finish_epoch(self, runner: Any, epoch: int, pending: dict[str, Any] | None) -> None:
        """Promote the staged best and append the epoch's metrics, each at most once."""
        work = self._dir(runner)
        if pending is not None and pending.get("epoch") == epoch:
            if (work / _pending(epoch)).is_file():
                os.replace(work / _pending(epoch), work / BEST)
            rows = read_metrics(work / "metrics.jsonl")
            if pending.get("metrics") and all(r.get("epoch") != epoch for r in rows):
                atomic.append_jsonl(work / "metrics.jsonl", pending["metrics"])

    # --- hook points -------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        """After a resume: finish the resumed epoch's bookkeeping, drop rows of epochs not kept."""
        if not is_main_process():
            return
        work = self._dir(runner)
        epoch = runner.epoch  # epochs completed by the loaded checkpoint (0 when fresh)
        pending = runner.message_hub.get_info(PENDING_KEY)
        self._finish_epoch(runner, epoch, pending)
        for stale in work.glob("best.pending.epoch_*.pth"):  # staged by epochs after the checkpoint
            stale.unlink()
        self._heal_best(runner, epoch)
        rows = read_metrics(work / "metrics.jsonl")
        kept = [r for r in rows if r.get("epoch", 0) <= epoch]
        # Rows validated after the checkpoint we resumed from will be redone; a torn last line goes too.
        if len(kept) != len(rows) or not _ends_cleanly(work / "metrics.jsonl"):
            atomic.write_text(work / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        self._epoch_seconds = _measured_epochs(work / "progress.json", epoch)
        if epoch > 0:
            self.display.resumed(epoch)
        self._clock, self._iter = time.time(), 0
        self._write_progress(runner, epoch, "running")
        if epoch > 0 and self.publisher is not None:
            # The resumed epoch's files are whole again here; a kill had perhaps cut their upload short.
            self.publisher(work, epoch, False)

    def _heal_best(self, runner: Any, epoch: int) -> None:
        """When the best epoch is the one just resumed, best.pth must hold its weights.

        With an S3 output, a pod can die after the checkpoint pointer moved but before best.pth was
        uploaded; a fresh disk then restores an older best.pth. The resumed model holds the right weights.
        """
        best = self._best(runner)
        from autox_video.training.checkpoints import read_meta

        if epoch == 0 or best["epoch"] != epoch or read_meta(self._dir(runner) / BEST).get("epoch") == epoch:
            return
        self._save_weights(runner, self._dir(runner) / BEST, epoch, float(best["top1"]))

    def before_train_epoch(self, runner: Any) -> None:
        """Reset the epoch's loss and timer."""
        self._loss_sum, self._loss_n, self._epoch_start = 0.0, 0, time.time()
        runner.message_hub.update_info(PENDING_KEY, None)
        if is_main_process():
            self.display.start_epoch(runner.epoch + 1, self._iters_per_epoch(runner))

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Accumulate the training loss for metrics.jsonl; stop here if Ctrl-C was pressed."""
        StopRequest.check()
        self._iter = batch_idx + 1
        if is_main_process() and time.time() - self._last_write >= self.progress_every:
            self._write_progress(runner, runner.epoch, "running")  # runner.epoch: epochs finished
        if outputs and "loss" in outputs:
            self._loss_sum += (
                float(outputs["loss"].detach()) if hasattr(outputs["loss"], "detach") else float(outputs["loss"])
            )
            self._loss_n += 1
        if is_main_process():
            self.display.iteration(self._iter, self._loss_sum / self._loss_n if self._loss_n else None)

    def before_val_epoch(self, runner: Any) -> None:
        """Say that validation runs."""
        if is_main_process():
            self.display.validating()

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Stop here if Ctrl-C was pressed."""
        StopRequest.check()

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Record this epoch's validation; stage best weights if top-1 improved."""
        if not metrics or runner.train_loop is None or not hasattr(runner.train_loop, "_epoch"):
            return
        epoch = runner.epoch + 1  # ValidateThenSaveLoop validates before the epoch counter moves
        top1 = float(metrics.get("acc/top1", 0.0))
        top5 = next((float(v) for k, v in metrics.items() if k.startswith("acc/top") and k != "acc/top1"), None)
        row = {
            "epoch": epoch,
            "top1": top1,
            "top5": top5,
            "loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "time": round(time.time() - self._epoch_start, 2),
        }
        best = self._best(runner)
        improved = best["top1"] is None or top1 > best["top1"]
        if improved:
            runner.message_hub.update_info(BEST_KEY, {"top1": top1, "epoch": epoch})
            if is_main_process():
                self._save_weights(runner, self._dir(runner) / _pending(epoch), epoch, top1)
        runner.message_hub.update_info(PENDING_KEY, {"epoch": epoch, "metrics": row})
        if is_main_process():
            best = self._best(runner)
            self.display.validated(top1, top5, best["top1"], best["epoch"])

    def _save_weights(self, runner: Any, path: Path, epoch: int, top1: float) -> None:
        """Weights + plain metadata only: loads with torch.load(weights_only=True) anywhere."""
        from mmengine.model import is_model_wrapper

        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        meta = {"epoch": epoch, "iter": runner.iter, "top1": top1, "autox": dict(self.checkpoint_meta)}
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        atomic.torch_save({"meta": meta, "state_dict": state}, path)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Make every checkpoint self-describing: classes, resolved config, epoch."""
        checkpoint.setdefault("meta", {})["autox"] = dict(self.checkpoint_meta)

    def after_train_epoch(self, runner: Any) -> None:
        """After the epoch checkpoint: promote best, append metrics, progress.json, publish."""
        epoch = runner.epoch + 1
        end = time.time()
        earlier = self._epoch_seconds[: epoch - 1]
        # Index i is epoch i+1, whatever a resume left of the earlier measurements.
        self._epoch_seconds = [*earlier, *[None] * (epoch - 1 - len(earlier)), round(end - self._clock, 2)]
        self._clock, self._iter = end, 0
        if is_main_process():
            self.display.close()
            self._finish_epoch(runner, epoch, runner.message_hub.get_info(PENDING_KEY))
            self._write_progress(runner, epoch, "running")
            if self.publisher is not None:
                self.publisher(self._dir(runner), epoch, False)

    def after_train(self, runner: Any) -> None:
        """Mark the run succeeded."""
        if is_main_process():
            self.display.close()
            self._write_progress(runner, runner.epoch, "succeeded")
            if self.publisher is not None:
                self.publisher(self._dir(runner), runner.epoch, True)
