"""The trainer.kubeflow.org/v1alpha1 TrainJob engine (Kubeflow Trainer v2, on JobSet).

A TrainJob names a ClusterTrainingRuntime (spec.runtime.name, default the chart's `autox-video`) and
sets what Trainer lets a job set: `trainer` (image, command, args, env, numNodes, numProcPerNode,
resourcesPerNode), and through `runtimePatches` the pods' labels, nodeSelector, tolerations, volumes
and the trainer container's volumeMounts. Trainer's torch plugin sets PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT itself and rejects a TrainJob whose env sets them.
Every field but spec.suspend is immutable once created.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from autox_operator import constants as C
from autox_operator.children.base import (
    VOLUME_MOUNTS,
    Engine,
    JobSpec,
    Owner,
    child_labels,
    child_metadata,
    child_name,
    configmap_name,
    container_resources,
    container_security_context,
    identity,
    pod_security_context,
    queue_labels,
    trainer_env,
    trainer_volumes,
)
from autox_operator.settings import OperatorSettings


def runtime_name(spec: JobSpec, settings: OperatorSettings) -> str:
    """The ClusterTrainingRuntime a job's TrainJob references: spec.runtime.name, else the operator's."""
    return spec.runtime.name or settings.runtime_name


def _pod_patch(owner: Owner, spec: JobSpec, config_map: str) -> dict[str, Any]:
    res = spec.resources
    pod: dict[str, Any] = {
        # Set here too, not only in the chart's runtime: a job may name another runtime (torch-distributed).
        "securityContext": pod_security_context(),
        # Merged by name into the runtime's: the per-job ConfigMap, and shmSize over the runtime's /dev/shm.
        "volumes": trainer_volumes(res, config_map),
        "containers": [
            {
                "name": C.TRAINER_NODE,
                "securityContext": container_security_context(),
                "volumeMounts": copy.deepcopy(VOLUME_MOUNTS),
            }
        ],
    }
    pod.update(identity(spec))
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations]
    return {"metadata": {"labels": child_labels(owner)}, "spec": pod}


def build_trainjob(
    owner: Owner, spec: JobSpec, *, args: list[str], settings: OperatorSettings, suffix: str = C.PYTORCHJOB_SUFFIX
) -> dict[str, Any]:
    """A TrainJob: numNodes = replicas, numProcPerNode = GPUs per replica (1 on CPU), our entrypoint,
    and the per-job ConfigMap, placement and pod labels as a runtime patch."""
    res = spec.resources
    trainer: dict[str, Any] = {
        "image": spec.image or settings.trainer_image,
        "command": [C.ENTRYPOINT],
        "args": list(args),
        "env": trainer_env(spec.storage, settings, job_name=f"{owner.name}{suffix}"),  # a trial's: <job>-tNNNN
        "numNodes": res.replicas,
        "numProcPerNode": max(res.gpus_per_replica, 1),
    }
    resources = container_resources(res)
    if resources:
        trainer["resourcesPerNode"] = resources
    patch = {
        "manager": C.PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": C.TRAINER_NODE,
                            "template": {"spec": {"template": _pod_patch(owner, spec, configmap_name(owner, suffix))}},
                        }
                    ]
                }
            }
        },
    }
    body: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": C.TRAINJOB_GROUP,
            "kind": C.RUNTIME_KIND,
            "name": runtime_name(spec, settings),
        },
        # Kueue expects a queued job to be created suspended: it admits the job by un-suspending it.
        "suspend": spec.run_policy.suspend or bool(spec.queue_name),
        "trainer": trainer,
        "runtimePatches": [patch],
    }
    if spec.run_policy.active_deadline_seconds is not None:
        body["activeDeadlineSeconds"] = spec.run_policy.active_deadline_seconds
    metadata = child_metadata(owner, child_name(owner.name, suffix))
    metadata["labels"].update(queue_labels(spec))
    return {
        "apiVersion": f"{C.TRAINJOB_GROUP}/{C.TRAINJOB_VERSION}",
        "kind": C.TRAINJOB_KIND,
        "metadata": metadata,
        "spec": body,
    }


def is_suspended(child: Mapping[str, Any]) -> bool:
    """spec.suspend of the TrainJob as it is (Kueue flips it on admission and preemption)."""
    return bool((child.get("spec") or {}).get("suspend"))


def suspend_patch(suspend: bool) -> dict[str, Any]:
    """The merge patch that suspends (True) or resumes (False) a TrainJob: its only mutable field."""
    return {"spec": {"suspend": suspend}}


def pod_templates(child: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pod template patches of a built TrainJob, for labels shared by all pods."""
    return [
        job["template"]["spec"]["template"]
        for patch in child["spec"].get("runtimePatches") or []
        if patch.get("manager") == C.PATCH_MANAGER
        for job in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    ]


ENGINE = Engine(
    name="trainjob",
    group=C.TRAINJOB_GROUP,
    version=C.TRAINJOB_VERSION,
    plural=C.TRAINJOB_PLURAL,
    kind=C.TRAINJOB_KIND,
    build=build_trainjob,
    is_suspended=is_suspended,
    suspend_patch=suspend_patch,
    pod_templates=pod_templates,
    install_hint="Kubeflow Trainer v2 (trainer.kubeflow.org/v1alpha1 TrainJob)",
)


# Our status fields -> TrainJob trainerStatus metric names (values as strings, as KEP-2779 has them).
TRAINER_METRICS = (
    ("epoch", "epoch"),
    ("total_epochs", "totalEpochs"),
    ("best_top1", "bestTop1"),
    ("best_epoch", "bestEpoch"),
)
INT32_MAX = 2**31 - 1


def trainer_status(fields: Mapping[str, Any], *, now: str) -> dict[str, Any] | None:
    """The TrainJob's status.trainerStatus (KEP-2779 shape) from our job's status fields (progress.json's
    view), stamped with progressUpdated (else `now`); None while there is nothing to report."""
    metrics = [
        {"name": name, "value": str(fields[key])} for name, key in TRAINER_METRICS if fields.get(key) is not None
    ]
    percentage, remaining = fields.get("progressPercentage"), fields.get("estimatedRemainingSeconds")
    if percentage is None and remaining is None and not metrics:
        return None
    out: dict[str, Any] = {"lastUpdatedTime": fields.get("progressUpdated") or now, "metrics": metrics}
    if isinstance(percentage, (int, float)):
        out["progressPercentage"] = min(max(int(percentage), 0), 100)
    if isinstance(remaining, (int, float)):
        out["estimatedRemainingSeconds"] = min(max(int(remaining), 0), INT32_MAX)
    return out


def trainer_status_patch(trainjob: Mapping[str, Any], fields: Mapping[str, Any], *, now: str) -> dict[str, Any] | None:
    """The status merge patch that brings the TrainJob's trainerStatus up to date; None when it already is."""
    desired = trainer_status(fields, now=now)
    if desired is None:
        return None
    current = dict((trainjob.get("status") or {}).get("trainerStatus") or {})
    if {k: v for k, v in current.items() if k != "lastUpdatedTime"} == {
        k: v for k, v in desired.items() if k != "lastUpdatedTime"
    } and current.get("lastUpdatedTime"):
        return None
    # A merge patch replaces the atomic metrics list; keys we no longer know are removed (None).
    return {"status": {"trainerStatus": {**{k: None for k in current}, **desired}}}
