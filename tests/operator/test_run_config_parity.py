"""`autox-video run` and the operator write the same trainer config.yaml for a manifest (one builder)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from autox_operator.builders import Owner, build_configmap, build_inference_config, build_training_config
from autox_operator.settings import OperatorSettings

from autox_video.runlocal import load_manifest, manifest_config
from autox_video.spec.training import VideoTrainingJobSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SETTINGS = OperatorSettings()  # no default endpoint: the examples name theirs
TRAINING = [p for p in sorted(EXAMPLES.glob("videotrainingjob*.yaml")) if "search" not in p.name]


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_a_training_manifest_gives_the_configmap_the_operator_writes(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    owner = Owner(kind=doc["kind"], name=doc["metadata"]["name"], namespace="ns", uid="u1")
    spec = VideoTrainingJobSpec.model_validate(doc["spec"])
    configmap = build_configmap(owner, build_training_config(spec, SETTINGS))
    assert manifest_config(load_manifest(path)).to_yaml() == configmap["data"]["config.yaml"]


def test_an_inference_manifest_gives_the_configmap_the_operator_writes() -> None:
    training = load_manifest(EXAMPLES / "videotrainingjob-laptop.yaml")
    inference = load_manifest(EXAMPLES / "videoinferencejob-laptop.yaml")
    checkpoint = "s3://datasets/runs/demo-laptop/best.pth"
    local = manifest_config(inference, checkpoint=checkpoint, training=training.spec)
    operator = build_inference_config(inference.spec, SETTINGS, checkpoint=checkpoint, training=training.spec)
    assert local.to_yaml() == operator.to_yaml()
    assert (local.backbone, local.img_size) == ("swin_mini", 56)  # inherited from the training manifest
