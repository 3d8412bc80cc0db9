"""Predictions over time: the clips (windows) a timeline scores, their frames, and their aggregation.

Everything here is numpy: the windows are planned from the frame count, frames are collected from
one forward decoding pass (`ClipAssembler`), and the clips' class probabilities are aggregated into
segments, shots and seconds (`aggregate`) and filtered as Vertex AI does (`timeline_item`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autox_video.data.time_range import frame_range


@dataclass(frozen=True)
class Window:
    """One clip to score: `owner` (which list line), `kind` ("segment" or "grid"), its number, its frames."""

    owner: int
    kind: str
    index: int
    inds: tuple[int, ...]

    @property
    def last(self) -> int:
        """The frame after which the clip is complete."""
        return max(self.inds)


@dataclass(frozen=True)
class Span:
    """A list line's frame range [lo, hi) and the same in seconds."""

    lo: int
    hi: int
    start: float
    end: float


def line_span(start: float | None, end: float | None, frames: int, fps: float) -> Span:
    """[lo, hi) frames of a line's time range (None: from the start / to the end of the video)."""
    lo, hi = frame_range(start, end, frames, fps)
    return Span(lo, hi, 0.0 if start is None else start, frames / fps if end is None else min(end, frames / fps))


def clip_indices(
    centre: float, lo: int, hi: int, clip_len: int, frame_interval: int, sampling: str, width: float
) -> tuple[int, ...]:
    """Frames of the clip centred on frame position `centre`, kept inside [lo, hi).

    "clip" families take clip_len frames frame_interval apart; "segments"/"uniform" families take
    clip_len frames evenly over `width` frames (the window's own length).
    """
    if sampling == "clip":
        offsets = (np.arange(clip_len) - (clip_len - 1) / 2) * frame_interval
    else:
        offsets = (np.arange(clip_len) + 0.5) / clip_len * width - width / 2
    inds = np.floor(centre + offsets).astype(np.int64)
    span = int(inds[-1] - inds[0])
    if span < hi - lo:  # shift the whole clip inside the range rather than repeat its edge frames
        inds += max(0, lo - int(inds[0])) - max(0, int(inds[-1]) - (hi - 1))
    return tuple(int(i) for i in np.clip(inds, lo, hi - 1))


def plan_windows(
    owner: int,
    span: Span,
    fps: float,
    *,
    interval: float,
    grid: bool,
    segment_clips: int,
    clip_len: int,
    frame_interval: int,
    sampling: str,
) -> list[Window]:
    """The segment's evenly spaced clips (as mmaction2's test sampling) and, if `grid`, one per interval."""
    n = span.hi - span.lo
    windows = [
        Window(
            owner,
            "segment",
            k,
            clip_indices(
                span.lo + n * (k + 0.5) / segment_clips,
                span.lo,
                span.hi,
                clip_len,
                frame_interval,
                sampling,
                n / segment_clips,
            ),
        )  # fmt: skip
        for k in range(segment_clips)
    ]
    if grid:
        for k, (a, b) in enumerate(grid_times(span, interval)):
            centre = (a + b) / 2 * fps
            windows.append(
                Window(owner, "grid", k, clip_indices(centre, span.lo, span.hi, clip_len, frame_interval, sampling,
                                                      (b - a) * fps))
            )  # fmt: skip
    return windows


def grid_times(span: Span, interval: float) -> list[tuple[float, float]]:
    """[start, end) seconds of each interval of a span (the last one cut at the span's end)."""
    count = max(1, math.ceil((span.end - span.start) / interval - 1e-9))
    return [(span.start + k * interval, min(span.end, span.start + (k + 1) * interval)) for k in range(count)]


@dataclass
class ClipAssembler:
    """Collect clips from frames that arrive in order, holding only frames a pending window still needs.

    `peak_frames_held` counts frames kept at once (bounded by the windows open at the same time,
    never the video length): the timeline's memory bound, checked by the tests.
    """

    windows: list[Window]
    _pending: list[Window] = field(init=False)
    _need: dict[int, int] = field(init=False)
    _held: dict[int, np.ndarray] = field(init=False, default_factory=dict)
    _next: int = field(init=False, default=0)
    _last_frame: np.ndarray | None = field(init=False, default=None)
    peak_frames_held: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._pending = sorted(self.windows, key=lambda w: w.last)
        self._need = {}
        for w in self._pending:
            for i in set(w.inds):
                self._need[i] = self._need.get(i, 0) + 1

    def wants(self, index: int) -> bool:
        """Whether frame `index` must be converted (some window samples it)."""
        return index in self._need

    def feed(self, index: int, frame: np.ndarray | None) -> Iterator[tuple[Window, np.ndarray]]:
        """Take frame `index` (None if not wanted); yield each window it completes with its clip [T,H,W,3]."""
        if frame is not None:
            self._last_frame = frame
            if index in self._need:
                self._held[index] = frame
                self.peak_frames_held = max(self.peak_frames_held, len(self._held))
        while self._next < len(self._pending) and self._pending[self._next].last <= index:
            yield self._emit(self._pending[self._next])
            self._next += 1

    def finish(self) -> Iterator[tuple[Window, np.ndarray]]:
        """Windows past the last decoded frame (a header that promised more frames): filled with the last one."""
        while self._next < len(self._pending):
            yield self._emit(self._pending[self._next])
            self._next += 1

    def _emit(self, w: Window) -> tuple[Window, np.ndarray]:
        if self._last_frame is None:
            raise ValueError("no frame decoded")
        clip = np.stack([self._held.get(i, self._last_frame) for i in w.inds])
        for i in set(w.inds):
            self._need[i] -= 1
            if self._need[i] == 0:
                del self._need[i]
                self._held.pop(i, None)
        return w, clip


def timeline_item(
    start: float,
    end: float,
    probs: np.ndarray,
    names: list[str] | None,
    *,
    threshold: float,
    max_predictions: int,
) -> dict[str, Any]:
    """{start, end, label, label_name, score, topk}: topk keeps labels >= threshold, at most max_predictions."""
    order = np.argsort(-probs, kind="stable")
    label = int(order[0])
    topk = [[int(i), float(probs[i])] for i in order[:max_predictions] if probs[i] >= threshold]
    return {
        "start": round(float(start), 6),
        "end": round(float(end), 6),
        "label": label,
        "label_name": names[label] if names else None,
        "score": float(probs[label]),
        "topk": topk,
    }


def shot_probs(shot: tuple[int, int], grid: list[tuple[Window, np.ndarray]]) -> np.ndarray:
    """A shot's probabilities: mean of the interval clips inside it, else of those centred in it, else the nearest."""
    a, b = shot
    inside = [p for w, p in grid if min(w.inds) >= a and max(w.inds) < b]
    if not inside:
        inside = [p for w, p in grid if a <= (min(w.inds) + max(w.inds)) / 2 < b]
    if not inside:
        centre = (a + b) / 2
        inside = [min(grid, key=lambda wp: abs((min(wp[0].inds) + max(wp[0].inds)) / 2 - centre))[1]]
    return np.mean(inside, axis=0)  # type: ignore[no-any-return]


def aggregate(
    span: Span,
    fps: float,
    scores: dict[tuple[str, int], np.ndarray],
    windows: list[Window],
    *,
    granularity: list[str],
    interval: float,
    shots: list[tuple[int, int]] | None,
    names: list[str] | None,
    threshold: float,
    max_predictions: int,
) -> tuple[np.ndarray, dict[str, list[dict[str, Any]]]]:
    """(the segment's probabilities, {"segments"|"shots"|"seconds": items}) of one list line."""
    item = dict(names=names, threshold=threshold, max_predictions=max_predictions)
    seg = np.mean([p for (kind, _), p in scores.items() if kind == "segment"], axis=0)
    out: dict[str, list[dict[str, Any]]] = {}
    if "segment" in granularity:
        out["segments"] = [timeline_item(span.start, span.end, seg, **item)]  # type: ignore[arg-type]
    grid = [(w, scores[(w.kind, w.index)]) for w in windows if w.kind == "grid"]
    if "second" in granularity:
        times = grid_times(span, interval)
        out["seconds"] = [
            timeline_item(a, b, p, **item)  # type: ignore[arg-type]
            for (a, b), (_, p) in zip(times, grid, strict=True)
        ]
    if "shot" in granularity and shots is not None:
        items = []
        for a, b in shots:
            a, b = max(a, span.lo), min(b, span.hi)
            if b > a:
                items.append(timeline_item(max(span.start, a / fps), min(span.end, b / fps), shot_probs((a, b), grid),
                                           **item))  # type: ignore[arg-type]  # fmt: skip
        out["shots"] = items
    return seg, out
