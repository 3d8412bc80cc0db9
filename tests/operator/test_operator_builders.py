"""Pure builders: whole expected objects, and every PyTorchJob validates against the real Kubeflow CRD."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
import yaml
from autox_operator.builders import (
    TEST_ARGS,
    TRAIN_ARGS,
    Owner,
    build_configmap,
    build_inference_config,
    build_pytorchjob,
    build_training_config,
    child_name,
    label_value,
    results_uri,
)
from autox_operator.settings import OperatorSettings
from k8s_schemas import SchemaSet
from pydantic import ValidationError

from autox_video.config import build_config
from autox_video.spec.inference import VideoInferenceJobSpec
from autox_video.spec.training import VideoTrainingJobSpec

SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1", default_s3_endpoint="http://minio.minio:9000")
OWNER = Owner(kind="VideoTrainingJob", name="ucf", namespace="team-a", uid="uid-1")
LABELS = {
    "app.kubernetes.io/name": "autox-video",
    "app.kubernetes.io/managed-by": "autox-operator",
    "autox.io/job-kind": "VideoTrainingJob",
    "autox.io/job-name": "ucf",
}
OWNER_REFS = [
    {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "name": "ucf",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
]
MOUNTS = [
    {"name": "config", "mountPath": "/etc/autox", "readOnly": True},
    {"name": "data", "mountPath": "/data"},
    {"name": "dshm", "mountPath": "/dev/shm"},
]


def _spec(**overrides: Any) -> VideoTrainingJobSpec:
    raw = {"dataset": {"videos": "s3://data/videos/", "train": "s3://data/train.txt"}, "output": "s3://runs/ucf"}
    raw.update(overrides)
    return VideoTrainingJobSpec.model_validate(raw)


def _env(
    *, endpoint: str | None, secret: str | None, region: str = "us-east-1", job: str = "ucf"
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "AUTOX_JOB_NAME", "value": job},
        {"name": "AUTOX_CACHE_DIR", "value": "/data/cache"},
        {"name": "AWS_DEFAULT_REGION", "value": region},
    ]
    if endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    if secret:
        env += [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
    return [*env, {"name": "PYTHONUNBUFFERED", "value": "1"}]


def _template(
    *,
    image: str = "registry.test/trainer:1",
    args: list[str] = TRAIN_ARGS,
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    shm: dict[str, Any] | None = None,
    **pod: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"labels": LABELS},
        "spec": {
            "containers": [
                {
                    "name": "pytorch",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["autox-entrypoint"],
                    "args": args,
                    "env": env,
                    "resources": resources,
                    "volumeMounts": MOUNTS,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [
                {"name": "config", "configMap": {"name": "ucf-config"}},
                {"name": "data", "emptyDir": {}},
                {"name": "dshm", "emptyDir": shm or {"medium": "Memory"}},
            ],
            **pod,
        },
    }


def _pytorchjob(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "ucf", "namespace": "team-a", "labels": LABELS, "ownerReferences": OWNER_REFS},
        "spec": spec,
    }


CPU_TEMPLATE = _template(env=_env(endpoint="http://minio.minio:9000", secret=None), resources={})
GPU_TEMPLATE = _template(
    image="registry.test/trainer:custom",
    env=_env(endpoint="http://s3.local:9000", secret="s3-creds", region="eu-west-1"),
    resources={"requests": {"cpu": "16", "memory": "64Gi"}, "limits": {"memory": "64Gi", "nvidia.com/gpu": "8"}},
    shm={"medium": "Memory", "sizeLimit": "32Gi"},
    nodeSelector={"gpu": "h100"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
)
PYTORCHJOB_CASES = [
    (
        "defaults: one pod, one GPU, the operator's image and endpoint",
        _spec(),
        _pytorchjob(
            {
                "nprocPerNode": "1",
                "runPolicy": {"backoffLimit": 3, "suspend": False},
                "pytorchReplicaSpecs": {
                    "Master": {
                        "replicas": 1,
                        "restartPolicy": "OnFailure",
                        "template": _template(
                            env=_env(endpoint="http://minio.minio:9000", secret=None),
                            resources={"limits": {"nvidia.com/gpu": "1"}},
                        ),
                    }
                },
            }
        ),
    ),
    (
        "CPU only: one process per pod, no GPU limit",
        _spec(resources={"gpusPerReplica": 0}),
        _pytorchjob(
            {
                "nprocPerNode": "1",
                "runPolicy": {"backoffLimit": 3, "suspend": False},
                "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": CPU_TEMPLATE}
                },
            }
        ),
    ),
    (
        "3 nodes x 8 GPUs: Master + 2 Workers, everything set",
        _spec(
            image="registry.test/trainer:custom",
            resources={
                "replicas": 3,
                "gpusPerReplica": 8,
                "cpu": 16,
                "memory": "64Gi",
                "shmSize": "32Gi",
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            },
            storage={"endpoint": "http://s3.local:9000", "region": "eu-west-1", "secretRef": "s3-creds"},
            runPolicy={
                "backoffLimit": 5,
                "activeDeadlineSeconds": 3600,
                "ttlSecondsAfterFinished": 600,
                "suspend": True,
            },
        ),
        _pytorchjob(
            {
                "nprocPerNode": "8",
                "runPolicy": {
                    "backoffLimit": 5,
                    "suspend": True,
                    "activeDeadlineSeconds": 3600,
                    "ttlSecondsAfterFinished": 600,
                },
                "pytorchReplicaSpecs": {
                    "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": GPU_TEMPLATE},
                    "Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": GPU_TEMPLATE},
                },
            }
        ),
    ),
]


@pytest.mark.parametrize(("what", "spec", "expected"), PYTORCHJOB_CASES, ids=[c[0] for c in PYTORCHJOB_CASES])
def test_pytorchjob(
    what: str, spec: VideoTrainingJobSpec, expected: dict[str, Any], pytorchjob_schema: SchemaSet
) -> None:
    built = build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)
    assert built == expected
    pytorchjob_schema.validate(built)


def test_building_twice_gives_the_same_objects() -> None:
    spec = PYTORCHJOB_CASES[2][1]
    assert build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS) == build_pytorchjob(
        OWNER, copy.deepcopy(spec), args=TRAIN_ARGS, settings=SETTINGS
    )


def test_the_kubeflow_schema_catches_builder_typos(pytorchjob_schema: SchemaSet) -> None:
    built = build_pytorchjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS)
    master = built["spec"]["pytorchReplicaSpecs"]["Master"]
    master["restartpolicy"] = master.pop("restartPolicy")
    assert any("restartpolicy" in e for e in pytorchjob_schema.errors(built))


def test_training_config_maps_every_spec_field() -> None:
    spec = _spec(
        dataset={
            "videos": "s3://data/videos/",
            "train": "s3://data/train.txt",
            "val": "s3://data/val.txt",
            "classNames": "s3://data/classes.txt",
        },
        model={"backbone": "swin_s", "pretrained": "s3://models/swin_s.pth"},
        training={
            "epochs": 12,
            "batchSizePerGpu": 4,
            "evalInterval": 3,
            "videoLength": 2,
            "precision": "bf16",
            "lr": 0.0005,
            "gradClip": None,
            "numClass": 101,
            "numWorkers": 6,
        },
        storage={"endpoint": "http://s3.local:9000", "region": "eu-west-1", "secretRef": "s3-creds"},
    )
    expected = build_config(
        {
            "data_root": "s3://data/videos/",
            "ann_file_train": "s3://data/train.txt",
            "ann_file_val": "s3://data/val.txt",
            "class_names": "s3://data/classes.txt",
            "work_dir": "s3://runs/ucf/",
            "backbone": "swin_s",
            "pretrained": "s3://models/swin_s.pth",
            "epoch": 12,
            "videos_per_gpu": 4,
            "evaluation": 3,
            "video_length": 2,
            "precision": "bf16",
            "lr": 0.0005,
            "grad_clip": None,
            "num_class": 101,
            "num_workers": 6,
            "s3_endpoint_url": "http://s3.local:9000",
            "s3_region": "eu-west-1",
        }
    )
    assert build_training_config(spec, SETTINGS) == expected


def test_configmap() -> None:
    config = build_training_config(_spec(), SETTINGS)
    assert build_configmap(OWNER, config) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ucf-config", "namespace": "team-a", "labels": LABELS, "ownerReferences": OWNER_REFS},
        "data": {"config.yaml": config.to_yaml()},
    }
    assert yaml.safe_load(config.to_yaml())["work_dir"] == "s3://runs/ucf/"


@pytest.mark.parametrize(
    ("loggers", "expected"),
    [(None, []), (["mlflow"], ["mlflow"]), (["tensorboard", "mlflow"], ["tensorboard", "mlflow"])],
    ids=["default: none", "mlflow", "both"],
)
def test_spec_training_loggers_reach_config_yaml(
    loggers: list[str] | None, expected: list[str], crd_schemas: SchemaSet
) -> None:
    training = {} if loggers is None else {"loggers": loggers}
    spec = _spec(training=training)
    body = {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": "ucf"},
        "spec": {"dataset": {"videos": "s3://data/v/", "train": "s3://data/t.txt"}, "output": "s3://runs/ucf"},
    }
    body["spec"]["training"] = training
    crd_schemas.validate(body)  # the CRD accepts what the model does
    data = build_configmap(OWNER, build_training_config(spec, SETTINGS))["data"]["config.yaml"]
    assert yaml.safe_load(data).get("loggers", []) == expected


def test_the_crd_rejects_an_unknown_logger(crd_schemas: SchemaSet) -> None:
    body = {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": "ucf"},
        "spec": {
            "dataset": {"videos": "s3://data/v/", "train": "s3://data/t.txt"},
            "output": "s3://runs/ucf",
            "training": {"loggers": ["wandb"]},
        },
    }
    assert any("wandb" in e for e in crd_schemas.errors(body))
    with pytest.raises(ValidationError):
        _spec(training={"loggers": ["wandb"]})


def _inference(**overrides: Any) -> VideoInferenceJobSpec:
    raw = {
        "model": {"trainingJobRef": "ucf"},
        "dataset": {"videos": "s3://data/test/"},
        "output": "s3://runs/ucf/test/",
    }
    raw.update(overrides)
    return VideoInferenceJobSpec.model_validate(raw)


def test_inference_config_inherits_clip_geometry_backbone_and_classes_from_the_training_job() -> None:
    training = _spec(
        model={"backbone": "swin_s"},
        dataset={"videos": "s3://data/videos/", "train": "s3://data/t.txt", "classNames": "s3://data/classes.txt"},
        training={"videoLength": 2, "imgSize": 112, "numClass": 5},
    )
    config = build_inference_config(
        _inference(dataset={"videos": "s3://data/test/", "list": "s3://data/test.txt"}, inference={"testCrops": 3}),
        SETTINGS,
        checkpoint="s3://runs/ucf/best.pth",
        training=training,
    )
    assert config == build_config(
        {
            "data_root": "s3://data/test/",
            "ann_file_test": "s3://data/test.txt",
            "checkpoint": "s3://runs/ucf/best.pth",
            "test_results_path": "s3://runs/ucf/test/results.json",
            "pretrained": "none",
            "backbone": "swin_s",
            "class_names": "s3://data/classes.txt",
            "num_class": 5,
            "video_length": 2,
            "img_size": 112,
            "test_crops": 3,
            "s3_endpoint_url": "http://minio.minio:9000",
            "s3_region": "us-east-1",
        }
    )


def test_inference_settings_beat_the_training_job() -> None:
    training = _spec(model={"backbone": "swin_s"}, training={"videoLength": 2, "imgSize": 112})
    spec = _inference(
        model={"checkpoint": "s3://runs/x/best.pth", "backbone": "swin_t"},
        inference={"videoLength": 4, "batchSizePerGpu": 16},
        output="s3://runs/x/predictions.json",
    )
    config = build_inference_config(spec, SETTINGS, checkpoint="s3://runs/x/best.pth", training=training)
    assert (config.backbone, config.video_length, config.img_size) == ("swin_t", 4, 112)
    assert config.test_batch_size == 16  # per forward pass at test; unset, the trainer tunes it on the GPU
    assert config.test_results_path == "s3://runs/x/predictions.json"


def test_inference_pytorchjob_runs_test(pytorchjob_schema: SchemaSet) -> None:
    owner = Owner(kind="VideoInferenceJob", name="ucf-test", namespace="team-a", uid="uid-2")
    built = build_pytorchjob(owner, _inference(), args=TEST_ARGS, settings=SETTINGS)
    pytorchjob_schema.validate(built)
    container = built["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["test", "--config", "/etc/autox/config.yaml"]
    assert built["metadata"]["labels"]["autox.io/job-kind"] == "VideoInferenceJob"


def _h(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("owner", "suffix", "expected"),
    [
        ("ucf", "", "ucf"),
        ("ucf", "-config", "ucf-config"),
        ("a" * 48, "", "a" * 48),
        ("a" * 49, "", f"{'a' * 39}-{_h('a' * 49)}"),
        ("101-classes", "", f"j-101-classes-{_h('101-classes')}"),
        ("ucf.v2", "-config", f"ucf-v2-{_h('ucf.v2')}-config"),
    ],
)
def test_child_names_are_deterministic_dns_labels(owner: str, suffix: str, expected: str) -> None:
    assert child_name(owner, suffix) == expected
    assert len(expected) <= 48 and expected[0].isalpha()


def test_label_values_fit_63_characters() -> None:
    assert label_value("ucf") == "ucf"
    long = label_value("x" * 200)
    assert len(long) <= 63 and long != label_value("x" * 199)


@pytest.mark.parametrize(
    ("output", "expected"),
    [("s3://runs/x/", "s3://runs/x/results.json"), ("s3://runs/x/out.json", "s3://runs/x/out.json")],
)
def test_results_uri(output: str, expected: str) -> None:
    assert results_uri(output) == expected


def test_the_weights_mirror_reaches_the_trainer_pods_of_both_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pretrained: auto` (the default) fetches from the chart's weights.mirror into the pods' cache volume."""
    from autox_operator.builders import build_trainjob

    monkeypatch.setenv("AUTOX_WEIGHTS_MIRROR", "s3://models/weights")
    settings = OperatorSettings.from_env()
    assert settings.weights_mirror == "s3://models/weights"
    spec = _spec(model={"backbone": "swin_b", "pretrained": "auto"})
    pod = build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=settings)["spec"]["pytorchReplicaSpecs"]
    trainer = build_trainjob(OWNER, spec, args=TRAIN_ARGS, settings=settings)["spec"]["trainer"]
    for env in (pod["Master"]["template"]["spec"]["containers"][0]["env"], trainer["env"]):
        values = {e["name"]: e.get("value") for e in env}
        assert values["AUTOX_WEIGHTS_MIRROR"] == "s3://models/weights"
        assert values["AUTOX_CACHE_DIR"] == "/data/cache"  # the pods' data volume keeps downloaded weights
    assert build_training_config(spec, settings).pretrained == "auto"
    no_mirror = build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)["spec"]["pytorchReplicaSpecs"]
    assert "AUTOX_WEIGHTS_MIRROR" not in str(no_mirror)
    monkeypatch.setenv("AUTOX_WEIGHTS_MIRROR", "models/weights")
    with pytest.raises(SystemExit, match="AUTOX_WEIGHTS_MIRROR='models/weights': expected an s3:// or https://"):
        OperatorSettings.from_env()
