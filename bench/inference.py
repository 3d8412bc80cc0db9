#!/usr/bin/env python
"""Inference benchmark: videos/s of `autox-video test`-style prediction vs the seed's one-video loop.

Both read the same real encoded videos end to end (decode, clips x crops views, model, scores):

  seed  mmaction2's default test pipeline (DecordInit -> SampleFrames(test_mode) -> DecordDecode
        -> Resize(-1,224) -> ThreeCrop (or 256 + CenterCrop) -> FormatShape) in the main process, one video
        per forward pass, fp32: the loop the seed ran on each GPU.
  ours  autox_video.data.fast_decode.test_pipeline (decode at the crop size) in a DataLoader with
        workers, pinned memory and prefetch sized from the machine, the batch size tuned by
        `autox_video.inference.batching.tune_batch_size` (largest that fits and still pays, as `autox-video
        test` does by default on GPU), bf16 autocast on GPU.

`--quick` is a CI smoke run (2-stage Swin, tiny clips); `--small` the CPU-sized shapes. Real
figures come from a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import VideoList, batch, pick_device_and_shape, recognizer, sync  # noqa: E402
from record import machine, publish, table  # noqa: E402
from sources import SourceSpec, default_cache_dir, ensure_sources  # noqa: E402


def seed_pipeline(clip_len: int, interval: int, img: int, clips: int, crops: int) -> list[dict[str, Any]]:
    """mmaction2's Swin test (3 crops) or val (1 crop) pipeline (configs/recognition/swin), decord backend."""
    short = img if crops == 3 else round(img * 256 / 224)  # ThreeCrop needs the short side = crop size
    return [
        dict(type="DecordInit", num_threads=1),
        dict(type="SampleFrames", clip_len=clip_len, frame_interval=interval, num_clips=clips, test_mode=True),
        dict(type="DecordDecode"),
        dict(type="Resize", scale=(-1, short)),
        dict(type="ThreeCrop" if crops == 3 else "CenterCrop", crop_size=img),
        dict(type="FormatShape", input_format="NCTHW"),
        dict(type="PackActionInputs"),
    ]


def run_seed(model: Any, files: list[Path], pipeline: list[dict[str, Any]], device: str) -> float:
    """Videos/s of the seed's loop: decode one video in-process, fp32 forward, next (first one untimed)."""
    import torch
    from mmengine.dataset import Compose, pseudo_collate

    pipe = Compose(pipeline)
    start = 0.0
    with torch.no_grad():
        for i, f in enumerate(files):
            if i == 1:
                sync(device)
                start = time.perf_counter()
            data = pseudo_collate([pipe(dict(filename=str(f), label=0, start_index=0, modality="RGB"))])
            data["inputs"] = [x.to(device) for x in data["inputs"]]
            model.test_step(data)
    sync(device)
    return (len(files) - 1) / (time.perf_counter() - start)


def run_ours(
    model: Any, files: list[Path], pipeline: list[dict[str, Any]], device: str, bs: int, workers: int
) -> float:
    """Videos/s of our loop: workers decode ahead, batches of `bs`, bf16 on GPU.

    The clock starts when the first batch is ready (worker start-up is a once-per-run cost).
    """
    import torch
    from mmengine.dataset import pseudo_collate

    from autox_video.inference.batching import autocast

    cuda = device.startswith("cuda")
    loader = torch.utils.data.DataLoader(
        VideoList([(str(f), 0) for f in files], pipeline),
        batch_size=bs,
        num_workers=workers,
        collate_fn=pseudo_collate,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="forkserver" if workers else None,
    )
    start, timed = 0.0, 0
    with torch.no_grad(), autocast(torch.device(device), torch.bfloat16 if cuda else None):
        for i, data in enumerate(loader):
            if i == 0:
                sync(device)
                start = time.perf_counter()
            else:
                timed += len(data["inputs"])
            data["inputs"] = [x.to(device, non_blocking=True) for x in data["inputs"]]
            model.test_step(data)
    sync(device)
    return timed / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run both loops on the same videos, print the table and headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--small", action="store_true", help="CPU-sized clips and swin_t")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 2-stage Swin, 8x32x32, 8 videos")
    ap.add_argument("--model", default=None, help="swin_t | swin_s | swin_b (default swin_b; small: swin_t)")
    ap.add_argument("--videos", type=int, default=None, help="videos per loop (default 96 GPU, 12 small, 8 quick)")
    ap.add_argument("--clips", type=int, default=4, help="clips per video (default 4)")
    ap.add_argument("--crops", type=int, choices=[1, 3], default=3, help="crops per clip (default 3)")
    ap.add_argument("--batch", type=int, default=None, help="our batch size (default: tuned)")
    ap.add_argument("--workers", type=int, default=None, help="our loader workers (default: from the machine)")
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)

    import torch
    from mmaction.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    from autox_video.data.fast_decode import test_pipeline
    from autox_video.inference.batching import forward_seconds, tune_batch_size
    from autox_video.inference.predict import MAX_TUNED_BATCH
    from autox_video.training.recipe import default_num_workers

    device, small, shape = pick_device_and_shape(args.device, args.small, args.quick)
    cuda = device.startswith("cuda")
    backbone = args.model or ("swin_micro" if args.quick else "swin_t" if small else "swin_b")
    clips = 2 if args.quick else args.clips
    views = clips * args.crops
    n_videos = args.videos or (8 if args.quick else 12 if small else 96)
    workers = args.workers if args.workers is not None else default_num_workers(cuda=cuda)
    frames, img = shape["frames"], shape["img"]
    spec = SourceSpec(seconds=2.0, fps=15, videos=1) if args.quick else SourceSpec()
    sources = ensure_sources(spec, args.cache_dir)["320p"]
    files = [sources[i % len(sources)] for i in range(n_videos)]
    if cuda:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    model = recognizer(backbone).to(device).eval()
    amp = torch.bfloat16 if cuda else None
    limit = MAX_TUNED_BATCH if cuda else 2
    bs = args.batch or tune_batch_size(model, views=views, frames=frames, img=img, device=device, amp=amp, limit=limit)
    model_seed = forward_seconds(model, batch(1, views, frames, img, device), device, None)
    model_ours = forward_seconds(model, batch(bs, views, frames, img, device), device, amp) / bs

    if n_videos < 2 * bs:
        raise SystemExit(f"--videos must be at least twice the batch size ({bs}): the first batch is a warm-up")
    ours_v = run_ours(model, files, test_pipeline(frames, 2, img, clips, args.crops), device, bs, workers)
    seed_v = run_seed(model, files, seed_pipeline(frames, 2, img, clips, args.crops), device)
    rows = [
        ["seed: in-process decode, batch 1, fp32", seed_v, 1 / model_seed, 1, 0],
        [f"ours: loader, batch {bs}, {'bf16' if cuda else 'fp32'}", ours_v, 1 / model_ours, bs, workers],
    ]
    header = ["loop", "videos/s", "model-only videos/s", "batch", "workers"]
    text = (
        f"{backbone} on {device} ({machine(device)}); {n_videos} real 320p videos (H.264 + MPEG-4), "
        f"{clips} clips x {args.crops} crops of {frames}x{img}x{img} each\n" + table(header, rows)
    )
    heads = {
        "seed_videos_per_s": seed_v,
        "ours_videos_per_s": ours_v,
        "inference_speedup": ours_v / seed_v,
        "tuned_batch_size": float(bs),
    }
    publish(text, heads, title="Inference" + (" (small)" if small else ""), record_it=args.record, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
