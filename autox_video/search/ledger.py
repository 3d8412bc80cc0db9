"""trials.jsonl: one line per trial (the search's history a person or the operator reads), and back.

Locally the study's SQLite file is the source of truth and the ledger is rewritten from it, whole and
atomically, after every change; so a trial number appears exactly once however often `tune` was
killed. The operator keeps no database: `study_from_ledger` rebuilds an in-memory study from these
rows (`optuna.trial.create_trial` + `study.add_trial`) to ask for the next trial or about a running one.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autox_video.storage import atomic

if typing.TYPE_CHECKING:
    import optuna

LEDGER = "trials.jsonl"
STATES = ("running", "succeeded", "pruned", "failed")


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
    values = {int(k): float(v) for k, v in trial.intermediate_values.items()}
    best = (
        trial.value if trial.state == optuna.trial.TrialState.COMPLETE else (max(values.values()) if values else None)
    )
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
    }


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
) -> optuna.Study:
    """An in-memory study holding the ledger's trials, numbered as in the ledger (rows sorted by number).

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
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for row in sorted(rows, key=lambda r: int(r["number"])):
        if int(row["number"]) != len(study.trials):
            raise ValueError(f"ledger: trial numbers must run 0, 1, 2, ...; found {row['number']}")
        state = states[row["state"]]
        inter = {int(k): float(v) for k, v in (row.get("top1_by_epoch") or {}).items()}
        value = row.get("best_top1") if state == optuna.trial.TrialState.COMPLETE else None
        if state == optuna.trial.TrialState.PRUNED and inter:
            value = inter[max(inter)]  # what study.tell(state=PRUNED) stores: the last reported value
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=value,
                params=dict(row["params"]),
                distributions={k: distributions[k] for k in row["params"]},
                intermediate_values=inter,
                system_attrs=_rung_attrs(inter, rung_epochs, running=state == optuna.trial.TrialState.RUNNING),
                user_attrs={k: row[k] for k in ("overrides", "epochs", "seconds", "reason") if row.get(k) is not None},
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
    """Whether the study's pruner stops trial `number` (running) at its last reported epoch."""
    trial = study.get_trials(deepcopy=False)[number]
    return bool(trial.intermediate_values) and study.pruner.prune(study, trial)
