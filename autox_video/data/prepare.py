"""Transcode a video dataset once into a training-friendly form: small frames, frequent keyframes.

Datasets in the wild are stored for watching: 720p-4K frames and a keyframe every 5-10 seconds.
A training clip is a random 2-second window, so the decoder starts at the previous keyframe and
decodes (and throws away) on average half a keyframe interval of full-size frames first. After
`prepare`, every video is H.264 in .mp4 with short side `short_side` and a keyframe every `gop`
frames, without B-frames, tuned for fast decoding: a random window costs at most `gop` extra small
frames. Every frame is kept (frame indices and counts are unchanged), audio is dropped.

Resumable: each output is written under a temporary name and renamed when complete, so an
interrupted run leaves no half-written video under a final name, and a rerun skips finished files.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from autox_video import terminal
from autox_video.data.annotations import VIDEO_EXTENSIONS, split_line
from autox_video.errors import ConfigError, DataError
from autox_video.storage import atomic
from autox_video.storage.locations import check_folder

OUT_EXT = ".mp4"
PART_SUFFIX = ".part"


@dataclass
class PrepareReport:
    """What `prepare_dataset` did; paths are relative to the source/destination roots."""

    transcoded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already prepared by an earlier run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    ann_files: list[Path] = field(default_factory=list)  # rewritten annotation lists
    renamed: dict[str, str] = field(default_factory=dict)  # source relpath -> output relpath
    left_out: int = 0  # list lines of failed sources, not copied into the prepared lists
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the CLI."""
        mb = 1024 * 1024
        return (
            f"prepared {len(self.transcoded)} videos, skipped {len(self.skipped)} already done, "
            f"{len(self.failed)} failed"
            + (f" (left out of the lists: {self.left_out} line{'s' * (self.left_out != 1)})" if self.left_out else "")
            + f"; {self.bytes_in / mb:.1f} MiB -> {self.bytes_out / mb:.1f} MiB "
            f"in {self.seconds:.1f}s"
        )


def output_relpath(rel: str) -> str:
    """Relative path of the prepared copy of `rel`: same name, `.mp4` extension."""
    p = Path(rel)
    return str(p.with_suffix(OUT_EXT)) if p.suffix.lower() in VIDEO_EXTENSIONS else rel


def _target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Short side `short_side` (never upscaled), aspect kept, even sizes (yuv420 needs them)."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def transcode(src: Path, dst: Path, *, short_side: int = 256, gop: int = 16, crf: int = 20, threads: int = 0) -> None:
    """Transcode one video to H.264 .mp4 at `dst` (written as a temp file, renamed when complete)."""
    import av

    tmp = dst.with_name(dst.name + PART_SUFFIX)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(src)) as inp:
            if not inp.streams.video:
                raise DataError(f"no video stream in {str(src)!r}")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            vin.codec_context.thread_count = threads
            rate = vin.average_rate or vin.guessed_rate or Fraction(30)
            width, height = _target_size(vin.codec_context.width, vin.codec_context.height, short_side)
            with av.open(str(tmp), mode="w", format="mp4") as out:
                rate = Fraction(rate).limit_denominator(1001)
                vout = out.add_stream("libx264", rate=rate)
                vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
                # Random access: keyframe every `gop` frames, no B-frames; fastdecode drops CABAC/deblocking.
                vout.options = {
                    "preset": "veryfast",
                    "crf": str(crf),
                    "g": str(gop),
                    "keyint_min": str(gop),
                    "sc_threshold": "0",
                    "bf": "0",
                    "tune": "fastdecode",
                    "threads": str(threads),
                }
                for index, frame in enumerate(inp.decode(vin)):
                    small = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                    small.pts = index  # constant frame rate; the frame count is what training indexes
                    small.time_base = 1 / rate
                    out.mux(vout.encode(small))
                out.mux(vout.encode())
        atomic.fsync_file(tmp)  # the muxer closed it; its bytes must be on disk before the rename
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _job(src: str, dst: str, short_side: int, gop: int, crf: int, threads: int) -> tuple[int, str | None]:
    """Worker entry: (output bytes, None) or (0, reason)."""
    try:
        transcode(Path(src), Path(dst), short_side=short_side, gop=gop, crf=crf, threads=threads)
    except Exception as err:  # any FFmpeg/PyAV failure: report it, keep going with the others
        text = str(err).strip().splitlines()
        return 0, f"{type(err).__name__}: {text[0] if text else ''}"[:200]
    return Path(dst).stat().st_size, None


def find_videos(root: Path) -> list[str]:
    """Relative paths of every video under `root`, sorted; temp outputs are ignored."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.endswith(PART_SUFFIX)
    )


def rewrite_list(src_list: Path, dst_list: Path, renamed: dict[str, str], drop: frozenset[str] = frozenset()) -> int:
    """Copy an annotation list (`path [start end] [label]` lines), replacing renamed video paths and leaving out
    the lines of `drop` (sources that failed: they have no prepared copy); returns how many were left out."""
    lines, dropped = [], 0
    for raw in src_list.read_text(encoding="utf-8").splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        end = raw[len(body) :]
        stripped = body.strip()
        rel, _ = split_line(stripped)
        tail = stripped[len(rel) :]  # the separator, any time range and the label
        if stripped and os.path.normpath(rel) in drop:
            dropped += 1
            continue
        new = renamed.get(os.path.normpath(rel))
        lines.append((new + tail if new is not None else body) + end)
    atomic.write_text(dst_list, "".join(lines))
    return dropped


def _plan(src_root: Path, dst_root: Path, videos: Iterable[str]) -> dict[str, str]:
    """Source relpath -> output relpath; two sources mapping to one output is an error."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for rel in videos:
        target = output_relpath(rel)
        if target in seen:
            raise DataError(f"{seen[target]!r} and {rel!r} in {str(src_root)!r} would both be prepared as {target!r}")
        seen[target] = rel
        out[rel] = target
    return out


def default_workers() -> int:
    """Parallel transcodes: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def prepare_dataset(
    src_root: str | Path,
    dst_root: str | Path,
    *,
    short_side: int = 256,
    gop: int = 16,
    crf: int = 20,
    workers: int | None = None,
    ann_files: Sequence[str | Path] = (),
    progress: bool = True,
) -> PrepareReport:
    """Transcode every video under `src_root` into `dst_root` (same relative paths, `.mp4`).

    Args:
        src_root: folder of source videos (searched recursively).
        dst_root: output folder; may already hold outputs of an interrupted run (they are kept).
        short_side: short side of the output frames (smaller sources are not upscaled).
        gop: keyframe interval in frames (random access decodes at most this many extra frames).
        crf: x264 quality (lower is better and bigger; 20 is visually transparent at this size).
        workers: parallel transcodes (default: one per CPU); each uses one thread when > 1.
        ann_files: annotation lists (`path label` lines relative to `src_root`) to copy into
            `dst_root` under the same file names, with video paths renamed like the videos.
        progress: show a progress bar when stderr is a terminal (autox_video.terminal).

    Returns:
        A PrepareReport; failed sources are listed there, not raised, so one bad file costs one file.
    """
    src, dst = Path(src_root), Path(dst_root)
    if not src.is_dir():
        raise ConfigError(f"source folder not found: {str(src)!r}")
    check_folder("prepare's output", dst)
    if short_side < 16 or gop < 1:
        raise ConfigError(f"short_side must be >= 16 and gop >= 1, got short_side={short_side!r}, gop={gop!r}")
    if src.resolve() == dst.resolve():
        raise ConfigError(f"destination must differ from the source folder: {str(dst)!r}")
    lists = [Path(a) for a in ann_files]
    for ann in lists:
        if not ann.is_file():
            raise ConfigError(f"annotation list not found: {str(ann)!r}")
    started = time.monotonic()
    plan = _plan(src, dst, find_videos(src))
    report = PrepareReport(renamed={k: v for k, v in plan.items() if k != v})
    todo = []
    for rel, out_rel in plan.items():
        if (dst / out_rel).is_file():
            report.skipped.append(rel)
            report.bytes_out += (dst / out_rel).stat().st_size
        else:
            todo.append((rel, out_rel))
    workers = max(1, workers or default_workers())
    threads = 1 if workers > 1 else 0  # 0: FFmpeg picks; with many processes, one thread each
    bar = _progress(len(plan), initial=len(report.skipped), enabled=progress)
    try:
        if workers == 1 or len(todo) <= 1:
            for rel, out_rel in todo:
                _record(report, src, rel, _job(str(src / rel), str(dst / out_rel), short_side, gop, crf, threads))
                bar.update(1)
        else:
            # forkserver: never fork a process that may already hold decoder/torch threads.
            ctx = mp.get_context("forkserver")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {
                    pool.submit(_job, str(src / rel), str(dst / out_rel), short_side, gop, crf, threads): rel
                    for rel, out_rel in todo
                }
                for future in as_completed(futures):
                    _record(report, src, futures[future], future.result())
                    bar.update(1)
    finally:
        bar.close()
    renamed = {os.path.normpath(k): v for k, v in plan.items()}
    failed = frozenset(os.path.normpath(rel) for rel, _ in report.failed)
    for ann in lists:
        out_list = dst / ann.name
        report.left_out += rewrite_list(ann, out_list, renamed, failed)
        report.ann_files.append(out_list)
    report.transcoded.sort()
    report.seconds = time.monotonic() - started
    return report


def _record(report: PrepareReport, src: Path, rel: str, result: tuple[int, str | None]) -> None:
    size, error = result
    report.bytes_in += (src / rel).stat().st_size
    if error is None:
        report.transcoded.append(rel)
        report.bytes_out += size
    else:
        report.failed.append((rel, error))


def _progress(total: int, *, initial: int, enabled: bool) -> Any:
    return terminal.bar(total, "prepare", "video", initial=initial, enabled=enabled)  # a terminal only, not logs
