"""A training run whose output lives in S3: restore it onto an empty disk, publish it as it goes.

S3 layout of an output prefix (DESIGN §3 + the pointer):
  epoch_N.pth, best.pth, metrics.jsonl, progress.json, config.yaml, classes.txt, skipped.txt, curves.png, logs/
  last_checkpoint   the name of the latest *complete* checkpoint; written after it, read first.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from autox_video import storage
from autox_video.storage import atomic

log = logging.getLogger("autox_video")

POINTER = "last_checkpoint"
RUN_FILES = ("metrics.jsonl", "progress.json", "config.yaml", "classes.txt", "skipped.txt", "curves.png")


def mirror_dir(uri: str) -> Path:
    """The local work dir that mirrors an S3 output prefix (stable per URI)."""
    digest = hashlib.sha1(uri.rstrip("/").encode()).hexdigest()[:12]
    return storage.cache_root() / "runs" / digest


def _remote_checkpoints(uri: str) -> list[str]:
    """Names of the epoch_N.pth objects under `uri`, newest first."""
    epochs = [k for k in storage.list_keys(uri) if re.fullmatch(r"epoch_\d+\.pth", k)]  # not trials/*/...
    return sorted(epochs, key=lambda n: int(re.sub(r"\D", "", n)), reverse=True)


def _fetch_complete_checkpoint(uri: str, local: Path) -> Path | None:
    """Download the checkpoint the pointer names; if it is missing or unreadable, the newest one that loads.

    No pointer means no epoch was ever published whole (its run files go up before the pointer): nothing
    to resume, even if a checkpoint object is there.
    """
    from autox_video.training.checkpoints import unreadable_reason

    pointer = storage.join(uri, POINTER)
    if not storage.exists(pointer):
        return None
    named = storage.read_text(pointer).strip()
    candidates = [named] + [n for n in _remote_checkpoints(uri) if n != named]
    for name in candidates:
        src = storage.join(uri, name)
        if not storage.exists(src):
            log.warning("%s names %s, which is missing; trying the previous checkpoint", pointer, src)
            continue
        ckpt = storage.download(src, local / name)
        reason = unreadable_reason(ckpt)
        if reason is None:
            return ckpt
        ckpt.unlink()
        log.warning("%s: unreadable checkpoint (%s); trying the previous one", src, reason)
    return None


def restore_run(uri: str, local: Path) -> Path | None:
    """Fetch the latest complete checkpoint and the run files; return the checkpoint (None: nothing to resume)."""
    from autox_video.training.checkpoints import unreadable_reason

    local.mkdir(parents=True, exist_ok=True)
    ckpt = _fetch_complete_checkpoint(uri, local)
    if ckpt is None:
        return None
    for extra in (*RUN_FILES, "best.pth"):
        src = storage.join(uri, extra)
        if storage.exists(src):
            storage.download(src, local / extra)
    best = local / "best.pth"
    if best.is_file() and (reason := unreadable_reason(best)) is not None:
        best.unlink()  # the resumed run rewrites it when its best epoch is the resumed one
        log.warning("%s: unreadable best.pth (%s); not restored", uri, reason)
    atomic.write_text(local / POINTER, str(ckpt))  # mmengine's pointer format: the checkpoint's path
    log.info("restored %s from %s", ckpt.name, uri)
    return ckpt


class RunPublisher:
    """Uploads a run's files after each epoch: the checkpoint, run files, the pointer, then best.pth."""

    def __init__(self, uri: str, keep: int) -> None:
        self.uri = uri
        self.keep = keep

    def __call__(self, work: Path, epoch: int, final: bool) -> None:
        """Publish what the epoch wrote (called on rank 0 by ProgressHook)."""
        latest = _latest_local(work)
        if latest is not None:
            remote = storage.join(self.uri, latest.name)
            there = storage.stat(remote)
            if there is None or there.size != latest.stat().st_size:  # after a resume it usually is there
                storage.upload(latest, remote)
        for name in RUN_FILES:
            if (work / name).is_file():
                storage.upload(work / name, storage.join(self.uri, name))
        for logfile in sorted(work.glob("*/*.log")):
            storage.upload(logfile, storage.join(self.uri, "logs", logfile.name))
        if latest is not None:
            storage.write_text(storage.join(self.uri, POINTER), latest.name)  # only now is it usable
            self._prune(latest.name)
        # After the pointer: best.pth is never newer than the checkpoint a fresh pod resumes. A pod
        # that dies before this upload restores an older best.pth, and ProgressHook rewrites it
        # from the resumed weights when the resumed epoch is the best one.
        if (work / "best.pth").is_file():
            storage.upload(work / "best.pth", storage.join(self.uri, "best.pth"))

    def _prune(self, current: str) -> None:
        names = _remote_checkpoints(self.uri)[::-1]  # oldest first; this run's own, not its trials'
        for name in names[: max(0, len(names) - self.keep)]:
            if name != current:
                storage.delete(storage.join(self.uri, name))


def _latest_local(work: Path) -> Path | None:
    from autox_video.training.checkpoints import latest_checkpoint

    return latest_checkpoint(work)
