"""`autox-video run MANIFEST.yaml`: a VideoTrainingJob / VideoInferenceJob manifest on this machine, no cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tinyrun import cli, make_tiny_dataset, upload_tree

from autox_video.runlocal import load_manifest, manifest_config
from autox_video.runlocal.runner import processes, status_line

REPO = Path(__file__).resolve().parents[1]
# What the manifests cannot say (config keys outside the CRD): tiny-run settings given with --set.
TINY_SETS = ["--set", "flip=false", "--set", "min_crop_area=0.6"]


def training_manifest(bucket: str, endpoint: str, *, name: str = "tiny", epochs: int = 2) -> dict[str, Any]:
    """A VideoTrainingJob sized for seconds on 2 CPU cores (data uploaded under s3://bucket/data/)."""
    data = f"s3://{bucket}/data"
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "dataset": {
                "videos": f"{data}/",
                "train": f"{data}/train_list.txt",
                "val": f"{data}/val_list.txt",
                "classNames": f"{data}/classes.txt",
            },
            "model": {"backbone": "swin_micro", "pretrained": "none"},
            "training": {
                "epochs": epochs,
                "batchSizePerGpu": 4,
                "evalInterval": 1,
                "clipLen": 8,
                "frameInterval": 2,
                "imgSize": 32,
                "lr": 0.002,
                "backboneLrMult": 1.0,
                "warmupEpochs": 0,
                "dropPathRate": 0.0,
                "testClips": 1,
                "numWorkers": 0,
                "logInterval": 5,
            },
            "resources": {"gpusPerReplica": 0},
            "output": f"s3://{bucket}/runs/{name}/",
            "storage": {"endpoint": endpoint, "secretRef": "s3-credentials"},
        },
    }


def inference_manifest(bucket: str, endpoint: str, ref: str) -> dict[str, Any]:
    """A VideoInferenceJob predicting the test list with the weights of local run `ref`."""
    data = f"s3://{bucket}/data"
    return {
        "apiVersion": "autox.io/v1alpha1",
        "kind": "VideoInferenceJob",
        "metadata": {"name": f"{ref}-predict"},
        "spec": {
            "dataset": {"videos": f"{data}/", "list": f"{data}/test_list.txt"},
            "model": {"trainingJobRef": ref},
            "inference": {"batchSizePerGpu": 2},
            "resources": {"gpusPerReplica": 0},
            "output": f"s3://{bucket}/predictions/{ref}/",
            "storage": {"endpoint": endpoint, "secretRef": "s3-credentials"},
        },
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- validation and config (fast) -------------------------------------------------------------------


def test_a_manifest_maps_to_the_same_config_keys_as_its_spec(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path / "vtj.yaml", training_manifest("bkt", "http://127.0.0.1:9")))
    cfg = manifest_config(m, overrides={"flip": False})
    assert (cfg.epoch, cfg.videos_per_gpu, cfg.img_size, cfg.backbone) == (2, 4, 32, "swin_micro")
    assert cfg.work_dir == "s3://bkt/runs/tiny/"
    assert cfg.s3_endpoint_url == "http://127.0.0.1:9"
    assert cfg.flip is False


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["spec"]["training"].update(epochs=0), "spec.training.epochs"),
        (lambda d: d["spec"]["model"].update(backbone="resnet9000"), "spec.model.backbone"),
        (lambda d: d["spec"].update(output="/tmp/not-s3"), "spec.output"),
        (lambda d: d["spec"]["training"].update(learningRate=0.1), "learningRate"),
        (lambda d: d.update(kind="PyTorchJob"), "kind"),
        (lambda d: d["metadata"].update(name="Not_A_Name"), "metadata.name"),
    ],
)
def test_what_the_crd_would_reject_is_a_one_line_error_naming_the_field(tmp_path: Path, edit, expected) -> None:  # type: ignore[no-untyped-def]
    doc = training_manifest("bkt", "http://127.0.0.1:9")
    edit(doc)
    res = cli("run", str(write(tmp_path / "bad.yaml", doc)), "--dry-run")
    assert res.returncode == 2, res.stdout + res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, res.stderr
    assert expected in line and "bad.yaml" in line


def test_set_must_name_a_config_key(tmp_path: Path) -> None:
    path = write(tmp_path / "vtj.yaml", training_manifest("bkt", "http://127.0.0.1:9"))
    res = cli("run", str(path), "--dry-run", "--set", "epochz=3")
    assert res.returncode == 2
    assert "'epochz' is not a config key" in res.stderr


def test_dry_run_prints_the_config_with_the_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "vtj.yaml", training_manifest("bkt", "http://127.0.0.1:9"))
    res = cli("run", str(path), "--dry-run", "--set", "epoch=5", env={"AUTOX_CACHE_DIR": str(tmp_path / "c")})
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["epoch"] == 5 and printed["work_dir"] == "s3://bkt/runs/tiny/"


def test_an_inference_manifest_needs_its_training_run_here(tmp_path: Path) -> None:
    path = write(tmp_path / "vij.yaml", inference_manifest("bkt", "http://127.0.0.1:9", "never-ran"))
    res = cli("run", str(path), "--dry-run", env={"AUTOX_CACHE_DIR": str(tmp_path / "c")})
    assert res.returncode == 2
    assert "trainingJobRef 'never-ran'" in res.stderr and "run its manifest first" in res.stderr


def test_the_local_trainer_gets_the_weights_mirror_and_cache_of_this_shell(tmp_path: Path) -> None:
    from autox_video.runlocal.runner import child_env

    manifest = load_manifest(write(tmp_path / "job.yaml", training_manifest("bkt", "http://127.0.0.1:9")))
    env = child_env(
        manifest,
        {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AUTOX_WEIGHTS_MIRROR": "s3://models/w",
         "AUTOX_CACHE_DIR": "/cache"},
    )  # fmt: skip
    assert env["AUTOX_WEIGHTS_MIRROR"] == "s3://models/w" and env["AUTOX_CACHE_DIR"] == "/cache"
    assert manifest_config(manifest).pretrained == "none"  # the manifest's own choice reaches config.yaml
    doc = training_manifest("bkt", "http://127.0.0.1:9")
    doc["spec"]["model"] = {"backbone": "swin_b", "pretrained": "auto"}  # valid for the CRD's schema too
    assert manifest_config(load_manifest(write(tmp_path / "auto.yaml", doc))).pretrained == "auto"
    del doc["spec"]["model"]["pretrained"]  # not set: auto as well
    assert manifest_config(load_manifest(write(tmp_path / "unset.yaml", doc))).pretrained == "auto"


def test_processes_follow_the_gpus_asked_capped_to_those_present() -> None:
    assert processes(8, present=2) == 2
    assert processes(4, present=8) == 4
    assert processes(1, present=0) == 1  # CPU: one process
    assert processes(0, present=4) == 1
    assert processes(8, nproc=3, present=0) == 3


def test_status_line_shows_epoch_best_and_progress() -> None:
    line = status_line("tiny", "Running", {"epoch": 1, "total_epochs": 4, "best_top1": 0.5})
    assert line.split() == ["tiny", "Running", "1/4", "0.5000", "25%"]
    timed = {"epoch": 2, "total_epochs": 4, "best_top1": 0.5, "epoch_seconds": [60, 60], "phase": "running"}
    assert status_line("tiny", "Running", timed).split()[-2:] == ["50%", "2m00s"]
    assert status_line("tiny", "Pending", None).split() == ["tiny", "Pending"]


# --- a real run against the S3 server (slow) ------------------------------------------------------------


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autox_video", "run", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", "AUTOX_RUN_POLL_SECONDS": "0.5", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.slow
def test_training_manifest_then_the_inference_manifest_that_references_it(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local")
    upload_tree(client, bucket, ds.root, "data")
    cache = tmp_path / "cache"
    env = {"AUTOX_CACHE_DIR": str(cache)}
    vtj = write(tmp_path / "vtj.yaml", training_manifest(bucket, s3_server.endpoint_url, epochs=3))

    # Ctrl-C once the first epoch's checkpoint is on S3, then the same command resumes.
    proc = _run([str(vtj), *TINY_SETS], env)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="runs/tiny/").get("Contents", [])
        if any(o["Key"] == "runs/tiny/last_checkpoint" for o in listed):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    registry = json.loads((cache / "runs.json").read_text())
    assert registry["VideoTrainingJob/tiny"]["phase"] == "Suspended"

    proc = _run([str(vtj), *TINY_SETS], env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    assert any(line.split()[:2] == ["NAME", "PHASE"] for line in lines), out
    final = [line.split() for line in lines if line.startswith("tiny ")][-1]
    assert final[:3] == ["tiny", "Succeeded", "3/3"] and final[-1] == "100%", out
    log = (cache / "runs" / "VideoTrainingJob" / "tiny" / "run.log").read_text()
    assert "resumed" in log, log[-2000:]
    progress = json.loads(client.get_object(Bucket=bucket, Key="runs/tiny/progress.json")["Body"].read())
    assert progress["phase"] == "succeeded" and progress["epoch"] == 3
    metrics = client.get_object(Bucket=bucket, Key="runs/tiny/metrics.jsonl")["Body"].read().decode()
    assert [json.loads(r)["epoch"] for r in metrics.splitlines() if r.strip()] == [1, 2, 3]
    assert json.loads((cache / "runs.json").read_text())["VideoTrainingJob/tiny"]["phase"] == "Succeeded"

    # The inference manifest finds the run by name and predicts with its best weights.
    vij = write(tmp_path / "vij.yaml", inference_manifest(bucket, s3_server.endpoint_url, "tiny"))
    proc = _run([str(vij)], env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert f"results: s3://{bucket}/predictions/tiny/results.json" in out
    results = json.loads(client.get_object(Bucket=bucket, Key="predictions/tiny/results.json")["Body"].read())
    assert len(results["predictions"]) == 6  # 2 test videos x 3 classes
    assert "top1" in results["metrics"]
    config = yaml.safe_load((cache / "runs" / "VideoInferenceJob" / "tiny-predict" / "config.yaml").read_text())
    assert config["checkpoint"] == f"s3://{bucket}/runs/tiny/best.pth"
    assert (config["img_size"], config["clip_len"], config["backbone"]) == (32, 8, "swin_micro")


@pytest.mark.slow
def test_secret_ref_needs_the_credentials_in_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "vtj.yaml", training_manifest("bkt", "http://127.0.0.1:9"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    res = subprocess.run(
        [sys.executable, "-m", "autox_video", "run", str(path)],
        env={**env, "AUTOX_CACHE_DIR": str(tmp_path / "c")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in res.stderr and "secretRef" in res.stderr


@pytest.mark.slow
def test_a_search_manifest_runs_its_trials_here_and_promotes_the_best_to_the_output(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local", per_class=2)
    upload_tree(client, bucket, ds.root, "data")
    env = {"AUTOX_CACHE_DIR": str(tmp_path / "cache")}
    doc = training_manifest(bucket, s3_server.endpoint_url, name="tiny-search", epochs=1)
    doc["spec"]["search"] = {
        "trials": 2,
        "sampler": "random",
        "pruner": "none",
        "space": {"img_size": {"choices": [32, 48]}},
    }
    proc = _run([str(write(tmp_path / "search.yaml", doc)), *TINY_SETS], env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    final = [line.split() for line in out.splitlines() if line.startswith("tiny-search ")][-1]
    assert final[:3] == ["tiny-search", "Succeeded", "2/2"], out
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/tiny-search/")["Contents"]}
    assert {f"runs/tiny-search/{n}" for n in ("best.pth", "best_config.yaml", "trials.jsonl")} <= keys
    best = yaml.safe_load(client.get_object(Bucket=bucket, Key="runs/tiny-search/best_config.yaml")["Body"].read())

    vij = write(tmp_path / "vij.yaml", inference_manifest(bucket, s3_server.endpoint_url, "tiny-search"))
    proc = _run([str(vij)], env)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    config = yaml.safe_load((tmp_path / "cache/runs/VideoInferenceJob/tiny-search-predict/config.yaml").read_text())
    assert config["checkpoint"] == f"s3://{bucket}/runs/tiny-search/best.pth"
    assert config["img_size"] == best["img_size"]  # the best trial's clip geometry, not the manifest's
