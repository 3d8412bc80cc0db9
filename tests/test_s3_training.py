"""Training and prediction with data and output in S3 (moto server over HTTP), as a pod runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, s3_config, upload_tree

pytestmark = pytest.mark.slow


def _metrics(client, bucket: str) -> list[int]:  # type: ignore[no-untyped-def]
    body = client.get_object(Bucket=bucket, Key="runs/r1/metrics.jsonl")["Body"].read().decode()
    return [json.loads(line)["epoch"] for line in body.splitlines() if line.strip()]


def test_pod_loss_resumes_from_s3_on_an_empty_disk_then_predicts_from_s3(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local")
    upload_tree(client, bucket, ds.root, "data")
    config = s3_config(tmp_path, ds, bucket, epoch=4)

    first = {**os.environ, "AUTOX_CACHE_DIR": str(tmp_path / "disk1"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autox_video", "train", "--config", str(config)],
        env=first,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/r1/").get("Contents", [])]
        if "runs/r1/last_checkpoint" in keys:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before the pod could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    pointer = client.get_object(Bucket=bucket, Key="runs/r1/last_checkpoint")["Body"].read().decode()
    assert pointer.startswith("epoch_")

    # A new pod: empty local disk, same output URI.
    res = cli("train", "--config", str(config), env={"AUTOX_CACHE_DIR": str(tmp_path / "disk2")})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed epoch" in res.stdout + res.stderr
    assert _metrics(client, bucket) == [1, 2, 3, 4]
    progress = json.loads(client.get_object(Bucket=bucket, Key="runs/r1/progress.json")["Body"].read())
    assert progress["phase"] == "succeeded"
    assert progress["best_checkpoint"] == f"s3://{bucket}/runs/r1/best.pth"
    assert progress["latest_checkpoint"].startswith(f"s3://{bucket}/runs/r1/epoch_")
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/r1/")["Contents"]}
    assert {"runs/r1/best.pth", "runs/r1/config.yaml", "runs/r1/classes.txt"} <= keys
    assert len([k for k in keys if k.startswith("runs/r1/epoch_")]) <= 2  # keep_checkpoints

    # Prediction from S3: the training output URI stands for its best.pth.
    res = cli(
        "test",
        "--config",
        str(config),
        "--checkpoint",
        f"s3://{bucket}/runs/r1/",
        "--test-results-path",
        f"s3://{bucket}/out/results.json",
        env={"AUTOX_CACHE_DIR": str(tmp_path / "disk3")},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(client.get_object(Bucket=bucket, Key="out/results.json")["Body"].read())
    listed = [line.rsplit(maxsplit=1)[0] for line in Path(ds.test_list).read_text().splitlines() if line.strip()]
    assert [p["video"] for p in results["predictions"]] == listed
    assert "top1" in results["metrics"]


def test_s3_outage_during_training_is_ridden_out(s3_server, s3_env, bucket, tmp_path: Path) -> None:
    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local", per_class=2)
    upload_tree(client, bucket, ds.root, "data")
    config = s3_config(tmp_path, ds, bucket, epoch=3)
    env = {**os.environ, "AUTOX_CACHE_DIR": str(tmp_path / "disk"), "AUTOX_S3_RETRY_SECONDS": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "autox_video", "train", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if client.list_objects_v2(Bucket=bucket, Prefix="runs/r1/last_checkpoint").get("KeyCount"):
            break
        time.sleep(0.2)
    s3_server.outage(6).join()  # down for 6 s while training goes on and uploads
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert _metrics(client, bucket) == [1, 2, 3]


def test_missing_bucket_is_one_line_naming_the_uri(s3_env, tmp_path: Path) -> None:
    ds = make_tiny_dataset(tmp_path / "local", per_class=1)
    config = s3_config(tmp_path, ds, "no-such-bucket")
    res = cli("train", "--config", str(config), env={"AUTOX_CACHE_DIR": str(tmp_path / "c")})
    assert res.returncode != 0
    last = res.stderr.strip().splitlines()[-1]
    assert "Traceback" not in res.stderr and last.startswith("autox-video: error: ")
    assert "no-such-bucket" in last


def test_two_nodes_train_through_the_entrypoint_and_write_one_set_of_outputs(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    """Two torchrun "nodes" on 127.0.0.1 (one process each, gloo), started as PyTorchJob pods start them."""
    from netutil import free_port, pet_env, run_pods

    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local")
    upload_tree(client, bucket, ds.root, "data")
    config = s3_config(tmp_path, ds, bucket, epoch=2)
    entrypoint = Path(__file__).resolve().parents[1] / "trainer_image" / "entrypoint.py"
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "AUTOX_ENTRY"))}
    pods = [
        ([sys.executable, str(entrypoint), "train", "--config", str(config)],
         {**clean, **pet_env(node, 2, port), "AUTOX_CACHE_DIR": str(tmp_path / f"node{node}")})  # a disk per pod
        for node in (0, 1)
    ]  # fmt: skip
    done = run_pods(pods, timeout=400, workdir=tmp_path)
    assert [rc for rc, _ in done] == [0, 0], "\n".join(log[-3000:] for _, log in done)
    logs = [log for _, log in done]
    assert [log.count("done: 2 epochs") for log in logs] == [1, 0]  # global rank 0 alone reports
    assert _metrics(client, bucket) == [1, 2]
    progress = json.loads(client.get_object(Bucket=bucket, Key="runs/r1/progress.json")["Body"].read())
    assert progress["phase"] == "succeeded" and progress["epoch"] == 2
    # Both nodes downloaded the data to their own disk; only node 0 wrote checkpoints.
    assert list((tmp_path / "node1").rglob("*.mp4")) and list((tmp_path / "node0").rglob("*.mp4"))
    assert list((tmp_path / "node0").rglob("epoch_2.pth")) and not list((tmp_path / "node1").rglob("epoch_*.pth"))


def test_a_checkpoint_whose_upload_was_cut_off_is_published_before_other_nodes_fetch_it(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    """Rank 0's disk survived a restart with epoch_2.pth that never reached S3: resume must not crash-loop."""
    import torch

    from autox_video.training.train import _agree_on_resume

    client = s3_server.client()
    work = tmp_path / "work"
    work.mkdir()
    for epoch in (1, 2):  # real (tiny) checkpoints: a resume only takes one that loads
        torch.save(
            {"meta": {"epoch": epoch}, "state_dict": {"w": torch.full((2,), float(epoch))}}, work / f"epoch_{epoch}.pth"
        )
    (work / "last_checkpoint").write_text(str(work / "epoch_2.pth"))
    output = f"s3://{bucket}/runs/cut/"
    client.put_object(Bucket=bucket, Key="runs/cut/epoch_1.pth", Body=(work / "epoch_1.pth").read_bytes())
    client.put_object(Bucket=bucket, Key="runs/cut/last_checkpoint", Body=b"epoch_1.pth")

    assert _agree_on_resume(work, output) == work / "epoch_2.pth"
    uploaded = client.get_object(Bucket=bucket, Key="runs/cut/epoch_2.pth")["Body"].read()
    assert uploaded == (work / "epoch_2.pth").read_bytes()
