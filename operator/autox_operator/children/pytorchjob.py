"""The kubeflow.org/v1 PyTorchJob engine (Kubeflow Training Operator v1, maintained on release-1.9)."""

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


def _pod_template(
    owner: Owner, spec: JobSpec, args: list[str], suffix: str, settings: OperatorSettings
) -> dict[str, Any]:
    res = spec.resources
    container: dict[str, Any] = {
        "name": C.PYTORCH_CONTAINER,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [C.ENTRYPOINT],
        "args": args,
        "env": trainer_env(spec.storage, settings, job_name=f"{owner.name}{suffix}"),
        "resources": container_resources(res),
        "volumeMounts": copy.deepcopy(VOLUME_MOUNTS),
        "securityContext": container_security_context(),
    }
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": trainer_volumes(res, configmap_name(owner, suffix)),
    }
    pod.update(identity(spec))
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations]
    return {"metadata": {"labels": child_labels(owner)}, "spec": pod}


def _run_policy(spec: JobSpec) -> dict[str, Any]:
    policy = spec.run_policy
    # Kueue expects a queued job to be created suspended: it admits the job by un-suspending it.
    suspend = policy.suspend or bool(spec.queue_name)
    out: dict[str, Any] = {"backoffLimit": policy.backoff_limit, "suspend": suspend}
    if policy.active_deadline_seconds is not None:
        out["activeDeadlineSeconds"] = policy.active_deadline_seconds
    if policy.ttl_seconds_after_finished is not None:
        out["ttlSecondsAfterFinished"] = policy.ttl_seconds_after_finished
    return out


def build_pytorchjob(
    owner: Owner, spec: JobSpec, *, args: list[str], settings: OperatorSettings, suffix: str = C.PYTORCHJOB_SUFFIX
) -> dict[str, Any]:
    """A kubeflow.org/v1 PyTorchJob: one Master pod, plus replicas-1 Workers; torchrun runs one
    process per GPU in each pod (nprocPerNode), the pods' RANK is the node rank."""
    template = _pod_template(owner, spec, args, suffix, settings)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if spec.resources.replicas > 1:
        replicas["Worker"] = {
            "replicas": spec.resources.replicas - 1,
            "restartPolicy": "OnFailure",
            "template": copy.deepcopy(template),
        }
    metadata = child_metadata(owner, child_name(owner.name, suffix))
    metadata["labels"].update(queue_labels(spec))
    return {
        "apiVersion": f"{C.PYTORCHJOB_GROUP}/{C.PYTORCHJOB_VERSION}",
        "kind": C.PYTORCHJOB_KIND,
        "metadata": metadata,
        "spec": {
            "nprocPerNode": str(max(spec.resources.gpus_per_replica, 1)),
            "runPolicy": _run_policy(spec),
            "pytorchReplicaSpecs": replicas,
        },
    }


def is_suspended(child: Mapping[str, Any]) -> bool:
    """spec.runPolicy.suspend of the PyTorchJob as it is (Kueue flips it on admission and preemption)."""
    return bool(((child.get("spec") or {}).get("runPolicy") or {}).get("suspend"))


def suspend_patch(suspend: bool) -> dict[str, Any]:
    """The merge patch that suspends (True) or resumes (False) a PyTorchJob."""
    return {"spec": {"runPolicy": {"suspend": suspend}}}


def pod_templates(child: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pod templates of a PyTorchJob (Master, Worker), for labels shared by all pods."""
    return [r["template"] for r in child["spec"]["pytorchReplicaSpecs"].values()]


ENGINE = Engine(
    name="pytorchjob",
    group=C.PYTORCHJOB_GROUP,
    version=C.PYTORCHJOB_VERSION,
    plural=C.PYTORCHJOB_PLURAL,
    kind=C.PYTORCHJOB_KIND,
    build=build_pytorchjob,
    is_suspended=is_suspended,
    suspend_patch=suspend_patch,
    pod_templates=pod_templates,
    install_hint="the Kubeflow Training Operator v1 (kubeflow.org/v1 PyTorchJob)",
)
