"""`loggers: [tensorboard, mlflow]`: a real tiny run, then its TensorBoard event file and MLflow store read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, write_config

from autox_video.config import Config
from autox_video.training.loggers import flatten


def test_loggers_key_takes_a_list_or_one_name_and_rejects_others() -> None:
    assert Config().loggers == []
    assert Config(loggers="mlflow").loggers == ["mlflow"]
    assert Config(loggers=["tensorboard", "mlflow"]).loggers == ["tensorboard", "mlflow"]
    with pytest.raises(ValueError, match="tensorboard"):
        Config(loggers=["wandb"])


def test_config_flattens_to_mlflow_parameters() -> None:
    assert flatten({"lr": 0.001, "search": {"trials": 4, "budget": {"hours": None}}, "x": None}) == {
        "lr": "0.001",
        "search.trials": "4",
    }


@pytest.mark.slow
def test_tiny_run_logs_to_tensorboard_and_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ds = make_tiny_dataset(tmp_path / "data")
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", ds, work, epoch=2, loggers=["tensorboard", "mlflow"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the default: a file store in work_dir/mlruns
    done = cli("train", "--config", str(config), env={"AUTOX_JOB_NAME": "clips-v1"})
    assert done.returncode == 0, done.stderr[-3000:]

    events = EventAccumulator(str(work / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/top1", "best/top1"} <= set(tags), tags
    assert [e.step for e in events.Scalars("val/top1")] == [1, 2]  # one point per validation (epoch)
    assert len(events.Scalars("train/loss")) >= 2

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((work / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("autox-video")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "clips-v1" and run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "swin_micro" and run.data.params["epoch"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_top1")] == [1, 2]
    assert "best_top1" in run.data.metrics and len(client.get_metric_history(run.info.run_id, "train_loss")) >= 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curves.png", "metrics.jsonl", "progress.json", "config.yaml"} <= artifacts
