"""VideoTrainingJob (short name vtj): train a Video Swin classifier as a Kubeflow PyTorchJob (DESIGN §4)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from autox_video.config import Backbone, Config, Decoder, Precision
from autox_video.spec.common import (
    S3_URI_PATTERN,
    CamelModel,
    CommonStatus,
    JobSpecBase,
    PrinterColumn,
    ResourceInfo,
    sub,
)
from autox_video.spec.search import SearchSpec
from autox_video.spec.serving import ServingSpec, ServingStatus

TrialState = Literal["running", "succeeded", "pruned", "failed"]


def _bounds(config_key: str) -> dict[str, Any]:
    """The numeric bounds (ge, gt, le, lt) config.yaml puts on `config_key`."""
    info = Config.model_fields[config_key]
    return {
        k: getattr(m, k) for m in info.metadata for k in ("ge", "gt", "le", "lt") if getattr(m, k, None) is not None
    }


def _like(config_key: str, description: str | None = None, **extra: Any) -> Any:
    """A field with the default, bounds and description of config.yaml's `config_key` (one source of truth)."""
    info = Config.model_fields[config_key]
    bounds = _bounds(config_key)
    if info.default_factory is not None:  # e.g. loggers: a fresh [] per object
        return Field(
            default_factory=info.default_factory, description=description or info.description, **bounds, **extra
        )
    return Field(info.default, description=description or info.description, **bounds, **extra)


def _family_like(config_key: str, description: str | None = None) -> Any:
    """A field with config.yaml's bounds whose default (None, left out of config.yaml) is the backbone family's."""
    info = Config.model_fields[config_key]
    bounds = _bounds(config_key)
    text = (description or info.description or config_key).rstrip(".")
    return Field(None, description=f"{text}; default: the backbone family's.", **bounds)


class TrainingDataset(CamelModel):
    """Videos and `path label` lists (mmaction2 format) on S3."""

    videos: str = Field(pattern=S3_URI_PATTERN, description="Prefix the list paths are relative to (data_root).")
    train: str = Field(pattern=S3_URI_PATTERN, description="Training list: one `relative/path label` per line.")
    val: str | None = Field(None, pattern=S3_URI_PATTERN, description="Validation list (optional).")
    class_names: str | None = Field(
        None, pattern=S3_URI_PATTERN, description="File with one class name per line (line i = label i)."
    )


class TrainingModel(CamelModel):
    """The network and the weights it starts from."""

    backbone: Backbone = _like("backbone")  # the names and their description come from autox_video/families.py
    pretrained: str | None = Field(
        None,
        min_length=1,
        description="Weights to start from: auto (default: the backbone's official Kinetics weights, from the "
        "operator's weights mirror or the internet, hash-checked; random init for tiny backbones), an s3:// or "
        "https:// URI, a path in the trainer image, or none (random init).",
    )


class TrainingParams(CamelModel):
    """Schedule and optimisation (config.yaml keys, camelCase)."""

    epochs: int = _like("epoch")
    batch_size_per_gpu: int = _like("videos_per_gpu")
    eval_interval: int = _like("evaluation")
    video_length: int = _like("video_length")
    clip_len: int | None = _family_like("clip_len", "Frames per clip (Swin: 4 x videoLength)")
    frame_interval: int | None = _family_like("frame_interval", "Temporal stride between sampled frames (Swin: 6)")
    img_size: int | None = _family_like("img_size")
    precision: Precision = _like("precision")
    lr: float | None = _family_like("lr")
    backbone_lr_mult: float | None = _family_like("backbone_lr_mult")
    weight_decay: float | None = _family_like("weight_decay", "Weight decay")
    warmup_epochs: float | None = _family_like("warmup_epochs")
    grad_clip: float | None = _family_like("grad_clip", "Max gradient norm, null = no clipping")
    drop_path_rate: float | None = _family_like("drop_path_rate", "Stochastic depth rate of the backbone")
    num_workers: int | None = _like("num_workers")
    seed: int = _like("seed", "Random seed.")
    num_class: int | None = _like("num_class")
    decoder: Decoder = _like("decoder")
    test_clips: int = _like("test_clips")
    keep_checkpoints: int = _like("keep_checkpoints")
    max_bad_fraction: float = _like("max_bad_fraction")
    log_interval: int = _like("log_interval")
    loggers: list[Literal["tensorboard", "mlflow"]] = _like(
        "loggers",
        "Also log to: tensorboard (event files under output/tensorboard/) and/or mlflow (MLFLOW_TRACKING_URI, "
        "default a file store under output/mlruns/; the run is named after the job).",
    )


class VideoTrainingJobSpec(JobSpecBase):
    """What to train, on what, with which resources, and where the results go."""

    dataset: TrainingDataset = Field(description="Training (and validation) data on S3.")
    model: TrainingModel = sub(TrainingModel, "Backbone and pretrained weights.")
    training: TrainingParams = sub(TrainingParams, "Epochs, batch size, learning rate and the rest of the schedule.")
    output: str = Field(
        pattern=S3_URI_PATTERN,
        description="S3 prefix for checkpoints, logs, metrics.jsonl and progress.json (work_dir).",
    )
    search: SearchSpec | None = Field(
        None,
        description=(
            "Run a hyperparameter search instead of one training: each trial a PyTorchJob <job>-tNNNN with its "
            "output under output/trials/NNNN/; the best trial's weights are promoted to output/best.pth."
        ),
    )
    serving: ServingSpec | None = Field(
        None,
        description=(
            "Once the job succeeds, serve its best weights (a search: the promoted best) as a KServe "
            "InferenceService <job>-serve owned by the job; status.serving reports its URL."
        ),
    )


class TrialStatus(CamelModel):
    """One trial of a search, as the operator last saw it (the full row is in output/trials.jsonl)."""

    number: int = Field(ge=0, description="Trial number (0: the default config when it lies in the space).")
    state: TrialState = Field(description="running, succeeded, pruned or failed.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The searched keys' values (a choice of several keys as its label).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    epochs: int = Field(0, ge=0, description="Epochs trained (a pruned trial: when it was stopped).")
    best_top1: float | None = Field(None, description="Best validation top-1 of the trial (0-1).")
    pytorch_job: str | None = Field(None, description="Name of the trial's PyTorchJob (engine pytorchjob).")
    child: str | None = Field(None, description="Name of the trial's PyTorchJob or TrainJob.")
    start_time: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the operator started the trial."
    )
    completion_time: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the operator saw the trial end."
    )
    reason: str | None = Field(None, description="Why a trial failed or was pruned.")
    latency_ms: float | None = Field(
        None, ge=0, description="Measured latency of the trial's model per batch (ms, median; spec.search.latency)."
    )
    videos_per_s: float | None = Field(None, ge=0, description="Measured throughput of the trial's model (videos/s).")
    gflops: float | None = Field(None, ge=0, description="GFLOPs of one forward pass of the trial's model.")
    model_params: int | None = Field(None, ge=0, description="Parameters of the trial's model.")


class ParetoPoint(CamelModel):
    """A Pareto-optimal trial of a multi-objective search: its number and its two figures."""

    trial: int = Field(ge=0, description="Trial number.")
    top1: float = Field(description="Best validation top-1 of the trial (0-1).")
    latency_ms: float | None = Field(None, ge=0, description="Measured latency per batch (ms).")
    videos_per_s: float | None = Field(None, ge=0, description="Measured throughput (videos/s).")


class TrialCounts(CamelModel):
    """How many trials are in each state."""

    total: int = Field(0, description="Trials started.")
    running: int = Field(0, description="Trials running (or suspended).")
    succeeded: int = Field(0, description="Trials that trained every epoch.")
    pruned: int = Field(0, description="Trials the pruner stopped early.")
    failed: int = Field(0, description="Trials that failed.")


class VideoTrainingJobStatus(CommonStatus):
    """Observed state: phase, PyTorchJob conditions and training progress from progress.json."""

    epoch: int | None = Field(None, description="Last finished epoch (a search: trial-epochs trained, all trials).")
    total_epochs: int | None = Field(None, description="Epochs the run will train.")
    best_top1: float | None = Field(None, description="Best validation top-1 accuracy so far (0-1).")
    best_epoch: int | None = Field(None, description="Epoch of the best validation top-1.")
    best_checkpoint: str | None = Field(None, description="s3:// URI of the best weights (best.pth).")
    latest_checkpoint: str | None = Field(None, description="s3:// URI of the latest epoch checkpoint.")
    progress_updated: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the trainer last wrote progress.json."
    )
    progress_percentage: int | None = Field(
        None, ge=0, le=100, description="Percent of the epochs trained (100 only when every epoch is done)."
    )
    estimated_remaining_seconds: int | None = Field(
        None,
        ge=0,
        description="Seconds of training left: epochs left x the mean measured epoch (validation included).",
    )
    trials: list[TrialStatus] | None = Field(None, description="A search's trials, by number.")
    trial_counts: TrialCounts | None = Field(None, description="A search's trials per state.")
    trials_summary: str | None = Field(None, description="A search's trials started / most trials, e.g. 3/20.")
    best_trial: int | None = Field(
        None,
        description="Number of the search's promoted trial (best.pth): the most accurate one (with "
        "search.latency.maxMs or minVideosPerS: the most accurate that meets it, when one does).",
    )
    best_latency_ms: float | None = Field(
        None, ge=0, description="Measured latency per batch of the promoted trial's model (ms)."
    )
    best_videos_per_s: float | None = Field(
        None, ge=0, description="Measured throughput of the promoted trial's model (videos/s)."
    )
    pareto: list[ParetoPoint] | None = Field(
        None,
        description="A multi-objective search's Pareto front: the non-dominated succeeded trials with both "
        "figures, most accurate first.",
    )
    serving: ServingStatus | None = Field(None, description="The InferenceService of spec.serving, once created.")


TRAINING = ResourceInfo(
    kind="VideoTrainingJob",
    plural="videotrainingjobs",
    singular="videotrainingjob",
    short_names=("vtj",),
    description="VideoTrainingJob trains a Video Swin Transformer classifier on labelled videos as a PyTorchJob.",
    spec=VideoTrainingJobSpec,
    status=VideoTrainingJobStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Queued, Running, Succeeded, Failed or Suspended."),
        PrinterColumn("Epoch", "integer", ".status.epoch", "Last finished epoch (a search: trial-epochs)."),
        PrinterColumn("Trials", "string", ".status.trialsSummary", "A search's trials started / most trials."),
        PrinterColumn("Progress", "integer", ".status.progressPercentage", "Percent of the epochs trained."),
        PrinterColumn("Top-1", "number", ".status.bestTop1", "Best validation top-1 (a search: the promoted trial's)."),
        PrinterColumn("Latency", "number", ".status.bestLatencyMs", "A search: the promoted trial's latency (ms)."),
        PrinterColumn("URL", "string", ".status.serving.url", "Endpoint of the InferenceService (spec.serving)."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
    ),
)
