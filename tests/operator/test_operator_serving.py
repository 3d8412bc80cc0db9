"""spec.serving, pure: the InferenceService builder (both runtimes, validated against the real KServe CRD),
its update patch, the status.serving mapping and the spec's bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from autox_operator.builders import Owner
from autox_operator.children.inferenceservice import build_inference_service, isvc_name, update_patch
from autox_operator.reconcile import wants_serving
from autox_operator.settings import OperatorSettings
from autox_operator.status import kserve_missing_status, nested_diff, serving_status
from k8s_schemas import SchemaSet
from pydantic import ValidationError

from autox_video.spec.training import VideoTrainingJobSpec

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1", default_s3_endpoint="http://minio.minio:9000")
OWNER = Owner(kind="VideoTrainingJob", name="ucf", namespace="team-a", uid="uid-1")
BEST = "s3://runs/ucf/best.pth"
S3_ENV = [
    {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
    {"name": "AWS_ENDPOINT_URL", "value": "http://minio.minio:9000"},
    {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}}},
    {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "AWS_SECRET_ACCESS_KEY"}}},
    {"name": "AUTOX_CACHE_DIR", "value": "/data/cache"},
    {"name": "TMPDIR", "value": "/data"},
    {"name": "PYTHONUNBUFFERED", "value": "1"},
]
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _spec(**serving: Any) -> VideoTrainingJobSpec:
    return VideoTrainingJobSpec.model_validate(
        {
            "dataset": {"videos": "s3://data/videos/", "train": "s3://data/train.txt"},
            "output": "s3://runs/ucf",
            "storage": {"secretRef": "s3"},
            "serving": serving,
        }
    )


def test_autox_runtime_is_a_custom_predictor_serving_the_best_checkpoint(kserve_schema: SchemaSet) -> None:
    spec = _spec(minReplicas=1, maxReplicas=3, resources={"cpu": 4, "memory": "8Gi", "gpus": 1})
    isvc = build_inference_service(OWNER, spec, checkpoint=BEST, settings=SETTINGS)
    kserve_schema.validate(isvc)
    meta = isvc["metadata"]
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert (meta["name"], meta["namespace"]) == ("ucf-serve", "team-a")
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "autox-operator"
    assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"] is True
    assert set(isvc["spec"]) == {"predictor"}
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert predictor["containers"] == [
        {
            "name": "kserve-container",
            "image": "registry.test/trainer:1",
            "imagePullPolicy": "IfNotPresent",
            "command": ["autox-video"],
            "args": ["serve", "--checkpoint", BEST, "--name", "ucf-serve", "--port", "8080"],  # /v2/models/ucf-serve
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": S3_ENV,
            "volumeMounts": [{"name": "scratch", "mountPath": "/data"}],
            "securityContext": RESTRICTED_CONTAINER,
            "resources": {
                "requests": {"cpu": "4", "memory": "8Gi"},
                "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
            },
        }
    ]
    assert predictor["securityContext"] == RESTRICTED_POD
    assert predictor["volumes"] == [{"name": "scratch", "emptyDir": {}}]


def test_triton_runtime_serves_the_export_with_serve_as_transformer(kserve_schema: SchemaSet) -> None:
    spec = _spec(
        runtime="triton", minReplicas=0, resources={"gpus": 1, "memory": "4Gi"}, serviceAccountName="kserve-s3"
    )
    isvc = build_inference_service(OWNER, spec, checkpoint=BEST, settings=SETTINGS)
    kserve_schema.validate(isvc)
    predictor, transformer = isvc["spec"]["predictor"], isvc["spec"]["transformer"]
    assert predictor == {
        "minReplicas": 0,
        "serviceAccountName": "kserve-s3",
        "model": {
            "modelFormat": {"name": "triton"},
            "protocolVersion": "v2",
            "storageUri": "s3://runs/ucf/export/triton/",
            "securityContext": {**RESTRICTED_CONTAINER, "runAsNonRoot": True},  # Triton's image keeps its user
            "resources": {"requests": {"memory": "4Gi"}, "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"}},
        },
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    (container,) = transformer["containers"]
    assert container["args"] == ["serve", "--model", "s3://runs/ucf/export/", "--port", "8080"]
    assert container["resources"] == {"requests": {"memory": "4Gi"}, "limits": {"memory": "4Gi"}}  # no GPU
    assert container["env"] == S3_ENV and transformer["serviceAccountName"] == "kserve-s3"


def test_the_image_of_the_job_and_a_long_name_stay_valid(kserve_schema: SchemaSet) -> None:
    spec = _spec().model_copy(update={"image": "registry.test/custom:2"})
    owner = Owner(kind="VideoTrainingJob", name="a" * 60, namespace="ns", uid="u")
    isvc = build_inference_service(owner, spec, checkpoint=BEST, settings=SETTINGS)
    kserve_schema.validate(isvc)
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == "registry.test/custom:2"
    assert len(isvc["metadata"]["name"]) <= 48 and isvc["metadata"]["name"].endswith("-serve")
    assert isvc_name("a" * 60) == isvc["metadata"]["name"]  # deterministic


def test_a_changed_spec_serving_patches_and_an_unchanged_one_does_not() -> None:
    autox = build_inference_service(OWNER, _spec(), checkpoint=BEST, settings=SETTINGS)
    assert update_patch(autox, autox) is None
    # What the API returns carries defaults KServe added; the annotation says what the operator applied.
    seen = {**autox, "spec": {**autox["spec"], "predictor": {**autox["spec"]["predictor"], "timeout": 60}}}
    assert update_patch(seen, autox) is None
    triton = build_inference_service(OWNER, _spec(runtime="triton"), checkpoint=BEST, settings=SETTINGS)
    patch = update_patch(seen, triton)
    assert patch is not None
    assert patch["metadata"]["annotations"] == triton["metadata"]["annotations"]
    assert patch["spec"]["predictor"]["containers"] is None and patch["spec"]["predictor"]["timeout"] is None
    assert patch["spec"]["predictor"]["model"] == triton["spec"]["predictor"]["model"]
    assert patch["spec"]["transformer"] == triton["spec"]["transformer"]
    back = update_patch(triton, autox)
    assert back is not None and back["spec"]["transformer"] is None and back["spec"]["predictor"]["model"] is None
    scaled = build_inference_service(OWNER, _spec(maxReplicas=4), checkpoint=BEST, settings=SETTINGS)
    assert update_patch(autox, scaled)["spec"]["predictor"]["maxReplicas"] == 4  # type: ignore[index]


def _isvc(ready: str | None, url: str | None = None, **condition: str) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if url:
        status["url"] = url
    if ready is not None:
        status["conditions"] = [
            {"type": "PredictorReady", "status": "True"},
            {"type": "Ready", "status": ready, **condition},
        ]
    return {"metadata": {"name": "ucf-serve"}, "status": status}


URL = "http://ucf-serve.team-a.example.com"


@pytest.mark.parametrize(
    ("isvc", "expected"),
    [
        (None, {"ready": False, "reason": "Creating", "message": "creating InferenceService ucf-serve"}),
        (_isvc(None), {"ready": False, "reason": "NotReady", "message": "InferenceService ucf-serve is not ready yet"}),
        (
            _isvc("False", reason="RevisionMissing", message="Configuration failed"),
            {"ready": False, "reason": "RevisionMissing", "message": "Configuration failed"},
        ),
        (_isvc("True", URL), {"ready": True, "url": URL}),
        (_isvc("False", URL), {"ready": False, "url": URL, "reason": "NotReady"}),
        (
            {
                "status": {
                    "address": {"url": "http://ucf-serve.team-a.svc"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                }
            },
            {"ready": True, "url": "http://ucf-serve.team-a.svc"},
        ),
    ],
    ids=["absent", "no-conditions", "failed-revision", "ready", "url-not-ready", "address-only"],
)
def test_serving_status_from_the_inference_service(isvc: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    out = serving_status(isvc, name="ucf-serve", runtime="autox", served=BEST)
    assert out["inferenceService"] == "ucf-serve" and out["runtime"] == "autox" and out["checkpoint"] == BEST
    assert {k: v for k, v in out.items() if k in expected} == expected
    assert ("url" in out) == ("url" in expected) and ("reason" in out) == ("reason" in expected)


def test_the_status_fits_our_crd(crd_schemas: SchemaSet) -> None:
    body = yaml.safe_load((ROOT / "examples" / "videotrainingjob-serving.yaml").read_text())
    for serving in (
        serving_status(_isvc("True", URL), name="ucf-serve", runtime="autox", served=BEST),
        kserve_missing_status(name="ucf-serve", runtime="triton", served="s3://runs/ucf/export/"),
    ):
        crd_schemas.validate({**body, "status": {"phase": "Succeeded", "serving": serving}})
    missing = kserve_missing_status(name="ucf-serve", runtime="autox", served=BEST)
    assert missing["reason"] == "KServeNotServed" and "install KServe (serving.kserve.io/v1beta1" in missing["message"]


def test_nested_diff_removes_stale_keys() -> None:
    ready = {"inferenceService": "x", "ready": True, "url": URL}
    assert nested_diff({"ready": False, "reason": "NotReady", "message": "m"}, ready) == {
        **ready,
        "reason": None,
        "message": None,
    }
    assert nested_diff(ready, None) is None


def test_only_a_succeeded_job_with_serving_has_serving_to_do() -> None:
    assert wants_serving({"serving": {}}, {"phase": "Succeeded"})  # `serving: {}`: every default
    assert wants_serving({"serving": {"enabled": False}}, {"phase": "Succeeded"})  # to delete what it served
    assert not wants_serving({"serving": {"enabled": True}}, {"phase": "Running"})
    assert wants_serving({}, {"phase": "Succeeded", "serving": {"inferenceService": "x"}})  # left over: to delete
    assert not wants_serving({}, {"phase": "Succeeded"})


def test_spec_bounds(crd_schemas: SchemaSet) -> None:
    assert _spec().serving is not None and _spec().serving.runtime == "autox"  # type: ignore[union-attr]
    for bad in ({"minReplicas": -1}, {"maxReplicas": 0}, {"runtime": "tensorrt"}, {"resources": {"gpus": -1}}):
        with pytest.raises(ValidationError):
            _spec(**bad)
        body = {"apiVersion": "autox.io/v1alpha1", "kind": "VideoTrainingJob", "metadata": {"name": "x"}}
        raw = _spec().model_dump(by_alias=True, exclude_none=True)
        raw["serving"].update(bad)
        assert crd_schemas.errors({**body, "spec": raw}), bad
    with pytest.raises(ValidationError, match="maxReplicas 1 is below minReplicas 2"):
        _spec(minReplicas=2, maxReplicas=1)


def test_the_crd_carries_the_replicas_rule_and_the_url_column() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "autox.io_videotrainingjobs.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    serving = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["serving"]
    rules = [r["rule"] for r in serving["x-kubernetes-validations"]]
    assert any("self.maxReplicas >= self.minReplicas" in r for r in rules)
    assert {"name": "URL", "type": "string", "jsonPath": ".status.serving.url"}.items() <= next(
        c for c in version["additionalPrinterColumns"] if c["name"] == "URL"
    ).items()


EXAMPLES = [p for p in sorted((ROOT / "examples").glob("videotrainingjob*.yaml")) if "serving:" in p.read_text()]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("runtime", ["autox", "triton"])
def test_every_serving_example_builds_a_valid_inference_service(
    path: Path, runtime: str, kserve_schema: SchemaSet
) -> None:
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["serving"]["runtime"] = runtime
    spec = VideoTrainingJobSpec.model_validate(doc["spec"])
    owner = Owner(kind="VideoTrainingJob", name=doc["metadata"]["name"], namespace="ns", uid="uid")
    kserve_schema.validate(build_inference_service(owner, spec, checkpoint=BEST, settings=SETTINGS))


@pytest.mark.parametrize(
    ("serving", "export"),
    [
        ({"runtime": "triton"}, ["onnx"]),
        ({"runtime": "triton", "enabled": False}, []),
        ({"runtime": "autox"}, []),
        (None, []),
    ],
    ids=["triton", "triton disabled", "autox", "no serving"],
)
def test_runtime_triton_tells_the_trainer_to_export(serving: dict[str, Any] | None, export: list[str]) -> None:
    from autox_operator.builders import build_training_config

    spec = _spec(**serving) if serving is not None else _spec().model_copy(update={"serving": None})
    assert build_training_config(spec, SETTINGS).export == export


def test_a_searchs_best_trial_export_is_copied_to_output_export_once(operator_s3: Any) -> None:
    import json

    from autox_operator import s3
    from autox_operator.exports import ensure_export
    from autox_operator.prerequisites import Waiting

    from autox_video.spec.serving import export_files

    access = s3.S3Access(operator_s3.endpoint_url, "us-east-1", "testing", "testing")
    bucket = operator_s3.new_bucket()
    output = f"s3://{bucket}/runs/ucf"
    with pytest.raises(Waiting) as missing:  # the best trial has not exported (yet)
        ensure_export(access, output, 2, f"{output}/best.pth")
    assert missing.value.reason == "ExportMissing"
    assert f"no export at {output}/trials/0002/export/" in missing.value.message
    for number, sha in ((1, "aaa"), (2, "bbb")):
        trial = f"{output}/trials/{number:04d}/export/"
        for rel in export_files():
            body = json.dumps({"checkpoint_sha256": sha}) if rel == "model.json" else f"{rel} of trial {number}"
            operator_s3.put_text(f"{trial}{rel}", body)

    assert ensure_export(access, output, 2, f"{output}/best.pth") == f"{output}/export/"
    client = operator_s3.client
    read = lambda key: client.get_object(Bucket=bucket, Key=f"runs/ucf/export/{key}")["Body"].read().decode()  # noqa: E731
    assert read("triton/autox_video/1/model.onnx") == "triton/autox_video/1/model.onnx of trial 2"
    assert json.loads(read("model.json")) == {"checkpoint_sha256": "bbb"}
    # Already there for that checkpoint: nothing copied again (a marker left in the target stays).
    operator_s3.put_text(f"{output}/export/model.onnx", "kept")
    ensure_export(access, output, 2, f"{output}/best.pth")
    assert read("model.onnx") == "kept"
    # Another best trial: its export replaces the first's.
    ensure_export(access, output, 1, f"{output}/best.pth")
    assert read("model.onnx") == "model.onnx of trial 1"
    assert json.loads(read("model.json")) == {"checkpoint_sha256": "aaa"}
    # A plain job: only output/export/model.json's presence counts.
    assert ensure_export(access, output, None, f"{output}/best.pth") == f"{output}/export/"


def _component_pods(isvc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Each InferenceService component as the pod spec KServe makes of it: its own pod fields, and its
    containers (a `model` predictor's container is the model spec, merged into the runtime's container)."""
    pods = []
    for name, component in isvc["spec"].items():
        pod = {k: v for k, v in component.items() if k != "model"}
        if "model" in component:
            model = component["model"]
            pod["containers"] = [{"name": "kserve-container", **{k: v for k, v in model.items() if k != "modelFormat"}}]
        pods.append((name, pod))
    return pods


@pytest.mark.parametrize("runtime", ["autox", "triton"])
@pytest.mark.parametrize(
    "serving",
    [{}, {"resources": {"gpus": 1, "cpu": 2, "memory": "8Gi"}, "minReplicas": 0}, {"serviceAccountName": "serve"}],
    ids=["defaults", "gpus", "account"],
)
def test_every_inference_service_pod_satisfies_pod_security_restricted(
    runtime: str, serving: dict[str, Any], kserve_schema: SchemaSet
) -> None:
    from pod_security import assert_restricted, restricted_violations

    isvc = build_inference_service(OWNER, _spec(runtime=runtime, **serving), checkpoint=BEST, settings=SETTINGS)
    kserve_schema.validate(isvc)  # every field set is one KServe's schema has, where it has it
    pods = _component_pods(isvc)
    assert [n for n, _ in pods] == (["predictor"] if runtime == "autox" else ["predictor", "transformer"])
    for _, pod in pods:
        assert_restricted(pod)
        # The pod-level part is needed: without it the containers run unconfined by seccomp.
        bare = {k: v for k, v in pod.items() if k != "securityContext"}
        assert "seccomp" in restricted_violations(bare)
    ours = [pod for _, pod in pods if "volumes" in pod]  # our image: writable scratch for downloads and uploads
    for pod in ours:
        (container,) = pod["containers"]
        assert pod["securityContext"]["runAsUser"] == 10001 and container["volumeMounts"][0]["mountPath"] == "/data"


@pytest.mark.parametrize("runtime", ["autox", "triton"])
@pytest.mark.parametrize(
    ("job_account", "serving_account", "expected"),
    [
        (None, None, None),
        ("train-sa", None, "train-sa"),
        ("train-sa", "serve-sa", "serve-sa"),
        (None, "serve-sa", "serve-sa"),
    ],
    ids=["none", "the job's", "serving's over the job's", "serving's"],
)
def test_the_serving_pods_run_under_the_jobs_service_account_unless_serving_names_one(
    runtime: str, job_account: str | None, serving_account: str | None, expected: str | None
) -> None:
    serving: dict[str, Any] = {
        "runtime": runtime,
        **({"serviceAccountName": serving_account} if serving_account else {}),
    }
    spec = _spec(**serving).model_copy(update={"service_account_name": job_account})
    isvc = build_inference_service(OWNER, spec, checkpoint=BEST, settings=SETTINGS)
    for name, component in isvc["spec"].items():
        assert component.get("serviceAccountName") == expected, name


def test_switching_runtime_drops_the_other_runtimes_security_fields_too() -> None:
    autox = build_inference_service(OWNER, _spec(), checkpoint=BEST, settings=SETTINGS)
    triton = build_inference_service(OWNER, _spec(runtime="triton"), checkpoint=BEST, settings=SETTINGS)
    patch = update_patch(autox, triton)
    assert patch is not None
    # Merge-patching leaves keys it does not null: the Triton pod must not keep our image's uid or volumes.
    assert patch["spec"]["predictor"]["securityContext"] == {
        "runAsUser": None,
        "runAsGroup": None,
        "fsGroup": None,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert patch["spec"]["predictor"]["volumes"] is None and patch["spec"]["predictor"]["containers"] is None
