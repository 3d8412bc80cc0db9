"""The config.yaml model: the seed's keys unchanged plus our extras (DESIGN §2).

Precedence, lowest to highest: field defaults < config file < command-line flags / API kwargs.
Importable without torch: the operator uses it to write the trainer's config.yaml.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from autox_video import families
from autox_video.config_keys import LOCATION_KEYS
from autox_video.errors import ConfigError
from autox_video.families import Backbone
from autox_video.search.section import parse_search
from autox_video.spec.search import LatencyConfig, SearchConfig

Precision = Literal["auto", "fp32", "fp16", "bf16"]
Decoder = Literal["auto", "decord", "pyav"]
ResultsFormat = Literal["default", "seed", "vertex"]
Granularity = Literal["video", "segment", "shot", "second"]
GRANULARITIES: tuple[str, ...] = ("video", "segment", "shot", "second")


class Config(BaseModel):
    """Everything `autox-video train` and `autox-video test` read from config.yaml."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- the seed's keys (AutoX_video config.yaml), same names and meaning ---
    data_root: str | None = Field(None, description="Folder (or s3:// prefix) the annotation paths are relative to.")
    ann_file_train: str | None = Field(None, description="Training list: one `relative/path label` per line.")
    ann_file_val: str | None = Field(None, description="Validation list (optional).")
    ann_file_test: str | None = Field(
        None, description="Test list; without it every video under data_root is predicted."
    )
    video_length: int = Field(8, ge=1, description="Seed meaning: clip_len = 4 x video_length frames, interval 6.")
    num_class: int | None = Field(
        None, ge=2, description="Number of classes; inferred from training labels if omitted."
    )
    videos_per_gpu: int = Field(8, ge=1, description="Batch size per process (GPU).")
    epoch: int = Field(30, ge=1, description="Training epochs.")
    evaluation: int = Field(2, ge=0, description="Validate every N epochs (0 = never).")
    work_dir: str = Field("./work_dir", description="Checkpoints, logs, metrics (local path or s3:// URI).")
    test_results_path: str = Field("./results.json", description="Where `test` writes results.json (path or s3://).")

    # --- extras ---
    backbone: Backbone = Field(
        "swin_b",
        description=f"Network: {families.describe()}. Keys it has its own recipe for "
        f"({', '.join(families.FAMILY_KEYS)}) default to that recipe when not set.",
    )
    pretrained: str = Field(
        "auto",
        description="Weights: auto (the backbone's official Kinetics weights: ./checkpoints/<file>, else "
        "downloaded and hash-checked; random init for tiny backbones), a path, s3://, https://, or none "
        "(random init).",
    )
    checkpoint: str | None = Field(None, description="For test: weights to predict with (default: work_dir best).")
    clip_len: int | None = Field(None, ge=1, description="Frames per clip (overrides video_length).")
    frame_interval: int | None = Field(None, ge=1, description="Temporal stride between sampled frames.")
    img_size: int = Field(224, ge=16, description="Crop size fed to the network.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate of the head (backbone gets lr x backbone_lr_mult).")
    backbone_lr_mult: float = Field(0.1, gt=0, description="Backbone learning-rate multiplier.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW/SGD weight decay.")
    warmup_epochs: float = Field(2.5, ge=0, description="Linear warmup length before the cosine decay.")
    grad_clip: float | None = Field(40.0, gt=0, description="Max gradient norm (null = no clipping).")
    drop_path_rate: float = Field(0.2, ge=0, lt=1, description="Stochastic depth rate of the backbone.")
    flip: bool = Field(True, description="Random horizontal flip; turn off when left/right decides the class.")
    min_crop_area: float = Field(0.08, gt=0, le=1, description="Smallest area share of the random resized crop.")
    precision: Precision = Field("auto", description="auto: bf16 (or fp16) on GPU, fp32 on CPU.")
    num_workers: int | None = Field(None, ge=0, description="Data-loader workers per process (default: from CPUs).")
    seed: int = Field(0, description="Random seed (sampling, augmentation, initialisation).")
    class_names: str | None = Field(None, description="File with one class name per line (line i = label i).")
    test_clips: int = Field(2, ge=1, description="Clips averaged per video at validation/test.")
    test_crops: int = Field(1, ge=1, description="Spatial crops averaged per clip at test (1 or 3).")
    test_batch_size: int | None = Field(
        None,
        ge=1,
        description="Videos per forward pass at test (default: tuned on GPU, the largest that fits and pays; "
        "videos_per_gpu on CPU).",
    )
    decoder: Decoder = Field(
        "auto", description="Video decoding: auto (PyAV for MPEG-4 Part 2, whose seeks decord gets wrong; else decord)."
    )
    max_bad_fraction: float = Field(
        0.1, ge=0, le=1, description="Abort if more than this share of videos is unreadable."
    )
    keep_checkpoints: int = Field(
        2, ge=1, description="Epoch checkpoints kept (at least 2 on the local disk; best.pth is always kept)."
    )
    log_interval: int = Field(10, ge=1, description="Log a line every N iterations.")
    loggers: list[Literal["tensorboard", "mlflow"]] = Field(
        default_factory=list,
        description="Also log to: tensorboard (work_dir/tensorboard/) and/or mlflow (MLFLOW_TRACKING_URI, "
        "default work_dir/mlruns).",
    )
    export: list[Literal["onnx"]] = Field(
        default_factory=list,
        description="After training, export best.pth into work_dir/export/: onnx = model.onnx, model.json and a "
        "Triton model repository (as `autox-video export`; needs the serve extra).",
    )
    results_format: ResultsFormat = Field(
        "default",
        description="results.json layout: default or seed; vertex also writes Vertex AI's predictions.jsonl beside it.",
    )
    granularity: list[Granularity] = Field(
        default_factory=lambda: ["video"],
        description="What `test` labels: video (one label per file), segment (each list line's [start, end]), "
        "shot (shots found by PySceneDetect), second (every `interval`); one or a list, e.g. second,shot.",
    )
    interval: float = Field(1.0, gt=0, description="Seconds between timeline predictions (granularity second).")
    confidence_threshold: float = Field(
        0.0, ge=0, le=1, description="Timeline predictions keep only labels at least this confident (as Vertex AI)."
    )
    max_predictions: int = Field(5, ge=1, description="Most labels kept per segment, shot or second (as Vertex AI).")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (else AWS_ENDPOINT_URL / AWS default).")
    s3_region: str | None = Field(None, description="S3 region (else AWS_DEFAULT_REGION).")
    search: SearchConfig | Literal["auto"] | None = Field(
        None, description="Search for `autox-video tune`: a mapping (trials, budget, space, ...) or 'auto'."
    )
    measure: LatencyConfig | None = Field(
        None,
        description="After `train`: export the best weights and time them on this device (latency_ms, "
        "videos_per_s, gflops, model_params into work_dir/trial.json, the model into work_dir/export/); "
        "the operator sets it on the trials of a search that weighs speed (search.latency's settings).",
    )

    # Keys the before-validator filled from the family's recipe: not the user's, so a search trial on
    # another backbone takes that backbone's value instead (explicit_keys).
    _family_filled: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _family_defaults(cls, data: Any, handler: ModelWrapValidatorHandler[Config]) -> Config:
        # A family's own recipe (families.py) fills the keys the config leaves out (or sets to null,
        # except grad_clip, where null means no clipping): tsm_r50 alone gets SGD's lr, 8 segments...
        # On assignment `data` is the model itself: nothing to fill, and the record stays.
        filled: dict[str, Any] | None = None
        if isinstance(data, dict):
            defaults = families.family_defaults(data.get("backbone", cls.model_fields["backbone"].default))
            given = {k for k, v in data.items() if v is not None or k == "grad_clip"}
            filled = {k: v for k, v in defaults.items() if k not in given}
            data = {**data, **filled}
        cfg = handler(data)
        if filled is not None:
            cfg._family_filled = frozenset(filled)
        return cfg

    def explicit_keys(self) -> set[str]:
        """Keys set by the config file, flags or kwargs (not from field or family defaults)."""
        return set(self.model_fields_set) - self._family_filled

    def family_free_values(self) -> dict[str, Any]:
        """model_dump() less the family keys the user did not set: rebuilt on another backbone, they
        take that backbone's defaults."""
        explicit = self.explicit_keys()
        return {k: v for k, v in self.model_dump().items() if k not in families.FAMILY_KEYS or k in explicit}

    @field_validator("search", mode="before")
    @classmethod
    def _search(cls, v: Any) -> Any:
        return parse_search(v, cls)  # checks the space against these fields

    @field_validator(*LOCATION_KEYS)
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        from autox_video.storage.uris import uri_problem

        problem = uri_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("pretrained", mode="before")
    @classmethod
    def _pretrained(cls, v: Any) -> Any:
        return "auto" if v is None else v  # null (the CRD's and the API's "not set") is the default

    @field_validator("loggers", "export", mode="before")
    @classmethod
    def _loggers(cls, v: Any) -> Any:
        return [] if v is None else [v] if isinstance(v, str) else v  # `loggers: mlflow` means [mlflow]

    @field_validator("granularity", mode="before")
    @classmethod
    def _granularity(cls, v: Any) -> Any:
        if v is None:
            return ["video"]
        if isinstance(v, str):  # `--granularity second,shot`
            v = [x.strip() for x in v.split(",") if x.strip()]
        if isinstance(v, list) and not v:
            raise ValueError(f"give at least one of {', '.join(GRANULARITIES)}")
        return list(dict.fromkeys(v)) if isinstance(v, list) else v

    @property
    def timeline(self) -> bool:
        """Whether `test` predicts over time (any granularity but video)."""
        return any(g != "video" for g in self.granularity)

    @field_validator("test_crops")
    @classmethod
    def _crops(cls, v: int) -> int:
        if v not in (1, 3):
            raise ValueError("must be 1 (center) or 3 (three crops)")
        return v

    @property
    def resolved_clip_len(self) -> int:
        """Frames per clip: `clip_len`, else the seed's 4 x video_length."""
        return self.clip_len if self.clip_len is not None else 4 * self.video_length

    @property
    def resolved_frame_interval(self) -> int:
        """Frame stride: `frame_interval`, else the seed's 6."""
        return self.frame_interval if self.frame_interval is not None else 6

    def to_yaml(self) -> str:
        """The config as YAML, every key explicit (what `work_dir/config.yaml` holds)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# The seed's CLI and files called the same things by these names too.
ALIASES = {"videos_per_gpu": ("batch_size",), "epoch": ("epochs",)}


def _closest(key: str) -> str:
    names = list(Config.model_fields) + [a for al in ALIASES.values() for a in al]
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid keys: {', '.join(Config.model_fields)}"


def normalise_keys(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Keys with '-' as '_' and aliases as their canonical names; an unknown key is a ConfigError."""
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for raw_key, value in raw.items():
        key = str(raw_key).replace("-", "_")
        for canonical, aliases in ALIASES.items():
            if key in aliases:
                key = canonical
        if key not in Config.model_fields:
            raise ConfigError(f"{source}: unknown key {key!r}{_closest(key)}")
        if key in given_as:  # silently keeping one of the two hid a typo or a stale line
            raise ConfigError(f"{source}: {given_as[key]!r} and {str(raw_key)!r} both set {key}; keep one of them")
        given_as[key] = str(raw_key)
        out[key] = value
    return out


def _format_validation(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "config"
    value = first.get("input")
    return f"{source}: {field}={value!r}: {first['msg']}"


def build_config(
    base: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    source: str = "config",
    *,
    explicit_none: bool = False,
) -> Config:
    """Validate `base` (file contents) updated with `overrides` (flags/kwargs) into a Config.

    A None override means "not given" (keyword arguments), unless `explicit_none`: then it sets the
    key to null (command-line flags, which are present only when typed, e.g. `--grad-clip null`).
    """
    merged = normalise_keys(base, source)
    given = normalise_keys(overrides or {}, "override")
    merged.update({k: v for k, v in given.items() if v is not None or explicit_none})
    try:
        return Config(**merged)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None
    except ConfigError as err:  # raised as is by the search validator: name the file
        raise ConfigError(f"{source}: {err}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a config.yaml into a dict, with one-line errors for missing files and bad YAML."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found (pass --config PATH or create ./config.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def load_config(
    path: str | Path | None, overrides: dict[str, Any] | None = None, *, explicit_none: bool = False
) -> Config:
    """Load config.yaml (if given) and apply overrides; the one way every entry point builds a Config."""
    base = read_config_file(path) if path is not None else {}
    return build_config(
        base, overrides, source=str(path) if path is not None else "config", explicit_none=explicit_none
    )
