"""Preflight scan: find unreadable videos before training, so a bad file never crashes a run.

decord is unmaintained and can hang or seek wrongly on containers that over-report their frame
count (dmlc/decord#195, #373): each probe decodes the first, middle and *last* frame, in a worker
process that is killed after a timeout.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import multiprocessing.pool
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autox_video import terminal
from autox_video.data.annotations import Sample
from autox_video.errors import DataError
from autox_video.storage import atomic


@dataclass(frozen=True)
class VideoProblem:
    """An unreadable video and why."""

    path: str
    reason: str


def _first_line(err: BaseException) -> str:
    """The useful part of a decord/FFmpeg message: first line, without decord's '[time] file.cc:N: ' prefix."""
    # decord glues several '[hh:mm:ss] src/file.cc:N: text' records together; keep the first text.
    parts = [re.sub(r"^\s*\S+\.cc:\d+:\s*", "", x).strip() for x in re.split(r"\[\d\d:\d\d:\d\d\]|\n", str(err))]
    return next((x for x in parts if x), type(err).__name__)[:160]


def _declared_frames(path: str) -> int:
    """Frame count the container header promises (0 when unknown), read with PyAV."""
    try:
        import av

        with av.open(path) as container:
            return int(container.streams.video[0].frames)
    except Exception:  # noqa: BLE001 - no PyAV, no video stream, unreadable header: nothing to compare against
        return 0


def _pipeline_read(path: str, n: int, decoder: str) -> str | None:
    """Read frames 0, n/2 and n-1 with the reader training and prediction use, when it is PyAV.

    decord read them above; a file it reads that PyAV rejects (e.g. duplicate timestamps in an
    MPEG-PS .mpg) would otherwise pass this check and then abort validation or prediction.
    """
    from autox_video.data.fast_decode import FastDecordDecode, FastDecordInit, _PyAVReader

    try:
        results = FastDecordInit(short_side=None, backend=decoder).transform({"filename": path})
        if not isinstance(results["video_reader"], _PyAVReader):
            results["video_reader"].close()
            return None
        results["frame_inds"] = np.array(sorted({0, n // 2, n - 1}))
        FastDecordDecode().transform(results)
    except Exception as err:  # noqa: BLE001 - DataError or FFmpeg's own; the reason is what matters
        return f"cannot be read exactly (decoder {decoder}): {_first_line(err)}"
    return None


def _stream_end_frame(path: str) -> float:
    """Frame position of the last stored frame, by its timestamp (0 when unknown).

    A variable-frame-rate AVI leaves dropped frames out but counts them in its header: its frames
    still reach the end of the stream. A file cut short does not.
    """
    try:
        import av

        with av.open(path) as container:
            stream = container.streams.video[0]
            rate, base = stream.average_rate or stream.guessed_rate, stream.time_base
            last = max((p.pts for p in container.demux(stream) if p.size and p.pts is not None), default=None)
            if last is None or not rate or not base:
                return 0.0
            return float((last - (stream.start_time or 0)) * base * rate) + 1
    except Exception:  # noqa: BLE001 - unreadable: the truncation verdict stands
        return 0.0


def probe_file(path: str, decoder: str = "auto") -> str | None:
    """Open and decode the first, middle and last frame in this process; None if fine, else a short reason."""
    p = Path(path)
    if not p.is_file():
        return "file not found"
    if p.stat().st_size == 0:
        return "empty file"
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # the reason is returned; FFmpeg's own chatter is noise
    try:
        vr = decord.VideoReader(path, num_threads=1)
    except Exception as err:  # noqa: BLE001 - decord raises DECORDError/RuntimeError with FFmpeg text
        return f"cannot open: {_first_line(err)}"
    n = len(vr)
    if n <= 0:
        return "no frames"
    # The last frame catches truncated files and containers whose header over-reports the count.
    for idx in sorted({0, n // 2, n - 1}):
        try:
            frame = vr[idx].asnumpy()
        except Exception as err:  # noqa: BLE001 - any decoder error makes the file unusable
            return f"decode failed at frame {idx} of {n}: {_first_line(err)}"
        if frame.size == 0:
            return f"empty frame {idx} of {n}"
    # An AVI cut short still opens and decodes its remaining frames, but a clip sampled over the
    # promised length would not exist: compare with the header (a frame or two of slack for B-frames).
    declared = _declared_frames(path)
    if declared and n < 0.9 * declared - 1 and _stream_end_frame(path) < 0.9 * declared - 1:
        return f"truncated: {n} of {declared} frames decodable"
    return _pipeline_read(path, n, decoder)


def _context() -> mp.context.BaseContext:
    # fork where available, as PyTorch's DataLoader does: spawn/forkserver re-import the caller's
    # main script in every worker, which re-runs a user's unguarded `AutoXVideo().fit()` script.
    # The probes touch only decord/PyAV, and a hung child is killed by the timeout anyway.
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _quiet_worker() -> None:
    """Pool initializer: decord/FFmpeg print to fd 2 for every bad file; the probe returns the reason instead."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def probe_video(path: str | Path, *, timeout_s: float = 20.0, decoder: str = "auto") -> str | None:
    """probe_file in a child process with a timeout (a hang becomes a reason, not a stuck run)."""
    return _probe_all(
        [str(path)], workers=1, timeout_s=timeout_s, probe=functools.partial(probe_file, decoder=decoder)
    )[0]


def _probe_all(
    paths: list[str],
    *,
    workers: int,
    timeout_s: float,
    probe: Callable[..., str | None] = probe_file,
    on_result: Callable[[], None] | None = None,
) -> list[str | None]:
    """Probe in one reused pool of worker processes; a probe past timeout_s is recorded and the pool restarted."""
    results: list[str | None] = [None] * len(paths)
    todo = list(range(len(paths)))
    while todo:
        pool = _context().Pool(processes=max(1, min(workers, len(todo))), initializer=_quiet_worker)
        try:
            pending = [(i, pool.apply_async(probe, (paths[i],))) for i in todo]
            todo = []
            for pos, (i, res) in enumerate(pending):
                # Results are awaited in order and each started no later than when its
                # predecessor finished, so every probe gets at least timeout_s to run.
                try:
                    results[i] = res.get(timeout=timeout_s)
                except mp.TimeoutError:
                    results[i] = f"timed out after {timeout_s:g}s (decoder hang)"
                    # A hung worker cannot be interrupted: keep what finished, kill the pool, redo the rest.
                    for j, r in pending[pos + 1 :]:
                        if r.ready():
                            results[j] = _result(r)
                            if on_result:
                                on_result()
                        else:
                            todo.append(j)
                    if on_result:
                        on_result()
                    break
                except Exception as err:  # noqa: BLE001 - e.g. a pickling error; the probe returns reasons
                    results[i] = f"probe crashed: {_first_line(err)}"
                if on_result:
                    on_result()
        finally:
            pool.terminate()
            pool.join()
    return results


def _result(res: mp.pool.AsyncResult[str | None]) -> str | None:
    try:
        return res.get()
    except Exception as err:  # noqa: BLE001 - reported as the video's reason
        return f"probe crashed: {_first_line(err)}"


def check_videos(
    samples: list[Sample],
    data_root: str | Path,
    *,
    workers: int = 2,
    timeout_s: float = 20.0,
    progress: bool = True,
    decoder: str = "auto",
) -> tuple[list[Sample], list[VideoProblem]]:
    """Probe every sample; return the readable ones (in order) and the problems."""
    if not samples:
        return [], []
    workers = max(1, min(workers, os.cpu_count() or 1, len(samples)))
    paths = [str(Path(data_root) / s.path) for s in samples]
    # Drawn on a terminal only: a pipe or a pod's log gets no carriage-return redraws.
    with terminal.bar(len(paths), "checking videos", "video", leave=False, enabled=progress) as bar:
        reasons = _probe_all(
            paths,
            workers=workers,
            timeout_s=timeout_s,
            probe=functools.partial(probe_file, decoder=decoder),
            on_result=bar.update,
        )
    good = [s for s, r in zip(samples, reasons, strict=True) if r is None]
    problems = [VideoProblem(s.path, r) for s, r in zip(samples, reasons, strict=True) if r is not None]
    return good, problems


def write_skipped(problems: list[VideoProblem], path: str | Path) -> None:
    """`relpath<TAB>reason` per unreadable video (an empty file when there are none)."""
    atomic.write_text(path, "".join(f"{p.path}\t{p.reason}\n" for p in problems))


def enforce_bad_fraction(
    problems: list[VideoProblem],
    total: int,
    max_bad_fraction: float,
    where: str,
    *,
    skipped: str | Path = "work_dir/skipped.txt",
) -> None:
    """DataError when more than max_bad_fraction of the `total` videos of `where` are unreadable."""
    if total and len(problems) / total > max_bad_fraction:
        raise DataError(
            f"{len(problems)} of {total} videos in {where} are unreadable "
            f"({len(problems) / total:.0%} > max_bad_fraction {max_bad_fraction:.0%}); "
            f"first: {problems[0].path}: {problems[0].reason}; see {skipped}"
        )
