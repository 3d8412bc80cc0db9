"""trials.jsonl: one line per trial (the search's history a person or the operator reads), and back.

Locally the study's SQLite file is the source of truth and the ledger is rewritten from it, whole and
atomically, after every change; so a trial number appears exactly once however often `tune` was
killed. The operator keeps no database: `study_from_ledger` rebuilds an in-memory study from these
rows (`optuna.trial.create_trial` + `study.add_trial`) to ask for the next trial or about a running one.

With a speed objective (`search.objectives: [top1, latency|throughput]`) the study is multi-objective:
a finished trial's values are (top-1, latency_ms or videos_per_s), and the limit (`search.latency.max_ms`
or `min_videos_per_s`) is each finished trial's constraint value (`Trial.set_constraint`, which every Optuna
sampler reads; `constraints_func` is deprecated since Optuna 5).
Optuna keeps no intermediate values and no pruner for multi-objective studies: a trial's top-1 by epoch is
then its `top1_by_epoch` user attr, and `should_prune` asks the pruner on a single-objective shadow study.
Rows also carry the trial's measured `latency_ms`, `videos_per_s`, `gflops` and `model_params` (null when not
measured; `params` holds the searched hyperparameters).
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autox_video.search import front
from autox_video.storage import atomic

if typing.TYPE_CHECKING:
    import optuna

    from autox_video.spec.search import LatencyConfig

LEDGER = "trials.jsonl"
STATES = ("running", "succeeded", "pruned", "failed")
FIGURES = ("latency_ms", "videos_per_s", "gflops", "model_params")  # the trial's measurement, in user attrs too
TOP1_BY_EPOCH = "top1_by_epoch"  # user attr: a multi-objective trial's validation top-1 by epoch
CONSTRAINT = "limit"  # the trial's constraint name: system attr constraints:limit (<= 0: meets search.latency's)
UNMEASURED_MS = 1e6  # a finished but unmeasured trial's latency in the study: never on the front, finite for Optuna


def trial_dir_name(number: int) -> str:
    """trials/NNNN: the trial's work dir, relative to the search's work dir."""
    return f"trials/{number:04d}"


def row_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The ledger row of one study trial (its user attrs hold what Optuna does not)."""
    import optuna

    attrs = trial.user_attrs
    state = {
        optuna.trial.TrialState.COMPLETE: "succeeded",
        optuna.trial.TrialState.PRUNED: "pruned",
        optuna.trial.TrialState.FAIL: "failed",
    }.get(trial.state, "running")
    values = top1_by_epoch(trial)
    complete = trial.state == optuna.trial.TrialState.COMPLETE and trial.values
    best = trial.values[0] if complete else (max(values.values()) if values else None)
    return {
        "number": trial.number,
        "state": state,
        "params": dict(trial.params),
        "overrides": attrs.get("overrides", {}),
        "epochs": attrs.get("epochs", max(values, default=0)),
        "best_top1": best,
        "seconds": attrs.get("seconds"),
        "reason": attrs.get("reason"),
        "default": bool(attrs.get("default", False)),
        "dir": trial_dir_name(trial.number),
        "top1_by_epoch": {str(k): v for k, v in sorted(values.items())},
        **{k: attrs.get(k) for k in FIGURES},
    }


def top1_by_epoch(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
    """The trial's validation top-1 by epoch (intermediate values, or the multi-objective user attr)."""
    inter = trial.intermediate_values or trial.user_attrs.get(TOP1_BY_EPOCH) or {}
    return {int(k): float(v) for k, v in inter.items()}


def directions(objectives: Sequence[str]) -> list[str]:
    """Optuna's study directions: maximize top-1; minimize latency or maximize throughput."""
    return ["maximize" if o in ("top1", "throughput") else "minimize" for o in objectives]


def objective_values(top1: float, figures: Mapping[str, Any], objectives: Sequence[str]) -> list[float]:
    """A finished trial's values: [top1] or [top1, latency_ms | videos_per_s] (unmeasured: the worst)."""
    out = [float(top1)]
    if len(objectives) > 1:
        key = front.speed_key(objectives[1])
        value = figures.get(key)
        out.append(float(value) if value is not None else (UNMEASURED_MS if key == "latency_ms" else 0.0))
    return out


def record_figures(trial: optuna.trial.Trial, figures: Mapping[str, Any], constraint: LatencyConfig | None) -> None:
    """Keep a trial's measurement (user attrs) and, with a limit, its constraint value (`Trial.set_constraint`)."""
    for key in FIGURES:
        if figures.get(key) is not None:
            trial.set_user_attr(key, figures[key])
    value = front.constraint_value(figures, constraint) if constraint is not None else None
    if value is not None:
        trial.set_constraint(CONSTRAINT, value)


def rows_of(study: optuna.Study) -> list[dict[str, Any]]:
    """Ledger rows of every started trial (not the waiting, enqueued ones), by number."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    return [row_of(t) for t in sorted(trials, key=lambda t: t.number) if t.state != optuna.trial.TrialState.WAITING]


def write(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace the ledger atomically (temp file, fsync, rename)."""
    atomic.write_text(path, "".join(json.dumps(dict(r), sort_keys=False) + "\n" for r in rows))


def read(path: str | Path) -> list[dict[str, Any]]:
    """The ledger's rows ([] if there is none yet)."""
    return atomic.read_jsonl(path)


def study_from_ledger(
    rows: Iterable[Mapping[str, Any]],
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    rung_epochs: Sequence[int] = (),
    objectives: Sequence[str] = ("top1",),
    constraint: LatencyConfig | None = None,
) -> optuna.Study:
    """An in-memory study holding the ledger's trials, numbered as in the ledger (rows sorted by number).

    `objectives` (search.objectives) and `constraint` (search.latency: its max_ms / min_videos_per_s, if
    set) make the study the local `tune` keeps: the same directions, values and constraint values.

    `rung_epochs` (ASHA's, `space.rungs(...).epochs(epoch)`): the successive-halving pruner compares a
    trial with the values others had at each rung, which it keeps in trial system attrs; they are
    recomputed from each trial's top-1 by epoch (the first validation at or after the rung).
    """
    import optuna

    states = {
        "succeeded": optuna.trial.TrialState.COMPLETE,
        "pruned": optuna.trial.TrialState.PRUNED,
        "failed": optuna.trial.TrialState.FAIL,
        "running": optuna.trial.TrialState.RUNNING,
    }
    multi = len(objectives) > 1
    study = optuna.create_study(directions=directions(objectives), sampler=sampler, pruner=pruner)
    for row in sorted(rows, key=lambda r: int(r["number"])):
        if int(row["number"]) != len(study.trials):
            raise ValueError(f"ledger: trial numbers must run 0, 1, 2, ...; found {row['number']}")
        state = states[row["state"]]
        inter = {int(k): float(v) for k, v in (row.get("top1_by_epoch") or {}).items()}
        values = None
        if state == optuna.trial.TrialState.COMPLETE and row.get("best_top1") is not None:
            values = objective_values(row["best_top1"], row, objectives)
        if state == optuna.trial.TrialState.PRUNED and inter and not multi:
            values = [inter[max(inter)]]  # what study.tell(state=PRUNED) stores: the last reported value
        system = _rung_attrs(inter, rung_epochs, running=state == optuna.trial.TrialState.RUNNING)
        limit = front.constraint_value(row, constraint) if constraint is not None else None
        if limit is not None and state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            system[f"constraints:{CONSTRAINT}"] = float(limit)  # where Trial.set_constraint keeps it
        user = {k: row[k] for k in ("overrides", "epochs", "seconds", "reason", *FIGURES) if row.get(k) is not None}
        if multi and inter:
            user[TOP1_BY_EPOCH] = {str(k): v for k, v in sorted(inter.items())}
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=dict(row["params"]),
                distributions={k: distributions[k] for k in row["params"]},
                intermediate_values={} if multi else inter,
                system_attrs=system,
                user_attrs=user,
            )
        )
    return study


def _rung_attrs(inter: dict[int, float], rung_epochs: Sequence[int], *, running: bool) -> dict[str, float]:
    from optuna.pruners._successive_halving import _completed_rung_key

    out: dict[str, float] = {}
    last = max(inter, default=0)
    for k, rung in enumerate(rung_epochs):
        at = min((e for e in inter if e >= rung), default=None)
        # A running trial's newest rung is left for the pruner to judge when asked.
        if at is None or (running and at == last):
            break
        out[_completed_rung_key(k)] = inter[at]
    return out


def should_prune(study: optuna.Study, number: int) -> bool:
    """Whether the study's pruner stops trial `number` (running) at its last reported epoch (on top-1 alone).

    A multi-objective study is judged through a single-objective shadow of its trials (Optuna's pruners
    refuse multi-objective studies); the rungs the pruner records there are copied back to the trial.
    """
    trial = study.get_trials(deepcopy=False)[number]
    if len(study.directions) == 1:
        return bool(trial.intermediate_values) and study.pruner.prune(study, trial)
    if not top1_by_epoch(trial):
        return False
    shadow = _shadow(study)
    pruned = shadow.pruner.prune(shadow, shadow.get_trials(deepcopy=False)[number])
    for key, value in shadow.get_trials(deepcopy=False)[number].system_attrs.items():
        if key.startswith("completed_rung_") and trial.system_attrs.get(key) != value:
            study._storage.set_trial_system_attr(trial._trial_id, key, value)
    return bool(pruned)


def _shadow(study: optuna.Study) -> optuna.Study:
    """A single-objective (top-1) in-memory copy of a multi-objective study's trials, with its pruner."""
    import optuna

    shadow = optuna.create_study(direction="maximize", pruner=study.pruner)
    for t in study.get_trials(deepcopy=False):
        inter = top1_by_epoch(t)
        value = None
        if t.state == optuna.trial.TrialState.COMPLETE and t.values:
            value = t.values[0]
        elif t.state == optuna.trial.TrialState.PRUNED and inter:
            value = inter[max(inter)]
        shadow.add_trial(
            optuna.trial.create_trial(
                state=t.state if t.state != optuna.trial.TrialState.WAITING else optuna.trial.TrialState.FAIL,
                value=value,
                intermediate_values=inter,
                system_attrs={k: v for k, v in t.system_attrs.items() if k.startswith("completed_rung_")},
            )
        )
    return shadow


def report_top1(trial: optuna.trial.Trial, epoch: int, top1: float) -> None:
    """Record a validation top-1 of a running trial: `trial.report`, or (multi-objective) its user attr."""
    if len(trial.study.directions) == 1:
        trial.report(top1, epoch)
        return
    seen = dict(trial.study._storage.get_trial(trial._trial_id).user_attrs.get(TOP1_BY_EPOCH) or {})
    seen[str(epoch)] = float(top1)
    trial.set_user_attr(TOP1_BY_EPOCH, dict(sorted(seen.items(), key=lambda kv: int(kv[0]))))
