"""Pure status mappers: PyTorchJob conditions -> phase, progress.json / results.json -> status fields."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from autox_operator.status import (
    condition,
    failed_status,
    inference_status,
    phase_event,
    phase_from_pytorchjob,
    progress_fields,
    results_fields,
    status_diff,
    training_status,
    waiting_status,
)

T0 = "2024-06-01T10:00:00Z"


def pj(*true: str, false: tuple[str, ...] = (), suspend: bool | None = None, **status: Any) -> dict[str, Any]:
    conditions = [{"type": t, "status": "False", "reason": f"{t}Reason", "lastTransitionTime": T0} for t in false]
    conditions += [
        {
            "type": t,
            "status": "True",
            "reason": f"{t}Reason",
            "message": f"{t} message",
            "lastTransitionTime": T0,
            "lastUpdateTime": T0,
        }
        for t in true
    ]
    spec = {} if suspend is None else {"runPolicy": {"suspend": suspend}}
    return {"spec": spec, "status": {"conditions": conditions, **status}}


PHASES = [
    ("no PyTorchJob yet", None, ("Pending", None)),
    ("no conditions yet", {"spec": {}, "status": {}}, ("Pending", None)),
    ("Created", pj("Created"), ("Pending", None)),
    ("Running", pj("Created", "Running"), ("Running", None)),
    ("Restarting", pj("Created", "Restarting", false=("Running",)), ("Running", "restarting: Restarting message")),
    ("Succeeded", pj("Created", "Succeeded", false=("Running",)), ("Succeeded", None)),
    ("Failed", pj("Created", "Failed", false=("Running",)), ("Failed", "Failed message")),
    ("Failed beats Succeeded", pj("Succeeded", "Failed"), ("Failed", "Failed message")),
    ("Suspended", pj("Created", "Suspended", false=("Running",)), ("Suspended", None)),
    ("suspend requested, not yet confirmed", pj("Created", "Running", suspend=True), ("Suspended", None)),
    ("resumed", pj("Created", "Running", false=("Suspended",), suspend=False), ("Running", None)),
    ("suspended job that then failed", pj("Failed", suspend=True), ("Failed", "Failed message")),
]


@pytest.mark.parametrize(("what", "pytorchjob", "expected"), PHASES, ids=[p[0] for p in PHASES])
def test_phase_from_pytorchjob(what: str, pytorchjob: dict[str, Any] | None, expected: tuple[str, str | None]) -> None:
    assert phase_from_pytorchjob(pytorchjob) == expected


PROGRESS = {
    "phase": "running",
    "epoch": 4,
    "total_epochs": 30,
    "best_top1": 0.8125,
    "best_epoch": 4,
    "best_checkpoint": "s3://runs/x/best.pth",
    "latest_checkpoint": "s3://runs/x/epoch_4.pth",
    "updated": "2024-06-01T12:00:00+00:00",
}


def test_training_status_combines_the_pytorchjob_and_progress() -> None:
    job = pj("Created", "Running", false=("Restarting",), startTime=T0)
    assert training_status(job, PROGRESS) == {
        "phase": "Running",
        "message": None,
        "conditions": [
            {"type": "Restarting", "status": "False", "reason": "RestartingReason", "lastTransitionTime": T0},
            {
                "type": "Created",
                "status": "True",
                "reason": "CreatedReason",
                "message": "Created message",
                "lastTransitionTime": T0,
            },
            {
                "type": "Running",
                "status": "True",
                "reason": "RunningReason",
                "message": "Running message",
                "lastTransitionTime": T0,
            },
        ],
        "startTime": T0,
        "completionTime": None,
        "epoch": 4,
        "totalEpochs": 30,
        "bestTop1": 0.8125,
        "bestEpoch": 4,
        "bestCheckpoint": "s3://runs/x/best.pth",
        "latestCheckpoint": "s3://runs/x/epoch_4.pth",
        "progressUpdated": "2024-06-01T12:00:00+00:00",
        "progressPercentage": 13,  # 4 of 30 epochs
    }


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (None, {}),
        ({}, {}),
        (
            {"epoch": 0, "total_epochs": 3, "best_top1": None, "best_epoch": None, "best_checkpoint": None},
            {"epoch": 0, "totalEpochs": 3, "progressPercentage": 0},
        ),
        ({"epoch": "3", "best_top1": float("nan"), "best_epoch": True, "latest_checkpoint": ""}, {}),
        ({"epoch": 2, "best_top1": 1}, {"epoch": 2, "bestTop1": 1.0}),
    ],
    ids=["missing", "empty", "first epoch, no validation yet", "wrong types ignored", "int top1"],
)
def test_progress_fields(progress: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert progress_fields(progress) == expected


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (None, {}),
        ({"predictions": [{"video": "a.mp4"}, {"video": "b.mp4"}]}, {"videos": 2}),
        (
            {"predictions": [], "metrics": {"top1": 0.5, "top5": 1}},
            {"videos": 0, "metrics": {"top1": 0.5, "top5": 1.0}},
        ),
        ({"predictions": [{}], "metrics": {"top1": "n/a"}}, {"videos": 1, "metrics": None}),
    ],
    ids=["missing", "no labels", "labels", "junk metrics"],
)
def test_results_fields(results: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert results_fields(results) == expected


def test_results_fields_name_the_report_only_when_it_exists() -> None:
    results = {"predictions": [{"video": "a"}], "metrics": {"top1": 1.0}}
    assert "reportUri" not in results_fields(results, None)
    assert results_fields(results, "s3://b/out/report.html")["reportUri"] == "s3://b/out/report.html"
    assert results_fields(None, "s3://b/out/report.html") == {}  # no results.json: nothing to report on


def test_inference_status() -> None:
    done = pj("Created", "Succeeded", completionTime=T0)
    status = inference_status(done, {"predictions": [{"video": "a"}], "metrics": {"top1": 1.0}})
    assert (status["phase"], status["completionTime"], status["videos"], status["metrics"]) == (
        "Succeeded",
        T0,
        1,
        {"top1": 1.0},
    )


def test_waiting_keeps_its_transition_time_while_the_reason_stays() -> None:
    first = waiting_status("SecretNotFound", "Secret 'x' not found", now=T0)
    assert first == {
        "phase": "Pending",
        "message": "Secret 'x' not found",
        "conditions": [
            {
                "type": "Waiting",
                "status": "True",
                "reason": "SecretNotFound",
                "message": "Secret 'x' not found",
                "lastTransitionTime": T0,
            }
        ],
    }
    again = waiting_status("BucketNotFound", "bucket", previous=first["conditions"], now="2024-06-01T11:00:00Z")
    assert again["conditions"][0]["lastTransitionTime"] == T0


def test_failed_status() -> None:
    assert failed_status("InvalidSpec", "spec.output: bad", now=T0) == {
        "phase": "Failed",
        "message": "spec.output: bad",
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "InvalidSpec",
                "message": "spec.output: bad",
                "lastTransitionTime": T0,
            }
        ],
    }


def test_condition_gets_a_time() -> None:
    assert condition("Waiting", "True", "R", "m")["lastTransitionTime"].endswith("Z")


@pytest.mark.parametrize(
    ("current", "desired", "patch"),
    [
        ({}, {"phase": "Running"}, {"phase": "Running"}),
        ({"phase": "Running", "epoch": 1}, {"phase": "Running", "epoch": 2}, {"epoch": 2}),
        ({"phase": "Running", "message": "old"}, {"phase": "Running", "message": None}, {"message": None}),
        ({"phase": "Running", "epoch": 1}, {"phase": "Running"}, {}),
        ({"message": None}, {"message": None}, {}),
    ],
)
def test_status_diff(current: dict[str, Any], desired: dict[str, Any], patch: dict[str, Any]) -> None:
    assert status_diff(current, desired) == patch


@pytest.mark.parametrize(
    ("old", "new", "message", "event"),
    [
        (None, "Pending", None, ("Normal", "Pending", "phase Pending")),
        ("Pending", "Running", None, ("Normal", "Running", "phase Pending -> Running")),
        ("Running", "Failed", "OOM", ("Warning", "Failed", "phase Running -> Failed: OOM")),
        ("Running", "Running", None, None),
        ("Running", None, None, None),
    ],
)
def test_phase_event(old: str | None, new: str | None, message: str | None, event: tuple | None) -> None:
    assert phase_event(old, new, message) == event


# --- progress and ETA (autox_video.spec.progress) ------------------------------------------------

MEASURED = {
    **PROGRESS,  # epoch 4 of 30, written at 12:00 as epoch 5 began
    "epoch_seconds": [600.0, 640.0, 560.0, 600.0],
    "epoch_started": "2024-06-01T12:00:00+00:00",
    "epoch_iter": 0,
    "epoch_iters": 100,
}
AT_WRITE = datetime.datetime(2024, 6, 1, 12, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("progress", "now", "expected"),
    [
        (MEASURED, AT_WRITE, (13, 26 * 600)),
        (MEASURED, AT_WRITE + datetime.timedelta(minutes=5), (13, 26 * 600 - 300)),
        ({**MEASURED, "epoch_iter": 50}, AT_WRITE, (15, 26 * 600 - 300)),  # (4 + 1/2) / 30
        ({**MEASURED, "epoch": 0, "epoch_seconds": []}, AT_WRITE, (0, None)),  # nothing measured yet
        ({**MEASURED, "phase": "failed"}, AT_WRITE, (13, None)),
        ({**MEASURED, "phase": "succeeded", "epoch": 30}, AT_WRITE, (100, 0)),
    ],
    ids=["at the write", "5 minutes later", "half an epoch", "first epoch", "failed", "succeeded"],
)
def test_progress_fields_carry_percentage_and_time_left(
    progress: dict[str, Any], now: datetime.datetime, expected: tuple[int, int | None]
) -> None:
    fields = progress_fields(progress, now)
    assert (fields["progressPercentage"], fields["estimatedRemainingSeconds"]) == expected
    assert fields["epoch"] == progress["epoch"] and fields["totalEpochs"] == 30


def test_an_eta_the_trainer_can_no_longer_give_is_removed_from_the_status() -> None:
    running = training_status(pj("Created", "Running"), MEASURED)
    failed = training_status(pj("Created", "Running"), {**MEASURED, "phase": "failed"})
    assert running["estimatedRemainingSeconds"] > 0
    assert status_diff(running, failed) == {"estimatedRemainingSeconds": None}  # a merge patch: null deletes


@pytest.mark.parametrize(
    ("child", "phase"),
    [
        (pj("Created", "Succeeded"), "Succeeded"),
        (pj("Created", "Failed"), "Failed"),
        (pj("Created", "Suspended"), "Suspended"),
        (pj("Created", "Running", suspend=True), "Suspended"),  # asked to suspend, not confirmed yet
        (pj("Created"), "Pending"),
        (None, "Pending"),
    ],
    ids=["succeeded", "failed", "suspended", "suspend requested", "pods not running", "no child"],
)
def test_only_a_running_job_has_an_eta(child: dict[str, Any] | None, phase: str) -> None:
    """progress.json still says `running` (the trainer was killed, or paused): its last ETA must not linger."""
    status = training_status(child, MEASURED)
    assert status["phase"] == phase and status["estimatedRemainingSeconds"] is None
    assert status["epoch"] == 4 and status["progressPercentage"] == 13  # the rest of progress.json stays
    previous = training_status(pj("Created", "Running"), MEASURED)
    assert previous["estimatedRemainingSeconds"] > 0
    assert status_diff(previous, status)["estimatedRemainingSeconds"] is None  # a merge patch: null deletes


def test_progress_fields_default_to_the_time_now() -> None:
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=100)
    fields = progress_fields({**MEASURED, "epoch_started": started.isoformat()})
    assert 26 * 600 - 110 <= fields["estimatedRemainingSeconds"] <= 26 * 600 - 100


def test_the_new_fields_fit_the_crd_schema(crd_schemas: Any) -> None:
    def status_errors(status: dict[str, Any]) -> list[str]:
        obj = {"apiVersion": "autox.io/v1alpha1", "kind": "VideoTrainingJob", "metadata": {"name": "x"}}
        return [e for e in crd_schemas.errors({**obj, "spec": {}, "status": status}) if e.startswith("status")]

    assert status_errors(progress_fields(MEASURED, AT_WRITE)) == []
    inference = {"apiVersion": "autox.io/v1alpha1", "kind": "VideoInferenceJob", "metadata": {"name": "x"}}
    spec = {"model": {"checkpoint": "s3://bkt/w.pth"}, "dataset": {"videos": "s3://bkt/v/"}, "output": "s3://bkt/out/"}
    status = results_fields({"predictions": []}, "s3://bkt/out/report.html")
    assert crd_schemas.errors({**inference, "spec": spec, "status": status}) == []
    assert status_errors({"progressPercentage": 101, "estimatedRemainingSeconds": -1}) == [
        "status.estimatedRemainingSeconds: -1 is less than the minimum of 0",
        "status.progressPercentage: 101 is greater than the maximum of 100",
    ]


def test_timeline_counts_reach_the_status_and_fit_the_crd(crd_schemas: Any) -> None:
    results = {
        "predictions": [
            {"video": "a.mp4", "segments": [{}], "shots": [{}, {}, {}], "seconds": [{}] * 20},
            {"video": "b.mp4", "segments": [{}], "shots": [{}], "seconds": [{}] * 7},
            {"video": "c.mp4"},  # no timeline for this one (e.g. unreadable frames were skipped): counts none
        ]
    }
    status = results_fields(results)
    assert status["videos"] == 3 and status["timeline"] == {"segments": 2, "shots": 4, "seconds": 27}
    only_seconds = results_fields({"predictions": [{"video": "a.mp4", "seconds": [{}, {}]}]})
    assert only_seconds["timeline"] == {"seconds": 2}  # granularities not asked for stay absent
    assert "timeline" not in results_fields({"predictions": [{"video": "a.mp4", "label": 0}]})
    inference = {"apiVersion": "autox.io/v1alpha1", "kind": "VideoInferenceJob", "metadata": {"name": "x"}}
    spec = {"model": {"checkpoint": "s3://bkt/w.pth"}, "dataset": {"videos": "s3://bkt/v/"}, "output": "s3://bkt/out/"}
    assert crd_schemas.errors({**inference, "spec": spec, "status": status}) == []
    bad = {**status, "timeline": {"seconds": -1}}
    assert any("timeline.seconds" in e for e in crd_schemas.errors({**inference, "spec": spec, "status": bad}))
