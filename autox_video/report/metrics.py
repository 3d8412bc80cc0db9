"""The numbers of an evaluation report, from labels and predictions (numpy only).

A class with no true samples has no recall (None, not 0: nothing was missed) and is left out of the
mean class accuracy; a class never predicted has precision None for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def normalise_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its true-class count (rows without samples stay 0)."""
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape, dtype=np.float64), where=support > 0)


@dataclass
class ClassStats:
    """Per-class precision, recall, F1 (None where undefined) and support, as arrays/lists by class."""

    precision: list[float | None]
    recall: list[float | None]
    f1: list[float | None]
    support: list[int]
    predicted: list[int]


def _ratio(num: np.ndarray, den: np.ndarray) -> list[float | None]:
    return [float(n) / float(d) if d > 0 else None for n, d in zip(num, den, strict=True)]


def class_stats(cm: np.ndarray) -> ClassStats:
    """Precision = tp / predicted, recall = tp / support, F1 their harmonic mean (0 when both are 0)."""
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1: list[float | None] = []
    for p, r in zip(precision, recall, strict=True):
        if r is None:
            f1.append(None)  # no true samples: F1 says nothing about this class
        else:
            p = p or 0.0  # never predicted but present: precision counts as 0 for F1
            f1.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    return ClassStats(precision, recall, f1, [int(s) for s in support], [int(x) for x in predicted])


def mean_class_accuracy(cm: np.ndarray) -> float | None:
    """Mean recall over the classes that have samples."""
    recalls = [r for r in class_stats(cm).recall if r is not None]
    return float(np.mean(recalls)) if recalls else None


def topk_accuracy(y_true: Any, probs: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the k highest scores (ties: lower class index first)."""
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def top_confusions(cm: np.ndarray, limit: int) -> list[dict[str, Any]]:
    """The largest off-diagonal cells, most samples first: {"true", "predicted", "count", "rate"}."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    support = cm.sum(axis=1, keepdims=True)
    rates = np.divide(off, support, out=np.zeros(cm.shape), where=support > 0)  # share of the true class
    flat = np.flatnonzero(off)
    # Most samples first; equal counts: the larger share of the true class first, then by index.
    order = sorted(flat, key=lambda i: (-off.flat[i], -rates.flat[i], i))[:limit]
    n = cm.shape[1]
    return [
        {"true": int(i // n), "predicted": int(i % n), "count": int(off.flat[i]), "rate": float(rates.flat[i])}
        for i in order
    ]


def confused_pairs(cm: np.ndarray, limit: int) -> list[dict[str, Any]]:
    """Unordered class pairs by samples mixed up either way: {"a", "b", "count", "a_as_b", "b_as_a"}."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    both = np.triu(off + off.T, k=1)
    flat = np.flatnonzero(both)
    order = sorted(flat, key=lambda i: (-both.flat[i], i))[:limit]
    n = cm.shape[1]
    out = []
    for i in order:
        a, b = int(i // n), int(i % n)
        out.append({"a": a, "b": b, "count": int(both[a, b]), "a_as_b": int(off[a, b]), "b_as_a": int(off[b, a])})
    return out
