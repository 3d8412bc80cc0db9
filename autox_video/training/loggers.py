"""`loggers: [tensorboard, mlflow]`: scalars, the resolved config and the run's artefacts (rank 0 only).

TensorBoard: event files in work_dir/tensorboard/. MLflow: the tracking URI from MLFLOW_TRACKING_URI
(default: work_dir/mlruns, a file store), the run named after the job (AUTOX_JOB_NAME, else the work dir's
name). The MLflow run id rides in each checkpoint, so a resumed run goes on logging into the same run.
The libraries' own APIs are used rather than mmengine's backends: those log mmengine's whole expanded
config as parameters and upload every *.json/*.py under the work dir as artefacts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mmaction.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from autox_video.errors import ConfigError

log = logging.getLogger("autox_video")

RUN_ID_KEY = "autox_mlflow_run"
ARTIFACTS = ("curves.png", "metrics.jsonl", "progress.json", "config.yaml")


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"search.trials": "4", ...}, values as text (MLflow parameters are strings)."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif v is not None:
            out[key] = str(v)[:500]
    return out


def _require(loggers: list[str]) -> None:
    """A missing package is a one-line error naming the extra to install, not an ImportError deep in a hook."""
    import importlib.util

    modules = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
    missing = [name for name in loggers if importlib.util.find_spec(modules[name]) is None]
    if missing:
        raise ConfigError(
            f"loggers: {', '.join(missing)} not installed: pip install 'autox-video[loggers]' (or drop it from loggers)"
        )


@HOOKS.register_module()
class LoggersHook(Hook):
    """Sends loss, lr and validation accuracy to TensorBoard and/or MLflow; artefacts at the end."""

    priority = "LOWEST"  # after ProgressHook: the epoch's files are written when we log them

    def __init__(self, loggers: list[str], interval: int = 10, params: dict[str, Any] | None = None) -> None:
        self.loggers = list(loggers)
        self.interval = interval
        self.params = params or {}
        self.tb: Any = None
        self.mlflow: Any = None

    def before_train(self, runner: Any) -> None:
        """Open the writers (continuing the MLflow run a resumed checkpoint names)."""
        if not is_main_process():
            return
        _require(self.loggers)
        work = Path(runner.work_dir)
        if "tensorboard" in self.loggers:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(work / "tensorboard"))
            self.tb.add_text("config", "\n".join(f"    {k}: {v}" for k, v in flatten(self.params).items()))
        if "mlflow" in self.loggers:
            import mlflow

            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                uri = (work / "mlruns").resolve().as_uri()
                # MLflow 3 refuses file stores unless told to; it is our default, a server is the user's choice.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(uri)
            run_id = runner.message_hub.get_info(RUN_ID_KEY)
            name = os.environ.get("AUTOX_JOB_NAME") or work.name
            if run_id:
                mlflow.start_run(run_id=run_id)
            else:
                mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "autox-video")
                run = mlflow.start_run(run_name=name)
                runner.message_hub.update_info(RUN_ID_KEY, run.info.run_id)
                mlflow.log_params(flatten(self.params))
            self.mlflow = mlflow
            log.info("MLflow: run %s at %s", name, uri)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.mlflow is not None:
            self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Loss and learning rate every `interval` iterations."""
        if (self.tb is None and self.mlflow is None) or not outputs or "loss" not in outputs:
            return
        step = runner.iter + 1
        if step % self.interval and batch_idx + 1 != len(runner.train_dataloader):
            return
        loss = outputs["loss"]
        lr = max(runner.optim_wrapper.get_lr().get("lr") or [0.0])
        self._scalars({"train/loss": float(loss.detach()) if hasattr(loss, "detach") else float(loss),
                       "train/lr": float(lr)}, step)  # fmt: skip

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Validation top-1/top-5 per epoch (step = the epoch)."""
        if (self.tb is None and self.mlflow is None) or not metrics:
            return
        values = {f"val/{k.split('/')[-1]}": float(v) for k, v in metrics.items() if k.startswith("acc/")}
        self._scalars(values, runner.epoch + 1)  # validated before the epoch counter moves on

    def after_train(self, runner: Any) -> None:
        """The final metrics and the run's files as artefacts; close."""
        work = Path(runner.work_dir)
        best = runner.message_hub.get_info("autox_best") or {}
        if self.tb is not None:
            if best.get("top1") is not None:
                self.tb.add_scalar("best/top1", best["top1"], best["epoch"])
            self.tb.close()
        if self.mlflow is not None:
            if best.get("top1") is not None:
                self.mlflow.log_metrics({"best_top1": best["top1"], "best_epoch": best["epoch"]})
            for name in ARTIFACTS:
                if (work / name).is_file():
                    self.mlflow.log_artifact(str(work / name))
            self.mlflow.end_run()
        self.tb = self.mlflow = None
