"""Pydantic models of the custom resources (group autox.io, version v1alpha1); torch-free.

The CRDs in crds/ are generated from these models: `make crds`.
"""

from __future__ import annotations

from autox_video.spec.common import (
    API_VERSION,
    GROUP,
    TERMINAL_PHASES,
    VERSION,
    Condition,
    Phase,
    ResourceInfo,
    ResourcesSpec,
    RunPolicySpec,
    StorageSpec,
    Toleration,
)
from autox_video.spec.inference import (
    INFERENCE,
    InferenceDataset,
    InferenceModel,
    InferenceParams,
    VideoInferenceJobSpec,
    VideoInferenceJobStatus,
)
from autox_video.spec.training import (
    TRAINING,
    TrainingDataset,
    TrainingModel,
    TrainingParams,
    VideoTrainingJobSpec,
    VideoTrainingJobStatus,
)

RESOURCES: tuple[ResourceInfo, ...] = (TRAINING, INFERENCE)

__all__ = [
    "API_VERSION",
    "GROUP",
    "INFERENCE",
    "RESOURCES",
    "TERMINAL_PHASES",
    "TRAINING",
    "VERSION",
    "Condition",
    "InferenceDataset",
    "InferenceModel",
    "InferenceParams",
    "Phase",
    "ResourceInfo",
    "ResourcesSpec",
    "RunPolicySpec",
    "StorageSpec",
    "Toleration",
    "TrainingDataset",
    "TrainingModel",
    "TrainingParams",
    "VideoInferenceJobSpec",
    "VideoInferenceJobStatus",
    "VideoTrainingJobSpec",
    "VideoTrainingJobStatus",
]
