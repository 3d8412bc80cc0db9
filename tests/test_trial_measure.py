"""A search trial on Kubernetes runs `autox-video train` with `measure` set (the operator's trial config):
after training it times its own best weights where it trained and writes the figures and the export
beside its outputs in S3 (moto over HTTP), in the form the operator reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, s3_config, upload_tree

from autox_video.config import load_config


@pytest.mark.slow
def test_a_measured_training_writes_its_figures_and_export_to_its_work_dir(
    s3_server, s3_env, bucket, tmp_path: Path
) -> None:
    from autox_operator.trials import FIGURES, figures_of

    client = s3_server.client()
    ds = make_tiny_dataset(tmp_path / "local", per_class=2)
    upload_tree(client, bucket, ds.root, "data")
    measure = {"batch_size": 2, "runtime": "onnx", "warmup": 1, "repeats": 2}
    config = s3_config(tmp_path, ds, bucket, epoch=1, measure=measure)
    assert load_config(config).measure is not None
    res = cli("train", "--config", str(config))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "measured: " in res.stdout

    result = json.loads(client.get_object(Bucket=bucket, Key="runs/r1/trial.json")["Body"].read())
    figures = figures_of(result)
    assert set(figures) == set(FIGURES), result  # every figure measured, in the operator's keys
    assert figures["latency_ms"] > 0 and figures["videos_per_s"] > 0 and figures["gflops"] > 0
    assert figures["model_params"] > 1000 and isinstance(result["model_params"], int)
    assert result["measured"]["batch_size"] == 2 and result["state"] == "succeeded"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="runs/r1/export/")["Contents"]}
    assert "runs/r1/export/model.onnx" in keys, keys


def test_a_run_that_cannot_be_measured_says_why_and_reports_no_figure(s3_env, bucket, tmp_path: Path) -> None:
    from autox_video.storage import objects
    from autox_video.training.measured import measure_run

    ds = make_tiny_dataset(tmp_path / "local", per_class=1)
    cfg = load_config(s3_config(tmp_path, ds, bucket, measure={"runtime": "torch", "repeats": 1}))
    result = measure_run(cfg, None, best_top1=None, epochs=1)  # no validation: no best.pth to time
    written = json.loads(objects.read_text(f"s3://{bucket}/runs/r1/trial.json"))
    assert written == result and "no best.pth" in result["measure_error"] and "latency_ms" not in result
    broken = tmp_path / "best.pth"
    broken.write_bytes(b"not a checkpoint")
    result = measure_run(cfg, broken, best_top1=0.5, epochs=1)
    assert result["measure_error"] and result["best_top1"] == 0.5 and "latency_ms" not in result
