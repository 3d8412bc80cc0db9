"""End to end: the real kopf operator, in-process, against a Kubernetes API (kmock, or a real cluster
with AUTOX_E2E_KUBECONFIG) and a real S3 server (moto). The test plays the Kubeflow training
operator (PyTorchJob conditions) and the trainer (progress.json, results.json)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from k8s_cluster import Cluster, wait_for
from k8s_schemas import SchemaSet
from ops3 import S3, S3_KEY, S3_SECRET
from prom import free_port, scrape, total, value

from autox_video.config import Config

VTJ, VIJ, PJ = "videotrainingjobs", "videoinferencejobs", "pytorchjobs"


def training_job(namespace: str, name: str, bucket: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dataset": {
            "videos": f"s3://{bucket}/videos/",
            "train": f"s3://{bucket}/train.txt",
            "val": f"s3://{bucket}/val.txt",
        },
        "model": {"backbone": "swin_t"},
        "training": {"epochs": 3, "batchSizePerGpu": 2, "evalInterval": 1},
        "resources": {"replicas": 2, "gpusPerReplica": 4, "cpu": "8", "memory": "32Gi"},
        "output": f"s3://{bucket}/runs/{name}",
        "storage": {"endpoint": endpoint, "region": "us-east-1", "secretRef": "s3-credentials"},
    }
    spec.update(overrides)
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def inference_job(namespace: str, name: str, bucket: str, endpoint: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoInferenceJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": model,
            "dataset": {"videos": f"s3://{bucket}/videos/", "list": f"s3://{bucket}/test.txt"},
            "output": f"s3://{bucket}/predictions/",
            "storage": {"endpoint": endpoint, "secretRef": "s3-credentials"},
        },
    }


def progress(bucket: str, name: str, *, phase: str, epoch: int, best: float | None, best_epoch: int | None) -> dict:
    out = f"s3://{bucket}/runs/{name}/"
    return {
        "phase": phase,
        "epoch": epoch,
        "total_epochs": 3,
        "best_top1": best,
        "best_epoch": best_epoch,
        "best_checkpoint": f"{out}best.pth" if best is not None else None,
        "latest_checkpoint": f"{out}epoch_{epoch}.pth",
        "updated": "2024-06-01T12:00:00Z",
    }


def owned_pytorchjobs(cluster: Cluster, namespace: str, owner: str) -> list[dict[str, Any]]:
    return [
        pj
        for pj in cluster.pytorchjobs(namespace)
        if any(ref["name"] == owner for ref in pj["metadata"].get("ownerReferences", []))
    ]


def setup_storage(cluster: Cluster, namespace: str, s3: S3) -> str:
    bucket = s3.new_bucket()
    for name in ("train.txt", "val.txt", "test.txt"):
        s3.put_text(f"s3://{bucket}/{name}", "a/v1.mp4 0\nb/v2.mp4 1\nb/v3.mp4 1\n")
    cluster.create_secret(
        namespace, "s3-credentials", {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    )
    return bucket


def test_training_job_runs_to_success_across_an_operator_restart_then_inference_uses_its_best_checkpoint(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    crd_schemas: SchemaSet,
    pytorchjob_schema: SchemaSet,
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(namespace, "ucf", bucket, operator_s3.endpoint_url)
    vij = inference_job(namespace, "ucf-test", bucket, operator_s3.endpoint_url, {"trainingJobRef": "ucf"})
    crd_schemas.validate(vtj)
    crd_schemas.validate(vij)
    port = free_port()  # /metrics, scraped as the story goes (counters are per process: compared to `before`)

    with run_operator(metrics_port=port):
        before = scrape(port)
        assert value(before, "autox_jobs", kind="VideoTrainingJob", phase="Pending") == 0  # no job seen yet
        cluster.create(vtj)

        # The operator writes the trainer config and creates the PyTorchJob, both owned by the job.
        pj = wait_for(lambda: cluster.get(PJ, namespace, "ucf"), what="the PyTorchJob")
        created = value(scrape(port), "autox_child_creations_total", kind="VideoTrainingJob", engine="PyTorchJob")
        assert created == value(before, "autox_child_creations_total", kind="VideoTrainingJob", engine="PyTorchJob") + 1
        pytorchjob_schema.validate(pj)
        replicas = pj["spec"]["pytorchReplicaSpecs"]
        assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
        assert pj["spec"]["nprocPerNode"] == "4"
        container = replicas["Master"]["template"]["spec"]["containers"][0]
        assert container["name"] == "pytorch" and container["image"] == "registry.test/autox-video-trainer:e2e"
        assert container["args"] == ["train", "--config", "/etc/autox/config.yaml"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
        env = {e["name"]: e for e in container["env"]}
        assert env["AWS_ENDPOINT_URL"]["value"] == operator_s3.endpoint_url
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "s3-credentials",
            "key": "AWS_SECRET_ACCESS_KEY",
        }
        owner_uid = cluster.get(VTJ, namespace, "ucf")["metadata"]["uid"]
        assert [ref["uid"] for ref in pj["metadata"]["ownerReferences"]] == [owner_uid]

        data = wait_for(lambda: cluster.configmap(namespace, "ucf-config"), what="the ConfigMap")
        config = Config(**yaml.safe_load(data["config.yaml"]))
        assert config.work_dir == f"s3://{bucket}/runs/ucf/" and config.epoch == 3 and config.backbone == "swin_t"
        assert wait_for(lambda: cluster.status(VTJ, namespace, "ucf").get("pytorchJob")) == "ucf"

        # The training operator starts the pods; the trainer reports its first epoch.
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="running", epoch=1, best=0.5, best_epoch=1),
        )
        cluster.set_pytorchjob_status(namespace, "ucf", "Created", "Running", startTime="2024-06-01T11:00:00Z")
        cluster.wait_status(
            VTJ,
            namespace,
            "ucf",
            phase="Running",
            epoch=1,
            bestTop1=0.5,
            totalEpochs=3,
            startTime="2024-06-01T11:00:00Z",
        )

        # An inference job that references it waits, and says why.
        cluster.create(vij)
        waiting = wait_for(lambda: cluster.status(VIJ, namespace, "ucf-test").get("conditions"), what="waiting")
        assert waiting[0]["type"] == "Waiting" and waiting[0]["reason"] == "TrainingJobNotSucceeded"
        assert "VideoTrainingJob 'ucf'" in waiting[0]["message"]
        assert owned_pytorchjobs(cluster, namespace, "ucf-test") == []
        now = scrape(port)
        assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Running") == 1
        assert value(now, "autox_jobs", kind="VideoInferenceJob", phase="Pending") == 1
        waited = ("autox_errors_total", {"kind": "VideoInferenceJob", "reason": "TrainingJobNotSucceeded"})
        assert value(now, waited[0], **waited[1]) > value(before, waited[0], **waited[1])
        assert total(now, "autox_s3_request_duration_seconds_count", operation="get_object") > total(
            before, "autox_s3_request_duration_seconds_count", operation="get_object"
        )  # progress.json

    # Progress while the operator is down; then a fresh operator process.
    operator_s3.put_json(
        f"s3://{bucket}/runs/ucf/progress.json",
        progress(bucket, "ucf", phase="running", epoch=2, best=0.75, best_epoch=2),
    )
    with run_operator(metrics_port=port):  # the same port: the stopped operator let it go
        cluster.wait_status(VTJ, namespace, "ucf", phase="Running", epoch=2, bestTop1=0.75, bestEpoch=2)
        assert len(owned_pytorchjobs(cluster, namespace, "ucf")) == 1

        operator_s3.put_text(f"s3://{bucket}/runs/ucf/best.pth", "weights")
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.9, best_epoch=3),
        )
        cluster.set_pytorchjob_status(namespace, "ucf", "Created", "Succeeded", completionTime="2024-06-01T13:00:00Z")
        status = cluster.wait_status(VTJ, namespace, "ucf", phase="Succeeded", epoch=3, bestTop1=0.9)
        assert status["bestCheckpoint"] == f"s3://{bucket}/runs/ucf/best.pth"
        assert status["completionTime"] == "2024-06-01T13:00:00Z" and status["totalEpochs"] == 3
        wait_for(lambda: {"Running", "Succeeded"} <= set(cluster.event_reasons(namespace, "ucf")), what="Events")
        crd_schemas.validate(cluster.get(VTJ, namespace, "ucf"))

        # Now the inference job starts with the best checkpoint.
        ipj = wait_for(lambda: cluster.get(PJ, namespace, "ucf-test"), what="the inference PyTorchJob")
        pytorchjob_schema.validate(ipj)
        icontainer = ipj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
        assert icontainer["args"] == ["test", "--config", "/etc/autox/config.yaml"]
        iconfig = Config(**yaml.safe_load(cluster.configmap(namespace, "ucf-test-config")["config.yaml"]))
        assert iconfig.checkpoint == f"s3://{bucket}/runs/ucf/best.pth"
        assert iconfig.test_results_path == f"s3://{bucket}/predictions/results.json"
        assert iconfig.backbone == "swin_t"  # from the training job

        operator_s3.put_json(
            f"s3://{bucket}/predictions/results.json",
            {
                "model": "swin_t",
                "checkpoint": iconfig.checkpoint,
                "classes": ["a", "b"],
                "metrics": {"top1": 0.66, "top5": 1.0},
                "predictions": [{"video": v} for v in ("a/v1.mp4", "b/v2.mp4", "b/v3.mp4")],
            },
        )
        # Every video had a label: the trainer writes the evaluation report beside results.json.
        operator_s3.put_text(f"s3://{bucket}/predictions/report.html", "<!doctype html><title>report</title>")
        cluster.set_pytorchjob_status(namespace, "ucf-test", "Created", "Running")
        wait_for(lambda: cluster.status(VIJ, namespace, "ucf-test").get("phase") == "Running", what="vij Running")
        cluster.set_pytorchjob_status(namespace, "ucf-test", "Created", "Succeeded")
        istatus = wait_for(
            lambda: (s := cluster.status(VIJ, namespace, "ucf-test")).get("phase") == "Succeeded" and s,
            what="vij Succeeded",
        )
        assert istatus["videos"] == 3 and istatus["metrics"] == {"top1": 0.66, "top5": 1.0}
        assert istatus["resultsUri"] == f"s3://{bucket}/predictions/results.json"
        assert istatus["reportUri"] == f"s3://{bucket}/predictions/report.html"
        crd_schemas.validate(cluster.get(VIJ, namespace, "ucf-test"))

        # /metrics: both jobs counted Succeeded (from the watch), the passes timed, the inference child counted.
        def both_succeeded() -> Any:
            now = scrape(port)
            done = [
                value(now, "autox_jobs", kind=k, phase="Succeeded") for k in ("VideoTrainingJob", "VideoInferenceJob")
            ]
            return now if done == [1, 1] else None

        now = wait_for(both_succeeded, what="/metrics: both jobs Succeeded")
        assert total(now, "autox_jobs") == 2  # every other (kind, phase) is exported as 0
        for kind in ("VideoTrainingJob", "VideoInferenceJob"):
            assert value(now, "autox_reconcile_duration_seconds_count", kind=kind, step="sync") > 0
            assert value(now, "autox_reconcile_duration_seconds_count", kind=kind, step="start") > 0
        assert (
            value(now, "autox_child_creations_total", kind="VideoInferenceJob", engine="PyTorchJob")
            == value(before, "autox_child_creations_total", kind="VideoInferenceJob", engine="PyTorchJob") + 1
        )

    assert len(owned_pytorchjobs(cluster, namespace, "ucf")) == 1
    assert len(owned_pytorchjobs(cluster, namespace, "ucf-test")) == 1


def test_a_pytorchjob_that_finished_and_vanished_while_the_operator_was_down_is_not_run_again(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any
) -> None:
    """ttlSecondsAfterFinished deleted the PyTorchJob before the operator saw it succeed."""
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(training_job(namespace, "gone", bucket, operator_s3.endpoint_url))
        wait_for(lambda: cluster.get(PJ, namespace, "gone"), what="the PyTorchJob")
        cluster.set_pytorchjob_status(namespace, "gone", "Created", "Running")
        cluster.wait_status(VTJ, namespace, "gone", phase="Running")

    operator_s3.put_json(
        f"s3://{bucket}/runs/gone/progress.json",
        progress(bucket, "gone", phase="succeeded", epoch=3, best=0.8, best_epoch=3),
    )
    cluster.delete_pytorchjob(namespace, "gone")
    with run_operator():
        status = cluster.wait_status(VTJ, namespace, "gone", phase="Succeeded", epoch=3, bestTop1=0.8)
        assert status["conditions"][0]["reason"] == "PyTorchJobDeleted"
        assert owned_pytorchjobs(cluster, namespace, "gone") == []  # the finished run is not started again


def test_suspend_and_resume(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, crd_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    vtj = training_job(namespace, "pausable", bucket, operator_s3.endpoint_url)
    crd_schemas.validate(vtj)
    with run_operator():
        cluster.create(vtj)
        wait_for(lambda: cluster.get(PJ, namespace, "pausable"), what="the PyTorchJob")
        cluster.set_pytorchjob_status(namespace, "pausable", "Created", "Running")
        wait_for(lambda: cluster.status(VTJ, namespace, "pausable").get("phase") == "Running", what="Running")

        cluster.patch_spec(VTJ, namespace, "pausable", {"runPolicy": {"suspend": True}})
        wait_for(
            lambda: cluster.get(PJ, namespace, "pausable")["spec"]["runPolicy"]["suspend"] is True,
            what="the PyTorchJob suspended",
        )
        wait_for(lambda: cluster.status(VTJ, namespace, "pausable").get("phase") == "Suspended", what="Suspended")
        cluster.set_pytorchjob_status(namespace, "pausable", "Created", "Suspended")

        cluster.patch_spec(VTJ, namespace, "pausable", {"runPolicy": {"suspend": False}})
        wait_for(
            lambda: cluster.get(PJ, namespace, "pausable")["spec"]["runPolicy"]["suspend"] is False,
            what="the PyTorchJob resumed",
        )
        cluster.set_pytorchjob_status(namespace, "pausable", "Created", "Running")
        wait_for(lambda: cluster.status(VTJ, namespace, "pausable").get("phase") == "Running", what="Running again")
        wait_for(lambda: {"Suspended", "Running"} <= set(cluster.event_reasons(namespace, "pausable")), what="Events")
        assert len(owned_pytorchjobs(cluster, namespace, "pausable")) == 1


def _waiting(cluster: Cluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = cluster.status(VTJ, namespace, name)
        conditions = status.get("conditions") or []
        return status if conditions and conditions[0].get("reason") == reason else None

    status = wait_for(check, what=f"condition reason {reason}")
    assert status["phase"] == "Pending" and status["conditions"][0]["type"] == "Waiting"
    assert "Traceback" not in json.dumps(status)
    return status


def test_missing_secret_waits_with_a_message_then_starts_once_created(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    crd_schemas: SchemaSet,
) -> None:
    bucket = operator_s3.new_bucket()
    operator_s3.put_text(f"s3://{bucket}/train.txt", "a.mp4 0\n")
    vtj = training_job(namespace, "nosecret", bucket, operator_s3.endpoint_url)
    crd_schemas.validate(vtj)
    with run_operator():
        cluster.create(vtj)
        status = _waiting(cluster, namespace, "nosecret", "SecretNotFound")
        assert status["message"].startswith("Secret 's3-credentials' not found in namespace")
        assert "spec.storage.secretRef" in status["message"]
        assert cluster.get(PJ, namespace, "nosecret") is None

        cluster.create_secret(
            namespace, "s3-credentials", {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        )
        wait_for(lambda: cluster.get(PJ, namespace, "nosecret"), what="the PyTorchJob after the Secret appeared")
        status = wait_for(lambda: (s := cluster.status(VTJ, namespace, "nosecret")).get("pytorchJob") and s)
        assert status["phase"] == "Pending" and not status.get("message") and status.get("conditions") == []


def test_unusable_storage_waits_with_a_message_that_says_what_to_fix(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    crd_schemas: SchemaSet,
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    no_bucket = training_job(namespace, "nobucket", "autox-e2e-missing-bucket", operator_s3.endpoint_url)
    unreachable = training_job(namespace, "unreachable", bucket, "http://127.0.0.1:9")
    for obj in (no_bucket, unreachable):
        crd_schemas.validate(obj)
    with run_operator():
        cluster.create(no_bucket)
        cluster.create(unreachable)
        status = _waiting(cluster, namespace, "nobucket", "BucketNotFound")
        assert "bucket 'autox-e2e-missing-bucket' does not exist" in status["message"]
        status = _waiting(cluster, namespace, "unreachable", "StorageUnreachable")
        assert "http://127.0.0.1:9" in status["message"] and "spec.storage.endpoint" in status["message"]
        assert cluster.pytorchjobs(namespace) == []


def test_inference_of_a_failed_training_job_fails_then_runs_once_its_spec_names_a_checkpoint(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, crd_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    operator_s3.put_text(f"s3://{bucket}/models/good.pth", "weights")
    vtj = training_job(namespace, "broken", bucket, operator_s3.endpoint_url)
    vij = inference_job(namespace, "predict", bucket, operator_s3.endpoint_url, {"trainingJobRef": "broken"})
    with run_operator():
        cluster.create(vtj)
        wait_for(lambda: cluster.get(PJ, namespace, "broken"), what="the PyTorchJob")
        cluster.set_pytorchjob_status(namespace, "broken", "Created", "Failed")
        wait_for(lambda: cluster.status(VTJ, namespace, "broken").get("phase") == "Failed", what="training Failed")

        crd_schemas.validate(vij)
        cluster.create(vij)
        status = wait_for(
            lambda: (s := cluster.status(VIJ, namespace, "predict")).get("phase") == "Failed" and s,
            what="inference Failed",
        )
        assert status["conditions"][0]["reason"] == "TrainingJobFailed"
        assert "set spec.model.checkpoint" in status["message"] and "Traceback" not in json.dumps(status)
        assert owned_pytorchjobs(cluster, namespace, "predict") == []

        fixed = {"trainingJobRef": None, "checkpoint": f"s3://{bucket}/models/good.pth", "backbone": "swin_t"}
        crd_schemas.validate({**vij, "spec": {**vij["spec"], "model": {k: v for k, v in fixed.items() if v}}})
        cluster.patch_spec(VIJ, namespace, "predict", {"model": fixed})
        wait_for(lambda: cluster.get(PJ, namespace, "predict"), what="the PyTorchJob after the fix")
        status = wait_for(lambda: (s := cluster.status(VIJ, namespace, "predict")).get("pytorchJob") and s)
        assert status["phase"] == "Pending" and status["checkpoint"] == f"s3://{bucket}/models/good.pth"


def test_a_queued_pytorchjob_is_created_suspended_and_queued_until_kueue_admits_it(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, pytorchjob_schema: SchemaSet
) -> None:
    """The test plays Kueue: it admits the job by un-suspending it (runPolicy.suspend)."""
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(training_job(namespace, "queued", bucket, operator_s3.endpoint_url, queueName="team-gpu"))
        pj = wait_for(lambda: cluster.get(PJ, namespace, "queued"), what="the PyTorchJob")
        pytorchjob_schema.validate(pj)
        assert pj["spec"]["runPolicy"]["suspend"] is True
        assert pj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpu"
        status = cluster.wait_status(VTJ, namespace, "queued", phase="Queued", engine="pytorchjob", pytorchJob="queued")
        assert "LocalQueue 'team-gpu'" in status["message"]

        cluster.patch_child(PJ, namespace, "queued", {"spec": {"runPolicy": {"suspend": False}}})  # admitted
        cluster.set_pytorchjob_status(namespace, "queued", "Created", "Running")
        cluster.wait_status(VTJ, namespace, "queued", phase="Running")

        # A user's suspend is Suspended; on resume the operator leaves un-suspending to Kueue.
        cluster.patch_spec(VTJ, namespace, "queued", {"runPolicy": {"suspend": True}})
        wait_for(lambda: cluster.get(PJ, namespace, "queued")["spec"]["runPolicy"]["suspend"] is True, what="suspend")
        cluster.set_pytorchjob_status(namespace, "queued", "Created", "Suspended")
        cluster.wait_status(VTJ, namespace, "queued", phase="Suspended")
        cluster.patch_spec(VTJ, namespace, "queued", {"runPolicy": {"suspend": False}})
        cluster.wait_status(VTJ, namespace, "queued", phase="Queued")
        assert cluster.get(PJ, namespace, "queued")["spec"]["runPolicy"]["suspend"] is True
