"""A trained checkpoint (file, run folder, or S3) -> its recognizer, config and class names."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autox_video import storage
from autox_video.config import Config
from autox_video.errors import CheckpointError, ConfigError


@dataclass
class Loaded:
    """A checkpoint's model, the config it was trained with, and where it came from."""

    model: torch.nn.Module
    cfg: Config
    num_classes: int
    class_names: list[str] | None
    path: Path  # local copy
    source: str  # as given (a path or an s3:// URI)
    sha256: str


def resolve(source: str) -> tuple[Path, str]:
    """(local .pth, its canonical source): a .pth, a run folder or S3 prefix (best.pth, else latest)."""
    from autox_video.training.checkpoints import best_or_latest

    if storage.is_s3(source):
        uri = source if source.endswith(".pth") else storage.join(source, "best.pth")
        if not storage.exists(uri):
            raise ConfigError(f"--checkpoint {source}: no such object; pass a .pth URI or a run prefix with best.pth")
        return storage.localize(uri), uri
    path = Path(source)
    if path.is_dir():
        path = best_or_latest(path)
    elif not path.is_file():
        raise ConfigError(f"--checkpoint {source}: no such file; pass best.pth or a training work_dir")
    return path, str(path)


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _meta(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    meta = (ckpt.get("meta") or {}).get("autox")
    if not meta or "config" not in meta:
        raise CheckpointError(f"{path}: not an autox-video checkpoint (no meta.autox); export a best.pth of a run")
    return meta


def load(source: str) -> Loaded:
    """The recognizer of a checkpoint in eval mode, with its training config and class names."""
    from autox_video.inference.predict import build_model
    from autox_video.training.checkpoints import load_state, resumable_torch_load

    path, canonical = resolve(source)
    with resumable_torch_load():
        ckpt = load_state(path)
    meta = _meta(ckpt, path)
    cfg = Config(**meta["config"])
    num_classes = int(meta["num_classes"])
    model = build_model(cfg, num_classes, ckpt.get("state_dict", ckpt), path)
    return Loaded(model, cfg, num_classes, meta.get("class_names"), path, canonical, sha256(path))
