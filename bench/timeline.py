#!/usr/bin/env python
"""Timeline benchmark: predictions every second over a long video, against decoding the file once.

A generated 10-minute 720p H.264 video (camera-like content from sources.py, x264's default
keyframe interval, B-frames) is read twice in one run, side by side:

  decode    the timeline's decoder (FFmpeg through PyAV, autox_video.data.sequential.iter_frames,
            frame threads) decoding every frame once, converting none: the floor of any timeline.
  timeline  autox_video.inference.timeline_run.predict_timelines at 1 s granularity with a tiny
            model (random swin_micro): the same decoding pass, plus each wanted frame converted
            small, clips assembled, batched and scored, and the seconds aggregated.

Headline `timeline_vs_decode` = timeline wall time / decode wall time (target <= 1.5 on CPU), and
the video-seconds each processes per second. `--quick` is a CI smoke run (30 s at 320x240).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import machine, publish, table  # noqa: E402
from sources import default_cache_dir, encode, frame_stream  # noqa: E402


def ensure_long_video(seconds: float, width: int, height: int, fps: int, cache_dir: Path) -> Path:
    """The H.264 source (generated once, streamed frame by frame, cached by its parameters)."""
    import numpy as np

    path = cache_dir / f"timeline-v1-{width}x{height}-{seconds:g}s-{fps}fps.mp4"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        n = round(seconds * fps)
        frames = frame_stream(width, height, n, np.random.default_rng(0))
        encode(path, frames, fps=fps, codec="libx264", gop=250, size=(width, height))
    return path


def decode_once(path: Path, size: tuple[int, int]) -> tuple[float, int]:
    """Wall seconds and frames of one pass of the timeline's decoder over every frame (no conversion)."""
    from autox_video.data.sequential import iter_frames

    start = time.perf_counter()
    frames = sum(1 for _ in iter_frames(path, lambda _i: False, size))
    return time.perf_counter() - start, frames


def run_timeline(path: Path, img: int, batch: int) -> tuple[float, int, int, int]:
    """Wall seconds, seconds predicted, frames decoded and clips scored by the timeline at 1 s."""
    import torch

    from autox_video.config import build_config
    from autox_video.data.annotations import Sample
    from autox_video.inference.timeline_run import TimelineStats, make_scorer, predict_timelines
    from autox_video.training.recipe import build_recognizer

    cfg = build_config(
        {"backbone": "swin_micro", "pretrained": "none", "clip_len": 8, "frame_interval": 2, "img_size": img,
         "test_clips": 1, "granularity": ["second"], "interval": 1.0}
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_recognizer(cfg, 5).eval()
    score = make_scorer(model, cfg, torch.device("cpu"), None)
    stats = TimelineStats()
    start = time.perf_counter()
    entries = predict_timelines(
        [Sample(path.name, None, 1)], path.parent, cfg, cfg, score, names=None, batch=batch, list_name="bench",
        stats=stats,
    )  # fmt: skip
    wall = time.perf_counter() - start
    return wall, len(entries[0]["seconds"]), stats.frames_decoded, stats.clips


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the video, decode it once, run the timeline, print the table and headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: 30 s at 320x240")
    ap.add_argument("--seconds", type=float, default=None, help="video length (default 600; quick 30)")
    ap.add_argument("--fps", type=int, default=25, help="frame rate of the generated video (default 25)")
    ap.add_argument("--img", type=int, default=64, help="the tiny model's crop size (default 64)")
    ap.add_argument("--batch", type=int, default=8, help="clips per forward pass (default 8)")
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--note", default="", help="a note for --record (e.g. the machine was shared)")
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)

    from mmaction.utils import register_all_modules

    from autox_video.data.sequential import probe, short_side_size

    register_all_modules(init_default_scope=True)
    seconds = args.seconds or (30.0 if args.quick else 600.0)
    width, height = (320, 240) if args.quick else (1280, 720)
    t0 = time.perf_counter()
    path = ensure_long_video(seconds, width, height, args.fps, args.cache_dir)
    setup = time.perf_counter() - t0
    made = f"source video generated in {setup:.0f}s" if setup >= 1 else "source video from the cache"
    info = probe(path)
    size = short_side_size(info.width, info.height, args.img)
    decode_s, frames = decode_once(path, size)
    timeline_s, predicted, decoded, clips = run_timeline(path, args.img, args.batch)
    duration = info.duration
    rows = [
        ["decode once (PyAV, every frame, no conversion)", decode_s, duration / decode_s, frames, 0],
        [f"timeline at 1 s (swin_micro 8x{args.img}x{args.img}, batch {args.batch})", timeline_s,
         duration / timeline_s, decoded, clips],
    ]  # fmt: skip
    header = ["pass", "wall s", "video-s per s", "frames", "clips"]
    text = (
        f"{duration:g} s of {info.width}x{info.height} H.264 at {info.fps:g} fps (x264 veryfast, gop 250, "
        f"B-frames), {predicted} seconds predicted, on cpu ({machine('cpu')}); {made}\n" + table(header, rows)
    )
    heads = {
        "timeline_vs_decode": timeline_s / decode_s,
        "timeline_video_s_per_s": duration / timeline_s,
        "decode_video_s_per_s": duration / decode_s,
    }
    publish(text, heads, title="Timeline" + (" (quick)" if args.quick else ""), record_it=args.record, note=args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
