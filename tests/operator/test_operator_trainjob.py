"""The TrainJob engine (Kubeflow Trainer v2), pure: the builder (every TrainJob validates against the real
trainer.kubeflow.org CRD, strict) and the status mappers; plus the Kueue phase rule for both engines."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from autox_operator.builders import TEST_ARGS, TRAIN_ARGS, Owner, build_pytorchjob, build_trainjob, build_trial_children
from autox_operator.builders import build_training_config as training_config
from autox_operator.children import ENGINES, child_of_status, engine_of_kind, engine_of_status, get_engine
from autox_operator.children.trainjob import trainer_status, trainer_status_patch
from autox_operator.settings import OperatorSettings
from autox_operator.status import job_status, phase_from_trainjob, phase_of, queued_status, vanished_status
from k8s_schemas import K8S_SCHEMAS, PYTORCHJOB_CRD, ROOT, TRAINER_CRDS, SchemaSet
from pydantic import ValidationError

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


@pytest.fixture(scope="module")
def trainer_schema() -> SchemaSet:
    return SchemaSet(TRAINER_CRDS)


@pytest.fixture(scope="module")
def pytorchjob_crd() -> SchemaSet:
    return SchemaSet([PYTORCHJOB_CRD])


def _spec(**overrides: Any) -> VideoTrainingJobSpec:
    raw = {"dataset": {"videos": "s3://data/videos/", "train": "s3://data/train.txt"}, "output": "s3://runs/ucf"}
    raw.update(overrides)
    return VideoTrainingJobSpec.model_validate(raw)


def test_a_default_trainjob_whole() -> None:
    built = build_trainjob(OWNER, _spec(storage={"secretRef": "s3"}), args=TRAIN_ARGS, settings=SETTINGS)
    secret = {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}
    assert built == {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {
            "name": "ucf",
            "namespace": "team-a",
            "labels": LABELS,
            "ownerReferences": [
                {
                    "apiVersion": "autox.io/v1alpha1",
                    "kind": "VideoTrainingJob",
                    "name": "ucf",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "autox-video"},
            "suspend": False,
            "trainer": {
                "image": "registry.test/trainer:1",
                "command": ["autox-entrypoint"],
                "args": ["train", "--config", "/etc/autox/config.yaml"],
                "env": [
                    {"name": "AUTOX_JOB_NAME", "value": "ucf"},
                    {"name": "AUTOX_CACHE_DIR", "value": "/data/cache"},
                    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
                    {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"},
                    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": secret}},
                    {
                        "name": "AWS_SECRET_ACCESS_KEY",
                        "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}},
                    },
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                ],
                "numNodes": 1,
                "numProcPerNode": 1,
                "resourcesPerNode": {"limits": {"nvidia.com/gpu": "1"}},
            },
            "runtimePatches": [
                {
                    "manager": "autox.io/operator",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "metadata": {"labels": LABELS},
                                                    "spec": {
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
                                                            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                                                        ],
                                                        "containers": [
                                                            {
                                                                "name": "node",
                                                                "securityContext": {
                                                                    "allowPrivilegeEscalation": False,
                                                                    "capabilities": {"drop": ["ALL"]},
                                                                },
                                                                "volumeMounts": [
                                                                    {
                                                                        "name": "config",
                                                                        "mountPath": "/etc/autox",
                                                                        "readOnly": True,
                                                                    },
                                                                    {"name": "data", "mountPath": "/data"},
                                                                    {"name": "dshm", "mountPath": "/dev/shm"},
                                                                ],
                                                            }
                                                        ],
                                                    },
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ],
        },
    }


def _pod_patch(built: dict[str, Any]) -> dict[str, Any]:
    (patch,) = built["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return job["template"]["spec"]["template"]


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # spec overrides -> expected values at (dotted) paths of the TrainJob
    "multi-node GPUs": (
        {"resources": {"replicas": 4, "gpusPerReplica": 8, "cpu": 32, "memory": "256Gi", "shmSize": "64Gi"}},
        {
            "spec.trainer.numNodes": 4,
            "spec.trainer.numProcPerNode": 8,
            "spec.trainer.resourcesPerNode": {
                "requests": {"cpu": "32", "memory": "256Gi"},
                "limits": {"memory": "256Gi", "nvidia.com/gpu": "8"},
            },
            "pod.spec.volumes.2": {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}},
        },
    ),
    "CPU only": (
        {"resources": {"gpusPerReplica": 0, "cpu": "4"}},
        {"spec.trainer.numProcPerNode": 1, "spec.trainer.resourcesPerNode": {"requests": {"cpu": "4"}}},
    ),
    "placement": (
        {
            "resources": {
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            }
        },
        {
            "pod.spec.nodeSelector": {"gpu": "h100"},
            "pod.spec.tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    ),
    "another runtime and image": (
        {"runtime": {"backend": "trainjob", "name": "torch-distributed"}, "image": "registry.test/mine:2"},
        {"spec.runtimeRef.name": "torch-distributed", "spec.trainer.image": "registry.test/mine:2"},
    ),
    "suspended with a deadline": (
        {"runPolicy": {"suspend": True, "activeDeadlineSeconds": 3600}},
        {"spec.suspend": True, "spec.activeDeadlineSeconds": 3600},
    ),
    "queued (Kueue)": (
        {"queueName": "gpu-queue"},
        {"spec.suspend": True, "metadata.labels.kueue.x-k8s.io/queue-name": "gpu-queue"},
    ),
    "no credentials Secret (IRSA)": (
        {"storage": {"endpoint": "https://s3.example.com"}},
        {"spec.trainer.env.3": {"name": "AWS_ENDPOINT_URL", "value": "https://s3.example.com"}},
    ),
}


def _at(obj: dict[str, Any], path: str) -> Any:
    if path.startswith("metadata.labels."):
        return obj["metadata"]["labels"].get(path.removeprefix("metadata.labels."))
    node: Any = _pod_patch(obj) if path.startswith("pod.") else obj
    for part in path.removeprefix("pod.").split("."):
        node = node[int(part)] if isinstance(node, list) else node.get(part)
    return node


@pytest.mark.parametrize("case", list(CASES))
def test_trainjob_builder_cases_validate_against_the_trainer_crd(
    case: str, trainer_schema: SchemaSet, pytorchjob_crd: SchemaSet
) -> None:
    overrides, expected = CASES[case]
    spec = _spec(**overrides)
    built = build_trainjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)
    trainer_schema.validate(built)
    for path, value in expected.items():
        assert _at(built, path) == value, path
    # Trainer's torch plugin sets PET_* itself and rejects a TrainJob that sets any of them.
    assert not [e for e in built["spec"]["trainer"]["env"] if e["name"].startswith("PET_")]
    assert build_trainjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS) == built  # deterministic
    # The same spec on the other engine: same image, env, GPUs, Kueue label and suspend.
    pj = build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)
    pytorchjob_crd.validate(pj)
    master = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert master["containers"][0]["env"] == built["spec"]["trainer"]["env"]
    assert master["containers"][0]["image"] == built["spec"]["trainer"]["image"]
    assert master["volumes"] == _pod_patch(built)["spec"]["volumes"]
    assert master["securityContext"] == _pod_patch(built)["spec"]["securityContext"]
    assert pj["spec"]["runPolicy"]["suspend"] is built["spec"]["suspend"]
    assert pj["metadata"]["labels"] == built["metadata"]["labels"]


def test_inference_and_trial_trainjobs(trainer_schema: SchemaSet) -> None:
    inference = VideoInferenceJobSpec.model_validate(
        {
            "model": {"checkpoint": "s3://models/best.pth"},
            "dataset": {"videos": "s3://data/v/"},
            "output": "s3://out/",
            "runtime": {"backend": "trainjob"},
        }
    )
    owner = Owner(kind="VideoInferenceJob", name="pred", namespace="team-a", uid="uid-2")
    built = build_trainjob(owner, inference, args=TEST_ARGS, settings=SETTINGS)
    trainer_schema.validate(built)
    assert built["spec"]["trainer"]["args"] == ["test", "--config", "/etc/autox/config.yaml"]
    assert _pod_patch(built)["spec"]["volumes"][0] == {"name": "config", "configMap": {"name": "pred-config"}}
    assert {"name": "AUTOX_JOB_NAME", "value": "pred"} in built["spec"]["trainer"]["env"]

    spec = _spec(dataset={"videos": "s3://data/v/", "train": "s3://data/t.txt", "val": "s3://data/v.txt"})
    configmap, trial = build_trial_children(
        OWNER, spec, training_config(spec, SETTINGS), 3, SETTINGS, ENGINES["trainjob"]
    )
    trainer_schema.validate(trial)
    assert trial["metadata"]["name"] == "ucf-t0003" and configmap["metadata"]["name"] == "ucf-t0003-config"
    assert trial["metadata"]["labels"]["autox.io/trial"] == "0003"
    assert _pod_patch(trial)["metadata"]["labels"]["autox.io/trial"] == "0003"
    assert _pod_patch(trial)["spec"]["volumes"][0]["configMap"]["name"] == "ucf-t0003-config"
    assert {"name": "AUTOX_JOB_NAME", "value": "ucf-t0003"} in trial["spec"]["trainer"]["env"]  # one MLflow run each


def test_trainers_default_runtime_validates_and_names_the_node_our_patches_address(trainer_schema: SchemaSet) -> None:
    runtime = yaml.safe_load((K8S_SCHEMAS / "torch_distributed_runtime.yaml").read_text())
    trainer_schema.validate(runtime)
    (job,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node" and job["template"]["spec"]["template"]["spec"]["containers"][0]["name"] == "node"


def test_the_schema_check_rejects_what_the_api_server_would(trainer_schema: SchemaSet) -> None:
    built = build_trainjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS)
    bad = copy.deepcopy(built)
    bad["spec"]["trainer"]["numNodes"] = "2"
    bad["spec"]["trainer"]["nprocPerNode"] = 2  # a PyTorchJob field
    del bad["spec"]["runtimeRef"]
    errors = trainer_schema.errors(bad)
    assert any("runtimeRef" in e for e in errors) and any("nprocPerNode" in e for e in errors)
    assert any(e.startswith("spec.trainer.numNodes") for e in errors)


def test_engines_interface() -> None:
    assert list(ENGINES) == ["trainjob", "pytorchjob"]  # `auto` tries TrainJob first
    tj, pj = get_engine("trainjob"), get_engine("pytorchjob")
    assert (tj.api_version, tj.plural, tj.kind) == ("trainer.kubeflow.org/v1alpha1", "trainjobs", "TrainJob")
    assert (pj.api_version, pj.plural, pj.kind) == ("kubeflow.org/v1", "pytorchjobs", "PyTorchJob")
    assert tj.suspend_patch(True) == {"spec": {"suspend": True}}
    assert pj.suspend_patch(False) == {"spec": {"runPolicy": {"suspend": False}}}
    assert tj.is_suspended({"spec": {"suspend": True}}) and not pj.is_suspended({"spec": {"runPolicy": {}}})
    assert engine_of_kind("TrainJob") is tj and engine_of_kind("Job") is None
    assert engine_of_status({}) is pj and engine_of_status({"engine": "trainjob"}) is tj  # old jobs: PyTorchJob
    assert child_of_status({"pytorchJob": "a"}) == "a" and child_of_status({"child": "b", "engine": "trainjob"}) == "b"


# --- status ------------------------------------------------------------------------------------------------


def _tj(*true: str, suspend: bool = False, jobs: list[dict[str, Any]] | None = None, **messages: str) -> dict:
    conditions = [
        {
            "type": t,
            "status": "True",
            "reason": f"{t}Reason",
            "message": messages.get(t, f"TrainJob is {t.lower()}"),
            "lastTransitionTime": f"2024-06-01T1{i}:00:00Z",
            "observedGeneration": 1,
        }
        for i, t in enumerate(true)
    ]
    status: dict[str, Any] = {"conditions": conditions}
    if jobs is not None:
        status["jobsStatus"] = jobs
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "spec": {"suspend": suspend},
        "status": status,
    }


ACTIVE = [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]
PHASES = {
    "not created": (None, ("Pending", None)),
    "created, pods pending": (
        _tj("Created", jobs=[{"name": "node", "active": 0, "ready": 0, "succeeded": 0, "failed": 0, "suspended": 0}]),
        ("Pending", None),
    ),
    "running": (_tj("Created", jobs=ACTIVE), ("Running", None)),
    "suspend requested": (_tj("Created", suspend=True, jobs=ACTIVE), ("Suspended", None)),
    "suspended": (_tj("Created", "Suspended"), ("Suspended", None)),
    "complete": (_tj("Created", "Complete"), ("Succeeded", None)),
    "failed": (_tj("Created", "Failed", Failed="node-0 OOMKilled"), ("Failed", "node-0 OOMKilled")),
    "failed over complete": (_tj("Created", "Complete", "Failed"), ("Failed", "TrainJob is failed")),
}


@pytest.mark.parametrize("case", list(PHASES))
def test_phase_from_trainjob(case: str, trainer_schema: SchemaSet) -> None:
    trainjob, expected = PHASES[case]
    assert phase_from_trainjob(trainjob) == expected
    assert phase_of(trainjob) == expected  # dispatched on kind
    if trainjob is not None:  # the status shape Trainer writes is the CRD's
        full = {**copy.deepcopy(trainjob), "metadata": {"name": "x"}}
        full["spec"] = {**build_trainjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS)["spec"], **full["spec"]}
        trainer_schema.validate(full)


def test_job_status_of_a_trainjob_mirrors_conditions_and_times() -> None:
    status = job_status(_tj("Created", "Complete", jobs=ACTIVE))
    assert status["phase"] == "Succeeded"
    assert status["startTime"] == "2024-06-01T10:00:00Z" and status["completionTime"] == "2024-06-01T11:00:00Z"
    assert [c["type"] for c in status["conditions"]] == ["Created", "Complete"]
    assert "observedGeneration" not in status["conditions"][0]  # only the fields our CRD declares
    running = job_status(_tj("Created", jobs=ACTIVE))
    assert running["phase"] == "Running" and running["completionTime"] is None


def test_a_vanished_trainjob_settles_like_a_pytorchjob() -> None:
    done = vanished_status("ucf", succeeded=True, now="2024-06-01T00:00:00Z", kind="TrainJob")
    assert done["phase"] == "Succeeded" and done["conditions"][0]["reason"] == "TrainJobDeleted"
    gone = vanished_status("ucf", succeeded=False, kind="TrainJob")
    assert gone["phase"] == "Failed" and gone["message"].startswith("TrainJob ucf was deleted before the run finished")


@pytest.mark.parametrize(
    ("observed", "queue", "user_suspend", "phase"),
    [
        ({"phase": "Suspended", "conditions": []}, "gpu", False, "Queued"),  # Kueue holds it
        ({"phase": "Suspended", "conditions": []}, "gpu", True, "Suspended"),  # the user's wish
        ({"phase": "Suspended", "conditions": []}, None, False, "Suspended"),  # no queue: not Kueue's
        ({"phase": "Running", "conditions": []}, "gpu", False, "Running"),  # admitted
    ],
)
def test_queued_while_kueue_holds_the_child(
    observed: dict[str, Any], queue: str | None, user_suspend: bool, phase: str
) -> None:
    out = queued_status(observed, queue=queue, user_suspend=user_suspend)
    assert out["phase"] == phase
    if phase == "Queued":
        assert "waiting for Kueue to admit it from LocalQueue 'gpu'" in out["message"]


def test_queued_says_kueues_reason() -> None:
    observed = job_status(_tj("Created", "Suspended", Suspended="Not admitted by ClusterQueue: insufficient quota"))
    out = queued_status(observed, queue="gpu", user_suspend=False)
    assert out["phase"] == "Queued" and out["message"].endswith(": Not admitted by ClusterQueue: insufficient quota")


EXAMPLES = sorted((ROOT / "examples").glob("video*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_builds_children_that_validate_on_both_engines(
    path: Path, trainer_schema: SchemaSet, pytorchjob_crd: SchemaSet
) -> None:
    """What the operator would create from each example, as a TrainJob and as a PyTorchJob, against the real CRDs."""
    for doc in yaml.safe_load_all(path.read_text()):
        model = VideoTrainingJobSpec if doc["kind"] == "VideoTrainingJob" else VideoInferenceJobSpec
        spec = model.model_validate(doc["spec"])
        owner = Owner(kind=doc["kind"], name=doc["metadata"]["name"], namespace="ns", uid="uid")
        args = TRAIN_ARGS if doc["kind"] == "VideoTrainingJob" else TEST_ARGS
        trainer_schema.validate(build_trainjob(owner, spec, args=args, settings=SETTINGS))
        pytorchjob_crd.validate(build_pytorchjob(owner, spec, args=args, settings=SETTINGS))


def test_trainer_status_from_our_status_fields(trainer_schema: SchemaSet) -> None:
    fields = {
        "epoch": 3,
        "totalEpochs": 10,
        "bestTop1": 0.75,
        "progressPercentage": 30,
        "progressUpdated": "2024-06-01T12:00:00Z",
    }
    fields["estimatedRemainingSeconds"] = 4200
    reported = trainer_status(fields, now="2024-06-01T13:00:00Z")
    assert reported == {
        "lastUpdatedTime": "2024-06-01T12:00:00Z",
        "metrics": [
            {"name": "epoch", "value": "3"},
            {"name": "total_epochs", "value": "10"},
            {"name": "best_top1", "value": "0.75"},
        ],
        "progressPercentage": 30,
        "estimatedRemainingSeconds": 4200,
    }
    tj = build_trainjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS)
    trainer_schema.validate({**tj, "status": {"trainerStatus": reported}})
    assert trainer_status({}, now="x") is None and trainer_status_patch(tj, {}, now="x") is None
    patch = trainer_status_patch(tj, fields, now="2024-06-01T13:00:00Z")
    assert patch == {"status": {"trainerStatus": reported}}
    seen = {**tj, "status": {"trainerStatus": reported}}
    assert trainer_status_patch(seen, fields, now="2024-06-01T14:00:00Z") is None  # unchanged: no write
    # An ETA that is gone is removed; out-of-range values are clamped to the CRD's bounds.
    later = trainer_status_patch(seen, {"epoch": 4, "progressPercentage": 140}, now="2024-06-01T14:00:00Z")
    assert later is not None and later["status"]["trainerStatus"]["estimatedRemainingSeconds"] is None
    assert later["status"]["trainerStatus"]["progressPercentage"] == 100


def test_the_backend_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOX_TRAINER_BACKEND", raising=False)
    monkeypatch.delenv("AUTOX_TRAINING_RUNTIME", raising=False)
    assert (OperatorSettings.from_env().backend, OperatorSettings.from_env().runtime_name) == ("auto", "autox-video")
    monkeypatch.setenv("AUTOX_TRAINER_BACKEND", "TrainJob")
    monkeypatch.setenv("AUTOX_TRAINING_RUNTIME", "torch-distributed")
    settings = OperatorSettings.from_env()
    assert settings.backend == "trainjob" and settings.runtime_name == "torch-distributed"
    monkeypatch.setenv("AUTOX_TRAINER_BACKEND", "tfjob")
    with pytest.raises(SystemExit, match="AUTOX_TRAINER_BACKEND='tfjob': expected one of auto, pytorchjob, trainjob"):
        OperatorSettings.from_env()


def test_service_account_name_gives_every_pod_of_either_engine_its_identity(
    trainer_schema: SchemaSet, pytorchjob_crd: SchemaSet
) -> None:
    spec = _spec(serviceAccountName="s3-reader", resources={"replicas": 2})
    trainjob = build_trainjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)
    trainer_schema.validate(trainjob)
    assert _pod_patch(trainjob)["spec"]["serviceAccountName"] == "s3-reader"
    pj = build_pytorchjob(OWNER, spec, args=TRAIN_ARGS, settings=SETTINGS)
    pytorchjob_crd.validate(pj)
    replicas = pj["spec"]["pytorchReplicaSpecs"]
    assert {r: replicas[r]["template"]["spec"]["serviceAccountName"] for r in replicas} == {
        "Master": "s3-reader",
        "Worker": "s3-reader",
    }
    inference = VideoInferenceJobSpec.model_validate(
        {
            "model": {"checkpoint": "s3://runs/ucf/best.pth"},
            "dataset": {"videos": "s3://data/test/"},
            "output": "s3://runs/pred/",
            "serviceAccountName": "s3-reader",
        }
    )
    pred = build_pytorchjob(OWNER, inference, args=TEST_ARGS, settings=SETTINGS)
    assert pred["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["serviceAccountName"] == "s3-reader"
    # Unset: the field is left out, so the namespace's default ServiceAccount applies.
    plain = build_pytorchjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS)
    assert "serviceAccountName" not in plain["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert (
        "serviceAccountName"
        not in _pod_patch(build_trainjob(OWNER, _spec(), args=TRAIN_ARGS, settings=SETTINGS))["spec"]
    )
    with pytest.raises(ValidationError):
        _spec(serviceAccountName="Not_A_Name")
