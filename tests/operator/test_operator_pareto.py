"""spec.search with two objectives (top-1 and latency/throughput), without a cluster: the trials' measured
figures in status.trials and the ledger, status.pareto, the promoted trial under the limit, the printer
columns, and the multi-objective study the stateless driver rebuilds each pass."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
import yaml
from autox_operator.search import (
    build_study,
    desired_status,
    ledger_row,
    make_plan,
    new_best_message,
    next_params,
    to_prune,
)
from autox_operator.settings import OperatorSettings
from autox_operator.trials import Trial, figures_of, from_row, from_status, observe, promotion, status_entry
from k8s_schemas import ROOT, SchemaSet

from autox_video.spec.training import VideoTrainingJobSpec

SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1")
NOW = "2024-06-01T12:00:00Z"
# Two families: the larger one is more accurate and slower.
SPACE = {"backbone": {"choices": ["x3d_s", "swin_t"]}, "lr": {"low": 1e-4, "high": 1e-2, "log": True}}


def _spec(**search: Any) -> VideoTrainingJobSpec:
    return VideoTrainingJobSpec.model_validate(
        {
            "dataset": {"videos": "s3://data/v/", "train": "s3://data/train.txt", "val": "s3://data/val.txt"},
            "model": {"backbone": "x3d_s"},
            "training": {"epochs": 3, "evalInterval": 1, "lr": 0.001},
            "output": "s3://data/runs/hpo",
            "search": {"trials": 8, "parallel": 1, "seed": 3, "space": SPACE, **search},
        }
    )


def _done(number: int, backbone: str, top1: float, ms: float | None, state: str = "succeeded") -> Trial:
    figures = (
        {} if ms is None else {"latency_ms": ms, "videos_per_s": 1000.0 / ms, "gflops": ms / 2, "model_params": 10}
    )
    return Trial(number, state, {"backbone": backbone, "lr": 0.001}, epochs=3, best_top1=top1, **figures)


# x3d_s: fast, less accurate; swin_t: slow, more accurate; trial 2 is dominated by trial 0; 3 was pruned.
TRIALS = [
    _done(0, "x3d_s", 0.70, 8.0),
    _done(1, "swin_t", 0.90, 40.0),
    _done(2, "swin_t", 0.65, 45.0),
    _done(3, "swin_t", 0.95, 50.0, state="pruned"),
    _done(4, "x3d_s", 0.80, 12.0),
]


def test_a_trials_figures_come_from_its_result_and_travel_through_status_and_ledger() -> None:
    running = Trial(4, "running", {"backbone": "x3d_s", "lr": 0.001}, start_time=NOW)
    pj = {"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}
    result = {"latency_ms": 12.5, "videos_per_s": 80.0, "gflops": 2.1, "model_params": 3794322.0, "best_top1": 0.8}
    seen = observe(running, pj, {"epoch": 3, "phase": "succeeded"}, [{"epoch": 3, "top1": 0.8}], now=NOW, result=result)
    assert seen.state == "succeeded"
    assert seen.figures == {"latency_ms": 12.5, "videos_per_s": 80.0, "gflops": 2.1, "model_params": 3794322}
    entry = status_entry(seen, "hpo-t0004")
    assert {k: entry[k] for k in ("latencyMs", "videosPerS", "gflops", "modelParams")} == {
        "latencyMs": 12.5,
        "videosPerS": 80.0,
        "gflops": 2.1,
        "modelParams": 3794322,
    }
    plan = make_plan(_spec(objectives=["top1", "latency"]), SETTINGS)
    row = ledger_row(seen, plan)
    assert (row["latency_ms"], row["videos_per_s"], row["gflops"], row["model_params"]) == (12.5, 80.0, 2.1, 3794322)
    assert row["params"] == {"backbone": "x3d_s", "lr": 0.001}  # params: the hyperparameters, as before
    # The next pass reads the trial back from status.trials + its row; a re-created job from the row alone.
    assert from_status(entry, row).figures == seen.figures == from_row(row).figures
    assert from_status(entry, None).figures == seen.figures  # the status entry alone keeps them too
    # A running trial has none yet (not measured): nothing is made up.
    assert status_entry(running, "hpo-t0004").keys().isdisjoint({"latencyMs", "videosPerS", "gflops", "modelParams"})


def test_a_succeeded_trial_its_trainer_could_not_measure_says_why() -> None:
    running = Trial(1, "running", {"backbone": "x3d_s", "lr": 0.001}, start_time=NOW)
    pj = {"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}
    result = {"state": "succeeded", "best_top1": 0.7, "measure_error": "RuntimeError: ONNX export failed"}
    seen = observe(running, pj, {"epoch": 3, "phase": "succeeded"}, [{"epoch": 3, "top1": 0.7}], now=NOW, result=result)
    assert seen.state == "succeeded" and seen.figures == dict.fromkeys(seen.figures)
    assert seen.reason == "not measured: RuntimeError: ONNX export failed"
    assert status_entry(seen, "hpo-t0001")["reason"] == seen.reason


@pytest.mark.parametrize(
    "bad", [math.nan, math.inf, -1.0, True, "12 ms", None], ids=["nan", "inf", "negative", "bool", "text", "null"]
)
def test_a_malformed_figure_is_left_out(bad: Any) -> None:
    assert figures_of({"latency_ms": bad, "gflops": 1.5}) == {"gflops": 1.5}


PROMOTIONS = [
    # (search.objectives, search.latency) -> (promoted trial, why contains)
    (["top1"], {}, 1, None),
    (["top1", "latency"], {}, 1, None),
    (["top1", "latency"], {"maxMs": 20}, 4, "the most accurate with latency <= 20 ms"),
    (["top1", "latency"], {"maxMs": 5}, 1, "no trial"),
    (["top1", "throughput"], {"minVideosPerS": 100}, 0, "videos/s"),
    (["top1"], {"maxMs": 10}, 0, "latency <= 10 ms"),  # a limit alone also chooses (measured anyway)
]


@pytest.mark.parametrize(("objectives", "latency", "number", "why"), PROMOTIONS)
def test_the_promoted_trial_is_the_most_accurate_meeting_the_limit(
    objectives: list[str], latency: dict, number: int, why: str | None
) -> None:
    search = make_plan(_spec(objectives=objectives, latency=latency), SETTINGS).search
    best, reason = promotion(TRIALS, search)
    assert best is not None and best.number == number
    assert (why is None and reason in (None, "the most accurate")) or (why and why in (reason or ""))
    assert f"trial {number} is the best so far: top-1 {best.best_top1:.4f}, " in new_best_message(best, reason)


def _job(status: dict[str, Any], spec: VideoTrainingJobSpec) -> dict[str, Any]:
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": "hpo", "namespace": "ns"},
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
        "status": status,
    }


def _column(crd: dict[str, Any], name: str) -> str:
    (version,) = crd["spec"]["versions"]
    return next(c["jsonPath"] for c in version["additionalPrinterColumns"] if c["name"] == name)


def _jsonpath(doc: dict[str, Any], path: str) -> Any:
    """A printer column's simple JSONPath (.a.b) on `doc`, as kubectl evaluates it."""
    for key in path.strip(".").split("."):
        doc = (doc or {}).get(key)
    return doc


def test_status_pareto_and_the_printer_columns_show_the_promoted_trial(crd_schemas: SchemaSet) -> None:
    spec = _spec(objectives=["top1", "latency"], latency={"maxMs": 20})
    plan = make_plan(spec, SETTINGS)
    status = desired_status(plan, TRIALS, {}, "hpo", {}, suspended=False, now=NOW)
    # The front: the non-dominated succeeded trials with figures, most accurate first (2 is dominated by 0,
    # 3 was pruned).
    assert status["pareto"] == [
        {"trial": 1, "top1": 0.90, "latencyMs": 40.0, "videosPerS": 25.0},
        {"trial": 4, "top1": 0.80, "latencyMs": 12.0, "videosPerS": 1000.0 / 12.0},
        {"trial": 0, "top1": 0.70, "latencyMs": 8.0, "videosPerS": 125.0},
    ]
    assert (status["bestTrial"], status["bestTop1"], status["bestLatencyMs"]) == (4, 0.80, 12.0)
    assert "best trial 4, top-1 0.8000, 12 ms (the most accurate with latency <= 20 ms)" in status["message"]
    job = _job(status, spec)
    crd_schemas.validate(job)
    crd = yaml.safe_load((ROOT / "crds" / "autox.io_videotrainingjobs.yaml").read_text())
    assert _jsonpath(job, _column(crd, "Top-1")) == 0.80 and _jsonpath(job, _column(crd, "Latency")) == 12.0

    # One objective: no front, the most accurate promoted, its latency shown when it was measured.
    single = make_plan(_spec(), SETTINGS)
    status = desired_status(single, TRIALS, {}, "hpo", {}, suspended=False, now=NOW)
    assert "pareto" not in status and (status["bestTrial"], status["bestLatencyMs"]) == (1, 40.0)
    crd_schemas.validate(_job(status, _spec()))
    # Two objectives, nothing measured yet: an empty front.
    unmeasured = [Trial(0, "succeeded", {"backbone": "x3d_s", "lr": 0.001}, epochs=3, best_top1=0.7)]
    status = desired_status(plan, unmeasured, {}, "hpo", {}, suspended=False, now=NOW)
    assert status["pareto"] == [] and status["bestTrial"] == 0 and status["bestLatencyMs"] is None


def _figures(params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """A made-up but consistent trainer: swin_t more accurate and slower; lr near 1e-3 best."""
    slow = params["backbone"] == "swin_t"
    top1 = (0.85 if slow else 0.7) - 0.05 * abs(math.log10(params["lr"]) + 3)
    ms = (40.0 if slow else 10.0) * (1 + params["lr"])
    return top1, {"latency_ms": ms, "videos_per_s": 1000 / ms, "gflops": ms / 2, "model_params": 1000 if slow else 100}


def _lived_in_memory(plan: Any, n: int) -> tuple[Any, list[Trial]]:
    """A multi-objective study the trials were asked from and told to (the local search's way, through the
    library's own helpers), and the same trials as the operator records them (status.trials + ledger)."""
    import optuna

    from autox_video.search import front, ledger
    from autox_video.search import space as sp

    limit = plan.search.latency if front.has_constraint(plan.search.latency) else None
    study = optuna.create_study(
        directions=ledger.directions(plan.search.objectives), sampler=sp.sampler(plan.search, plan.space, plan.seed)
    )
    trials = []
    for number in range(n):
        trial = study.ask(plan.dists)
        top1, figures = _figures(trial.params)
        ledger.report_top1(trial, 1, top1 - 0.1)
        if number == 2:  # stopped by ASHA at its first validation: not measured (so not within the limit)
            ledger.record_figures(trial, {}, limit)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            trials.append(Trial(number, "pruned", trial.params, epochs=1, top1_by_epoch={1: top1 - 0.1}))
            continue
        ledger.report_top1(trial, 3, top1)
        ledger.record_figures(trial, figures, limit)
        study.tell(trial, values=ledger.objective_values(top1, figures, plan.search.objectives))
        by_epoch = {1: top1 - 0.1, 3: top1}
        trials.append(
            Trial(number, "succeeded", trial.params, epochs=3, top1_by_epoch=by_epoch, best_top1=top1, **figures)
        )
    return study, trials


@pytest.mark.parametrize(
    ("objectives", "latency"),
    [(["top1", "latency"], {"maxMs": 20}), (["top1", "throughput"], {}), (["top1"], {"maxMs": 20})],
    ids=["latency-with-limit", "throughput", "top1-with-limit"],
)
def test_the_rebuilt_study_suggests_what_the_study_that_lived_in_memory_suggests(
    objectives: list[str], latency: dict
) -> None:
    import optuna

    from autox_video.search import space as sp

    plan = make_plan(_spec(objectives=objectives, latency=latency), SETTINGS)
    lived, trials = _lived_in_memory(plan, 6)
    # The operator's next trial, from its rebuilt study (a fresh sampler seeded as the search's) ...
    asked = next_params(plan, trials)
    assert asked is not None and asked[1] is False
    rebuilt = build_study(plan, trials)
    assert [t.values for t in rebuilt.trials] == [t.values for t in lived.trials]

    def limits(study: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in t.system_attrs.items() if k.startswith("constraints")} for t in study.trials]

    assert limits(rebuilt) == limits(lived)
    assert bool(latency) == any(limits(lived))  # a limit: each measured trial's constraint value
    # ... is the one the same seeded sampler proposes from the study the trials were told to.
    again = optuna.create_study(
        directions=[d.name.lower() for d in lived.directions], sampler=sp.sampler(plan.search, plan.space, plan.seed)
    )
    again.add_trials(lived.trials)
    assert asked[0] == again.ask(plan.dists).params
    # The suggestion depends on the figures: without them (one objective, no limit) TPE proposes another trial.
    top1_only = make_plan(_spec(), SETTINGS)
    assert next_params(top1_only, [replace(t, latency_ms=None, videos_per_s=None) for t in trials]) != asked


def test_asha_prunes_a_two_objective_search_on_top1_alone() -> None:
    plan = make_plan(_spec(objectives=["top1", "latency"], latency={"maxMs": 20}, minEpochs=1), SETTINGS)
    # Trial 0 finished slow but accurate; trial 1 (fast, judged at epoch 1) is far below it, trial 2 is not.
    slow = replace(_done(0, "swin_t", 0.9, 45.0), top1_by_epoch={1: 0.6, 3: 0.9})
    fast = Trial(1, "running", {"backbone": "x3d_s", "lr": 0.001}, epochs=1, top1_by_epoch={1: 0.1})
    close = Trial(2, "running", {"backbone": "swin_t", "lr": 0.002}, epochs=1, top1_by_epoch={1: 0.65})
    assert to_prune(plan, [slow, fast, close], {1, 2}) == {1}
    assert (
        to_prune(make_plan(_spec(objectives=["top1", "latency"], pruner="none"), SETTINGS), [slow, fast], {1}) == set()
    )


def test_the_latency_search_example_is_a_two_objective_search_the_operator_accepts(crd_schemas: SchemaSet) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "videotrainingjob-search-latency.yaml").read_text())
    crd_schemas.validate(doc)
    plan = make_plan(VideoTrainingJobSpec.model_validate(doc["spec"]), SETTINGS)
    assert plan.search.speed_objective == "latency" and plan.search.latency.max_ms == 25
    assert set(plan.space["backbone"].choices or []) == {"x3d_s", "x3d_m", "swin_t"}
    assert plan.default is not None  # trial 0: the spec's own x3d_m


@pytest.mark.parametrize(
    ("search", "measured"),
    [
        ({"objectives": ["top1", "latency"], "latency": {"runtime": "torch", "precision": "fp16"}}, True),
        ({"objectives": ["top1", "throughput"]}, True),
        ({"latency": {"maxMs": 30}}, True),  # a limit alone: the promoted model must be timed
        ({}, False),
    ],
)
def test_a_measured_searchs_trials_time_their_own_model_where_they_train(search: dict, measured: bool) -> None:
    from autox_operator.builders import Owner, build_trial_children, build_trial_config

    spec = _spec(**search)
    config = build_trial_config(spec, SETTINGS, 2, {"backbone": "swin_t", "lr": 0.002})
    written = yaml.safe_load(
        build_trial_children(Owner("VideoTrainingJob", "hpo", "ns", "u1"), spec, config, 2, SETTINGS)[0]["data"][
            "config.yaml"
        ]
    )
    assert written["search"] is None and written["work_dir"] == "s3://data/runs/hpo/trials/0002/"
    if measured:  # `autox-video train` then writes trial.json's figures and export/ into the trial's work_dir
        assert spec.search is not None and written["measure"] == spec.search.latency.model_dump()
    else:
        assert written["measure"] is None


def test_nsga2_is_refused_naming_the_field_since_a_rebuilt_study_loses_its_generations() -> None:
    from autox_operator.prerequisites import Invalid

    with pytest.raises(Invalid, match=r"spec.search.sampler: nsga2 .* use tpe"):
        make_plan(_spec(objectives=["top1", "latency"], sampler="nsga2"), SETTINGS)
