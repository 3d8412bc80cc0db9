"""Pure mappers of a search (spec.search): a trial's PyTorchJob, progress.json and metrics.jsonl in,
its record out; the job's status fields and Events from the trial records. No I/O, no clients."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from autox_operator.status import condition, phase_of
from autox_video.search import front
from autox_video.spec.search import SearchConfig

FINISHED = ("succeeded", "pruned", "failed")
# A trial's measured figures: ledger keys (snake_case) -> status.trials[] keys (camelCase).
FIGURES = {"latency_ms": "latencyMs", "videos_per_s": "videosPerS", "gflops": "gflops", "model_params": "modelParams"}


@dataclass(frozen=True)
class Trial:
    """One trial as the operator knows it: the status entry plus what the ledger row adds."""

    number: int
    state: str
    params: dict[str, Any]
    epochs: int = 0
    top1_by_epoch: dict[int, float] = field(default_factory=dict)
    best_top1: float | None = None
    reason: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    default: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    videos_per_s: float | None = None
    gflops: float | None = None
    model_params: int | None = None

    @property
    def figures(self) -> dict[str, float | int | None]:
        """The measured figures, by ledger key (None where not measured)."""
        return {k: getattr(self, k) for k in FIGURES}

    @property
    def finished(self) -> bool:
        """Whether the trial ended (succeeded, pruned or failed)."""
        return self.state in FINISHED

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds from start to end (None while running or when a time is unknown)."""
        start, end = parse_time(self.start_time), parse_time(self.completion_time)
        return (end - start).total_seconds() if start and end else None


def parse_time(text: str | None) -> datetime.datetime | None:
    """A status timestamp (RFC 3339, 'Z') as an aware datetime; None when absent or malformed."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _finite(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def figures_of(result: Mapping[str, Any] | None, keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The figures a result (a ledger row, the trainer's result; `keys`: their names there) holds, checked.

    Non-finite or negative numbers are left out (a figure is measured or absent, never made up)."""
    out: dict[str, Any] = {}
    for key, name in (keys or {k: k for k in FIGURES}).items():
        value = _finite((result or {}).get(name))
        if value is not None and value >= 0:
            out[key] = int(value) if key == "model_params" else value
    return out


def top1_by_epoch(metrics: Sequence[Mapping[str, Any]]) -> dict[int, float]:
    """Validation top-1 by epoch from metrics.jsonl rows (rows without both are skipped; last one wins)."""
    out: dict[int, float] = {}
    for row in metrics:
        epoch, top1 = row.get("epoch"), _finite(row.get("top1"))
        if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 and top1 is not None:
            out[epoch] = top1
    return dict(sorted(out.items()))


def _epochs(progress: Mapping[str, Any] | None, by_epoch: Mapping[int, float], before: int) -> int:
    reported = (progress or {}).get("epoch")
    reported = reported if isinstance(reported, int) and not isinstance(reported, bool) else 0
    return max(before, reported, max(by_epoch, default=0))


def observe(
    trial: Trial,
    pytorchjob: Mapping[str, Any] | None,
    progress: Mapping[str, Any] | None,
    metrics: Sequence[Mapping[str, Any]],
    *,
    now: str,
    result: Mapping[str, Any] | None = None,
) -> Trial:
    """A running trial updated from its PyTorchJob (None: not there) and its outputs in S3 (`result`:
    the trainer's measured figures of the trial's model, once written; a succeeded trial it could not
    measure says why in its reason)."""
    if trial.finished:
        return trial
    by_epoch = top1_by_epoch(metrics) or trial.top1_by_epoch
    epochs = _epochs(progress, by_epoch, trial.epochs)
    best = max(by_epoch.values(), default=None)
    if best is None:
        best = _finite((progress or {}).get("best_top1"))
    seen = replace(trial, epochs=epochs, top1_by_epoch=by_epoch, best_top1=best, **figures_of(result))
    unmeasured = (result or {}).get("measure_error")
    note = f"not measured: {unmeasured}" if isinstance(unmeasured, str) and unmeasured else None
    if pytorchjob is None:
        if progress is None:
            return seen  # not created yet (or deleted before it wrote anything): the driver creates it
        if progress.get("phase") == "succeeded":
            return _ended(seen, "succeeded", note, now=now)
        return _ended(seen, "failed", "its child job was deleted before the trial finished", now=now)
    phase, message = phase_of(pytorchjob)
    if phase == "Succeeded":
        return _ended(seen, "succeeded", note, now=now)
    if phase == "Failed":
        return _ended(seen, "failed", message or "its child job failed", now=now)
    return seen


def _ended(trial: Trial, state: str, reason: str | None = None, *, now: str) -> Trial:
    if state == "succeeded" and trial.best_top1 is None:
        state, reason = "failed", "no validation top-1 (set spec.dataset.val and training.evalInterval)"
    return replace(trial, state=state, reason=reason, completion_time=now)


def pruned(trial: Trial, *, now: str) -> Trial:
    """The trial stopped by the pruner at its last validated epoch."""
    last = max(trial.top1_by_epoch, default=trial.epochs)
    reason = f"pruned at epoch {last}: top-1 {trial.top1_by_epoch.get(last, 0.0):.4f} below the rung's best"
    return replace(trial, state="pruned", reason=reason, completion_time=now)


def best_trial(trials: Sequence[Trial]) -> Trial | None:
    """The succeeded trial with the best top-1 (the first of equal ones), as the local search picks it."""
    done = [t for t in trials if t.state == "succeeded" and t.best_top1 is not None]
    return max(done, key=lambda t: (t.best_top1, -t.number)) if done else None


def front_rows(trials: Sequence[Trial]) -> list[dict[str, Any]]:
    """The trials as the ledger rows the front and the promotion read (number, state, top-1, figures)."""
    return [
        {"number": t.number, "state": t.state, "params": dict(t.params), "best_top1": t.best_top1, **t.figures}
        for t in trials
    ]


def promotion(trials: Sequence[Trial], search: SearchConfig) -> tuple[Trial | None, str | None]:
    """(the trial to promote to best.pth, which rule chose it when search.latency sets a limit): the local
    search's own choice (`front.promotion`: the most accurate meeting the limit, else the most accurate)."""
    number, why = front.promotion(front_rows(trials), search)
    chosen = next((t for t in trials if t.number == number), None)
    return chosen, why if chosen is not None and front.has_constraint(search.latency) else None


def pareto_status(trials: Sequence[Trial], search: SearchConfig) -> list[dict[str, Any]] | None:
    """status.pareto: the front's trials with their two figures, most accurate first (None: one objective)."""
    if search.speed_objective is None:
        return None
    by_number = {t.number: t for t in trials}
    points = []
    for number in front.pareto_front(front_rows(trials), search.speed_objective):
        t = by_number[number]
        point = {"trial": number, "top1": t.best_top1, "latencyMs": t.latency_ms, "videosPerS": t.videos_per_s}
        points.append({k: v for k, v in point.items() if v is not None})
    return points


def counts(trials: Sequence[Trial]) -> dict[str, int]:
    """status.trialCounts: trials started and per state."""
    out = {"total": len(trials), "running": 0, "succeeded": 0, "pruned": 0, "failed": 0}
    for t in trials:
        out[t.state] += 1
    return out


def status_entry(trial: Trial, pytorchjob: str, engine: str = "pytorchjob") -> dict[str, Any]:
    """The trial's entry in status.trials (camelCase, as the CRD declares it); `pytorchjob` names its child."""
    entry = {
        "number": trial.number,
        "state": trial.state,
        "params": dict(trial.params),
        "epochs": trial.epochs,
        "bestTop1": trial.best_top1,
        "pytorchJob": pytorchjob if engine == "pytorchjob" else None,
        "child": pytorchjob,
        "startTime": trial.start_time,
        "completionTime": trial.completion_time,
        "reason": trial.reason,
        **{FIGURES[k]: v for k, v in trial.figures.items()},
    }
    return {k: v for k, v in entry.items() if v is not None}


def from_status(entry: Mapping[str, Any], row: Mapping[str, Any] | None) -> Trial:
    """A trial from its status entry, with the intermediate values and overrides of its ledger row."""
    row = row or {}
    by_epoch = {int(k): float(v) for k, v in (row.get("top1_by_epoch") or {}).items()}
    return Trial(
        number=int(entry["number"]),
        state=str(entry["state"]),
        params=dict(entry.get("params") or {}),
        epochs=int(entry.get("epochs") or 0),
        top1_by_epoch=by_epoch,
        best_top1=_finite(entry.get("bestTop1")),
        reason=entry.get("reason"),
        start_time=entry.get("startTime"),
        completion_time=entry.get("completionTime"),
        default=bool(row.get("default", False)),
        overrides=dict(row.get("overrides") or {}),
        **{**figures_of(row), **figures_of(entry, FIGURES)},
    )


def from_row(row: Mapping[str, Any]) -> Trial:
    """A trial from a ledger row alone (a job re-created over an output that holds a search)."""
    entry = {"number": row["number"], "state": row["state"], "params": row.get("params"), "epochs": row.get("epochs")}
    return from_status({**entry, "bestTop1": row.get("best_top1"), "reason": row.get("reason")}, row)


def search_phase(
    trials: Sequence[Trial],
    trial_phases: Mapping[int, str],
    *,
    suspended: bool,
    stop_reason: str | None,
    search: SearchConfig | None = None,
) -> tuple[str, str]:
    """(phase, message) of a searching job: Succeeded/Failed once nothing runs and no trial may start.

    `search`: the best trial is the one promoted under its objectives and limit (default: the most accurate)."""
    running = [t for t in trials if not t.finished]
    best, why = promotion(trials, search) if search is not None else (best_trial(trials), None)
    best_text = ""
    if best is not None and best.best_top1 is not None:
        latency = f", {best.latency_ms:.3g} ms" if best.latency_ms is not None else ""
        best_text = f"; best trial {best.number}, top-1 {best.best_top1:.4f}{latency}" + (f" ({why})" if why else "")
    if not running and stop_reason is not None:
        if best is None:
            return "Failed", f"search ended ({stop_reason}) with no succeeded trial: see status.trials[].reason"
        return "Succeeded", f"search done ({stop_reason}){best_text}"
    text = f"{len(trials)} trials started, {len(running)} running{best_text}"
    if suspended:
        return "Suspended", f"suspended: no trial starts, running ones are suspended; {text}"
    if any(trial_phases.get(t.number) == "Running" for t in running):
        return "Running", text
    return "Pending", text


def search_conditions(phase: str, message: str, previous: Sequence[Mapping[str, Any]], *, now: str) -> list[dict]:
    """One condition for the search as a whole (its type is the phase)."""
    reason = {"Succeeded": "SearchDone", "Failed": "SearchFailed", "Suspended": "SearchSuspended"}.get(phase)
    return [condition(phase, "True", reason or f"Search{phase}", message, previous=previous, now=now)]


def trial_events(before: Sequence[Trial], after: Sequence[Trial]) -> list[tuple[str, str, str]]:
    """(type, reason, message) Events for trials that started or ended between two passes."""
    old = {t.number: t for t in before}
    events = []
    for t in after:
        was = old.get(t.number)
        if was is None:
            events.append(("Normal", "TrialStarted", f"trial {t.number} started: {_show(t.params)}"))
        if t.finished and (was is None or not was.finished):
            top1 = f", best top-1 {t.best_top1:.4f}" if t.best_top1 is not None else ""
            kind = "Warning" if t.state == "failed" else "Normal"
            why = f": {t.reason}" if t.reason and t.state != "succeeded" else ""
            events.append(
                (kind, f"Trial{t.state.capitalize()}", f"trial {t.number} {t.state} after {t.epochs} epochs{top1}{why}")
            )
    return events


def _show(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()) or "-"
