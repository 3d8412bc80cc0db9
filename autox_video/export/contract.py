"""model.json: what a client must do to a video before the network (the preprocessing contract).

The numbers are those of the checkpoint's own test pipeline (training/recipe.py eval_pipeline), so a
server built from an export dir decodes exactly as `autox-video test` does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autox_video import families
from autox_video.config import Config
from autox_video.errors import ConfigError
from autox_video.storage import atomic

FORMAT_VERSION = 1
INPUT_NAME = "clips"
OUTPUT_NAME = "probs"


@dataclass
class Contract:
    """Everything model.json holds; `config` is the checkpoint's resolved training config."""

    backbone: str
    family: str
    sampling: str  # clip | segments | uniform (families.Family.sampling)
    clip_len: int
    frame_interval: int
    clips: int  # temporal views per video
    crops: int  # spatial views per clip (1 centre, 3 three-crop)
    size: int  # crop side in pixels; frames are first resized to this short side
    mean: list[float]
    std: list[float]
    input_layout: str  # NCTHW or NCHW, after the batch and view axes
    input_shape: list[int]  # one video's tensor, batch axis left out
    input_name: str
    output_name: str
    num_classes: int
    class_names: list[str]
    checkpoint: str
    checkpoint_sha256: str
    precision: str  # fp32 | fp16 (the input and output tensors' type)
    opset: int
    exporter: str
    config: dict[str, Any] = field(default_factory=dict)
    verified: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def model_config(self) -> Config:
        """The training config (rebuilds the test pipeline)."""
        return Config(**self.config)

    def write(self, path: Path) -> None:
        """model.json, indented (atomically: a reader never sees half of it)."""
        atomic.write_text(path, json.dumps(asdict(self), indent=2) + "\n")


def input_shape(cfg: Config) -> list[int]:
    """One video's input tensor as the test pipeline produces it (views, then the layout's axes)."""
    fam = families.model(cfg.backbone).family
    t, s, clips, crops = cfg.resolved_clip_len, cfg.img_size, cfg.test_clips, cfg.test_crops
    if fam.input_format == "NCHW":
        # TSM: one frame per segment; more than one clip becomes a second pass at half-segment offsets.
        frames = t * (2 if clips > 1 else 1) * crops
        return [frames, 3, s, s]
    return [clips * crops, 3, t, s, s]


def build(
    cfg: Config, names: list[str], *, checkpoint: str, sha256: str, precision: str, opset: int, exporter: str
) -> Contract:
    """The contract of a checkpoint's config."""
    fam = families.model(cfg.backbone).family
    mean, std = list(fam.mean), list(fam.std)  # those of the recognizer's data_preprocessor (recipe.py)
    return Contract(
        backbone=cfg.backbone,
        family=fam.name,
        sampling=fam.sampling,
        clip_len=cfg.resolved_clip_len,
        frame_interval=cfg.resolved_frame_interval,
        clips=cfg.test_clips,
        crops=cfg.test_crops,
        size=cfg.img_size,
        mean=[float(x) for x in mean],
        std=[float(x) for x in std],
        input_layout=fam.input_format,
        input_shape=input_shape(cfg),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        num_classes=len(names),
        class_names=names,
        checkpoint=checkpoint,
        checkpoint_sha256=sha256,
        precision=precision,
        opset=opset,
        exporter=exporter,
        config=cfg.model_dump(mode="json"),
    )


def read(path: Path) -> Contract:
    """model.json of an export dir (checked: names the file and what to do)."""
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format_version {data.get('format_version')!r}, this version reads {FORMAT_VERSION}")
        return Contract(**data)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; pass --model an `autox-video export` folder") from None
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: not a model.json of this version ({err}); export the checkpoint again") from None
