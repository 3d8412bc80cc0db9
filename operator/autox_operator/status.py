"""Pure status mappers: PyTorchJob, progress.json and results.json in, our CR status fields out."""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from typing import Any

from autox_video.spec.progress import estimate

# The conditions the Kubeflow training operator sets on a PyTorchJob, mirrored into our status.
PYTORCHJOB_CONDITIONS = ("Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended")
CONDITION_KEYS = ("type", "status", "reason", "message", "lastTransitionTime")


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _true_conditions(pytorchjob: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = (pytorchjob.get("status") or {}).get("conditions") or []
    return {c["type"]: c for c in conditions if c.get("status") == "True" and "type" in c}


def phase_from_pytorchjob(pytorchjob: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(phase, message) of a PyTorchJob: Failed > Succeeded > Suspended > Running (Restarting) > Pending.

    A job whose spec asks to be suspended is Suspended before the training operator confirms it.
    """
    if pytorchjob is None:
        return "Pending", None
    true = _true_conditions(pytorchjob)
    suspend_requested = bool(((pytorchjob.get("spec") or {}).get("runPolicy") or {}).get("suspend"))
    if "Failed" in true:
        return "Failed", true["Failed"].get("message") or "the PyTorchJob failed"
    if "Succeeded" in true:
        return "Succeeded", None
    if suspend_requested or "Suspended" in true:
        return "Suspended", None
    if "Restarting" in true:
        return "Running", f"restarting: {true['Restarting'].get('message') or 'a replica failed'}"
    if "Running" in true:
        return "Running", None
    return "Pending", None


# The conditions Kubeflow Trainer sets on a TrainJob; running is not one: status.jobsStatus says it.
TRAINJOB_CONDITIONS = ("Created", "Suspended", "Complete", "Failed")


def phase_from_trainjob(trainjob: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(phase, message) of a TrainJob: Failed > Complete (Succeeded) > Suspended > Running > Pending.

    Running: a child Job of the JobSet is active or ready (status.jobsStatus); spec.suspend means
    Suspended before Trainer confirms it.
    """
    if trainjob is None:
        return "Pending", None
    true = _true_conditions(trainjob)
    if "Failed" in true:
        return "Failed", true["Failed"].get("message") or "the TrainJob failed"
    if "Complete" in true:
        return "Succeeded", None
    if bool((trainjob.get("spec") or {}).get("suspend")) or "Suspended" in true:
        return "Suspended", None
    jobs = (trainjob.get("status") or {}).get("jobsStatus") or []
    if any((j.get("active") or 0) + (j.get("ready") or 0) > 0 for j in jobs):
        return "Running", None
    return "Pending", None


def phase_of(child: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """(phase, message) of a child of either engine (by its kind)."""
    if child is not None and child.get("kind") == "TrainJob":
        return phase_from_trainjob(child)
    return phase_from_pytorchjob(child)


def _trainjob_times(trainjob: Mapping[str, Any]) -> dict[str, Any]:
    # TrainJob status has no start/completion times: the Created and the final condition's transitions.
    true = _true_conditions(trainjob)
    ended = true.get("Complete") or true.get("Failed") or {}
    return {
        "startTime": (true.get("Created") or {}).get("lastTransitionTime"),
        "completionTime": ended.get("lastTransitionTime"),
    }


def mirror_conditions(pytorchjob: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The PyTorchJob's conditions, restricted to the fields our status schema declares."""
    if pytorchjob is None:
        return []
    conditions = (pytorchjob.get("status") or {}).get("conditions") or []
    return [
        {key: c[key] for key in CONDITION_KEYS if c.get(key) is not None}
        for c in conditions
        if c.get("type") and c.get("status")
    ]


def condition(
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    previous: Sequence[Mapping[str, Any]] = (),
    now: str | None = None,
) -> dict[str, Any]:
    """A condition; keeps lastTransitionTime when the same type already had this status."""
    since = next(
        (c.get("lastTransitionTime") for c in previous if c.get("type") == type_ and c.get("status") == status), None
    )
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now or now_iso(),
    }


def waiting_status(
    reason: str, message: str, *, previous: Sequence[Mapping[str, Any]] = (), now: str | None = None
) -> dict[str, Any]:
    """Blocked on something the user can fix (a Secret, a bucket, a training job): phase Pending."""
    return {
        "phase": "Pending",
        "message": message,
        "conditions": [condition("Waiting", "True", reason, message, previous=previous, now=now)],
    }


def failed_status(reason: str, message: str, *, now: str | None = None) -> dict[str, Any]:
    """An unusable spec: phase Failed, no retry."""
    return {
        "phase": "Failed",
        "message": message,
        "conditions": [condition("Failed", "True", reason, message, now=now)],
    }


def vanished_status(
    pytorchjob: str, *, succeeded: bool, now: str | None = None, kind: str = "PyTorchJob"
) -> dict[str, Any]:
    """Our child (a PyTorchJob or TrainJob, `kind`) is gone before we saw it end (a TTL, a manual delete,
    an operator that was down): the run's own outputs in S3 tell whether it finished."""
    reason = f"{kind}Deleted"
    if succeeded:
        message = f"{kind} {pytorchjob} was deleted after the run finished (its outputs in S3 say so)"
        return {
            "phase": "Succeeded",
            "message": message,
            "conditions": [condition("Succeeded", "True", reason, message, now=now)],
        }
    return failed_status(
        reason,
        f"{kind} {pytorchjob} was deleted before the run finished: delete and re-create this job to run it again",
        now=now,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def progress_fields(progress: Mapping[str, Any] | None, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Status fields from the trainer's progress.json as of `now` (default: now; wrongly typed values ignored)."""
    if not progress:
        return {}
    guess = estimate(progress, now or datetime.datetime.now(datetime.UTC))
    fields = {
        "epoch": _int(progress.get("epoch")),
        "totalEpochs": _int(progress.get("total_epochs")),
        "bestTop1": _float(progress.get("best_top1")),
        "bestEpoch": _int(progress.get("best_epoch")),
        "bestCheckpoint": _str(progress.get("best_checkpoint")),
        "latestCheckpoint": _str(progress.get("latest_checkpoint")),
        "progressUpdated": _str(progress.get("updated")),
        "progressPercentage": guess.percentage,
        "estimatedRemainingSeconds": guess.remaining_seconds,
    }
    out = {k: v for k, v in fields.items() if v is not None}
    if "epoch_seconds" in progress:  # a trainer that measures: an ETA it cannot give any more is removed
        out.setdefault("estimatedRemainingSeconds", None)
    return out


TIMELINE_KEYS = ("segments", "shots", "seconds")


def _timeline_counts(predictions: list[Any]) -> dict[str, int]:
    """Items per timeline granularity over every prediction; a key no prediction carries is left out."""
    counts: dict[str, int] = {}
    for p in predictions:
        if not isinstance(p, Mapping):
            continue
        for key in TIMELINE_KEYS:
            if isinstance(p.get(key), list):
                counts[key] = counts.get(key, 0) + len(p[key])
    return counts


def results_fields(results: Mapping[str, Any] | None, report: str | None = None) -> dict[str, Any]:
    """Status fields from results.json: the number of videos, the timeline's segments/shots/seconds (when
    predicted over time), the metrics (when labels existed) and `report`, the URI of report.html when it exists."""
    if not results:
        return {}
    out: dict[str, Any] = {"reportUri": report} if report else {}
    predictions = results.get("predictions")
    if isinstance(predictions, list):
        out["videos"] = len(predictions)
    if isinstance(predictions, list) and (timeline := _timeline_counts(predictions)):
        out["timeline"] = timeline
    metrics = results.get("metrics")
    if isinstance(metrics, Mapping):
        numbers = {str(k): _float(v) for k, v in metrics.items()}
        out["metrics"] = {k: v for k, v in numbers.items() if v is not None} or None
    return out


def job_status(pytorchjob: Mapping[str, Any] | None) -> dict[str, Any]:
    """Phase, message, conditions and times of our job from its child (a PyTorchJob or a TrainJob)."""
    phase, message = phase_of(pytorchjob)
    pj_status = (pytorchjob or {}).get("status") or {}
    times = (
        _trainjob_times(pytorchjob)
        if pytorchjob is not None and pytorchjob.get("kind") == "TrainJob"
        else {"startTime": pj_status.get("startTime"), "completionTime": pj_status.get("completionTime")}
    )
    return {"phase": phase, "message": message, "conditions": mirror_conditions(pytorchjob), **times}


def queued_status(observed: Mapping[str, Any], *, queue: str | None, user_suspend: bool) -> dict[str, Any]:
    """`observed` with phase Queued where Kueue holds the child (suspended, in a queue, not by the user)."""
    if not queue or user_suspend or observed.get("phase") != "Suspended":
        return dict(observed)
    held = next(
        (c for c in observed.get("conditions") or [] if c.get("type") == "Suspended" and c.get("status") == "True"),
        None,
    )
    why = (held or {}).get("message")
    message = f"waiting for Kueue to admit it from LocalQueue {queue!r}" + (f": {why}" if why else "")
    return {**observed, "phase": "Queued", "message": message}


def without_stale_eta(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` with estimatedRemainingSeconds removed unless the phase is Running: a finished, failed,
    suspended or queued run has no ETA (progress.json's last estimate must not linger)."""
    out = dict(fields)
    if out.get("phase") != "Running":
        out["estimatedRemainingSeconds"] = None
    return out


def training_status(pytorchjob: Mapping[str, Any] | None, progress: Mapping[str, Any] | None) -> dict[str, Any]:
    """The whole observed status of a VideoTrainingJob (progress fields only when progress.json was read)."""
    return without_stale_eta({**job_status(pytorchjob), **progress_fields(progress)})


def inference_status(
    pytorchjob: Mapping[str, Any] | None, results: Mapping[str, Any] | None, report: str | None = None
) -> dict[str, Any]:
    """The whole observed status of a VideoInferenceJob (result fields once results.json exists)."""
    return {**job_status(pytorchjob), **results_fields(results, report)}


def status_diff(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning `current` into `desired` for the keys `desired` names (None removes)."""
    return {key: value for key, value in desired.items() if current.get(key) != value}


def phase_event(old: str | None, new: str | None, message: str | None) -> tuple[str, str, str] | None:
    """(type, reason, message) of the Kubernetes Event for a phase change, or None if unchanged."""
    if new is None or old == new:
        return None
    kind = "Warning" if new == "Failed" else "Normal"
    text = (f"phase {old} -> {new}" if old else f"phase {new}") + (f": {message}" if message else "")
    return kind, new, text


KSERVE_NOT_SERVED = "KServeNotServed"
KSERVE_INSTALL_HINT = "install KServe (serving.kserve.io/v1beta1 InferenceService)"


def serving_status(isvc: Mapping[str, Any] | None, *, name: str, runtime: str, served: str) -> dict[str, Any]:
    """status.serving from the InferenceService `name` (None: not there yet): its URL and Ready condition."""
    out: dict[str, Any] = {"inferenceService": name, "runtime": runtime, "checkpoint": served, "ready": False}
    if isvc is None:
        return {**out, "reason": "Creating", "message": f"creating InferenceService {name}"}
    status = isvc.get("status") or {}
    url = _str(status.get("url")) or _str((status.get("address") or {}).get("url"))
    if url:
        out["url"] = url
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") == "True":
        return {**out, "ready": True}
    reason = _str((ready or {}).get("reason")) or "NotReady"
    message = _str((ready or {}).get("message")) or f"InferenceService {name} is not ready yet"
    return {**out, "reason": reason, "message": message}


def kserve_missing_status(*, name: str, runtime: str, served: str) -> dict[str, Any]:
    """status.serving while the cluster serves no InferenceService: the job stays Succeeded, serving waits."""
    return {
        "inferenceService": name,
        "runtime": runtime,
        "checkpoint": served,
        "ready": False,
        "reason": KSERVE_NOT_SERVED,
        "message": f"inferenceservices.serving.kserve.io/v1beta1 is not served: {KSERVE_INSTALL_HINT}; "
        "serving starts once it is",
    }


def nested_diff(current: Mapping[str, Any] | None, desired: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch of one status object (status.serving): None removes it, stale keys are set to None."""
    if desired is None:
        return None
    current = current or {}
    return {**{k: None for k in current if k not in desired}, **desired}
