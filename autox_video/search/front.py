"""The accuracy/speed trade-off over ledger rows: the Pareto front and the trial to promote (pure: no torch, no optuna).

A row is a trials.jsonl line (`autox_video.search.ledger`): `best_top1` and the measured `latency_ms`
(ms per batch of `search.latency.batch_size`) and `videos_per_s`, null when not measured. The local
`tune` and the operator both call these, so they print, draw and promote the same trials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from autox_video.spec.search import LatencyConfig, SearchConfig

FIGURE = {"latency": "latency_ms", "throughput": "videos_per_s"}


def speed_key(speed_objective: str | None) -> str:
    """The row key of the speed figure: latency_ms (latency, or no speed objective) or videos_per_s."""
    return FIGURE.get(speed_objective or "latency", "latency_ms")


def has_constraint(latency: LatencyConfig) -> bool:
    """Whether `search.latency` sets a limit (max_ms or min_videos_per_s)."""
    return latency.max_ms is not None or latency.min_videos_per_s is not None


def constraint_value(row: Mapping[str, Any], latency: LatencyConfig) -> float | None:
    """Optuna's constraint value of a row (<= 0: meets the limit; unmeasured: +inf); None without a limit."""
    if latency.max_ms is not None:
        ms = row.get("latency_ms")
        return math.inf if ms is None else float(ms) - latency.max_ms
    if latency.min_videos_per_s is not None:
        vps = row.get("videos_per_s")
        return math.inf if vps is None else latency.min_videos_per_s - float(vps)
    return None


def meets(row: Mapping[str, Any], latency: LatencyConfig) -> bool:
    """Whether the row meets the limit (always, without one)."""
    value = constraint_value(row, latency)
    return value is None or value <= 0


def describe_limit(latency: LatencyConfig) -> str:
    """The limit in words ('' without one)."""
    if latency.max_ms is not None:
        return f"latency <= {latency.max_ms:g} ms"
    if latency.min_videos_per_s is not None:
        return f"throughput >= {latency.min_videos_per_s:g} videos/s"
    return ""


def limit_on_axis(latency: LatencyConfig, key: str) -> float | None:
    """The limit in the units of the speed axis `key` (latency_ms or videos_per_s); None without one."""
    per_batch = latency.batch_size * 1000.0  # videos/s = batch / seconds = batch * 1000 / ms
    if latency.max_ms is not None:
        return latency.max_ms if key == "latency_ms" else per_batch / latency.max_ms
    if latency.min_videos_per_s is not None:
        return latency.min_videos_per_s if key == "videos_per_s" else per_batch / latency.min_videos_per_s
    return None


def _succeeded(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("state") == "succeeded" and r.get("best_top1") is not None]


def _speed(row: Mapping[str, Any], speed_objective: str | None) -> float | None:
    """Larger is faster: -latency_ms, or videos_per_s (None: not measured)."""
    value = row.get(speed_key(speed_objective))
    if value is None:
        return None
    return float(value) if speed_key(speed_objective) == "videos_per_s" else -float(value)


def pareto_front(rows: Iterable[Mapping[str, Any]], speed_objective: str | None) -> list[int]:
    """Trial numbers of the non-dominated succeeded trials with a speed figure, most accurate first."""
    points = [
        (float(r["best_top1"]), speed, int(r["number"]))
        for r in _succeeded(rows)
        if (speed := _speed(r, speed_objective)) is not None
    ]
    front = [
        p for p in points if not any(q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1]) for q in points)
    ]
    return [n for _, _, n in sorted(front, key=lambda p: (-p[0], -p[1], p[2]))]


def promotion(rows: Iterable[Mapping[str, Any]], search: SearchConfig) -> tuple[int | None, str]:
    """(trial to promote, why): the most accurate succeeded trial meeting the limit, else the most accurate.

    Equal top-1: with a speed objective the faster one, else the first.
    """
    done = _succeeded(rows)
    if not done:
        return None, "no trial succeeded"
    speed = search.speed_objective

    def rank(r: Mapping[str, Any]) -> tuple[float, float, int]:
        fast = _speed(r, speed) if speed is not None else None
        return (float(r["best_top1"]), -math.inf if fast is None else fast, -int(r["number"]))

    limit = describe_limit(search.latency)
    if not limit:
        return int(max(done, key=rank)["number"]), "the most accurate"
    ok = [r for r in done if meets(r, search.latency)]
    if ok:
        return int(max(ok, key=rank)["number"]), f"the most accurate with {limit}"
    return int(max(done, key=rank)["number"]), f"the most accurate: no trial has {limit}"


def promoted_trial(rows: Iterable[Mapping[str, Any]], search: SearchConfig) -> int | None:
    """The most accurate succeeded trial meeting the limit (none meets it, or no limit: the most accurate)."""
    return promotion(rows, search)[0]
