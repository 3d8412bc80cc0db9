"""A labelled timeline's numbers: per-second accuracy and confusion, segment precision/recall at temporal IoU.

Input: results.json entries of ranged, labelled list lines (`path start end label`, several per video)
with their `seconds`. Each second of a line is true to the line's label; a video's strip is the
seconds of all its lines in time order. Predicted segments are runs of equal predicted seconds
(contiguous across lines); true segments are runs of equal labels over the lines (two adjacent lines
of one label are one action).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SEGMENT_IOU = 0.5


@dataclass(frozen=True)
class Second:
    """One scored second of a labelled line: its time, predicted class and true class."""

    start: float
    end: float
    predicted: int
    true: int


@dataclass(frozen=True)
class Segment:
    """A run of one class over [start, end) seconds."""

    start: float
    end: float
    label: int


def video_seconds(rows: list[dict[str, Any]]) -> dict[str, list[Second]]:
    """Video -> its labelled seconds in time order, from the ranged labelled entries that carry `seconds`."""
    out: dict[str, list[Second]] = {}
    for r in rows:
        if r.get("true_label") is None or not r.get("seconds"):
            continue
        truth = int(r["true_label"])
        mine = out.setdefault(str(r.get("video")), [])
        mine += [Second(float(s["start"]), float(s["end"]), int(s["label"]), truth) for s in r["seconds"]]
    for seconds in out.values():
        seconds.sort(key=lambda s: s.start)
    return out


def runs(seconds: list[Second], *, truth: bool) -> list[Segment]:
    """Runs of the same (true or predicted) class over time-contiguous seconds."""
    out: list[Segment] = []
    for s in seconds:
        label = s.true if truth else s.predicted
        last = out[-1] if out else None
        if last is not None and last.label == label and abs(last.end - s.start) < 1e-6:
            out[-1] = Segment(last.start, s.end, label)
        else:
            out.append(Segment(s.start, s.end, label))
    return out


def temporal_iou(a: Segment, b: Segment) -> float:
    """Overlap over union of two time intervals."""
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union if union > 0 else 0.0


def match_segments(predicted: list[Segment], true: list[Segment], iou: float = SEGMENT_IOU) -> int:
    """How many predicted segments match a true one of the same class at IoU >= `iou` (each used once, best first)."""
    pairs = sorted(
        ((temporal_iou(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(true) if p.label == t.label),
        reverse=True,
    )
    used_p: set[int] = set()
    used_t: set[int] = set()
    for value, i, j in pairs:
        if value >= iou and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p)


def timeline_metrics(rows: list[dict[str, Any]], num_classes: int, iou: float = SEGMENT_IOU) -> dict[str, Any] | None:
    """report.json's timeline part (None when no labelled line has seconds)."""
    videos = video_seconds(rows)
    every = [s for seconds in videos.values() for s in seconds]
    if not every:
        return None
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for s in every:
        cm[s.true, s.predicted] += 1
    matched = predicted = true = 0
    strips = []
    for video, seconds in videos.items():
        pred_runs, true_runs = runs(seconds, truth=False), runs(seconds, truth=True)
        matched += match_segments(pred_runs, true_runs, iou)
        predicted += len(pred_runs)
        true += len(true_runs)
        strips.append(
            {
                "video": video,
                "seconds": [[s.start, s.end, s.predicted, s.true] for s in seconds],
                "accuracy": float(np.mean([s.predicted == s.true for s in seconds])),
            }
        )
    return {
        "seconds": len(every),
        "per_second_accuracy": float(np.trace(cm) / len(every)),
        "segment_iou": iou,
        "segments_predicted": predicted,
        "segments_true": true,
        "segments_matched": matched,
        "segment_precision": matched / predicted if predicted else None,
        "segment_recall": matched / true if true else None,
        "confusion_matrix": cm.tolist(),
        "videos": strips,
    }
