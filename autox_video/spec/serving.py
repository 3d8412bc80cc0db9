"""spec.serving / status.serving of a VideoTrainingJob: serve the best weights as a KServe InferenceService."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from autox_video.spec.common import NAME_PATTERN, CamelModel, Quantity, _quantity, sub

# autox: our `autox-video serve` on the checkpoint; triton: the ONNX export on Triton, `serve` as transformer.
ServingRuntime = Literal["autox", "triton"]

# The export a training run writes under its output (`export` config key), read by runtime triton.
EXPORT_DIR = "export/"
TRITON_DIR = "triton/"
TRITON_MODEL = "autox_video"  # the model's name in the Triton repository
MODEL_JSON = "model.json"


def export_files(name: str = TRITON_MODEL) -> list[str]:
    """The files of an export, relative to its folder; model.json last (its presence means the rest is there)."""
    return ["model.onnx", f"{TRITON_DIR}{name}/config.pbtxt", f"{TRITON_DIR}{name}/labels.txt",
            f"{TRITON_DIR}{name}/1/model.onnx", MODEL_JSON]  # fmt: skip


class ServingResources(CamelModel):
    """Compute of each serving pod (the predictor; a triton transformer gets the CPU and memory, no GPU)."""

    cpu: Quantity | None = _quantity('CPU request per pod, e.g. "2".')
    memory: Quantity | None = _quantity("Memory request and limit per pod, e.g. 8Gi.")
    gpus: int = Field(0, ge=0, description="GPUs per predictor pod (nvidia.com/gpu); 0 serves on CPU.")


class ServingSpec(CamelModel):
    """Serve the job's best weights once it succeeds: a KServe InferenceService <job>-serve owned by the job."""

    # CEL rule the API server checks at `kubectl apply` (the model checks the same in Python).
    model_config = {
        **CamelModel.model_config,
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxReplicas) || !has(self.minReplicas) || self.maxReplicas >= self.minReplicas",
                    "message": "maxReplicas must be at least minReplicas",
                }
            ]
        },
    }

    enabled: bool = Field(True, description="false deletes the InferenceService (and creates none).")
    runtime: ServingRuntime = Field(
        "autox",
        description=(
            "autox: `autox-video serve` on the best checkpoint (trainer image); triton: the ONNX export the "
            "training writes under output/export/ on KServe's Triton runtime, with `autox-video serve` as "
            "transformer (video decoding)."
        ),
    )
    min_replicas: int = Field(1, ge=0, description="Fewest predictor pods (0 scales to zero when idle).")
    max_replicas: int | None = Field(None, ge=1, description="Most predictor pods; default: KServe's.")
    resources: ServingResources = sub(ServingResources, "CPU, memory and GPUs of each serving pod.")
    service_account_name: str | None = Field(
        None,
        max_length=253,
        pattern=NAME_PATTERN,
        description=(
            "ServiceAccount of the serving pods (default: spec.serviceAccountName); runtime triton: the one "
            "whose Secret KServe's storage initializer reads the export with (see KServe's S3 docs)."
        ),
    )

    @model_validator(mode="after")
    def _replicas(self) -> ServingSpec:
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError(f"maxReplicas {self.max_replicas} is below minReplicas {self.min_replicas}")
        return self


class ServingStatus(CamelModel):
    """The InferenceService serving the job, as the operator last saw it."""

    inference_service: str | None = Field(None, description="Name of the InferenceService (<job>-serve).")
    runtime: ServingRuntime | None = Field(None, description="autox or triton.")
    checkpoint: str | None = Field(None, description="The weights served (autox) or the export (triton).")
    url: str | None = Field(None, description="URL of the endpoint (Open Inference Protocol v2).")
    ready: bool = Field(False, description="Whether the InferenceService reports Ready.")
    reason: str | None = Field(None, description="Why it is not ready, e.g. KServeNotServed.")
    message: str | None = Field(None, description="What to do about it.")
