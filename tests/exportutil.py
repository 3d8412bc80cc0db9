"""Helpers for export and serve tests: random-init tiny checkpoints and real decoded clips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

SMALL: dict[str, Any] = dict(pretrained="none", clip_len=8, frame_interval=2, img_size=32, test_clips=1, test_crops=1)


def random_checkpoint(path: Path, backbone: str, names: list[str], seed: int = 0, **cfg: Any) -> Path:
    """A best.pth as training writes it (state_dict + meta.autox), random weights, a head that is not flat."""
    from autox_video.config import Config
    from autox_video.training.recipe import build_recognizer

    torch.manual_seed(seed)
    config = Config(backbone=backbone, **{**SMALL, **cfg})
    model = build_recognizer(config, len(names))
    with torch.no_grad():  # heads start near zero: spread them so probabilities differ per video
        for p in model.cls_head.parameters():
            p.normal_(0, 0.5)
    meta = {"config": config.model_dump(mode="json"), "num_classes": len(names), "class_names": names}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": {"autox": meta}}, path)
    return path


def decoded(videos: list[Path], spec: Any) -> np.ndarray:
    """The videos through the contract's test pipeline: [N, *input_shape] float32 pixels."""
    from autox_video.serving.decode import Decoder

    decoder = Decoder(spec, max_seconds=3600)
    return np.stack([decoder.decode(v, str(v)) for v in videos])
