#!/usr/bin/env python
"""End-to-end training throughput: is training input-bound? GPU idle share with the loader in the loop.

Trains on the demo dataset (real encoded H.264/MPEG-4 files from `autox_video.data.demo`) with our
training pipeline in a DataLoader whose workers, prefetch, pinned memory and persistent workers are
set from the machine (the recipe's defaults), and the step of bench/train_step.py with the recipe's
precision (bf16 autocast + fused AdamW on GPU, fp32 on CPU).
The same step on a batch already on the device gives the compute-only rate.

GPU idle share: CUDA events around each step measure GPU busy time; idle = 1 - busy / wall time of
the timed steps. Input-wait share: host time blocked in `next(loader)` / wall time (CPU too).
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
from sources import default_cache_dir  # noqa: E402
from train_step import Variant, make_step, optimizer  # noqa: E402


def loader(items: list[tuple[str, int]], pipeline: list[dict[str, Any]], bs: int, workers: int, cuda: bool) -> Any:
    """The training DataLoader as the recipe configures it, sized from the machine."""
    import torch
    from mmengine.dataset import pseudo_collate

    return torch.utils.data.DataLoader(
        VideoList(items, pipeline),
        batch_size=bs,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=pseudo_collate,
        pin_memory=cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers else None,
        multiprocessing_context="forkserver" if workers else None,
    )


def batches(dl: Any) -> Any:
    """Endless batches (epoch after epoch)."""
    while True:
        yield from dl


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train with and without the loader, print the table and headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--quick", action="store_true", help="CI smoke: 2-stage Swin, 8x32x32, tiny demo data")
    ap.add_argument("--small", action="store_true", help="CPU-sized clips and swin_t")
    ap.add_argument("--model", default=None, help="swin_t | swin_s | swin_b (default swin_b; small swin_t)")
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default 8 GPU, 2 small)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30 GPU, 4 small, 3 quick)")
    ap.add_argument(
        "--workers", type=int, default=None, help="loader workers (default: the recipe's, from the machine)"
    )
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)

    import torch
    from mmaction.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    from autox_video.data.demo import make_demo_dataset
    from autox_video.data.fast_decode import train_pipeline
    from autox_video.training.recipe import default_num_workers

    device, small, shape = pick_device_and_shape(args.device, args.small, args.quick)
    cuda = device.startswith("cuda")
    frames, img = shape["frames"], shape["img"]
    backbone = args.model or ("swin_micro" if args.quick else "swin_t" if small else "swin_b")
    bs = args.batch or (1 if args.quick else 2 if small else 8)
    steps = args.steps or (3 if args.quick else 4 if small else 30)
    workers = args.workers if args.workers is not None else default_num_workers(cuda=cuda)
    # Demo videos big enough for the crop, long enough for a clip of `frames` x 2 without looping.
    size = 64 if args.quick else 128 if small else 320
    per_class = 2 if args.quick else 4 if small else 16
    demo = make_demo_dataset(
        args.cache_dir / f"demo-e2e-{size}-{per_class}",
        num_per_class_train=per_class,
        num_per_class_val=0,
        num_per_class_test=0,
        num_frames=2 * frames,
        size=size,
    )
    items = []
    for line in demo.train_list.read_text().splitlines():
        rel, label = line.rsplit(None, 1)
        items.append((str(demo.data_root / rel), int(label)))
    n_classes = len(demo.classes)
    if cuda:
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(0)
    model = recognizer(backbone, num_classes=n_classes).to(device).train()
    # The recipe's precision: bf16 autocast on GPU, fp32 on CPU (CPU autocast is slower there).
    variant = Variant("bf16", bf16=True, fused=True) if cuda else Variant("fp32", fused=True)
    step = make_step(model, optimizer(model, variant.fused), device, variant)

    # Compute only: the same step on one batch already on the device.
    fixed = batch(bs, 1, frames, img, device, num_classes=n_classes)
    step(fixed)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(fixed)
    sync(device)
    compute_rate = bs * steps / (time.perf_counter() - start)

    # With the loader: warm-up steps start the workers and fill the prefetch queue.
    it = batches(loader(items, train_pipeline(frames, 2, img), bs, workers, cuda))
    for _ in range(2):
        data = next(it)
        data["inputs"] = [x.to(device, non_blocking=True) for x in data["inputs"]]
        step(data)
    sync(device)
    events = []
    wait = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        data = next(it)
        wait += time.perf_counter() - t0
        data["inputs"] = [x.to(device, non_blocking=True) for x in data["inputs"]]
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step(data)
            end.record()
            events.append((begin, end))
        else:
            step(data)
    sync(device)
    wall = time.perf_counter() - start
    e2e_rate = bs * steps / wall
    heads = {"e2e_clips_per_s": e2e_rate, "compute_only_clips_per_s": compute_rate, "input_wait_share": wait / wall}
    if cuda:
        busy = sum(b.elapsed_time(e) for b, e in events) / 1e3
        heads["gpu_idle_share"] = max(0.0, 1 - busy / wall)
    rows = [
        ["compute only (batch on device)", compute_rate, "", ""],
        [f"with loader ({workers} workers)", e2e_rate, wait / wall, heads.get("gpu_idle_share", float("nan"))],
    ]
    text = (
        f"{backbone} {variant.name} on {device} ({machine(device)}); "
        f"{bs} clips of {frames}x{img}x{img} per step, {steps} timed steps; "
        f"demo data {len(items)} videos {size}x{size}; pin_memory={cuda}, persistent workers, prefetch 4\n"
        + table(["loop", "clips/s", "input wait share", "GPU idle share"], rows)
    )
    publish(text, heads, title="End to end" + (" (small)" if small else ""), record_it=args.record, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
