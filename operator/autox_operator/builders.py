"""Pure manifest builders: a custom resource in, child objects (plain dicts) out.

No Kubernetes client, no kopf, no I/O: names, labels and owner references are derived
deterministically from the owner, so building twice gives the same objects.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from autox_operator import constants as C
from autox_operator.settings import OperatorSettings
from autox_video.config import Config
from autox_video.spec import (
    API_VERSION,
    ResourcesSpec,
    RunPolicySpec,
    StorageSpec,
    VideoInferenceJobSpec,
    VideoTrainingJobSpec,
    trainer_config,
)

# Re-exported: the handlers and the search name output locations through this module.
from autox_video.spec.trainer_config import normalise_prefix as normalise_prefix
from autox_video.spec.trainer_config import results_uri as results_uri
from autox_video.spec.trainer_config import trial_prefix as trial_prefix


@dataclass(frozen=True)
class Owner:
    """The custom resource that owns the children."""

    kind: str
    name: str
    namespace: str
    uid: str
    api_version: str = API_VERSION

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(
            kind=body["kind"],
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            api_version=body.get("apiVersion", API_VERSION),
        )


class JobSpec(Protocol):
    """What both resources have in common (the pod side of the spec)."""

    resources: ResourcesSpec
    storage: StorageSpec
    image: str | None
    run_policy: RunPolicySpec


def _short_hash(text: str, size: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:size]


def child_name(owner_name: str, suffix: str = "") -> str:
    """A DNS-1035 name for a child: `<owner><suffix>`, shortened with a hash when too long."""
    base = re.sub(r"[^a-z0-9-]", "-", owner_name.lower())
    if not base[:1].isalpha():
        base = f"j-{base}"
    name = f"{base}{suffix}"
    if len(name) <= C.MAX_CHILD_NAME and name == f"{owner_name}{suffix}":
        return name
    keep = C.MAX_CHILD_NAME - len(suffix) - 9
    return f"{base[:keep].rstrip('-')}-{_short_hash(owner_name)}{suffix}"


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends) that stays unique for long names."""
    if len(text) <= 63:
        return text
    return f"{text[:54].rstrip('-.')}-{_short_hash(text)}"


def child_labels(owner: Owner) -> dict[str, str]:
    return {
        C.LABEL_NAME: C.APP_NAME,
        C.LABEL_MANAGED_BY: C.MANAGED_BY,
        C.LABEL_JOB_KIND: owner.kind,
        C.LABEL_JOB_NAME: label_value(owner.name),
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(owner: Owner, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": child_labels(owner),
        "ownerReferences": [owner_reference(owner)],
    }


def progress_uri(output: str) -> str:
    return f"{normalise_prefix(output)}{C.PROGRESS_FILE}"


def s3_endpoint(storage: StorageSpec, settings: OperatorSettings) -> str | None:
    """The job's S3 endpoint: spec.storage.endpoint, else the operator's default."""
    return trainer_config.s3_endpoint(storage, settings.default_s3_endpoint)


# --- config.yaml: the same builders `autox-video run` uses (autox_video.spec.trainer_config) -----


def build_training_config(spec: VideoTrainingJobSpec, settings: OperatorSettings) -> Config:
    """The trainer's config.yaml for a VideoTrainingJob (validated by autox_video.config)."""
    return trainer_config.training_config(spec, default_endpoint=settings.default_s3_endpoint)


def trial_suffix(number: int) -> str:
    """`-tNNNN`: the name suffix of trial `number`'s children."""
    return C.TRIAL_SUFFIX.format(number=number)


def build_trial_config(
    spec: VideoTrainingJobSpec, settings: OperatorSettings, number: int, overrides: Mapping[str, Any]
) -> Config:
    """Trial `number`'s config.yaml: the job's config with the trial's values, in output/trials/NNNN/."""
    return trainer_config.trial_config(spec, number, overrides, default_endpoint=settings.default_s3_endpoint)


def build_inference_config(
    spec: VideoInferenceJobSpec,
    settings: OperatorSettings,
    *,
    checkpoint: str,
    training: VideoTrainingJobSpec | None = None,
) -> Config:
    """The trainer's config.yaml for a VideoInferenceJob; clip geometry, backbone and classes
    default to those of the referenced training job."""
    return trainer_config.inference_config(
        spec, checkpoint=checkpoint, training=training, default_endpoint=settings.default_s3_endpoint
    )


def build_configmap(owner: Owner, config: Config, *, suffix: str = C.PYTORCHJOB_SUFFIX) -> dict[str, Any]:
    """The ConfigMap holding config.yaml for the PyTorchJob named with the same `suffix`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, child_name(owner.name, f"{suffix}{C.CONFIGMAP_SUFFIX}")),
        "data": {C.CONFIG_KEY: config.to_yaml()},
    }


# --- PyTorchJob ----------------------------------------------------------------------------------


def _quantity(value: int | str) -> str:
    return str(value)


def _env(storage: StorageSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "AUTOX_CACHE_DIR", "value": C.CACHE_DIR},
        {"name": "AWS_DEFAULT_REGION", "value": storage.region},
    ]
    endpoint = s3_endpoint(storage, settings)
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    if storage.secret_ref:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": storage.secret_ref, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    return env


def _container_resources(res: ResourcesSpec) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu is not None:
        requests["cpu"] = _quantity(res.cpu)
    if res.memory is not None:
        requests["memory"] = limits["memory"] = _quantity(res.memory)
    if res.gpus_per_replica:
        limits["nvidia.com/gpu"] = str(res.gpus_per_replica)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _pod_template(
    owner: Owner, spec: JobSpec, args: list[str], config_map: str, settings: OperatorSettings
) -> dict[str, Any]:
    res = spec.resources
    container: dict[str, Any] = {
        "name": C.PYTORCH_CONTAINER,
        "image": spec.image or settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [C.ENTRYPOINT],
        "args": args,
        "env": _env(spec.storage, settings),
        "resources": _container_resources(res),
        "volumeMounts": [
            {"name": "config", "mountPath": C.CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": C.DATA_DIR},
            {"name": "dshm", "mountPath": C.SHM_DIR},
        ],
    }
    shm: dict[str, Any] = {"medium": "Memory"}
    if res.shm_size is not None:
        shm["sizeLimit"] = _quantity(res.shm_size)
    pod: dict[str, Any] = {
        "containers": [container],
        "volumes": [
            {"name": "config", "configMap": {"name": config_map}},
            {"name": "data", "emptyDir": {}},
            {"name": "dshm", "emptyDir": shm},
        ],
    }
    if res.node_selector:
        pod["nodeSelector"] = dict(res.node_selector)
    if res.tolerations:
        pod["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in res.tolerations]
    return {"metadata": {"labels": child_labels(owner)}, "spec": pod}


def _run_policy(policy: RunPolicySpec) -> dict[str, Any]:
    out: dict[str, Any] = {"backoffLimit": policy.backoff_limit, "suspend": policy.suspend}
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
    config_map = child_name(owner.name, f"{suffix}{C.CONFIGMAP_SUFFIX}")
    template = _pod_template(owner, spec, args, config_map, settings)
    replicas = {"Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}}
    if spec.resources.replicas > 1:
        replicas["Worker"] = {
            "replicas": spec.resources.replicas - 1,
            "restartPolicy": "OnFailure",
            "template": copy.deepcopy(template),
        }
    return {
        "apiVersion": f"{C.PYTORCHJOB_GROUP}/{C.PYTORCHJOB_VERSION}",
        "kind": C.PYTORCHJOB_KIND,
        "metadata": child_metadata(owner, child_name(owner.name, suffix)),
        "spec": {
            "nprocPerNode": str(max(spec.resources.gpus_per_replica, 1)),
            "runPolicy": _run_policy(spec.run_policy),
            "pytorchReplicaSpecs": replicas,
        },
    }


TRAIN_ARGS = ["train", "--config", C.CONFIG_PATH]
TEST_ARGS = ["test", "--config", C.CONFIG_PATH]


def build_trial_children(
    owner: Owner, spec: VideoTrainingJobSpec, config: Config, number: int, settings: OperatorSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ConfigMap, PyTorchJob) of trial `number`: `<job>-tNNNN`, labelled with the trial number."""
    suffix = trial_suffix(number)
    configmap = build_configmap(owner, config, suffix=suffix)
    pytorchjob = build_pytorchjob(owner, spec, args=TRAIN_ARGS, settings=settings, suffix=suffix)
    label = {C.LABEL_TRIAL: f"{number:04d}"}
    for meta in (configmap["metadata"], pytorchjob["metadata"]):
        meta["labels"].update(label)
    for replica in pytorchjob["spec"]["pytorchReplicaSpecs"].values():
        replica["template"]["metadata"]["labels"].update(label)
    return configmap, pytorchjob
