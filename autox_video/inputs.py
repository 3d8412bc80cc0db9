"""Where a run's inputs and outputs live on this machine: local paths as given, s3:// mirrored locally."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autox_video.checkpoints import find_pretrained
from autox_video.config import Config
from autox_video.errors import ConfigError


@dataclass
class TrainingInputs:
    """Local paths of everything training reads, the local work dir, and the uploader (S3 output)."""

    data_root: Path
    ann_train: str | None
    ann_val: str | None
    class_names: str | None
    pretrained: str | None
    work_dir: Path
    publisher: Callable[[Path, int, bool], None] | None = None


def _local(value: str | None, key: str) -> str | None:
    if value is not None and value.startswith("s3://"):
        raise ConfigError(f"{key}={value!r}: S3 locations need the storage layer (not wired yet)")
    return value


def localize_training_inputs(cfg: Config) -> TrainingInputs:
    """Resolve the config's locations to local paths (downloading S3 inputs on local rank 0)."""
    if cfg.data_root is None:
        raise ConfigError("data_root is not set: add it to config.yaml or pass --data-root")
    return TrainingInputs(
        data_root=Path(_local(cfg.data_root, "data_root") or "."),
        ann_train=_local(cfg.ann_file_train, "ann_file_train"),
        ann_val=_local(cfg.ann_file_val, "ann_file_val"),
        class_names=_local(cfg.class_names, "class_names"),
        pretrained=_local(find_pretrained(cfg.pretrained), "pretrained"),
        work_dir=Path(_local(cfg.work_dir, "work_dir") or "work_dir"),
    )


@dataclass
class PredictionInputs:
    """Local paths for a prediction run and where results.json goes."""

    weights: Path | None
    data_root: Path
    ann_test: str | None
    scratch: Path
    results_local: Path
    results_uri: str
    publish_results: Callable[[Path], None] | None = None


def localize_prediction_inputs(cfg: Config) -> PredictionInputs:
    """Resolve weights (checkpoint, else the work dir's best/latest), data and the results location."""
    from autox_video.checkpoints import best_or_latest

    ann = _local(cfg.ann_file_test, "ann_file_test")
    if cfg.data_root is not None:
        data_root = Path(_local(cfg.data_root, "data_root") or ".")
    elif ann is not None:
        data_root = Path(ann).resolve().parent  # paths in a list are relative to it when no data_root
    else:
        raise ConfigError("nothing to predict: set data_root (every video under it) or ann_file_test")
    if cfg.checkpoint is not None:
        weights = Path(_local(cfg.checkpoint, "checkpoint") or "")
    else:
        weights = best_or_latest(Path(_local(cfg.work_dir, "work_dir") or "work_dir"))
    results = Path(_local(cfg.test_results_path, "test_results_path") or "results.json")
    return PredictionInputs(weights, data_root, ann, results.parent, results, str(results))
