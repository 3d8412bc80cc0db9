"""The one interface both engines implement: what the operator needs to create, follow and suspend a child.

An `Engine` is plain data plus pure functions (no client): group/version/plural for kube.py's generic
calls, a builder, and the suspend field. The status mappers dispatch on the child's `kind`
(`autox_operator.status.phase_of`), so a child read from the API says which mapping applies.
The registry (`ENGINES`, lookups) lives in the package's __init__, which imports both engine modules.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from autox_operator import constants as C
from autox_operator.settings import OperatorSettings
from autox_video.spec import trainer_config
from autox_video.spec.common import API_VERSION, ResourcesSpec, RunPolicySpec, RuntimeSpec, StorageSpec


class JobSpec(Protocol):
    """What both resources have in common (the pod side of the spec)."""

    resources: ResourcesSpec
    storage: StorageSpec
    image: str | None
    run_policy: RunPolicySpec
    runtime: RuntimeSpec
    queue_name: str | None
    service_account_name: str | None


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


def s3_endpoint(storage: StorageSpec, settings: OperatorSettings) -> str | None:
    """The job's S3 endpoint: spec.storage.endpoint, else the operator's default."""
    return trainer_config.s3_endpoint(storage, settings.default_s3_endpoint)


def quantity(value: int | str) -> str:
    """A resource quantity as the API writes it."""
    return str(value)


def s3_env(storage: StorageSpec, settings: OperatorSettings) -> list[dict[str, Any]]:
    """S3 region, endpoint and the credentials from the job's Secret, as container env."""
    env: list[dict[str, Any]] = [{"name": "AWS_DEFAULT_REGION", "value": storage.region}]
    endpoint = s3_endpoint(storage, settings)
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    if storage.secret_ref:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": storage.secret_ref, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return env


def trainer_env(storage: StorageSpec, settings: OperatorSettings, *, job_name: str) -> list[dict[str, Any]]:
    """The trainer container's env: job name, cache dir (downloaded weights too), S3 endpoint/region,
    credentials from the Secret, the weights mirror (no PET_* names)."""
    env: list[dict[str, Any]] = [
        {"name": "AUTOX_JOB_NAME", "value": job_name},  # names the run in MLflow
        {"name": "AUTOX_CACHE_DIR", "value": C.CACHE_DIR},
        *s3_env(storage, settings),
    ]
    if settings.weights_mirror:  # `pretrained: auto` fetches from it first (clusters without internet)
        env.append({"name": "AUTOX_WEIGHTS_MIRROR", "value": settings.weights_mirror})
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    return env


def compute_resources(cpu: Any, memory: Any, gpus: int) -> dict[str, Any]:
    """requests/limits of one container: CPU requested, memory requested and limited, nvidia.com/gpu limited."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if cpu is not None:
        requests["cpu"] = quantity(cpu)
    if memory is not None:
        requests["memory"] = limits["memory"] = quantity(memory)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def container_resources(res: ResourcesSpec) -> dict[str, Any]:
    """requests/limits of one pod (node): CPU, memory, nvidia.com/gpu."""
    return compute_resources(res.cpu, res.memory, res.gpus_per_replica)


def shm_volume(res: ResourcesSpec) -> dict[str, Any]:
    """The memory-backed /dev/shm volume (data-loader workers), sized by resources.shmSize."""
    shm: dict[str, Any] = {"medium": "Memory"}
    if res.shm_size is not None:
        shm["sizeLimit"] = quantity(res.shm_size)
    return {"name": "dshm", "emptyDir": shm}


def trainer_volumes(res: ResourcesSpec, config_map: str) -> list[dict[str, Any]]:
    """The trainer pod's volumes: config.yaml from the job's ConfigMap, scratch data, /dev/shm."""
    return [
        {"name": "config", "configMap": {"name": config_map}},
        {"name": "data", "emptyDir": {}},
        shm_volume(res),
    ]


def pod_security_context() -> dict[str, Any]:
    """The trainer pod's securityContext (Pod Security "restricted"): the image's numeric non-root user,
    its group owning the volumes, and the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": C.TRAINER_UID,
        "runAsGroup": C.TRAINER_UID,
        "fsGroup": C.TRAINER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The trainer container's securityContext (Pod Security "restricted"): no escalation, no capabilities.

    The root filesystem stays writable: HOME (torch/mmengine caches) lives in the image; /data and /dev/shm
    are emptyDirs.
    """
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


VOLUME_MOUNTS = [
    {"name": "config", "mountPath": C.CONFIG_DIR, "readOnly": True},
    {"name": "data", "mountPath": C.DATA_DIR},
    {"name": "dshm", "mountPath": C.SHM_DIR},
]


def identity(spec: JobSpec) -> dict[str, Any]:
    """The pod spec fields that give the pods spec.serviceAccountName's identity (workload identity)."""
    return {"serviceAccountName": spec.service_account_name} if spec.service_account_name else {}


def configmap_name(owner: Owner, suffix: str) -> str:
    """The ConfigMap of the child named with the same `suffix`."""
    return child_name(owner.name, f"{suffix}{C.CONFIGMAP_SUFFIX}")


def queue_labels(spec: JobSpec) -> dict[str, str]:
    """Kueue's LocalQueue label, when spec.queueName is set."""
    return {C.LABEL_QUEUE: spec.queue_name} if spec.queue_name else {}


class Builder(Protocol):
    """build(owner, spec, args=..., settings=..., suffix=...) -> the child manifest (a plain dict)."""

    def __call__(
        self, owner: Any, spec: JobSpec, *, args: list[str], settings: OperatorSettings, suffix: str = ""
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Engine:
    """One way to run the pods: a Kubeflow custom resource the operator creates and follows."""

    name: str  # pytorchjob | trainjob: status.engine and spec.runtime.backend
    group: str
    version: str
    plural: str
    kind: str
    build: Builder
    is_suspended: Callable[[Mapping[str, Any]], bool]  # the child's own suspend field (observed state)
    suspend_patch: Callable[[bool], dict[str, Any]]  # the merge patch that sets it
    pod_templates: Callable[[Mapping[str, Any]], list[dict[str, Any]]]  # where pod labels go, in a built child
    install_hint: str  # what to install when it is not served

    @property
    def api_version(self) -> str:
        """apiVersion of the child objects."""
        return f"{self.group}/{self.version}"
