"""End to end, spec.serving: the real kopf operator against a Kubernetes API (kmock over HTTP, or a real
cluster with AUTOX_E2E_KUBECONFIG and KServe's CRD installed) and a real S3 server (moto). The test plays
the training operator (PyTorchJob conditions), the trainer (progress.json) and KServe (the InferenceService's
URL and Ready condition). Every InferenceService the operator writes is validated against the real KServe CRD."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_cluster import PYTORCHJOB_RESOURCES, Cluster, KmockThread, wait_for
from k8s_schemas import SchemaSet, our_crd_paths
from kubernetes.client.rest import ApiException
from ops3 import S3
from test_operator_e2e import progress, setup_storage, training_job

from autox_video.spec.serving import export_files

VTJ, PJ = "videotrainingjobs", "pytorchjobs"
KS_GROUP, KS_VERSION, ISVC = "serving.kserve.io", "v1beta1", "inferenceservices"
KSERVE_RESOURCES: dict[str, dict[str, Any]] = {
    f"{KS_GROUP}/{KS_VERSION}/{ISVC}": {"kind": "InferenceService", "namespaced": True, "subresources": {"status"}},
}


def _kserve_served(cluster: Cluster) -> bool:
    try:
        found = cluster.custom.get_api_resources(KS_GROUP, KS_VERSION)
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return any(r.name == ISVC for r in found.resources or [])


@pytest.fixture(scope="module", params=["kserve", "no-kserve"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, crd_schemas: SchemaSet
) -> Iterator[Cluster]:
    """A Kubernetes API with PyTorchJob and, for `kserve`, KServe's InferenceService (overrides conftest's):
    kmock, or the real cluster of AUTOX_E2E_KUBECONFIG when it matches the case (else the case is skipped)."""
    with_kserve = request.param == "kserve"
    real = os.environ.get("AUTOX_E2E_KUBECONFIG")
    if real:
        c = Cluster(Path(real), real=True, schemas=crd_schemas)
        if _kserve_served(c) != with_kserve:
            pytest.skip(f"the cluster of AUTOX_E2E_KUBECONFIG {'lacks' if with_kserve else 'has'} KServe")
        c.install_crds(our_crd_paths())
        yield c
        return
    server = KmockThread({**PYTORCHJOB_RESOURCES, **(KSERVE_RESOURCES if with_kserve else {})}).start()
    try:
        yield Cluster(
            server.write_kubeconfig(tmp_path_factory.mktemp("kube-kserve") / "kubeconfig"),
            real=False,
            schemas=crd_schemas,
        )
    finally:
        server.stop()


def _isvc(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return cluster.custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, ISVC, name)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _play_kserve(cluster: Cluster, namespace: str, name: str, url: str) -> None:
    """What KServe's controller does once the predictor is up: status.url and a Ready condition."""
    now = "2024-06-01T14:00:00Z"
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now} for t in ("IngressReady", "PredictorReady", "Ready")
    ]
    cluster.custom.patch_namespaced_custom_object_status(
        KS_GROUP, KS_VERSION, namespace, ISVC, name, {"status": {"url": url, "conditions": conditions}}
    )


def _succeed(cluster: Cluster, namespace: str, s3: S3, bucket: str, name: str) -> dict[str, Any]:
    """Play the training operator and the trainer to the end of training; wait for phase Succeeded."""
    wait_for(lambda: cluster.get(PJ, namespace, name), what="the PyTorchJob")
    s3.put_text(f"s3://{bucket}/runs/{name}/best.pth", "weights")
    s3.put_json(
        f"s3://{bucket}/runs/{name}/progress.json",
        progress(bucket, name, phase="succeeded", epoch=3, best=0.9, best_epoch=3),
    )
    cluster.set_pytorchjob_status(namespace, name, "Created", "Succeeded", completionTime="2024-06-01T13:00:00Z")
    return cluster.wait_status(
        VTJ, namespace, name, phase="Succeeded", bestCheckpoint=f"s3://{bucket}/runs/{name}/best.pth"
    )


def _serving(cluster: Cluster, namespace: str, name: str, **expected: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        serving = cluster.status(VTJ, namespace, name).get("serving") or {}
        return serving if serving and all(serving.get(k) == v for k, v in expected.items()) else None

    return wait_for(check, what=f"status.serving {expected}")


@pytest.mark.parametrize("cluster", ["kserve"], indirect=True)
def test_a_succeeded_job_is_served_its_url_reported_and_spec_serving_changes_apply(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    crd_schemas: SchemaSet,
    kserve_schema: SchemaSet,
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(
        namespace, "ucf", bucket, operator_s3.endpoint_url, serving={"runtime": "autox", "maxReplicas": 2}
    )
    with run_operator():
        cluster.create(vtj)
        uid = cluster.get(VTJ, namespace, "ucf")["metadata"]["uid"]
        assert _isvc(cluster, namespace, "ucf-serve") is None  # nothing to serve while it trains
        _succeed(cluster, namespace, operator_s3, bucket, "ucf")

        # The InferenceService: our serve on the best checkpoint, owned by the job (deleted with it).
        isvc = wait_for(lambda: _isvc(cluster, namespace, "ucf-serve"), what="the InferenceService")
        kserve_schema.validate(isvc)
        assert [(r["kind"], r["uid"], r["controller"]) for r in isvc["metadata"]["ownerReferences"]] == [
            ("VideoTrainingJob", uid, True)
        ]
        predictor = isvc["spec"]["predictor"]
        (container,) = predictor["containers"]
        assert container["image"] == "registry.test/autox-video-trainer:e2e" and container["command"] == ["autox-video"]
        best = f"s3://{bucket}/runs/ucf/best.pth"
        assert container["args"] == ["serve", "--checkpoint", best, "--name", "ucf-serve", "--port", "8080"]
        env = {e["name"]: e for e in container["env"]}
        assert env["AWS_ENDPOINT_URL"]["value"] == operator_s3.endpoint_url
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
            "name": "s3-credentials",
            "key": "AWS_ACCESS_KEY_ID",
        }
        assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 2)
        waiting = _serving(cluster, namespace, "ucf", inferenceService="ucf-serve", ready=False)
        assert waiting["runtime"] == "autox" and waiting.get("url") is None

        # KServe reports it ready: status.serving carries the URL (the printer column), the job stays Succeeded.
        url = f"http://ucf-serve.{namespace}.example.com"
        _play_kserve(cluster, namespace, "ucf-serve", url)
        served = _serving(cluster, namespace, "ucf", ready=True, url=url)
        assert "reason" not in served and "message" not in served
        status = cluster.status(VTJ, namespace, "ucf")
        assert status["phase"] == "Succeeded"
        crd_schemas.validate(cluster.get(VTJ, namespace, "ucf"))
        wait_for(lambda: "Serving" in cluster.event_reasons(namespace, "ucf"), what="the Serving event")

        # Changing spec.serving patches it: Triton on the export, our serve as the transformer.
        cluster.patch_spec(VTJ, namespace, "ucf", {"serving": {"runtime": "triton", "maxReplicas": 2}})

        def triton() -> dict[str, Any] | None:
            isvc = _isvc(cluster, namespace, "ucf-serve")
            return isvc if isvc and "transformer" in isvc["spec"] else None

        isvc = wait_for(triton, what="the InferenceService on Triton")
        kserve_schema.validate(isvc)
        assert "containers" not in isvc["spec"]["predictor"]
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"s3://{bucket}/runs/ucf/export/triton/"
        assert isvc["spec"]["transformer"]["containers"][0]["args"][:3] == [
            "serve",
            "--model",
            f"s3://{bucket}/runs/ucf/export/",
        ]
        _serving(cluster, namespace, "ucf", runtime="triton", checkpoint=f"s3://{bucket}/runs/ucf/export/")
        assert "SpecChangeIgnored" not in cluster.event_reasons(namespace, "ucf")

        # Disabled: the InferenceService goes, and status.serving with it.
        cluster.patch_spec(VTJ, namespace, "ucf", {"serving": {"enabled": False}})
        wait_for(lambda: _isvc(cluster, namespace, "ucf-serve") is None, what="the InferenceService deleted")
        wait_for(lambda: "serving" not in cluster.status(VTJ, namespace, "ucf"), what="status.serving removed")
        assert cluster.status(VTJ, namespace, "ucf")["phase"] == "Succeeded"


@pytest.mark.parametrize("cluster", ["no-kserve"], indirect=True)
def test_without_kserve_the_job_still_trains_and_serving_waits_saying_what_to_install(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, crd_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(namespace, "ucf", bucket, operator_s3.endpoint_url, serving={})
    with run_operator():
        cluster.create(vtj)
        _succeed(cluster, namespace, operator_s3, bucket, "ucf")
        serving = _serving(cluster, namespace, "ucf", reason="KServeNotServed", ready=False)
        assert "install KServe (serving.kserve.io/v1beta1 InferenceService)" in serving["message"]
        assert serving["inferenceService"] == "ucf-serve"
        assert cluster.status(VTJ, namespace, "ucf")["phase"] == "Succeeded"
        wait_for(lambda: "KServeNotServed" in cluster.event_reasons(namespace, "ucf"), what="the warning Event")
        crd_schemas.validate(cluster.get(VTJ, namespace, "ucf"))


@pytest.mark.parametrize("cluster", ["kserve"], indirect=True)
def test_someone_elses_inference_service_of_that_name_is_left_alone(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, kserve_schema: SchemaSet
) -> None:
    foreign = {
        "apiVersion": f"{KS_GROUP}/{KS_VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": "mine-serve", "namespace": namespace},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/sk/"}}},
    }
    kserve_schema.validate(foreign)
    cluster.custom.create_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, ISVC, foreign)
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(training_job(namespace, "mine", bucket, operator_s3.endpoint_url, serving={}))
        _succeed(cluster, namespace, operator_s3, bucket, "mine")
        serving = _serving(cluster, namespace, "mine", reason="NameConflict", ready=False)
        assert "InferenceService 'mine-serve' already exists and belongs to another owner" in serving["message"]
        isvc = _isvc(cluster, namespace, "mine-serve")
        assert isvc is not None and isvc["spec"] == foreign["spec"] and not isvc["metadata"].get("ownerReferences")
        assert cluster.status(VTJ, namespace, "mine")["phase"] == "Succeeded"


@pytest.mark.parametrize("cluster", ["kserve"], indirect=True)
def test_triton_serving_waits_for_the_trainers_export_then_serves_it(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, kserve_schema: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(namespace, "ucf", bucket, operator_s3.endpoint_url, serving={"runtime": "triton"})
    with run_operator():
        cluster.create(vtj)
        # The trainer is told to export (config.yaml's `export`), since Triton serves output/export/.
        config = wait_for(lambda: cluster.configmap(namespace, "ucf-config"), what="the ConfigMap")
        assert yaml.safe_load(config["config.yaml"])["export"] == ["onnx"]
        _succeed(cluster, namespace, operator_s3, bucket, "ucf")

        # Succeeded without an export (e.g. trained before runtime triton was set): nothing points at nothing.
        export = f"s3://{bucket}/runs/ucf/export/"
        waiting = _serving(cluster, namespace, "ucf", reason="ExportMissing", ready=False)
        assert (
            f"no export at {export}" in waiting["message"] and "autox-video export --checkpoint" in waiting["message"]
        )
        assert _isvc(cluster, namespace, "ucf-serve") is None

        # The export arrives (model.json last, as the trainer writes it): the InferenceService follows.
        for rel in export_files():
            operator_s3.put_text(f"{export}{rel}", "x")
        isvc = wait_for(lambda: _isvc(cluster, namespace, "ucf-serve"), what="the InferenceService on Triton")
        kserve_schema.validate(isvc)
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"{export}triton/"
        served = _serving(cluster, namespace, "ucf", runtime="triton", checkpoint=export)
        assert served["reason"] == "NotReady"  # the InferenceService exists; KServe has yet to make it Ready
