"""Preflight scan: find unreadable videos before training, so a bad file never crashes a run.

decord is unmaintained and can hang or seek wrongly on containers that over-report their frame
count (dmlc/decord#195, #373): each probe decodes the first, middle and *last* frame, in a worker
process that is killed after a timeout.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autox_video.annotations import Sample
from autox_video.errors import DataError


@dataclass(frozen=True)
class VideoProblem:
    """An unreadable video and why."""

    path: str
    reason: str


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = next((x for x in text.splitlines() if x.strip() and not x.startswith("[")), text or type(err).__name__)
    return line[:160]


def probe_file(path: str) -> str | None:
    """Open and decode first/middle/last frames in this process; None if fine, else a short reason."""
    p = Path(path)
    if not p.is_file():
        return "file not found"
    if p.stat().st_size == 0:
        return "empty file"
    import decord

    try:
        vr = decord.VideoReader(path, num_threads=1)
    except Exception as err:  # decord raises DECORDError/RuntimeError with FFmpeg text
        return f"cannot open: {_first_line(err)}"
    n = len(vr)
    if n <= 0:
        return "no frames"
    for idx in sorted({0, n // 2, n - 1}):
        try:
            frame = vr[idx].asnumpy()
        except Exception as err:
            return f"decode failed at frame {idx} of {n}: {_first_line(err)}"
        if frame.size == 0:
            return f"empty frame {idx} of {n}"
    return None


def _context() -> mp.context.BaseContext:
    # forkserver/spawn: forking a process that already holds decord/torch threads is unsafe
    return mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")


def probe_video(path: Path, *, timeout_s: float = 20.0) -> str | None:
    """probe_file in a child process with a timeout (a hang becomes a reason, not a stuck run)."""
    problems = _probe_all([str(path)], workers=1, timeout_s=timeout_s)
    return problems[0]


def _probe_all(
    paths: list[str], *, workers: int, timeout_s: float, probe: Callable[..., str | None] = probe_file
) -> list[str | None]:
    results: list[str | None] = [None] * len(paths)
    todo = list(range(len(paths)))
    while todo:
        pool = _context().Pool(processes=max(1, min(workers, len(todo))))
        try:
            pending = [(i, pool.apply_async(probe, (paths[i],))) for i in todo]
            todo = []
            for pos, (i, res) in enumerate(pending):
                try:
                    results[i] = res.get(timeout=timeout_s)
                except mp.TimeoutError:
                    results[i] = f"timed out after {timeout_s:g}s (decoder hang)"
                    # The hung worker cannot be interrupted: restart the pool for the rest.
                    todo = [j for j, r in pending[pos + 1 :] if not r.ready()]
                    for j, r in pending[pos + 1 :]:
                        if r.ready():
                            results[j] = r.get()
                    break
        finally:
            pool.terminate()
            pool.join()
    return results


def check_videos(
    samples: list[Sample], data_root: Path, *, workers: int = 2, timeout_s: float = 20.0, progress: bool = False
) -> tuple[list[Sample], list[VideoProblem]]:
    """Probe every sample; return the readable ones (in order) and the problems."""
    if not samples:
        return [], []
    workers = max(1, min(workers, os.cpu_count() or 1))
    reasons = _probe_all([str(Path(data_root) / s.path) for s in samples], workers=workers, timeout_s=timeout_s)
    good = [s for s, r in zip(samples, reasons) if r is None]
    problems = [VideoProblem(s.path, r) for s, r in zip(samples, reasons) if r is not None]
    return good, problems


def write_skipped(problems: list[VideoProblem], path: Path) -> None:
    """`relpath<TAB>reason` per unreadable video (an empty file when there are none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{p.path}\t{p.reason}\n" for p in problems), encoding="utf-8")


def enforce_bad_fraction(problems: list[VideoProblem], total: int, max_bad_fraction: float, where: str) -> None:
    """DataError when more than max_bad_fraction of a list is unreadable."""
    if total and len(problems) / total > max_bad_fraction:
        raise DataError(
            f"{len(problems)} of {total} videos in {where} are unreadable "
            f"({len(problems) / total:.0%} > max_bad_fraction {max_bad_fraction:.0%}); "
            f"first: {problems[0].path}: {problems[0].reason}; see skipped.txt"
        )
