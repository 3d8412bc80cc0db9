"""Prediction batch size: the largest that fits on the device and still raises videos per second."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch

# A bigger batch must raise videos/s by at least this much to be worth its memory.
MIN_GAIN = 1.05


def pick_batch_size(videos_per_s: Callable[[int], float | None], *, limit: int) -> int:
    """Try 1, 2, 4, ... up to `limit`; keep doubling while throughput grows >= 5% and memory lasts.

    `videos_per_s(size)` measures one size and returns None when it does not fit (out of memory).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    best, best_rate, size = 1, 0.0, 1
    while size <= limit:
        rate = videos_per_s(size)
        if rate is None or rate < best_rate * MIN_GAIN:
            break
        best, best_rate = size, rate
        size *= 2
    return best


def synthetic_batch(
    n: int, views: int, frames: int, img: int, device: torch.device | str, num_classes: int = 1
) -> dict[str, Any]:
    """A loader-style batch of n random uint8 videos [views,3,T,H,W] on `device`, labels i % num_classes."""
    from mmaction.structures import ActionDataSample

    gen = torch.Generator().manual_seed(0)
    inputs = [
        torch.randint(0, 256, (views, 3, frames, img, img), dtype=torch.uint8, generator=gen).to(device)
        for _ in range(n)
    ]
    samples = [ActionDataSample().set_gt_labels(i % num_classes) for i in range(n)]
    return dict(inputs=inputs, data_samples=samples)


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for `amp` (None: full precision, no autocast at all)."""
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(
    model: torch.nn.Module, data: dict[str, Any], device: torch.device | str, amp: torch.dtype | None, repeats: int = 2
) -> float:
    """Seconds per `test_step` on a ready batch, after one untimed call (cuDNN picks its kernels then)."""
    device = torch.device(device)
    with torch.inference_mode(), autocast(device, amp):
        model.test_step(data)
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            model.test_step(data)
        _sync(device)
    return (time.perf_counter() - start) / repeats


def tune_batch_size(
    model: torch.nn.Module,
    *,
    views: int,
    frames: int,
    img: int,
    device: torch.device | str,
    amp: torch.dtype | None,
    limit: int,
) -> int:
    """The prediction batch size for this model, clip shape and device, measured on random clips."""
    device = torch.device(device)

    def videos_per_s(size: int) -> float | None:
        try:
            return size / forward_seconds(model, synthetic_batch(size, views, frames, img, device), device, amp)
        except torch.OutOfMemoryError:
            return None
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next size, or the real run, gets the memory back

    return pick_batch_size(videos_per_s, limit=limit)
