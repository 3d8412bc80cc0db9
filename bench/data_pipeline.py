#!/usr/bin/env python
"""Data pipeline benchmark (CPU): training clips per core-second, ours vs mmaction2's default decord pipeline.

Both pipelines run in this one process, one thread each (decord num_threads=1, OpenCV 1 thread),
on the same real encoded files (320p and 720p; H.264 .mp4 and MPEG-4 .avi with the long keyframe
intervals of datasets in the wild), clip after clip in alternating order, with the same random
seed per clip so both sample the same frames and crops. Each clip is timed in CPU seconds of this
process (all its threads): that is clips per second per core, and it stays meaningful on a shared
machine where wall-clock time does not. Wall-clock figures are printed too.

Pipelines (Video Swin recipe, 32x2 frames, 224 crop):
  mmaction2: DecordInit -> SampleFrames -> DecordDecode -> Resize(-1,256) -> RandomResizedCrop
             -> Resize(224) -> Flip -> FormatShape -> PackActionInputs   (configs/recognition/swin)
  ours:      autox_video.data.fast_decode.train_pipeline: FastDecordInit(short side 256: decord scaling
             in FFmpeg for H.264; PyAV decoding only needed + reference frames for MPEG-4 Part 2)
             -> SampleFrames -> FastDecordDecode (sorted unique reads, uint8, no copies)
             -> RandomResizedCrop -> Resize(224) -> Flip -> FormatShape -> PackActionInputs
  prepared:  ours on the output of `autox-video prepare` (short side 256, keyframe every 16 frames).

Headlines: pipeline_ratio_720p (ours / mmaction2 on the unprepared 720p files) and
prepared_ratio_720p (ours on the prepared copies / mmaction2 on the unprepared 720p files).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import publish, table  # noqa: E402
from sources import FORMATS, SourceSpec, default_cache_dir, ensure_sources  # noqa: E402


def mmaction_default(clip_len: int, interval: int, img: int) -> list[dict[str, Any]]:
    """mmaction2's Swin training pipeline (configs/recognition/swin/*kinetics400-rgb.py), decord backend."""
    return [
        dict(type="DecordInit", num_threads=1),
        dict(type="SampleFrames", clip_len=clip_len, frame_interval=interval, num_clips=1),
        dict(type="DecordDecode"),
        dict(type="Resize", scale=(-1, round(img * 256 / 224))),
        dict(type="RandomResizedCrop"),
        dict(type="Resize", scale=(img, img), keep_ratio=False),
        dict(type="Flip", flip_ratio=0.5),
        dict(type="FormatShape", input_format="NCTHW"),
        dict(type="PackActionInputs"),
    ]


def run_clip(pipe: Any, path: Path, seed: int) -> tuple[float, float]:
    """(cpu seconds, wall seconds) for one clip; the seed fixes frame offsets, crop and flip."""
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    cpu, wall = time.process_time(), time.perf_counter()
    out = pipe(dict(filename=str(path), label=0, start_index=0, modality="RGB"))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert out["inputs"].ndim == 5, "pipeline produced no clip"
    return cpu, wall


def prepared_copies(sources: dict[str, list[Path]], cache: Path) -> dict[Path, Path]:
    """Run `prepare_dataset` once per source folder (cached, resumable); source file -> prepared file."""
    from autox_video.data.prepare import output_relpath, prepare_dataset

    out: dict[Path, Path] = {}
    for files in sources.values():
        src_root = files[0].parent
        dst_root = cache / f"prepared-{src_root.parent.name}" / src_root.name
        report = prepare_dataset(src_root, dst_root, short_side=256, gop=16, progress=False)
        if report.failed:
            raise SystemExit(f"prepare failed: {report.failed}")
        for f in files:
            out[f] = dst_root / output_relpath(f.name)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate sources, time the pipelines, print the table and headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="tiny sources and clips: a CI smoke run of a few seconds")
    ap.add_argument("--clips", type=int, default=None, help="clips per source size and pipeline (default 24, quick 2)")
    ap.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="where sources and prepared copies are kept"
    )
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)

    # One core per pipeline: clips per core-second is what scales with data-loader workers.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from mmaction.utils import register_all_modules
    from mmengine.dataset import Compose

    register_all_modules(init_default_scope=True)
    from autox_video.data.fast_decode import train_pipeline

    if args.quick:
        spec, clips, clip_len, interval = SourceSpec(seconds=2.0, fps=15, videos=1), args.clips or 2, 8, 2
    else:
        spec, clips, clip_len, interval = SourceSpec(), args.clips or 24, 32, 2
    img = 224
    t0 = time.perf_counter()
    sources = ensure_sources(spec, args.cache_dir)
    prepared = prepared_copies(sources, args.cache_dir)
    setup_s = time.perf_counter() - t0
    pipes = {
        "mmaction": Compose(mmaction_default(clip_len, interval, img)),
        "ours": Compose(train_pipeline(clip_len, interval, img, short_side=round(img * 256 / 224))),
    }
    runs = [("mmaction", False), ("ours", False), ("mmaction", True), ("ours", True)]

    # totals[(size, ext, pipeline, prepared)] = [clips, cpu s, wall s]
    totals: dict[tuple[str, str, str, bool], list[float]] = {}
    for size, files in sources.items():
        for name, prep in runs:  # warm-up: imports, codec tables, caches
            run_clip(pipes[name], prepared[files[0]] if prep else files[0], seed=-1 % 2**31)
        for k in range(clips):
            path = files[k % len(files)]
            order = runs if k % 2 == 0 else runs[::-1]  # alternate so drifting machine load hits both
            for name, prep in order:
                cpu, wall = run_clip(pipes[name], prepared[path] if prep else path, seed=k)
                acc = totals.setdefault((size, path.suffix, name, prep), [0, 0.0, 0.0])
                acc[0] += 1
                acc[1] += cpu
                acc[2] += wall

    def rate(size: str, ext: str | None, name: str, prep: bool, wall: bool = False) -> float:
        keys = [k for k in totals if k[0] == size and (ext is None or k[1] == ext) and k[2] == name and k[3] == prep]
        n = sum(totals[k][0] for k in keys)
        t = sum(totals[k][2 if wall else 1] for k in keys)
        return n / t if t > 0 else float("nan")

    rows = []
    for size in sources:
        for ext in [*FORMATS, None]:
            label = f"{size} {FORMATS[ext][2] if ext else 'all'}"
            mm, ours = rate(size, ext, "mmaction", False), rate(size, ext, "ours", False)
            mm_p, ours_p = rate(size, ext, "mmaction", True), rate(size, ext, "ours", True)
            rows.append(
                [
                    label,
                    mm,
                    ours,
                    ours / mm,
                    mm_p,
                    ours_p,
                    ours_p / mm,
                    rate(size, ext, "mmaction", False, True),
                    rate(size, ext, "ours", False, True),
                ]
            )
    header = [
        "source",
        "mmaction c/s",
        "ours c/s",
        "ours/mm",
        "mm prep c/s",
        "ours prep c/s",
        "prep/mm",
        "mm wall c/s",
        "ours wall c/s",
    ]
    text = (
        f"clips of {clip_len}x{interval} frames -> 1x3x{clip_len}x{img}x{img} uint8; "
        f"{clips} clips per size and pipeline; "
        f"c/s = clips per CPU-second (one thread); prep = after `autox-video prepare` (short side 256, gop 16); "
        f"setup {setup_s:.1f}s\n" + table(header, rows)
    )
    heads = {
        "mmaction_clips_per_core_s_720p": rate("720p", None, "mmaction", False),
        "ours_clips_per_core_s_720p": rate("720p", None, "ours", False),
        "prepared_clips_per_core_s_720p": rate("720p", None, "ours", True),
        "pipeline_ratio_320p": rate("320p", None, "ours", False) / rate("320p", None, "mmaction", False),
        "pipeline_ratio_720p": rate("720p", None, "ours", False) / rate("720p", None, "mmaction", False),
        "prepared_ratio_720p": rate("720p", None, "ours", True) / rate("720p", None, "mmaction", False),
    }
    publish(text, heads, title="Data pipeline" + (" (quick)" if args.quick else ""), record_it=args.record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
