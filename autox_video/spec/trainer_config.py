"""The trainer's config.yaml for a job spec: the one builder the operator (ConfigMap) and `autox-video run` share.

Pure and torch-free: a spec in, a validated `autox_video.config.Config` out, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autox_video.config import Config, build_config
from autox_video.families import FAMILY_KEYS
from autox_video.spec.common import StorageSpec
from autox_video.spec.inference import VideoInferenceJobSpec
from autox_video.spec.search import SearchConfig
from autox_video.spec.training import VideoTrainingJobSpec

# TrainingParams field -> config.yaml key, where the names differ (the rest are the same in snake_case).
TRAINING_KEY_RENAMES = {"epochs": "epoch", "batch_size_per_gpu": "videos_per_gpu", "eval_interval": "evaluation"}
INFERENCE_KEY_RENAMES = {"batch_size_per_gpu": "test_batch_size"}
# Clip geometry an inference job inherits from its training job unless it sets its own.
INHERITED_KEYS = ("video_length", "clip_len", "frame_interval", "img_size")
RESULTS_FILE = "results.json"


def normalise_prefix(uri: str) -> str:
    """`uri` with a trailing slash (a prefix)."""
    return uri if uri.endswith("/") else f"{uri}/"


def results_uri(output: str) -> str:
    """Where an inference job writes results.json: `output`, or `output/results.json` for a prefix or a bare bucket."""
    if output.endswith("/") or "/" not in output.removeprefix("s3://"):
        return f"{output.rstrip('/')}/{RESULTS_FILE}"
    return output


def trial_prefix(output: str, number: int) -> str:
    """output/trials/NNNN/: the trial's work_dir (the local search's layout)."""
    return f"{normalise_prefix(output)}trials/{number:04d}/"


def s3_endpoint(storage: StorageSpec, default_endpoint: str | None = None) -> str | None:
    """The job's S3 endpoint: spec.storage.endpoint, else the given default (the operator's setting)."""
    return storage.endpoint or default_endpoint


def training_values(spec: VideoTrainingJobSpec, *, default_endpoint: str | None = None) -> dict[str, Any]:
    """The config.yaml keys of a VideoTrainingJob spec, before validation."""
    ds = spec.dataset
    # Family keys the spec leaves out (or null) stay out: the config validator fills them from the
    # (trial's) backbone. As in config.yaml, gradClip set to null means no clipping.
    given = spec.training.model_fields_set
    params = {
        TRAINING_KEY_RENAMES.get(k, k): v
        for k, v in spec.training.model_dump().items()
        if k not in FAMILY_KEYS or (k in given and (v is not None or k == "grad_clip"))
    }
    # Runtime triton serves output/export/: the trainer writes it once the best checkpoint is final.
    serving = spec.serving
    exports = {"export": ["onnx"]} if serving is not None and serving.enabled and serving.runtime == "triton" else {}
    return {
        **exports,
        "data_root": ds.videos,
        "ann_file_train": ds.train,
        "ann_file_val": ds.val,
        "class_names": ds.class_names,
        "work_dir": normalise_prefix(spec.output),
        "backbone": spec.model.backbone,
        "pretrained": spec.model.pretrained,
        **params,
        "s3_endpoint_url": s3_endpoint(spec.storage, default_endpoint),
        "s3_region": spec.storage.region,
    }


def training_config(
    spec: VideoTrainingJobSpec,
    *,
    default_endpoint: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The trainer's config.yaml for a VideoTrainingJob (`overrides`: config keys over the spec's, local runs)."""
    values = training_values(spec, default_endpoint=default_endpoint)
    return build_config(values, dict(overrides or {}), source="VideoTrainingJob spec")


def trial_config(
    spec: VideoTrainingJobSpec, number: int, overrides: Mapping[str, Any], *, default_endpoint: str | None = None
) -> Config:
    """Trial `number`'s config.yaml: the job's config with the trial's values, in output/trials/NNNN/
    (a search that weighs speed: `measure`, so the trial times its own model where it trained)."""
    values = {**training_values(spec, default_endpoint=default_endpoint), "work_dir": trial_prefix(spec.output, number)}
    if spec.search is not None and measures(spec.search):
        values["measure"] = spec.search.latency.model_dump()
    return build_config(values, dict(overrides), source=f"VideoTrainingJob spec, trial {number}")


def measures(search: SearchConfig) -> bool:
    """Whether a search's trials are timed: a speed objective, or a limit in search.latency."""
    latency = search.latency
    return search.speed_objective is not None or latency.max_ms is not None or latency.min_videos_per_s is not None


def inference_config(
    spec: VideoInferenceJobSpec,
    *,
    checkpoint: str,
    training: VideoTrainingJobSpec | None = None,
    default_endpoint: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """The trainer's config.yaml for a VideoInferenceJob; clip geometry, backbone and classes
    default to those of the referenced training job."""
    params = {INFERENCE_KEY_RENAMES.get(k, k): v for k, v in spec.inference.model_dump().items()}
    inherited: dict[str, Any] = {}
    if training is not None:
        trained = training.training.model_dump()
        inherited = {key: trained[key] for key in INHERITED_KEYS}
        inherited.update(
            backbone=training.model.backbone,
            class_names=training.dataset.class_names,
            num_class=training.training.num_class,
        )
    values: dict[str, Any] = {
        **inherited,
        **{k: v for k, v in params.items() if v is not None or k not in inherited},
        "data_root": spec.dataset.videos,
        "ann_file_test": spec.dataset.list,
        "checkpoint": checkpoint,
        "test_results_path": results_uri(spec.output),
        "pretrained": "none",  # the checkpoint holds all the weights
        "s3_endpoint_url": s3_endpoint(spec.storage, default_endpoint),
        "s3_region": spec.storage.region,
    }
    if spec.model.backbone is not None:
        values["backbone"] = spec.model.backbone
    if spec.dataset.class_names is not None:
        values["class_names"] = spec.dataset.class_names
    values = {k: v for k, v in values.items() if v is not None}
    return build_config(values, dict(overrides or {}), source="VideoInferenceJob spec")
