"""Pieces shared by both custom resources: storage, resources, run policy, conditions, phases.

These pydantic models are the source of truth for the CRD schemas (`make crds`): every
field carries its description, bounds, enum and default here. Torch-free by design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "autox.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

Phase = Literal["Pending", "Queued", "Running", "Succeeded", "Failed", "Suspended"]
# Which Kubeflow API runs the pods: Training Operator v1 PyTorchJob or Trainer v2 TrainJob.
Backend = Literal["auto", "pytorchjob", "trainjob"]
Engine = Literal["pytorchjob", "trainjob"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})

# A Kubernetes object name (DNS-1123 subdomain), e.g. a Secret or a VideoTrainingJob.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# s3://bucket[/key]: where pods read and write; local paths do not survive a pod.
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
# resource.Quantity, as controller-gen writes it for int-or-string quantities.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

Quantity = int | str


def _quantity(description: str) -> Any:
    return Field(None, description=description, json_schema_extra={"x-autox-quantity": True})


def sub(model: type[BaseModel], description: str) -> Any:
    """A nested section that may be omitted: every field inside has a default (CRD default `{}`)."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


class CamelModel(BaseModel):
    """camelCase in the custom resource, snake_case in Python; unknown fields are errors."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class StorageSpec(CamelModel):
    """Where S3 lives and which Secret holds its credentials."""

    endpoint: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="S3 endpoint URL (MinIO, Ceph, ...); omit for AWS or the operator's default endpoint.",
    )
    region: str = Field("us-east-1", min_length=1, description="S3 region (AWS_DEFAULT_REGION in the pods).")
    secret_ref: str | None = Field(
        None,
        max_length=253,
        pattern=NAME_PATTERN,
        description=(
            "Name of a Secret in the job's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
            "omit to use the pods' ambient credentials (e.g. IRSA)."
        ),
    )


class Toleration(CamelModel):
    """A pod toleration (same fields as core/v1 Toleration)."""

    key: str | None = Field(None, description="Taint key the toleration applies to; empty matches all keys.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="Taint value to match (with operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class ResourcesSpec(CamelModel):
    """Pods, GPUs and the compute each replica (pod) gets."""

    replicas: int = Field(1, ge=1, description="Pods (nodes): 1 Master plus replicas-1 Workers.")
    gpus_per_replica: int = Field(
        1, ge=0, description="GPUs per pod (nvidia.com/gpu); torchrun runs one process per GPU (0 = one CPU process)."
    )
    cpu: Quantity | None = _quantity('CPU request per pod, e.g. "16" or 16.')
    memory: Quantity | None = _quantity("Memory request and limit per pod, e.g. 64Gi.")
    shm_size: Quantity | None = _quantity("Size limit of the memory-backed /dev/shm (data-loader workers).")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must match.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Taints the pods tolerate.")


class RunPolicySpec(CamelModel):
    """Copied into the PyTorchJob's runPolicy (a TrainJob takes suspend and activeDeadlineSeconds; its
    runtime's JobSet failure policy and TTL apply instead of backoffLimit and ttlSecondsAfterFinished)."""

    backoff_limit: int = Field(3, ge=0, description="Pod restarts allowed before the job is marked Failed.")
    active_deadline_seconds: int | None = Field(
        None, ge=1, description="Seconds the job may run before it is terminated (null = no deadline)."
    )
    ttl_seconds_after_finished: int | None = Field(
        None, ge=0, description="Delete the PyTorchJob this many seconds after it finished (null = keep)."
    )
    suspend: bool = Field(
        False, description="true suspends the job (pods are deleted); false resumes it from the last checkpoint."
    )


class RuntimeSpec(CamelModel):
    """Which engine runs the pods (Kubeflow Training Operator v1 or Trainer v2) and, for Trainer, its runtime."""

    backend: Backend | None = Field(
        None,
        description=(
            "pytorchjob (kubeflow.org/v1 PyTorchJob), trainjob (trainer.kubeflow.org/v1alpha1 TrainJob) or auto "
            "(TrainJob when served, else PyTorchJob); default: the operator's setting (chart value trainer.backend)."
        ),
    )
    name: str | None = Field(
        None,
        max_length=253,
        pattern=NAME_PATTERN,
        description=(
            "ClusterTrainingRuntime a TrainJob runs on, e.g. torch-distributed; default: the operator's "
            "(the chart's own autox-video runtime)."
        ),
    )


class JobSpecBase(CamelModel):
    """The fields both job kinds share: where the pods run, S3 access, image and run policy."""

    resources: ResourcesSpec = sub(ResourcesSpec, "Pods, GPUs, CPU, memory and scheduling constraints.")
    storage: StorageSpec = sub(StorageSpec, "S3 endpoint, region and credentials Secret.")
    image: str | None = Field(None, min_length=1, description="Trainer image; default: the operator's trainer image.")
    run_policy: RunPolicySpec = sub(RunPolicySpec, "Retries, deadline, TTL and suspend/resume.")
    runtime: RuntimeSpec = sub(RuntimeSpec, "Engine (PyTorchJob or TrainJob) and Trainer runtime.")
    service_account_name: str | None = Field(
        None,
        max_length=253,
        pattern=NAME_PATTERN,
        description=(
            "ServiceAccount (in the job's namespace) the trainer pods run under, e.g. one bound to an AWS role "
            "(IRSA, EKS Pod Identity) so they reach S3 with no storage.secretRef; default: the namespace's "
            "default ServiceAccount."
        ),
    )
    queue_name: str | None = Field(
        None,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "Kueue LocalQueue: the child gets the label kueue.x-k8s.io/queue-name and is created suspended; "
            "Kueue starts it on admission (phase Queued until then)."
        ),
    )


class Condition(CamelModel):
    """A status condition (the Kubernetes convention)."""

    type: str = Field(description="Condition type, e.g. Created, Running, Succeeded, Failed, Suspended, Waiting.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str | None = Field(None, description="One CamelCase word saying why.")
    message: str | None = Field(None, description="What happened, and what to do about it.")
    last_transition_time: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the status last changed."
    )


class CommonStatus(CamelModel):
    """Status fields both resources share."""

    phase: Phase | None = Field(None, description="Pending, Queued, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations of the job's state.")
    engine: Engine | None = Field(None, description="What runs the pods: pytorchjob or trainjob.")
    child: str | None = Field(None, description="Name of the PyTorchJob or TrainJob that runs the pods.")
    pytorch_job: str | None = Field(None, description="Name of the PyTorchJob that runs the pods (engine pytorchjob).")
    config_map: str | None = Field(None, description="Name of the ConfigMap holding the trainer's config.yaml.")
    start_time: str | None = Field(None, json_schema_extra={"format": "date-time"}, description="When pods started.")
    completion_time: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the job finished."
    )
    observed_generation: int | None = Field(None, description="metadata.generation the operator last acted on.")
    message: str | None = Field(None, description="Why the job failed or waits, and what to fix.")


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    type: str
    json_path: str
    description: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    """What crdgen needs to render one CustomResourceDefinition."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: tuple[PrinterColumn, ...] = ()
    categories: tuple[str, ...] = ("autox",)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"
