"""AutoXVideo: the seed's Python API (read_cfg / fit / transform) on top of train.fit and predict.transform."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autox_video import warning_filters
from autox_video.config import Config, build_config, normalise_keys, read_config_file
from autox_video.inference.predict import Prediction
from autox_video.search.tune import SearchResult
from autox_video.training.train import TrainResult


class AutoXVideo:
    """Train and apply a Video Swin classifier; every argument the seed had optional is optional here."""

    def __init__(self, **config: Any) -> None:
        # Canonical key names only, so a later `epoch=` beats an earlier `epochs=` (and vice versa).
        self._base: dict[str, Any] = normalise_keys(config, "AutoXVideo()")
        warning_filters.install()  # before training or prediction imports mmaction2 and builds a model
        self.last_fit: TrainResult | None = None
        self.last_prediction: Prediction | None = None
        self.last_search: SearchResult | None = None

    @property
    def config(self) -> Config:
        """The current resolved config (file + constructor kwargs + what fit() was given)."""
        return build_config(self._base)

    def read_cfg(self, cfg_file: str | Path) -> AutoXVideo:
        """Load config.yaml; later calls' arguments override it."""
        self._base.update(normalise_keys(read_config_file(cfg_file), str(cfg_file)))
        build_config(self._base, source=str(cfg_file))  # validate now: errors name the file
        return self

    def fit(
        self,
        data_root: str | None = None,
        ann_file_train: str | None = None,
        ann_file_val: str | None = None,
        work_dir: str | None = None,
        video_length: int | None = None,
        num_class: int | None = None,
        videos_per_gpu: int | None = None,
        epoch: int | None = None,
        evaluation: int | None = None,
        **extra: Any,
    ) -> TrainResult:
        """Train (resuming from work_dir if it holds a checkpoint); arguments override the config."""
        from autox_video.training.train import fit

        given = dict(
            data_root=data_root,
            ann_file_train=ann_file_train,
            ann_file_val=ann_file_val,
            work_dir=work_dir,
            video_length=video_length,
            num_class=num_class,
            videos_per_gpu=videos_per_gpu,
            epoch=epoch,
            evaluation=evaluation,
            **extra,
        )
        self._base.update(normalise_keys({k: v for k, v in given.items() if v is not None}, "fit()"))
        self.last_fit = fit(self.config)
        return self.last_fit

    def tune(self, trials: int | None = None, parallel: int | None = None, **extra: Any) -> SearchResult:
        """Search hyperparameters (`search=` or the config's `search:`, else auto); the best is promoted to work_dir."""
        from autox_video.search.tune import tune

        self._base.update(normalise_keys({k: v for k, v in extra.items() if v is not None}, "tune()"))
        self.last_search = tune(self.config, trials=trials, parallel=parallel)
        return self.last_search

    def pick(self, trial: int) -> SearchResult:
        """Promote trial `trial` of the search in work_dir instead of the chosen one (`tune --pick N`).

        Its best.pth and best_config.yaml replace the promoted ones, and its export/ follows when the
        search measured its trials; e.g. a faster trial of `result.front` than the limit's choice.
        """
        from autox_video.search.tune import pick

        self.last_search = pick(self.config, trial)
        return self.last_search

    def transform(
        self,
        data_root: str | None = None,
        ann_file_test: str | None = None,
        checkpoints: str | None = None,
        output_path: str | None = None,
        **extra: Any,
    ) -> list[list[float]]:
        """Predict (after fit() with no arguments: fit's data and best weights); returns per-video probabilities."""
        from autox_video.inference.predict import transform

        cfg = self.config
        updates: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
        if data_root is not None:
            updates["data_root"] = data_root
        if ann_file_test is not None:
            updates["ann_file_test"] = ann_file_test
        elif data_root is None and cfg.ann_file_test is None and cfg.ann_file_val is not None:
            updates["ann_file_test"] = cfg.ann_file_val  # after fit(): predict its validation list
        if checkpoints is not None:
            updates["checkpoint"] = checkpoints
        if output_path is not None:
            updates["test_results_path"] = output_path
        self.last_prediction = transform(build_config(cfg.model_dump(), updates))
        return self.last_prediction.probs

    def export(
        self, checkpoint: str | None = None, out: str | None = None, *, fp16: bool = False, fmt: str = "onnx"
    ) -> str:
        """Export the best weights (after fit() or tune(): work_dir's best.pth) as ONNX; returns the export folder."""
        from autox_video.errors import ConfigError
        from autox_video.export import export_checkpoint

        cfg = self.config
        source = checkpoint or cfg.checkpoint or cfg.work_dir
        if source is None:
            raise ConfigError("export(): pass checkpoint= (best.pth or a work_dir), or fit() first")
        return export_checkpoint(str(source), out, fmt=fmt, fp16=fp16).out

    def report(self, results_path: str | None = None, out_dir: str | None = None) -> str:
        """Write report.html + report.json beside a labelled results.json (default: test_results_path)."""
        from autox_video.report import report_results

        return report_results(str(results_path or self.config.test_results_path), out_dir)
