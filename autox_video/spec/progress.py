"""Progress and time left of a training run, from its progress.json (torch-free: the operator uses it).

progress.json keys read here (ProgressHook writes them; DESIGN §3):
  phase            running | succeeded | failed | interrupted | pruned (a search trial)
  epoch            epochs finished;  total_epochs  epochs the run trains
  epoch_seconds    wall seconds of each finished epoch (index i: epoch i+1; training, validation and the
                   checkpoint; null where a resume lost the measurement)
  epoch_started    when the epoch now running started (ISO 8601)
  epoch_iter       iterations finished in the epoch now running;  epoch_iters  iterations per epoch
  updated          when the file was written (ISO 8601)

Rules: percentage = (epochs finished + the finished fraction of the current epoch) / total, floored,
100 only once every epoch is done (or the run succeeded). Remaining = epochs left x the mean measured
epoch, less the time the current epoch has already run; unknown (None) before the first epoch has
finished, and for a run that failed, was interrupted or was pruned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Estimate:
    """How far a run is (0-100) and how many seconds it has left; None where unknown."""

    percentage: int | None
    remaining_seconds: int | None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _seconds(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def mean_epoch_seconds(progress: Mapping[str, Any]) -> float | None:
    """Mean wall time of the run's measured epochs (validation included), None before the first one."""
    measured = progress.get("epoch_seconds")
    times = [t for t in map(_seconds, measured) if t is not None] if isinstance(measured, list) else []
    return sum(times) / len(times) if times else None


def estimate(progress: Mapping[str, Any], now: datetime | None = None) -> Estimate:
    """Percentage done and seconds left of the run `progress` describes, as of `now` (None: as written)."""
    phase = progress.get("phase")
    if phase == "succeeded":
        return Estimate(100, 0)
    total, done = _int(progress.get("total_epochs")), _int(progress.get("epoch"))
    if total is None or total <= 0 or done is None or done < 0:
        return Estimate(None, None)
    done = min(done, total)
    iters, it = _int(progress.get("epoch_iters")), _int(progress.get("epoch_iter"))
    fraction = min(it / iters, 1.0) if done < total and iters and iters > 0 and it is not None and it > 0 else 0.0
    percentage = math.floor(100 * (done + fraction) / total)
    if done < total:
        percentage = min(percentage, 99)  # the last epoch's validation is still to come
    mean = mean_epoch_seconds(progress)
    if mean is None or phase in ("failed", "interrupted", "pruned"):
        return Estimate(percentage, None)
    left = total - done
    if left == 0:
        return Estimate(percentage, 0)
    current = mean * (1 - fraction)
    # The fraction was counted when the file was written; with none, the epoch ran since it started.
    since = _time(progress.get("updated") if fraction else progress.get("epoch_started"))
    if now is not None and since is not None:
        now = now if now.tzinfo else now.replace(tzinfo=UTC)
        current -= max(0.0, (now - since).total_seconds())
    return Estimate(percentage, round((left - 1) * mean + max(current, 0.0)))
