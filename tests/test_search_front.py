"""The accuracy/latency search's pure parts: the Pareto front, the promoted trial, the multi-objective ledger study."""

from __future__ import annotations

import json
import math

import optuna
import pytest

from autox_video.search import front, ledger
from autox_video.spec.search import LatencyConfig, SearchConfig


def _row(number: int, top1: float | None, ms: float | None, state: str = "succeeded", **extra: object) -> dict:
    vps = None if ms is None else 1000.0 / ms
    return {"number": number, "state": state, "best_top1": top1, "latency_ms": ms, "videos_per_s": vps, **extra}


ROWS = [
    _row(0, 0.70, 10.0),  # default: dominated by 3 (as accurate, faster)
    _row(1, 0.90, 40.0),  # most accurate, slowest
    _row(2, 0.80, 20.0),
    _row(3, 0.70, 5.0),
    _row(4, 0.95, None),  # not measured: on no front, promoted only when nothing measured wins
    _row(5, 0.99, 1.0, state="pruned"),  # pruned: never on the front nor promoted
    _row(6, None, None, state="failed"),
    _row(7, 0.60, 8.0),  # dominated by 3
]


def test_front_is_the_non_dominated_measured_succeeded_trials_most_accurate_first() -> None:
    assert front.pareto_front(ROWS, "latency") == [1, 2, 3]
    assert front.pareto_front(ROWS, "throughput") == [1, 2, 3]  # videos/s = 1000 / ms: the same order
    assert front.pareto_front(ROWS, None) == [1, 2, 3]  # latency when there is no speed objective
    # Equal on both figures: neither dominates, both stay (the lower number first).
    assert front.pareto_front([*ROWS, _row(8, 0.80, 20.0)], "latency") == [1, 2, 8, 3]
    assert front.pareto_front([], "latency") == []


@pytest.mark.parametrize(
    ("search", "trial", "why"),
    [
        ({}, 4, "the most accurate"),  # no limit: the most accurate, measured or not
        ({"objectives": ["top1", "latency"], "latency": {"max_ms": 25}}, 2, "the most accurate with latency <= 25 ms"),
        ({"objectives": ["top1", "latency"], "latency": {"max_ms": 5}}, 3, "with latency <= 5 ms"),
        ({"objectives": ["top1", "throughput"], "latency": {"min_videos_per_s": 30}}, 2, "throughput >= 30 videos/s"),
        ({"latency": {"max_ms": 0.5}}, 4, "the most accurate: no trial has latency <= 0.5 ms"),
    ],
)
def test_promoted_is_the_most_accurate_meeting_the_limit(search: dict, trial: int, why: str) -> None:
    cfg = SearchConfig(**search)
    number, reason = front.promotion(ROWS, cfg)
    assert (number, front.promoted_trial(ROWS, cfg)) == (trial, trial)
    assert why in reason


def test_equal_top1_promotes_the_faster_with_a_speed_objective_else_the_first() -> None:
    rows = [_row(0, 0.5, 30.0), _row(1, 0.5, 10.0), _row(2, 0.5, None)]
    assert front.promoted_trial(rows, SearchConfig(objectives=["top1", "latency"])) == 1
    assert front.promoted_trial(rows, SearchConfig()) == 0
    assert front.promotion([_row(0, None, None, state="failed")], SearchConfig()) == (None, "no trial succeeded")


def test_constraint_values_as_optuna_reads_them() -> None:
    ms = LatencyConfig(max_ms=20)
    assert front.constraint_value(_row(0, 0.5, 15.0), ms) == -5.0
    assert front.constraint_value(_row(0, 0.5, None), ms) == math.inf
    assert front.constraint_value(_row(0, 0.5, 15.0), LatencyConfig()) is None
    assert front.constraint_value(_row(0, 0.5, 10.0), LatencyConfig(min_videos_per_s=50)) == -50.0
    assert front.meets(_row(0, 0.5, 20.0), ms) and not front.meets(_row(0, 0.5, 20.5), ms)


def _tpe() -> optuna.samplers.TPESampler:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=7, n_startup_trials=2, multivariate=True)


def _measured(trial: optuna.trial.Trial, ms: float, latency: LatencyConfig) -> None:
    figures = {"latency_ms": ms, "videos_per_s": 1000 / ms, "gflops": 0.5, "model_params": 1234}
    ledger.record_figures(trial, figures, latency)


def test_multi_objective_study_rebuilt_from_the_ledger_suggests_as_the_live_one() -> None:
    """The operator's stateless rebuild and the local study: same values, constraints, rungs and next suggestion."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = SearchConfig(objectives=["top1", "latency"], latency={"max_ms": 30})
    objectives = tuple(search.objectives)
    dists = {
        "backbone": optuna.distributions.CategoricalDistribution(["small", "big"]),
        "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
    }
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    live = optuna.create_study(directions=ledger.directions(objectives), sampler=_tpe(), pruner=pruner)
    assert [d.name for d in live.directions] == ["MAXIMIZE", "MINIMIZE"]
    figures = [(0.6, 10.0), (0.9, 50.0), (0.7, 20.0), (0.8, 35.0)]
    for top1, ms in figures:
        trial = live.ask(dists)
        for epoch in (1, 2):
            ledger.report_top1(trial, epoch, top1 - 0.1 / epoch)
            ledger.should_prune(live, trial.number)  # records the rungs passed (told complete all the same)
        _measured(trial, ms, search.latency)
        live.tell(trial, ledger.objective_values(top1, trial.user_attrs | {"latency_ms": ms}, objectives))
    pruned = live.ask(dists)
    ledger.report_top1(pruned, 1, 0.05)  # far below the others at the first rung: pruned on top-1 alone
    assert ledger.should_prune(live, pruned.number)
    _measured(pruned, 3.0, search.latency)  # fast, but pruned all the same: pruning looks at top-1 alone
    live.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    running = live.ask(dists)
    ledger.report_top1(running, 1, 0.85)

    rows = json.loads(json.dumps(ledger.rows_of(live)))
    assert [r["state"] for r in rows] == ["succeeded"] * 4 + ["pruned", "running"]
    assert [r["latency_ms"] for r in rows] == [10.0, 50.0, 20.0, 35.0, 3.0, None]
    assert rows[1]["best_top1"] == 0.9 and rows[1]["model_params"] == 1234 and rows[1]["gflops"] == 0.5
    assert rows[4]["best_top1"] == 0.05 and rows[4]["top1_by_epoch"] == {"1": 0.05}
    assert rows[5]["top1_by_epoch"] == {"1": 0.85}
    assert front.pareto_front(rows, "latency") == [1, 3, 2, 0]
    assert front.promoted_trial(rows, search) == 2  # 0.7 at 20 ms: the most accurate under 30 ms

    rebuilt = ledger.study_from_ledger(
        rows,
        dists,
        sampler=_tpe(),
        pruner=pruner,
        rung_epochs=[1, 2],
        objectives=objectives,
        constraint=search.latency,
    )
    assert [t.values for t in rebuilt.trials] == [t.values for t in live.trials]
    assert [t.constraints for t in rebuilt.trials] == [t.constraints for t in live.trials]
    assert live.trials[1].constraints == {ledger.CONSTRAINT: 20.0} and live.trials[5].constraints == {}
    assert [t.system_attrs.get("completed_rung_0") for t in rebuilt.trials[:5]] == [
        t.system_attrs.get("completed_rung_0") for t in live.trials[:5]
    ]
    assert not ledger.should_prune(rebuilt, 5)  # 0.85 at the first rung: kept
    assert ledger.rows_of(rebuilt)[:5] == rows[:5]
    # The next suggestion: a fresh sampler of the same seed on either study.
    live.sampler = _tpe()
    assert rebuilt.ask(dists).params == live.ask(dists).params


def test_single_objective_ledger_rows_carry_null_figures_and_keep_todays_study() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    study = optuna.create_study(direction="maximize")
    trial = study.ask(dists)
    ledger.report_top1(trial, 1, 0.4)
    study.tell(trial, 0.5)
    (row,) = ledger.rows_of(study)
    assert {k: row[k] for k in ledger.FIGURES} == dict.fromkeys(ledger.FIGURES)
    assert row["top1_by_epoch"] == {"1": 0.4} and row["best_top1"] == 0.5
    rebuilt = ledger.study_from_ledger([row], dists)
    assert rebuilt.best_value == 0.5 and rebuilt.trials[0].intermediate_values == {1: 0.4}
    assert ledger.objective_values(0.5, {}, ["top1", "latency"]) == [0.5, ledger.UNMEASURED_MS]
    assert ledger.objective_values(0.5, {}, ["top1", "throughput"]) == [0.5, 0.0]


def test_a_multi_objective_trial_process_reports_top1_and_asha_prunes_it_on_top1_alone(tmp_path) -> None:
    """worker.Reporter against a multi-objective study in SQLite (as `tune` keeps it): no Optuna refusal."""
    from autox_video.search.worker import Reporter

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    asha = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    study = optuna.create_study(
        storage=storage, study_name="s", directions=ledger.directions(["top1", "latency"]), pruner=asha
    )
    study.set_user_attr("pruner", {"kind": "asha", "min_epochs": 1, "reduction_factor": 2})
    dists = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    for top1, ms in ((0.8, 50.0), (0.9, 90.0), (0.7, 5.0)):
        trial = study.ask(dists)
        ledger.report_top1(trial, 1, top1)
        ledger.should_prune(study, trial.number)  # what each earlier trial's process asked: its rung recorded
        study.tell(trial, [top1, ms])
    for number, top1, pruned in ((3, 0.1, True), (4, 0.95, False)):
        study.ask(dists)
        work = tmp_path / f"t{number}"
        work.mkdir()
        (work / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "top1": top1}) + "\n")
        reporter = Reporter(storage, "s", number, total_epochs=3, result={})
        if pruned:
            with pytest.raises(optuna.TrialPruned):
                reporter(work, 1, False)
        else:
            reporter(work, 1, False)
        assert json.loads((work / "trial.json").read_text())["epochs"] == 1
    rows = ledger.rows_of(optuna.load_study(study_name="s", storage=storage))
    assert [r["top1_by_epoch"] for r in rows[3:]] == [{"1": 0.1}, {"1": 0.95}]
    assert [r["best_top1"] for r in rows[3:]] == [0.1, 0.95]
