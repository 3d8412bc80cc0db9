"""TEMPORARY stand-in for autox_video.search.front (branch pareto) until it lands: same signatures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _speed(row: Mapping[str, Any], speed_objective: str) -> float | None:
    value = row.get("latency_ms" if speed_objective == "latency" else "videos_per_s")
    if value is None:
        return None
    return -float(value) if speed_objective == "latency" else float(value)  # larger is better


def pareto_front(rows: Sequence[Mapping[str, Any]], speed_objective: str) -> list[int]:
    """Trial numbers of the non-dominated succeeded trials with figures, most accurate first."""
    pts = [
        (float(r["best_top1"]), s, int(r["number"]))
        for r in rows
        if r.get("state") == "succeeded" and r.get("best_top1") is not None
        if (s := _speed(r, speed_objective)) is not None
    ]
    front = [p for p in pts if not any(q[0] >= p[0] and q[1] >= p[1] and q[:2] != p[:2] for q in pts)]
    return [n for _, _, n in sorted(front, key=lambda p: (-p[0], -p[1], p[2]))]


def _meets(row: Mapping[str, Any], search: Any) -> bool:
    lat = search.latency
    if lat.max_ms is not None:
        return row.get("latency_ms") is not None and float(row["latency_ms"]) <= lat.max_ms
    if lat.min_videos_per_s is not None:
        return row.get("videos_per_s") is not None and float(row["videos_per_s"]) >= lat.min_videos_per_s
    return True


def promoted_trial(rows: Sequence[Mapping[str, Any]], search: Any) -> int | None:
    """The most accurate succeeded trial meeting the constraint; else the most accurate."""
    done = [r for r in rows if r.get("state") == "succeeded" and r.get("best_top1") is not None]
    ok = [r for r in done if _meets(r, search)] or done
    best = max(ok, key=lambda r: (float(r["best_top1"]), -int(r["number"])), default=None)
    return int(best["number"]) if best is not None else None
