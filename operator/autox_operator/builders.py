"""Pure manifest builders: a custom resource in, child objects (plain dicts) out.

No Kubernetes client, no kopf, no I/O: names, labels and owner references are derived
deterministically from the owner, so building twice gives the same objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autox_operator import constants as C
from autox_operator.children import Engine, get_engine

# Re-exported: the pure helpers and builders live in autox_operator.children (one module per engine).
from autox_operator.children.base import JobSpec as JobSpec
from autox_operator.children.base import Owner as Owner
from autox_operator.children.base import child_labels as child_labels
from autox_operator.children.base import child_metadata as child_metadata
from autox_operator.children.base import child_name as child_name
from autox_operator.children.base import configmap_name
from autox_operator.children.base import label_value as label_value
from autox_operator.children.base import owner_reference as owner_reference
from autox_operator.children.base import s3_endpoint as s3_endpoint
from autox_operator.children.pytorchjob import build_pytorchjob as build_pytorchjob
from autox_operator.children.trainjob import build_trainjob as build_trainjob
from autox_operator.settings import OperatorSettings
from autox_video.config import Config
from autox_video.spec import trainer_config
from autox_video.spec.inference import VideoInferenceJobSpec

# Re-exported: the handlers and the search name output locations through this module.
from autox_video.spec.trainer_config import normalise_prefix as normalise_prefix
from autox_video.spec.trainer_config import results_uri as results_uri
from autox_video.spec.trainer_config import trial_prefix as trial_prefix
from autox_video.spec.training import VideoTrainingJobSpec


def report_uri(results: str) -> str:
    """Where the trainer writes report.html: beside results.json (whatever that file is called)."""
    return f"{results.rsplit('/', 1)[0]}/{C.REPORT_FILE}"


def progress_uri(output: str) -> str:
    """Where the trainer writes progress.json under spec.output."""
    return f"{normalise_prefix(output)}{C.PROGRESS_FILE}"


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
    """The ConfigMap holding config.yaml for the child (PyTorchJob or TrainJob) named with the same `suffix`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, configmap_name(owner, suffix)),
        "data": {C.CONFIG_KEY: config.to_yaml()},
    }


TRAIN_ARGS = ["train", "--config", C.CONFIG_PATH]
TEST_ARGS = ["test", "--config", C.CONFIG_PATH]


def build_trial_children(
    owner: Owner,
    spec: VideoTrainingJobSpec,
    config: Config,
    number: int,
    settings: OperatorSettings,
    engine: Engine | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ConfigMap, child) of trial `number`: `<job>-tNNNN`, labelled with the trial number (PyTorchJob by default)."""
    engine = engine or get_engine("pytorchjob")
    suffix = trial_suffix(number)
    configmap = build_configmap(owner, config, suffix=suffix)
    child = engine.build(owner, spec, args=TRAIN_ARGS, settings=settings, suffix=suffix)
    label = {C.LABEL_TRIAL: f"{number:04d}"}
    for meta in (configmap["metadata"], child["metadata"]):
        meta["labels"].update(label)
    for template in engine.pod_templates(child):
        template["metadata"]["labels"].update(label)
    return configmap, child
