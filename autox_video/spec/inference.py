"""VideoInferenceJob (short name vij): predict a folder of videos with a trained model (DESIGN §4)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from autox_video.config import Backbone, Decoder, Granularity, Precision
from autox_video.spec.common import (
    NAME_PATTERN,
    S3_URI_PATTERN,
    CamelModel,
    CommonStatus,
    JobSpecBase,
    PrinterColumn,
    ResourceInfo,
    sub,
)
from autox_video.spec.training import _like


class InferenceModel(CamelModel):
    """Which weights to predict with: a finished VideoTrainingJob, or a checkpoint URI."""

    # The same rule in the CRD, so `kubectl apply` rejects both or neither.
    model_config = ConfigDict(
        **CamelModel.model_config,
        json_schema_extra={"oneOf": [{"required": ["trainingJobRef"]}, {"required": ["checkpoint"]}]},
    )

    training_job_ref: str | None = Field(
        None,
        max_length=253,
        pattern=NAME_PATTERN,
        description="A VideoTrainingJob in this namespace; its bestCheckpoint is used once it has Succeeded.",
    )
    checkpoint: str | None = Field(None, pattern=S3_URI_PATTERN, description="s3:// URI of the weights (.pth).")
    backbone: Backbone | None = Field(
        None, description="Backbone of the checkpoint; default: the training job's, else swin_b."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> InferenceModel:
        if (self.training_job_ref is None) == (self.checkpoint is None):
            raise ValueError("set exactly one of model.trainingJobRef or model.checkpoint")
        return self


class InferenceDataset(CamelModel):
    """The videos to predict."""

    videos: str = Field(pattern=S3_URI_PATTERN, description="Prefix the list paths are relative to (data_root).")
    list: str | None = Field(
        None,
        pattern=S3_URI_PATTERN,
        description="List of videos (`path` or `path label` lines); without it every video under `videos`.",
    )
    class_names: str | None = Field(
        None, pattern=S3_URI_PATTERN, description="Class names file; default: the training job's."
    )


class InferenceParams(CamelModel):
    """Prediction settings; unset clip settings are taken from the referenced training job."""

    batch_size_per_gpu: int | None = _like(
        "test_batch_size", "Videos per forward pass per GPU (default: tuned, the largest that fits and pays)."
    )
    video_length: int | None = Field(None, ge=1, description="Seed meaning: clip_len = 4 x video_length frames.")
    clip_len: int | None = _like("clip_len")
    frame_interval: int | None = _like("frame_interval")
    img_size: int | None = Field(None, ge=16, description="Crop size fed to the network.")
    test_clips: int = _like("test_clips")
    test_crops: Literal[1, 3] = Field(1, description="Spatial crops averaged per clip: 1 (center) or 3.")
    precision: Precision = _like("precision")
    num_workers: int | None = _like("num_workers")
    decoder: Decoder = _like("decoder")
    granularity: list[Granularity] = Field(
        default_factory=lambda: ["video"], description="video, segment, shot and/or second (predictions over time)."
    )
    interval: float = _like("interval")
    confidence_threshold: float = _like("confidence_threshold")
    max_predictions: int = _like("max_predictions")


class VideoInferenceJobSpec(JobSpecBase):
    """What to predict, with which model, and where results.json goes."""

    model: InferenceModel = Field(description="trainingJobRef or checkpoint (exactly one).")
    dataset: InferenceDataset = Field(description="Videos to predict on S3.")
    inference: InferenceParams = sub(InferenceParams, "Batch size, clips, crops and precision.")
    output: str = Field(
        pattern=S3_URI_PATTERN,
        description="s3:// URI of results.json; a prefix (ending with /) or a bare bucket gets results.json appended.",
    )


class TimelineCounts(CamelModel):
    """How many timeline items results.json holds, over all videos (a granularity not asked for is absent)."""

    segments: int | None = Field(None, ge=0, description="Segments (list lines) labelled.")
    shots: int | None = Field(None, ge=0, description="Shots found and labelled.")
    seconds: int | None = Field(None, ge=0, description="Seconds (interval steps) labelled.")


class VideoInferenceJobStatus(CommonStatus):
    """Observed state: phase, the checkpoint used and, once done, the results."""

    checkpoint: str | None = Field(None, description="s3:// URI of the weights used.")
    results_uri: str | None = Field(None, description="s3:// URI of results.json.")
    report_uri: str | None = Field(
        None, description="s3:// URI of report.html beside results.json (written when every video had a label)."
    )
    videos: int | None = Field(None, description="Videos predicted.")
    metrics: dict[str, float] | None = Field(None, description="top1/top5 when the list had labels.")
    timeline: TimelineCounts | None = Field(
        None, description="Segments, shots and seconds predicted (spec.inference.granularity other than video)."
    )


INFERENCE = ResourceInfo(
    kind="VideoInferenceJob",
    plural="videoinferencejobs",
    singular="videoinferencejob",
    short_names=("vij",),
    description="VideoInferenceJob predicts videos with a trained Video Swin classifier and writes results.json.",
    spec=VideoInferenceJobSpec,
    status=VideoInferenceJobStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Pending, Queued, Running, Succeeded, Failed or Suspended."),
        PrinterColumn("Videos", "integer", ".status.videos", "Videos predicted."),
        PrinterColumn("Top1", "number", ".status.metrics.top1", "Top-1 accuracy when labels exist."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
    ),
)
