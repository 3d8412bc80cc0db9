"""The custom resources' pydantic models: required fields, defaults from config.yaml, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from autox_video import families
from autox_video.config import Config
from autox_video.spec.inference import InferenceModel, VideoInferenceJobSpec
from autox_video.spec.training import TrainingParams, VideoTrainingJobSpec

MINIMAL_TRAINING = {
    "dataset": {"videos": "s3://data/videos/", "train": "s3://data/train.txt"},
    "output": "s3://runs/job/",
}


def test_a_minimal_training_spec_gets_every_default() -> None:
    spec = VideoTrainingJobSpec.model_validate(MINIMAL_TRAINING)
    assert spec.model.backbone == "swin_b" and spec.model.pretrained is None
    assert spec.resources.replicas == 1 and spec.resources.gpus_per_replica == 1
    assert spec.resources.node_selector == {} and spec.resources.tolerations == []
    assert spec.storage.region == "us-east-1" and spec.storage.secret_ref is None
    assert spec.run_policy.backoff_limit == 3 and spec.run_policy.suspend is False
    assert spec.image is None


def test_training_defaults_and_bounds_are_those_of_config_yaml() -> None:
    params = TrainingParams()
    config = Config()
    assert (params.epochs, params.batch_size_per_gpu, params.eval_interval) == (
        config.epoch,
        config.videos_per_gpu,
        config.evaluation,
    )
    assert (params.precision, params.video_length, params.decoder) == (
        config.precision,
        config.video_length,
        config.decoder,
    )
    # The keys a backbone family has its own recipe for default to that family's (left out of config.yaml).
    assert all(getattr(params, k) is None for k in families.FAMILY_KEYS)
    with pytest.raises(ValidationError):
        TrainingParams(epochs=0)
    with pytest.raises(ValidationError):
        TrainingParams(lr=0)


def test_camel_case_in_the_resource_snake_case_in_python() -> None:
    spec = VideoTrainingJobSpec.model_validate(
        {
            **MINIMAL_TRAINING,
            "training": {"batchSizePerGpu": 4, "evalInterval": 1},
            "resources": {
                "gpusPerReplica": 8,
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            "storage": {"secretRef": "s3"},
            "runPolicy": {"ttlSecondsAfterFinished": 60},
        }
    )
    assert spec.training.batch_size_per_gpu == 4 and spec.resources.gpus_per_replica == 8
    assert spec.resources.tolerations[0].effect == "NoSchedule"
    assert spec.storage.secret_ref == "s3" and spec.run_policy.ttl_seconds_after_finished == 60
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["training"]["batchSizePerGpu"] == 4 and dumped["runPolicy"]["ttlSecondsAfterFinished"] == 60


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"output": "/local/path"}, "output"),
        ({"dataset": {"videos": "s3://data/videos/"}}, "dataset.train"),
        ({"model": {"backbone": "resnet50"}}, "model.backbone"),
        ({"resources": {"replicas": 0}}, "resources.replicas"),
        ({"resources": {"cpu": 0.5}}, "resources.cpu"),
        ({"storage": {"secretRef": "Not_A_Name"}}, "storage.secretRef"),
        ({"trainig": {}}, "trainig"),
    ],
)
def test_bad_training_specs_name_the_field(patch: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        VideoTrainingJobSpec.model_validate({**MINIMAL_TRAINING, **patch})
    locs = {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}
    assert any(loc.startswith(field) for loc in locs), locs


@pytest.mark.parametrize(
    "model",
    [{}, {"trainingJobRef": "a", "checkpoint": "s3://runs/a/best.pth"}],
)
def test_inference_model_needs_exactly_one_source(model: dict) -> None:
    with pytest.raises(ValidationError, match="exactly one of model.trainingJobRef or model.checkpoint"):
        InferenceModel.model_validate(model)


def test_inference_spec_defaults() -> None:
    spec = VideoInferenceJobSpec.model_validate(
        {"model": {"trainingJobRef": "ucf"}, "dataset": {"videos": "s3://data/v/"}, "output": "s3://data/out/"}
    )
    assert spec.dataset.list is None and spec.inference.test_crops == 1 and spec.inference.video_length is None
    assert spec.inference.batch_size_per_gpu is None  # tuned by the trainer
    for endpoint in ("https://", "http://minio minio:9000"):  # botocore cannot use these
        with pytest.raises(ValidationError, match="endpoint"):
            VideoInferenceJobSpec.model_validate({**spec.model_dump(by_alias=True), "storage": {"endpoint": endpoint}})
    with pytest.raises(ValidationError):
        VideoInferenceJobSpec.model_validate({**spec.model_dump(by_alias=True), "inference": {"testCrops": 2}})


def test_spec_models_import_without_torch() -> None:
    code = (
        "import sys; import autox_video.spec, autox_video.spec.crdgen; "
        "bad = [m for m in ('torch', 'mmaction', 'mmengine', 'decord', 'kopf') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
