"""A list line's time range in seconds -> the frames [lo, hi) it covers (one rule for training and timelines)."""

from __future__ import annotations

import math


def frame_range(start: float | None, end: float | None, frames: int, fps: float) -> tuple[int, int]:
    """[lo, hi) frames of [start, end] seconds (None: from the start / to the end), at least one frame.

    The epsilons keep a boundary that lands on a frame (4.0 s at 16 fps = frame 64) from rounding past it.
    """
    s = 0.0 if start is None else start
    e = frames / fps if end is None else min(end, frames / fps)
    lo = min(frames - 1, int(math.floor(s * fps + 1e-6)))
    hi = max(lo + 1, min(frames, int(math.ceil(e * fps - 1e-6))))
    return lo, hi
