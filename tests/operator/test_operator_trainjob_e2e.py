"""End to end on Kubeflow Trainer v2: the real kopf operator against a Kubernetes API (kmock over HTTP) whose
discovery serves trainer.kubeflow.org/v1alpha1 (TrainJob, cluster-scoped ClusterTrainingRuntime) and not
kubeflow.org/v1 PyTorchJob, and a real S3 server (moto). With trainer.backend `auto` the operator picks
TrainJob. The test plays Kubeflow Trainer (TrainJob conditions, jobsStatus), Kueue (spec.suspend, the
Suspended condition's reason) and the trainer (progress.json, results.json). Every TrainJob the operator
creates is validated against the real TrainJob CRD."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helm_engine import render
from k8s_cluster import TRAINER_RESOURCES, Cluster, KmockThread, OperatorThread, wait_for
from k8s_schemas import TRAINER_CRDS, SchemaSet
from ops3 import S3
from prom import free_port, scrape, value
from test_operator_e2e import inference_job, progress, setup_storage, training_job

from autox_video.config import Config

VTJ, VIJ, TJ = "videotrainingjobs", "videoinferencejobs", "trainjobs"
ACTIVE = [{"name": "node", "active": 2, "ready": 2, "succeeded": 0, "failed": 0, "suspended": 0}]

# A cluster that serves Trainer v2 gets the chart's runtime (install: auto); an offline render needs it asked for.
WITH_RUNTIME = {"trainer": {"runtime": {"install": True}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, crd_schemas: SchemaSet) -> Iterator[Cluster]:
    """A kmock API server with Kubeflow Trainer v2's resources and no PyTorchJob (overrides conftest's)."""
    server = KmockThread(TRAINER_RESOURCES).start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube-trainer") / "kubeconfig")
        yield Cluster(kubeconfig, real=False, schemas=crd_schemas)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def trainer_schemas() -> SchemaSet:
    return SchemaSet(TRAINER_CRDS)


@pytest.fixture(scope="module")
def chart_runtime(cluster: Cluster, trainer_schemas: SchemaSet) -> dict[str, Any]:
    """The chart's own ClusterTrainingRuntime, as `helm template` renders it, installed once."""
    runtime = render(WITH_RUNTIME).one("ClusterTrainingRuntime")
    return cluster.create_runtime(runtime, trainer_schemas)


def _trainjob(cluster: Cluster, namespace: str, name: str, schemas: SchemaSet) -> dict[str, Any]:
    tj = wait_for(lambda: cluster.get(TJ, namespace, name), what=f"TrainJob {name}")
    schemas.validate(tj)
    return tj


def _waiting(cluster: Cluster, plural: str, namespace: str, name: str, reason: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = cluster.status(plural, namespace, name)
        conditions = status.get("conditions") or []
        return status if conditions and conditions[0].get("reason") == reason else None

    status = wait_for(check, what=f"condition reason {reason}")
    assert status["phase"] == "Pending" and status["conditions"][0]["type"] == "Waiting"
    return status


def _pod_patch(tj: dict[str, Any]) -> dict[str, Any]:
    (patch,) = tj["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return job["template"]["spec"]["template"]


def test_training_waits_for_its_runtime_then_runs_as_a_trainjob_then_inference_uses_its_checkpoint(
    cluster: Cluster,
    namespace: str,
    operator_s3: S3,
    run_operator: Any,
    trainer_schemas: SchemaSet,
    crd_schemas: SchemaSet,
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    other = training_job(namespace, "other", bucket, operator_s3.endpoint_url, runtime={"name": "torch-gpu"})
    vtj = training_job(namespace, "ucf", bucket, operator_s3.endpoint_url)
    vij = inference_job(namespace, "ucf-test", bucket, operator_s3.endpoint_url, {"trainingJobRef": "ucf"})
    with run_operator():
        # A runtime nobody installed: the job waits and says so.
        cluster.create(other)
        status = _waiting(cluster, VTJ, namespace, "other", "TrainingRuntimeNotFound")
        assert "ClusterTrainingRuntime 'torch-gpu' not found" in status["message"]
        assert "spec.runtime.name" in status["message"] and cluster.children(TJ, namespace) == []

    runtime = copy.deepcopy(render(WITH_RUNTIME).one("ClusterTrainingRuntime"))
    runtime["metadata"]["name"] = "torch-gpu"
    cluster.create_runtime(runtime, trainer_schemas)
    # and the chart's own autox-video runtime
    cluster.create_runtime(render(WITH_RUNTIME).one("ClusterTrainingRuntime"), trainer_schemas)
    port = free_port()
    with run_operator(metrics_port=port):
        # `auto` picks TrainJob (the only engine served); the waiting job starts once its runtime exists.
        assert _trainjob(cluster, namespace, "other", trainer_schemas)["spec"]["runtimeRef"]["name"] == "torch-gpu"
        created = value(scrape(port), "autox_child_creations_total", kind="VideoTrainingJob", engine="TrainJob")
        cluster.create(vtj)
        tj = _trainjob(cluster, namespace, "ucf", trainer_schemas)
        now = scrape(port)  # /metrics counts the creation by engine
        assert value(now, "autox_child_creations_total", kind="VideoTrainingJob", engine="TrainJob") == created + 1
        spec = tj["spec"]
        assert spec["runtimeRef"] == {
            "apiGroup": "trainer.kubeflow.org",
            "kind": "ClusterTrainingRuntime",
            "name": "autox-video",
        }
        assert spec["trainer"]["numNodes"] == 2 and spec["trainer"]["numProcPerNode"] == 4
        assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
        assert spec["trainer"]["command"] == ["autox-entrypoint"]
        assert spec["trainer"]["args"] == ["train", "--config", "/etc/autox/config.yaml"]
        assert spec["trainer"]["image"] == "registry.test/autox-video-trainer:e2e"
        env = {e["name"]: e for e in spec["trainer"]["env"]}
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-credentials"
        assert env["AUTOX_JOB_NAME"]["value"] == "ucf"  # the MLflow run's name
        assert not [n for n in env if n.startswith("PET_")]
        assert _pod_patch(tj)["spec"]["volumes"][0] == {"name": "config", "configMap": {"name": "ucf-config"}}
        owner_uid = cluster.get(VTJ, namespace, "ucf")["metadata"]["uid"]
        assert [ref["uid"] for ref in tj["metadata"]["ownerReferences"]] == [owner_uid]
        config = Config(**yaml.safe_load(cluster.configmap(namespace, "ucf-config")["config.yaml"]))
        assert config.work_dir == f"s3://{bucket}/runs/ucf/" and config.epoch == 3
        status = cluster.wait_status(VTJ, namespace, "ucf", engine="trainjob", child="ucf")
        assert "pytorchJob" not in status

        # Trainer creates the JobSet and the pods run; the trainer reports an epoch.
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="running", epoch=1, best=0.5, best_epoch=1),
        )
        cluster.set_trainjob_status(namespace, "ucf", "Created", jobs=ACTIVE)
        status = cluster.wait_status(VTJ, namespace, "ucf", phase="Running", epoch=1, bestTop1=0.5)
        assert [c["type"] for c in status["conditions"]] == ["Created"] and status["startTime"]
        # TrainJob's own progress view (KEP-2779 trainerStatus), from progress.json; valid per the CRD.
        reported = wait_for(
            lambda: (cluster.get(TJ, namespace, "ucf").get("status") or {}).get("trainerStatus"), what="trainerStatus"
        )
        assert reported["progressPercentage"] == status["progressPercentage"]
        assert reported["lastUpdatedTime"] == "2024-06-01T12:00:00Z"
        assert {"name": "best_top1", "value": "0.5"} in reported["metrics"]
        assert {"name": "epoch", "value": "1"} in reported["metrics"]
        trainer_schemas.validate(cluster.get(TJ, namespace, "ucf"))

        cluster.create(vij)
        _waiting(cluster, VIJ, namespace, "ucf-test", "TrainingJobNotSucceeded")

        operator_s3.put_text(f"s3://{bucket}/runs/ucf/best.pth", "weights")
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.9, best_epoch=3),
        )
        cluster.set_trainjob_status(namespace, "ucf", "Created", "Complete")
        status = cluster.wait_status(VTJ, namespace, "ucf", phase="Succeeded", epoch=3, bestTop1=0.9)
        assert status["completionTime"] and status["bestCheckpoint"] == f"s3://{bucket}/runs/ucf/best.pth"
        crd_schemas.validate(cluster.get(VTJ, namespace, "ucf"))

        # The inference job runs as a TrainJob too.
        itj = _trainjob(cluster, namespace, "ucf-test", trainer_schemas)
        assert itj["spec"]["trainer"]["args"] == ["test", "--config", "/etc/autox/config.yaml"]
        iconfig = Config(**yaml.safe_load(cluster.configmap(namespace, "ucf-test-config")["config.yaml"]))
        assert iconfig.checkpoint == f"s3://{bucket}/runs/ucf/best.pth"
        operator_s3.put_json(
            f"s3://{bucket}/predictions/results.json",
            {"model": "swin_t", "metrics": {"top1": 0.66}, "predictions": [{"video": "a/v1.mp4"}]},
        )
        cluster.set_trainjob_status(namespace, "ucf-test", "Created", "Complete")
        istatus = cluster.wait_status(VIJ, namespace, "ucf-test", phase="Succeeded", videos=1)
        assert istatus["metrics"] == {"top1": 0.66} and istatus["engine"] == "trainjob"
        crd_schemas.validate(cluster.get(VIJ, namespace, "ucf-test"))
    assert len(cluster.children(TJ, namespace)) == 3


def test_suspend_resume_through_spec_suspend_then_a_vanished_trainjob_settles_from_its_outputs(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, chart_runtime: Any, trainer_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(training_job(namespace, "pausable", bucket, operator_s3.endpoint_url))
        _trainjob(cluster, namespace, "pausable", trainer_schemas)
        cluster.set_trainjob_status(namespace, "pausable", "Created", jobs=ACTIVE)
        cluster.wait_status(VTJ, namespace, "pausable", phase="Running")

        cluster.patch_spec(VTJ, namespace, "pausable", {"runPolicy": {"suspend": True}})
        wait_for(lambda: cluster.get(TJ, namespace, "pausable")["spec"]["suspend"] is True, what="TrainJob suspended")
        cluster.wait_status(VTJ, namespace, "pausable", phase="Suspended")
        cluster.set_trainjob_status(namespace, "pausable", "Created", "Suspended", jobs=[])

        cluster.patch_spec(VTJ, namespace, "pausable", {"runPolicy": {"suspend": False}})
        wait_for(lambda: cluster.get(TJ, namespace, "pausable")["spec"]["suspend"] is False, what="TrainJob resumed")
        cluster.set_trainjob_status(namespace, "pausable", "Created", jobs=ACTIVE)
        cluster.wait_status(VTJ, namespace, "pausable", phase="Running")
        trainer_schemas.validate(cluster.get(TJ, namespace, "pausable"))  # only spec.suspend changed

    # It finished and its TrainJob was deleted while the operator was down.
    operator_s3.put_json(
        f"s3://{bucket}/runs/pausable/progress.json",
        progress(bucket, "pausable", phase="succeeded", epoch=3, best=0.8, best_epoch=3),
    )
    cluster.delete_child(TJ, namespace, "pausable")
    with run_operator():
        status = cluster.wait_status(VTJ, namespace, "pausable", phase="Succeeded", epoch=3)
        assert status["conditions"][0]["reason"] == "TrainJobDeleted"
        assert cluster.children(TJ, namespace) == []  # not run again


def test_a_queued_trainjob_is_created_suspended_and_queued_until_kueue_admits_it(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, chart_runtime: Any, trainer_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(training_job(namespace, "queued", bucket, operator_s3.endpoint_url, queueName="gpu"))
        tj = _trainjob(cluster, namespace, "queued", trainer_schemas)
        assert tj["spec"]["suspend"] is True and tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
        status = cluster.wait_status(VTJ, namespace, "queued", phase="Queued")
        assert "LocalQueue 'gpu'" in status["message"]

        # Kueue says why it waits (the job's Suspended condition), then admits it by un-suspending.
        cluster.set_trainjob_status(namespace, "queued", "Created", "Suspended", Suspended="insufficient quota")
        wait_for(
            lambda: cluster.status(VTJ, namespace, "queued").get("message", "").endswith("insufficient quota"),
            what="Kueue's reason",
        )
        cluster.patch_child(TJ, namespace, "queued", {"spec": {"suspend": False}})
        cluster.set_trainjob_status(namespace, "queued", "Created", jobs=ACTIVE)
        cluster.wait_status(VTJ, namespace, "queued", phase="Running")

        # The user suspends: Suspended, not Queued; on resume the operator leaves un-suspending to Kueue.
        cluster.patch_spec(VTJ, namespace, "queued", {"runPolicy": {"suspend": True}})
        wait_for(lambda: cluster.get(TJ, namespace, "queued")["spec"]["suspend"] is True, what="suspended")
        cluster.set_trainjob_status(namespace, "queued", "Created", "Suspended", jobs=[])
        cluster.wait_status(VTJ, namespace, "queued", phase="Suspended")
        cluster.patch_spec(VTJ, namespace, "queued", {"runPolicy": {"suspend": False}})
        cluster.wait_status(VTJ, namespace, "queued", phase="Queued")
        assert cluster.get(TJ, namespace, "queued")["spec"]["suspend"] is True  # Kueue's to flip

        cluster.patch_child(TJ, namespace, "queued", {"spec": {"suspend": False}})  # Kueue re-admits it
        cluster.set_trainjob_status(namespace, "queued", "Created", jobs=ACTIVE)
        cluster.wait_status(VTJ, namespace, "queued", phase="Running")


def test_an_explicit_backend_that_is_not_served_waits_with_what_to_install(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    with run_operator():
        cluster.create(
            training_job(namespace, "v1", bucket, operator_s3.endpoint_url, runtime={"backend": "pytorchjob"})
        )
        status = _waiting(cluster, VTJ, namespace, "v1", "PyTorchJobNotServed")
        assert "spec.runtime.backend" in status["message"] and "Kubeflow Training Operator v1" in status["message"]


def test_with_neither_engine_served_a_job_waits_and_says_which_to_install(
    tmp_path: Path, crd_schemas: SchemaSet, operator_s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = KmockThread({}).start()
    try:
        bare = Cluster(server.write_kubeconfig(tmp_path / "kubeconfig"), real=False, schemas=crd_schemas)
        namespace = "bare"
        bucket = setup_storage(bare, namespace, operator_s3)
        monkeypatch.setenv("KUBECONFIG", str(bare.kubeconfig))
        monkeypatch.setenv("AUTOX_RETRY_DELAY", "1")
        with OperatorThread(namespace):
            bare.create(training_job(namespace, "nowhere", bucket, operator_s3.endpoint_url))
            status = _waiting(bare, VTJ, namespace, "nowhere", "NoTrainingOperator")
            assert "Kubeflow Trainer v2" in status["message"] and "Kubeflow Training Operator v1" in status["message"]
        bare.delete_namespace(namespace)
    finally:
        server.stop()


def test_a_search_runs_its_trials_as_trainjobs(
    cluster: Cluster, namespace: str, operator_s3: S3, run_operator: Any, chart_runtime: Any, trainer_schemas: SchemaSet
) -> None:
    bucket = setup_storage(cluster, namespace, operator_s3)
    out = f"s3://{bucket}/runs/hpo/"
    search = {"trials": 2, "parallel": 2, "pruner": "none", "seed": 3, "space": {"lr": {"low": 1e-4, "high": 1e-2}}}
    vtj = training_job(
        namespace,
        "hpo",
        bucket,
        operator_s3.endpoint_url,
        training={"epochs": 2, "evalInterval": 1, "lr": 0.001},
        resources={"replicas": 1, "gpusPerReplica": 1},
        search=search,
    )
    with run_operator():
        cluster.create(vtj)
        for number in (0, 1):
            tj = _trainjob(cluster, namespace, f"hpo-t{number:04d}", trainer_schemas)
            assert tj["metadata"]["labels"]["autox.io/trial"] == f"{number:04d}"
            assert _pod_patch(tj)["spec"]["volumes"][0]["configMap"]["name"] == f"hpo-t{number:04d}-config"
            cluster.set_trainjob_status(namespace, f"hpo-t{number:04d}", "Created", jobs=ACTIVE)
        status = cluster.wait_status(VTJ, namespace, "hpo", phase="Running", engine="trainjob")
        assert [t.get("child") for t in status["trials"]] == ["hpo-t0000", "hpo-t0001"]
        assert not any("pytorchJob" in t for t in status["trials"])

        # Suspend reaches each running trial's spec.suspend.
        cluster.patch_spec(VTJ, namespace, "hpo", {"runPolicy": {"suspend": True}})
        for name in ("hpo-t0000", "hpo-t0001"):
            wait_for(lambda name=name: cluster.get(TJ, namespace, name)["spec"]["suspend"], what=f"{name} suspended")
        cluster.patch_spec(VTJ, namespace, "hpo", {"runPolicy": {"suspend": False}})
        for name in ("hpo-t0000", "hpo-t0001"):
            wait_for(
                lambda name=name: cluster.get(TJ, namespace, name)["spec"]["suspend"] is False, what=f"{name} resumed"
            )

        for number, top1 in ((0, 0.7), (1, 0.8)):
            prefix = f"{out}trials/{number:04d}/"
            operator_s3.put_text(f"{prefix}metrics.jsonl", f'{{"epoch": 1, "top1": {top1}}}\n')
            operator_s3.put_text(f"{prefix}best.pth", f"weights of trial {number}")
            operator_s3.put_json(f"{prefix}progress.json", {"phase": "succeeded", "epoch": 2, "total_epochs": 2})
            cluster.set_trainjob_status(namespace, f"hpo-t{number:04d}", "Created", "Complete")
        status = cluster.wait_status(VTJ, namespace, "hpo", phase="Succeeded", bestTrial=1)
        assert status["bestCheckpoint"] == f"{out}best.pth"
        assert (
            operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/best.pth")["Body"].read()
            == b"weights of trial 1"
        )
