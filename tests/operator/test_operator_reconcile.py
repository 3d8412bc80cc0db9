"""The reconcile steps without kopf: an in-memory Kubernetes API and a real S3 server (moto).

Bad input the schema cannot catch ends as Waiting (retry, with what to fix) or Invalid (Failed)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from autox_operator import reconcile
from autox_operator.prerequisites import Invalid, Waiting
from autox_operator.settings import OperatorSettings
from ops3 import S3, S3_KEY, S3_SECRET

SETTINGS = OperatorSettings(trainer_image="registry.test/trainer:1", retry_delay=1)


class FakeKube:
    """The `autox_operator.kube.Kube` surface, in memory."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.pytorchjobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.configmaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.creates = 0

    def get_job(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.jobs.get((plural, namespace, name)))

    def patch_job_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        current = self.jobs[(plural, namespace, name)].setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    # Children: PyTorchJobs (and TrainJobs) keyed by (namespace, name); this API serves PyTorchJob only.
    def get_child(self, engine: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.pytorchjobs.get((namespace, name)))

    def create_child(self, engine: Any, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key not in self.pytorchjobs:
            self.creates += 1
            self.pytorchjobs[key] = copy.deepcopy(body)
        return copy.deepcopy(self.pytorchjobs[key])

    def patch_child(self, engine: Any, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.pytorchjobs[(namespace, name)]["spec"]["runPolicy"].update(patch["spec"]["runPolicy"])

    def served(self, group: str, version: str) -> set[str]:
        return {"pytorchjobs"} if (group, version) == ("kubeflow.org", "v1") else set()

    def get_training_runtime(self, name: str) -> dict[str, Any] | None:
        return None

    def apply_configmap(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        existing = self.configmaps.get(key)
        ours = {ref["uid"] for ref in body["metadata"]["ownerReferences"]}
        if existing is not None and not ours & {ref["uid"] for ref in existing["metadata"].get("ownerReferences", [])}:
            return copy.deepcopy(existing["metadata"])  # another owner's: left as it is
        self.configmaps[key] = copy.deepcopy(body)
        return copy.deepcopy(body["metadata"])

    def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))


@pytest.fixture()
def kube() -> FakeKube:
    fake = FakeKube()
    fake.secrets[("ns", "s3")] = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    return fake


@pytest.fixture()
def bucket(operator_s3: S3) -> str:
    name = operator_s3.new_bucket()
    operator_s3.put_text(f"s3://{name}/train.txt", "a.mp4 0\n")
    return name


def vtj(bucket: str, endpoint: str, name: str = "job", uid: str = "uid-1", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": 1},
        "spec": {
            "dataset": {"videos": f"s3://{bucket}/v/", "train": f"s3://{bucket}/train.txt"},
            "output": f"s3://{bucket}/runs/{name}/",
            "storage": {"endpoint": endpoint, "secretRef": "s3"},
        },
    }
    body["spec"].update(spec)
    return body


def test_start_training_creates_the_children_once(kube: FakeKube, bucket: str, operator_s3: S3) -> None:
    body = vtj(bucket, operator_s3.endpoint_url)
    status = reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    assert status == {
        "phase": "Pending",
        "message": None,
        "conditions": [],
        "startTime": None,
        "completionTime": None,
        "engine": "pytorchjob",
        "child": "job",
        "pytorchJob": "job",
        "configMap": "job-config",
        "observedGeneration": 1,
    }
    assert set(kube.pytorchjobs) == {("ns", "job")} and set(kube.configmaps) == {("ns", "job-config")}
    assert reconcile.start_training(body, kube, SETTINGS) == status  # type: ignore[arg-type]
    assert kube.creates == 1


def test_children_of_a_deleted_job_with_the_same_name_make_the_new_one_wait(
    kube: FakeKube, bucket: str, operator_s3: S3
) -> None:
    """kubectl delete + apply at once: the old children are still being garbage-collected."""
    reconcile.start_training(vtj(bucket, operator_s3.endpoint_url, uid="uid-old"), kube, SETTINGS)  # type: ignore[arg-type]
    old_config = copy.deepcopy(kube.configmaps[("ns", "job-config")])
    new = vtj(bucket, operator_s3.endpoint_url, uid="uid-new", training={"epochs": 7})
    with pytest.raises(Waiting, match="ConfigMap 'job-config' of a deleted VideoTrainingJob named 'job'"):
        reconcile.start_training(new, kube, SETTINGS)  # type: ignore[arg-type]
    assert kube.configmaps[("ns", "job-config")] == old_config  # not taken over: garbage collection deletes it
    del kube.configmaps[("ns", "job-config")]
    with pytest.raises(Waiting, match="PyTorchJob 'job' of a deleted VideoTrainingJob"):
        reconcile.start_training(new, kube, SETTINGS)  # type: ignore[arg-type]
    del kube.pytorchjobs[("ns", "job")]
    assert reconcile.start_training(new, kube, SETTINGS)["pytorchJob"] == "job"  # type: ignore[arg-type]


def test_a_job_of_another_kind_with_the_same_name_does_not_touch_the_first_ones_children(
    kube: FakeKube, bucket: str, operator_s3: S3
) -> None:
    reconcile.start_training(vtj(bucket, operator_s3.endpoint_url), kube, SETTINGS)  # type: ignore[arg-type]
    training_config = copy.deepcopy(kube.configmaps[("ns", "job-config")])
    inference = vij(checkpoint=f"s3://{bucket}/w.pth", ref=None, bucket=bucket)
    inference["metadata"]["name"] = "job"
    inference["spec"]["storage"]["endpoint"] = operator_s3.endpoint_url
    operator_s3.put_text(f"s3://{bucket}/w.pth", "w")
    with pytest.raises(Invalid, match="ConfigMap 'job-config' already exists and belongs to another owner"):
        reconcile.start_inference(inference, kube, SETTINGS)  # type: ignore[arg-type]
    assert kube.configmaps[("ns", "job-config")] == training_config and kube.creates == 1


def test_a_spec_the_models_reject_fails_naming_field_and_value(kube: FakeKube, bucket: str, operator_s3: S3) -> None:
    body = vtj(bucket, operator_s3.endpoint_url, training={"epochs": 0})
    with pytest.raises(Invalid, match=r"^spec\.training\.epochs=0: Input should be greater than or equal to 1"):
        reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "reason", "message"),
    [
        (
            lambda b, k: b["spec"]["storage"].update(secretRef="nope"),
            "SecretNotFound",
            "Secret 'nope' not found in namespace 'ns': create it with keys AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or fix spec.storage.secretRef",
        ),
        (
            lambda b, k: k.secrets[("ns", "s3")].pop("AWS_SECRET_ACCESS_KEY"),
            "SecretKeyMissing",
            "Secret 's3' has no AWS_SECRET_ACCESS_KEY: add it, or fix spec.storage.secretRef",
        ),
        (
            lambda b, k: b["spec"].update(output="s3://no-such-bucket-here/runs/"),
            "BucketNotFound",
            "bucket 'no-such-bucket-here' does not exist at http",
        ),
        (
            lambda b, k: b["spec"]["dataset"].update(train=b["spec"]["dataset"]["train"] + ".missing"),
            "ObjectNotFound",
            "train.txt.missing does not exist at http",
        ),
        (
            lambda b, k: b["spec"]["storage"].update(endpoint="http://127.0.0.1:9"),
            "StorageUnreachable",
            "cannot reach S3 at http://127.0.0.1:9",
        ),
    ],
    ids=["unknown Secret", "Secret without a key", "no bucket", "no training list", "unreachable endpoint"],
)
def test_missing_prerequisites_wait_with_a_message_that_says_what_to_fix(
    kube: FakeKube, bucket: str, operator_s3: S3, change: Any, reason: str, message: str
) -> None:
    body = vtj(bucket, operator_s3.endpoint_url)
    change(body, kube)
    with pytest.raises(Waiting) as info:
        reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    assert info.value.reason == reason and message in info.value.message
    assert "Traceback" not in info.value.message and not kube.pytorchjobs


def vij(ref: str | None = "job", checkpoint: str | None = None, bucket: str = "data") -> dict[str, Any]:
    model = {"trainingJobRef": ref} if ref else {"checkpoint": checkpoint}
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoInferenceJob",
        "metadata": {"name": "pred", "namespace": "ns", "uid": "uid-9", "generation": 1},
        "spec": {
            "model": model,
            "dataset": {"videos": f"s3://{bucket}/v/"},
            "output": f"s3://{bucket}/out/",
            "storage": {"secretRef": "s3"},
        },
    }


@pytest.mark.parametrize(
    ("training_status", "error", "reason", "message"),
    [
        (
            None,
            Waiting,
            "TrainingJobNotFound",
            "VideoTrainingJob 'job' not found in namespace 'ns': create it, or fix spec.model.trainingJobRef",
        ),
        (
            {"phase": "Running"},
            Waiting,
            "TrainingJobNotSucceeded",
            "waiting for VideoTrainingJob 'job' to succeed (phase Running)",
        ),
        ({}, Waiting, "TrainingJobNotSucceeded", "(phase Pending)"),
        (
            {"phase": "Failed", "message": "OOMKilled"},
            Invalid,
            "TrainingJobFailed",
            "VideoTrainingJob 'job' failed (OOMKilled): re-run it, or set spec.model.checkpoint",
        ),
        ({"phase": "Succeeded"}, Invalid, "NoCheckpoint", "set spec.model.checkpoint"),
    ],
    ids=["missing", "running", "no status", "failed", "no checkpoint"],
)
def test_training_job_ref_that_cannot_be_used_yet(
    kube: FakeKube, training_status: dict[str, Any] | None, error: type, reason: str, message: str
) -> None:
    if training_status is not None:
        kube.jobs[("videotrainingjobs", "ns", "job")] = {**vtj("data", "http://x"), "status": training_status}
    with pytest.raises(error) as info:
        reconcile.start_inference(vij(), kube, SETTINGS)  # type: ignore[arg-type]
    assert info.value.reason == reason and message in info.value.message


def test_inference_uses_the_best_checkpoint_of_a_succeeded_training_job(
    kube: FakeKube, bucket: str, operator_s3: S3
) -> None:
    operator_s3.put_text(f"s3://{bucket}/runs/job/best.pth", "w")
    training = vtj(bucket, operator_s3.endpoint_url, model={"backbone": "swin_t"})
    training["status"] = {"phase": "Succeeded", "bestCheckpoint": f"s3://{bucket}/runs/job/best.pth"}
    kube.jobs[("videotrainingjobs", "ns", "job")] = training
    body = vij(bucket=bucket)
    body["spec"]["storage"]["endpoint"] = operator_s3.endpoint_url
    status = reconcile.start_inference(body, kube, SETTINGS)  # type: ignore[arg-type]
    assert status["checkpoint"] == f"s3://{bucket}/runs/job/best.pth"
    assert status["resultsUri"] == f"s3://{bucket}/out/results.json" and status["pytorchJob"] == "pred"
    assert "backbone: swin_t" in kube.configmaps[("ns", "pred-config")]["data"]["config.yaml"]


def test_sync_follows_the_pytorchjob_and_progress_and_patches_only_changes(
    kube: FakeKube, bucket: str, operator_s3: S3
) -> None:
    body = vtj(bucket, operator_s3.endpoint_url)
    kube.jobs[("videotrainingjobs", "ns", "job")] = body
    body["status"] = reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    assert reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)[2] == {}  # type: ignore[arg-type, index]

    kube.pytorchjobs[("ns", "job")]["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    operator_s3.put_json(f"s3://{bucket}/runs/job/progress.json", {"epoch": 1, "total_epochs": 3, "best_top1": 0.5})
    _, old_phase, patch = reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)  # type: ignore[arg-type, misc]
    assert old_phase == "Pending"
    assert patch == {
        "phase": "Running",
        "conditions": [{"type": "Running", "status": "True"}],
        "epoch": 1,
        "totalEpochs": 3,
        "bestTop1": 0.5,
        "progressPercentage": 33,
    }


@pytest.mark.parametrize("trainer_phase", ["succeeded", "running"])
def test_a_pytorchjob_deleted_before_we_saw_it_end_is_settled_from_the_runs_outputs(
    kube: FakeKube, bucket: str, operator_s3: S3, trainer_phase: str
) -> None:
    """ttlSecondsAfterFinished: 0, a manual delete, or an operator that was down: never Running forever."""
    body = vtj(bucket, operator_s3.endpoint_url)
    kube.jobs[("videotrainingjobs", "ns", "job")] = body
    body["status"] = reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    kube.pytorchjobs[("ns", "job")]["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)  # type: ignore[arg-type]
    progress = {"phase": trainer_phase, "epoch": 3, "total_epochs": 3, "best_top1": 0.75}
    operator_s3.put_json(f"s3://{bucket}/runs/job/progress.json", progress)

    del kube.pytorchjobs[("ns", "job")]
    reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)  # type: ignore[arg-type]
    status = kube.jobs[("videotrainingjobs", "ns", "job")]["status"]
    assert (status["epoch"], status["bestTop1"]) == (3, 0.75)
    if trainer_phase == "succeeded":
        assert status["phase"] == "Succeeded" and "deleted after the run finished" in status["message"]
    else:
        assert status["phase"] == "Failed" and "deleted before the run finished" in status["message"]
    assert status["conditions"][0]["reason"] == "PyTorchJobDeleted"
    # Settled: later events change nothing.
    assert reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)[2] == {}  # type: ignore[arg-type, index]


def test_inference_succeeds_only_once_its_results_are_read(kube: FakeKube, bucket: str, operator_s3: S3) -> None:
    body = vij(checkpoint=f"s3://{bucket}/w.pth", ref=None, bucket=bucket)
    body["spec"]["storage"]["endpoint"] = operator_s3.endpoint_url
    operator_s3.put_text(f"s3://{bucket}/w.pth", "w")
    kube.jobs[("videoinferencejobs", "ns", "pred")] = body
    body["status"] = reconcile.start_inference(body, kube, SETTINGS)  # type: ignore[arg-type]
    kube.pytorchjobs[("ns", "pred")]["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}]}

    # S3 unreachable when the run ends: the phase stays, so the timer keeps following.
    kube.jobs[("videoinferencejobs", "ns", "pred")]["spec"]["storage"]["endpoint"] = "http://127.0.0.1:9"
    reconcile.sync_status("videoinferencejobs", "ns", "pred", kube, SETTINGS)  # type: ignore[arg-type]
    status = kube.jobs[("videoinferencejobs", "ns", "pred")]["status"]
    assert status["phase"] == "Pending" and "reading its results.json failed, retrying" in status["message"]

    kube.jobs[("videoinferencejobs", "ns", "pred")]["spec"]["storage"]["endpoint"] = operator_s3.endpoint_url
    operator_s3.put_json(f"s3://{bucket}/out/results.json", {"predictions": [{}, {}], "metrics": {"top1": 0.5}})
    del kube.pytorchjobs[("ns", "pred")]  # and its PyTorchJob went meanwhile (ttlSecondsAfterFinished)
    reconcile.sync_status("videoinferencejobs", "ns", "pred", kube, SETTINGS)  # type: ignore[arg-type]
    status = kube.jobs[("videoinferencejobs", "ns", "pred")]["status"]
    assert (status["phase"], status["videos"], status["metrics"]) == ("Succeeded", 2, {"top1": 0.5})


@pytest.mark.parametrize("labelled", [True, False], ids=["every video labelled", "no labels"])
def test_a_succeeded_inference_names_its_report_when_the_trainer_wrote_one(
    kube: FakeKube, bucket: str, operator_s3: S3, labelled: bool
) -> None:
    body = vij(checkpoint=f"s3://{bucket}/w.pth", ref=None, bucket=bucket)
    body["spec"]["storage"]["endpoint"] = operator_s3.endpoint_url
    operator_s3.put_text(f"s3://{bucket}/w.pth", "w")
    kube.jobs[("videoinferencejobs", "ns", "pred")] = body
    body["status"] = reconcile.start_inference(body, kube, SETTINGS)  # type: ignore[arg-type]
    operator_s3.put_json(f"s3://{bucket}/out/results.json", {"predictions": [{}], "metrics": {"top1": 1.0}})
    if labelled:  # the trainer writes report.html (and report.json) beside results.json
        operator_s3.put_text(f"s3://{bucket}/out/report.html", "<html></html>")
    kube.pytorchjobs[("ns", "pred")]["status"] = {"conditions": [{"type": "Succeeded", "status": "True"}]}
    reconcile.sync_status("videoinferencejobs", "ns", "pred", kube, SETTINGS)  # type: ignore[arg-type]
    status = kube.jobs[("videoinferencejobs", "ns", "pred")]["status"]
    assert status["phase"] == "Succeeded" and status["resultsUri"] == f"s3://{bucket}/out/results.json"
    assert status.get("reportUri") == (f"s3://{bucket}/out/report.html" if labelled else None)


def test_report_uri_lies_beside_results_json() -> None:
    from autox_operator.builders import report_uri

    assert report_uri("s3://bucket/results.json") == "s3://bucket/report.html"
    assert report_uri("s3://bucket/runs/x/preds.json") == "s3://bucket/runs/x/report.html"


def test_sync_does_nothing_before_the_job_started(kube: FakeKube) -> None:
    kube.jobs[("videotrainingjobs", "ns", "job")] = vtj("data", "http://x")
    assert reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS) is None  # type: ignore[arg-type]
    assert reconcile.sync_status("videotrainingjobs", "ns", "gone", kube, SETTINGS) is None  # type: ignore[arg-type]


def test_results_uri_of_a_bare_bucket_or_prefix_gets_results_json() -> None:
    from autox_operator.builders import results_uri

    assert results_uri("s3://bucket") == "s3://bucket/results.json"
    assert results_uri("s3://bucket/") == "s3://bucket/results.json"
    assert results_uri("s3://bucket/runs/x/") == "s3://bucket/runs/x/results.json"
    assert results_uri("s3://bucket/runs/x/preds.json") == "s3://bucket/runs/x/preds.json"


def test_an_endpoint_boto_cannot_parse_is_a_storage_error_naming_it() -> None:
    """E.g. the chart's default endpoint without a scheme: boto raises ValueError, not a BotoCoreError."""
    from autox_operator import s3

    with pytest.raises(s3.S3Error, match="invalid S3 endpoint 'minio minio:9000'") as info:
        s3.check_bucket(s3.S3Access("minio minio:9000", "us-east-1", "k", "s"), "s3://bucket/x")
    assert info.value.reason == "InvalidEndpoint"


# --- workload identity (no Secret) and an operator that reads no Secrets ---------------------------------


@pytest.fixture(autouse=True)
def fresh_s3_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 clients are cached per access and resolve ambient credentials once: tests change the environment."""
    from autox_video.storage import s3client

    monkeypatch.setattr(s3client, "_clients", type(s3client._clients)())


@pytest.fixture()
def operator_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's pod has no cloud identity of its own: boto3's default chain finds nothing."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _identity_job(bucket: str, endpoint: str) -> dict[str, Any]:
    body = vtj(bucket, endpoint, serviceAccountName="trainer")
    del body["spec"]["storage"]["secretRef"]
    return body


def _pod(kube: FakeKube) -> dict[str, Any]:
    return kube.pytorchjobs[("ns", "job")]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]


def test_workload_identity_starts_without_a_secret_when_the_operator_cannot_look(
    kube: FakeKube, bucket: str, operator_s3: S3, operator_without_credentials: None
) -> None:
    body = _identity_job(bucket, operator_s3.endpoint_url)
    kube.jobs[("videotrainingjobs", "ns", "job")] = body
    body["status"] = reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    (skipped,) = body["status"]["conditions"]
    assert (skipped["type"], skipped["status"], skipped["reason"]) == (
        "StorageChecksSkipped",
        "True",
        "OperatorHasNoAccess",
    )
    assert "no S3 credentials" in skipped["message"] and "spec.serviceAccountName" in skipped["message"]
    assert body["status"]["phase"] == "Pending" and body["status"]["child"] == "job"  # started, not failed
    pod = _pod(kube)
    assert pod["serviceAccountName"] == "trainer"
    assert not [e for e in pod["containers"][0]["env"] if "valueFrom" in e]  # no Secret anywhere
    # The child's conditions replace ours on each sync; the note that checks were skipped stays.
    kube.pytorchjobs[("ns", "job")]["status"] = {"conditions": [{"type": "Running", "status": "True"}]}
    _, _, patch = reconcile.sync_status("videotrainingjobs", "ns", "job", kube, SETTINGS)  # type: ignore[arg-type, misc]
    assert patch["phase"] == "Running"
    assert [c["type"] for c in patch["conditions"]] == ["Running", "StorageChecksSkipped"]
    assert patch["conditions"][1] == skipped


def test_workload_identity_checks_with_the_operators_own_credentials_when_it_has_them(
    kube: FakeKube, bucket: str, operator_s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)  # the operator's own ambient identity
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    body = _identity_job(bucket, operator_s3.endpoint_url)
    status = reconcile.start_training(body, kube, SETTINGS)  # type: ignore[arg-type]
    assert status["conditions"] == [] and _pod(kube)["serviceAccountName"] == "trainer"
    missing = _identity_job("no-such-bucket-here", operator_s3.endpoint_url)
    missing["metadata"].update(name="other", uid="uid-2")
    with pytest.raises(Waiting) as info:  # a real answer from S3 still holds the job back
        reconcile.start_training(missing, kube, SETTINGS)  # type: ignore[arg-type]
    assert info.value.reason == "BucketNotFound"


def test_with_read_secrets_off_no_secret_is_read_and_no_bucket_checked(
    kube: FakeKube, operator_s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(namespace: str, name: str) -> None:
        raise AssertionError("read a Secret")

    monkeypatch.setattr(kube, "read_secret", forbidden)
    settings = OperatorSettings(trainer_image="registry.test/trainer:1", read_secrets=False)
    body = vtj("no-such-bucket-here", operator_s3.endpoint_url)  # would wait for the bucket if checked
    status = reconcile.start_training(body, kube, settings)  # type: ignore[arg-type]
    (skipped,) = status["conditions"]
    assert skipped["reason"] == "ChecksOff" and "operator.readSecrets: false" in skipped["message"]
    secret_env = [e["name"] for e in _pod(kube)["containers"][0]["env"] if "valueFrom" in e]
    assert secret_env == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]  # the pods still use the job's Secret
    # Following the job never reads the Secret either (progress is read with the operator's own credentials).
    kube.jobs[("videotrainingjobs", "ns", "job")] = {**body, "status": status}
    reconcile.sync_status("videotrainingjobs", "ns", "job", kube, settings)  # type: ignore[arg-type]
