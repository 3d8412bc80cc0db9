"""spec.search without a cluster: the trial builders, the trial/status mappers and the driver's decisions,
table by table; and the CRD schema rejecting malformed spaces at `kubectl apply`."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from autox_operator.builders import Owner, build_trial_children, build_trial_config
from autox_operator.prerequisites import Invalid, parse_spec
from autox_operator.search import ledger_row, make_plan, next_params, stop_reason, to_prune
from autox_operator.settings import OperatorSettings
from autox_operator.trials import Trial, observe, search_phase, trial_events
from k8s_schemas import ROOT, SchemaSet

from autox_video.config import Config
from autox_video.search import ledger
from autox_video.spec.training import VideoTrainingJobSpec

SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1")
OWNER = Owner(kind="VideoTrainingJob", name="hpo", namespace="ns", uid="uid-1")
NOW = "2024-06-01T12:00:00Z"
SPACE = {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "backbone": {"choices": ["swin_t", "swin_s"]}}
EXAMPLE = ROOT / "examples" / "videotrainingjob-search.yaml"


def _spec(**search: Any) -> VideoTrainingJobSpec:
    return VideoTrainingJobSpec.model_validate(
        {
            "dataset": {"videos": "s3://data/v/", "train": "s3://data/train.txt", "val": "s3://data/val.txt"},
            "model": {"backbone": "swin_t"},
            "training": {"epochs": 9, "evalInterval": 1, "lr": 0.001},
            "output": "s3://data/runs/hpo",
            "search": {"trials": 4, "parallel": 2, "minEpochs": 1, "seed": 1, "space": SPACE, **search},
        }
    )


def _pj(*true: str) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": "True"} for t in true]}}


RUNNING = Trial(0, "running", {"lr": 0.001, "backbone": "swin_t"}, start_time="2024-06-01T11:00:00Z")
METRICS = [{"epoch": 1, "top1": 0.5}, {"epoch": 2, "top1": 0.7}, {"epoch": 2}, {"epoch": "x", "top1": 1}]
OBSERVE = [
    # (what, PyTorchJob, progress.json, metrics.jsonl) -> (state, epochs, best top-1, reason contains)
    ("running", _pj("Running"), {"epoch": 2}, METRICS, ("running", 2, 0.7, None)),
    ("not created yet", None, None, [], ("running", 0, None, None)),
    ("succeeded", _pj("Succeeded"), {"epoch": 3, "phase": "succeeded"}, METRICS, ("succeeded", 3, 0.7, None)),
    ("succeeded, no val", _pj("Succeeded"), {"epoch": 3}, [], ("failed", 3, None, "no validation top-1")),
    ("failed", _pj("Failed"), {"epoch": 1}, METRICS[:1], ("failed", 1, 0.5, "PyTorchJob failed")),
    ("deleted after it finished", None, {"epoch": 3, "phase": "succeeded"}, METRICS, ("succeeded", 3, 0.7, None)),
    ("deleted while running", None, {"epoch": 1, "phase": "running"}, METRICS, ("failed", 2, 0.7, "deleted")),
]


@pytest.mark.parametrize(("what", "pj", "progress", "metrics", "expected"), OBSERVE, ids=[o[0] for o in OBSERVE])
def test_observe_a_running_trial(what: str, pj: Any, progress: Any, metrics: Any, expected: tuple) -> None:
    seen = observe(RUNNING, pj, progress, metrics, now=NOW)
    state, epochs, best, reason = expected
    assert (seen.state, seen.epochs, seen.best_top1) == (state, epochs, best)
    assert (reason is None and seen.reason is None) or (reason and reason in (seen.reason or ""))
    assert seen.completion_time == (NOW if seen.finished else None)


def _t(number: int, state: str, top1: float | None = None) -> Trial:
    return Trial(number, state, {"lr": 0.001}, epochs=3, best_top1=top1)


PHASES = [
    # (trials, trial PyTorchJob phases, suspended, stop reason) -> phase
    ([_t(0, "running")], {0: "Pending"}, False, None, "Pending"),
    ([_t(0, "running")], {0: "Running"}, False, None, "Running"),
    ([_t(0, "running")], {0: "Running"}, True, None, "Suspended"),
    ([_t(0, "running")], {0: "Running"}, False, "4 trials started", "Running"),  # still one to wait for
    ([_t(0, "succeeded", 0.8), _t(1, "pruned", 0.1)], {}, False, "2 trials started", "Succeeded"),
    ([_t(0, "failed"), _t(1, "pruned", 0.1)], {}, False, "2 trials started", "Failed"),
    ([_t(0, "succeeded", 0.8)], {}, True, None, "Suspended"),
]


@pytest.mark.parametrize(("trials", "phases", "suspended", "stop", "phase"), PHASES)
def test_search_phase(trials: list[Trial], phases: dict, suspended: bool, stop: str | None, phase: str) -> None:
    got, message = search_phase(trials, phases, suspended=suspended, stop_reason=stop)
    assert got == phase and message
    if phase == "Succeeded":
        assert "best trial 0, top-1 0.8000" in message


def test_trial_events_at_start_and_end() -> None:
    before = [_t(0, "running"), _t(1, "running")]
    after = [_t(0, "succeeded", 0.8), _t(1, "running"), _t(2, "running")]
    assert [(k, r) for k, r, _ in trial_events(before, after)] == [
        ("Normal", "TrialSucceeded"),
        ("Normal", "TrialStarted"),
    ]
    failed = trial_events([_t(0, "running")], [Trial(0, "failed", {}, reason="OOM")])
    assert failed == [("Warning", "TrialFailed", "trial 0 failed after 0 epochs: OOM")]


def test_trial_children_are_named_labelled_and_configured_per_trial(pytorchjob_schema: SchemaSet) -> None:
    spec = _spec()
    config = build_trial_config(spec, SETTINGS, 3, {"lr": 0.005, "backbone": "swin_s"})
    configmap, pj = build_trial_children(OWNER, spec, config, 3, SETTINGS)
    assert configmap["metadata"]["name"] == "hpo-t0003-config" and pj["metadata"]["name"] == "hpo-t0003"
    assert configmap["metadata"]["labels"]["autox.io/trial"] == pj["metadata"]["labels"]["autox.io/trial"] == "0003"
    master = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert master["metadata"]["labels"]["autox.io/trial"] == "0003"
    assert master["spec"]["volumes"][0] == {"name": "config", "configMap": {"name": "hpo-t0003-config"}}
    written = Config(**yaml.safe_load(configmap["data"]["config.yaml"]))
    assert (written.work_dir, written.lr, written.backbone, written.search) == (
        "s3://data/runs/hpo/trials/0003/",
        0.005,
        "swin_s",
        None,
    )
    pytorchjob_schema.validate(pj)


def test_trial_0_is_the_default_config_then_the_sampler_decides_the_same_way_twice() -> None:
    plan = make_plan(_spec(), SETTINGS)
    assert next_params(plan, []) == ({"lr": 0.001, "backbone": "swin_t"}, True)
    history = [Trial(0, "running", {"lr": 0.001, "backbone": "swin_t"})]
    first, second = next_params(plan, history), next_params(plan, history)
    assert first == second and first is not None and first[1] is False
    assert 1e-4 <= first[0]["lr"] <= 1e-2 and first[0]["backbone"] in ("swin_t", "swin_s")


def test_grid_goes_through_every_point_once() -> None:
    plan = make_plan(_spec(sampler="grid", space={"backbone": {"choices": ["swin_t", "swin_s"]}}), SETTINGS)
    trials: list[Trial] = []
    while (chosen := next_params(plan, trials)) is not None:
        trials.append(Trial(len(trials), "succeeded", chosen[0], best_top1=0.5))
    assert [t.params["backbone"] for t in trials] == ["swin_t", "swin_s"]


def test_the_pruner_stops_a_trial_far_below_another_at_the_same_rung() -> None:
    plan = make_plan(_spec(), SETTINGS)
    good = Trial(0, "running", {"lr": 0.001, "backbone": "swin_t"}, epochs=1, top1_by_epoch={1: 0.6})
    bad = Trial(1, "running", {"lr": 0.009, "backbone": "swin_s"}, epochs=1, top1_by_epoch={1: 0.1})
    assert to_prune(plan, [good, bad], {1}) == {1}
    assert to_prune(plan, [good, bad], {0}) == set()
    assert to_prune(make_plan(_spec(pruner="none"), SETTINGS), [good, bad], {1}) == set()


@pytest.mark.parametrize(
    ("search", "trials", "reason"),
    [
        ({}, 2, None),
        ({}, 4, "4 trials started"),
        ({"budget": {"trialEpochs": 20}}, 2, "budget: 18 of 20 trial-epochs used, a trial needs 9"),
        ({"budget": {"trialEpochs": 27}}, 2, None),
    ],
)
def test_no_trial_starts_that_the_trials_cap_or_the_budget_cannot_hold(
    search: dict, trials: int, reason: str | None
) -> None:
    plan = make_plan(_spec(**search), SETTINGS)
    history = [Trial(n, "running", {"lr": 0.001, "backbone": "swin_t"}) for n in range(trials)]
    assert stop_reason(plan, history, now=NOW, started_at=NOW) == reason


def test_ledger_rows_are_the_local_ledger_format_and_rebuild_the_study() -> None:
    plan = make_plan(_spec(), SETTINGS)
    trial = Trial(
        1,
        "pruned",
        {"lr": 0.002, "backbone": "swin_s"},
        epochs=3,
        top1_by_epoch={1: 0.2, 3: 0.3},
        start_time="2024-06-01T11:00:00Z",
        completion_time=NOW,
        reason="pruned at epoch 3",
        overrides={"lr": 0.002, "backbone": "swin_s"},
    )
    rows = [ledger_row(Trial(0, "succeeded", {"lr": 0.001, "backbone": "swin_t"}, epochs=9, best_top1=0.8), plan)]
    rows.append(ledger_row(trial, plan))
    assert rows[1] == {
        "number": 1,
        "state": "pruned",
        "params": {"lr": 0.002, "backbone": "swin_s"},
        "overrides": {"lr": 0.002, "backbone": "swin_s"},
        "epochs": 3,
        "best_top1": 0.3,
        "seconds": 3600.0,
        "reason": "pruned at epoch 3",
        "default": False,
        "dir": "trials/0001",
        "top1_by_epoch": {"1": 0.2, "3": 0.3},
        "latency_ms": None,  # measured figures: null when not measured (no speed objective, or a pruned trial)
        "videos_per_s": None,
        "gflops": None,
        "model_params": None,
    }
    study = ledger.study_from_ledger(rows, plan.dists)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"] and study.best_value == 0.8


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"space": {"lr": {"low": 0.1, "high": 0.01}}}, "spec.search.space.lr=.*inverted range: low 0.1 > high 0.01"),
        ({"space": {"lrr": {"low": 0.01, "high": 0.1}}}, "unknown config key 'lrr'"),
        ({"space": {"epoch": {"low": 1, "high": 5}}}, "epoch cannot be searched"),
        ({"space": {"backbone": {"choices": ["resnet"]}}}, "'resnet' is not a valid backbone"),
    ],
)
def test_a_space_the_model_rejects_fails_the_job_naming_the_field(search: dict, message: str) -> None:
    spec = _spec()
    assert spec.search is not None
    with pytest.raises(Invalid, match=message.replace("'", ".")):
        raw = {**spec.model_dump(by_alias=True), "search": search}
        make_plan(parse_spec(VideoTrainingJobSpec, raw), SETTINGS)  # as the operator parses a job


def test_a_search_without_validation_data_is_invalid() -> None:
    raw = _spec().model_dump(by_alias=True)
    raw["dataset"]["val"] = None
    with pytest.raises(Invalid, match="spec.dataset.val"):
        make_plan(VideoTrainingJobSpec.model_validate(raw), SETTINGS)


# --- the CRD: what `kubectl apply` rejects -------------------------------------------------------------


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


BAD_SPACES = [
    ("choices not a list", {"backbone": {"choices": "swin_t"}}, "is not of type 'array'"),
    ("no choices", {"backbone": {"choices": []}}, "should be non-empty"),
    ("bound as text", {"lr": {"low": "small", "high": 0.1}}, "is not of type 'number'"),
    ("typo in a domain", {"lr": {"lo": 0.001, "high": 0.1}}, "Additional properties are not allowed"),
    ("unknown domain type", {"lr": {"low": 0.001, "high": 0.1, "type": "normal"}}, "is not one of"),
    ("zero step", {"lr": {"low": 0.001, "high": 0.1, "step": 0}}, "less than or equal to the minimum"),
    ("a list for a domain", {"backbone": ["swin_t"]}, "is not of type 'object'"),
]


@pytest.mark.parametrize(("what", "space", "error"), BAD_SPACES, ids=[b[0] for b in BAD_SPACES])
def test_the_crd_schema_rejects_a_malformed_space(what: str, space: dict, error: str, crd_schemas: SchemaSet) -> None:
    doc = copy.deepcopy(_example())
    doc["spec"]["search"]["space"] = space
    assert any(error in e for e in crd_schemas.errors(doc)), crd_schemas.errors(doc)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [("parallel", 0, "less than the minimum"), ("sampler", "bayes", "is not one of"), ("trials", "many", "type")],
)
def test_the_crd_schema_rejects_bad_search_settings(field: str, value: Any, error: str, crd_schemas: SchemaSet) -> None:
    doc = copy.deepcopy(_example())
    doc["spec"]["search"][field] = value
    assert any(error in e for e in crd_schemas.errors(doc))


def test_inverted_and_empty_ranges_are_cel_rules_of_the_crd() -> None:
    """jsonschema cannot compare two fields: the API server does, with these rules (x-kubernetes-validations)."""
    crd = yaml.safe_load((ROOT / "crds" / "autox.io_videotrainingjobs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    domain = spec["properties"]["search"]["properties"]["space"]["additionalProperties"]
    rules = {r["rule"]: r["message"] for r in domain["x-kubernetes-validations"]}
    assert rules["!has(self.low) || !has(self.high) || self.low < self.high"].startswith("low must be below high")
    assert "has(self.choices) || (has(self.low) && has(self.high))" in rules


def test_the_search_example_validates_against_the_crd_and_the_operator_accepts_it(crd_schemas: SchemaSet) -> None:
    doc = _example()
    crd_schemas.validate(doc)
    plan = make_plan(VideoTrainingJobSpec.model_validate(doc["spec"]), SETTINGS)
    assert plan.search.parallel >= 1 and plan.default is not None


def test_the_search_driver_stays_torch_free_while_it_asks_and_prunes() -> None:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import test_operator_search as t\n"
        "t.test_trial_0_is_the_default_config_then_the_sampler_decides_the_same_way_twice()\n"
        "t.test_the_pruner_stops_a_trial_far_below_another_at_the_same_rung()\n"
        "heavy = ('torch', 'torchvision', 'mmaction', 'mmengine', 'decord')\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("engine", ["pytorchjob", "trainjob"])
def test_a_queued_search_whose_trials_kueue_holds_is_queued(engine: str) -> None:
    from autox_operator.children import get_engine
    from autox_operator.search import desired_status
    from autox_operator.trials import Trial

    spec = _spec()
    plan = make_plan(spec, SETTINGS)
    trials = [Trial(0, "running", {"lr": 0.001}, start_time=NOW)]
    child = build_trial_children(
        OWNER, spec, build_trial_config(spec, SETTINGS, 0, {}), 0, SETTINGS, get_engine(engine)
    )[1]
    child["spec"].update(get_engine(engine).suspend_patch(True)["spec"])  # created suspended, not admitted yet
    children = {"hpo-t0000": child}

    def phase(**kwargs: Any) -> dict[str, Any]:
        args = {"suspended": False, "now": NOW, "engine": engine, **kwargs}
        return desired_status(plan, trials, {}, "hpo", children, **args)

    queued = phase(queue="gpu")
    assert queued["phase"] == "Queued" and "LocalQueue 'gpu'" in queued["message"]
    assert phase()["phase"] == "Pending"  # no queue: not Kueue's hold
    assert phase(queue="gpu", suspended=True)["phase"] == "Suspended"  # the user's suspend
    entry = queued["trials"][0]
    assert entry["child"] == "hpo-t0000" and ("pytorchJob" in entry) is (engine == "pytorchjob")
