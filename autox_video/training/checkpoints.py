"""Find and load weights: pretrained Video Swin (seed / mmaction2 / torchvision), best and latest.

Pretrained weights are loaded strictly: every backbone tensor must be present with the model's
shape, or it is an error (the seed once left its patch embedding random without a word).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from autox_video.errors import CheckpointError

log = logging.getLogger("autox_video")

_TV_BLOCK = re.compile(r"^features\.(\d+)\.(\d+)\.(.*)$")
_TV_MERGE = re.compile(r"^features\.(\d+)\.(.*)$")


def load_state(path: str | Path) -> dict[str, Any]:
    """torch.load(weights_only=True) of a user-supplied file, with one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip, weights_only refusals
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{p}: cannot read checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: expected a state dict, got {type(obj).__name__}")
    return obj


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `meta` dict of one of our checkpoints, without reading its tensors (memory-mapped); {} if unreadable."""
    try:
        with resumable_torch_load():
            meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
    except (OSError, RuntimeError, ValueError, AttributeError, pickle.UnpicklingError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _from_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision swin3d_* names -> mmaction2 Recognizer3D names."""
    stages = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("features.")) // 2
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if m := _TV_BLOCK.match(key):
            idx, block, rest = int(m[1]), m[2], m[3]
            if idx % 2 == 0:  # even features.* are stages of blocks; odd ones are PatchMerging
                rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                out[f"backbone.layers.{idx // 2}.blocks.{block}.{rest}"] = value
                continue
        if m := _TV_MERGE.match(key):
            out[f"backbone.layers.{int(m[1]) // 2}.downsample.{m[2]}"] = value
        elif key.startswith("patch_embed."):
            out["backbone." + key] = value
        elif key.startswith("norm."):
            out[f"backbone.norm{stages - 1}." + key[len("norm.") :]] = value
        elif key.startswith("head."):
            out["cls_head.fc_cls." + key[len("head.") :]] = value
    return out


def normalize_state_dict(obj: dict[str, Any], num_stages: int) -> dict[str, torch.Tensor]:
    """Any supported checkpoint layout -> mmaction2 Recognizer3D key names."""
    sd = obj.get("state_dict", obj.get("model", obj))
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("features.") for k in sd) and "head.weight" in sd or "features.0.0.norm1.weight" in sd:
        return _from_torchvision(sd)
    if not any(k.startswith(("backbone.", "cls_head.")) for k in sd):
        sd = {"backbone." + k: v for k, v in sd.items()}  # a bare backbone state dict
    # The original Video Swin repo (the seed's checkpoints) names the final norm `norm`.
    last = f"backbone.norm{num_stages - 1}."
    return {(last + k[len("backbone.norm.") :] if k.startswith("backbone.norm.") else k): v for k, v in sd.items()}


def load_pretrained(model: nn.Module, path: str | Path) -> str:
    """Load backbone (and, when the class count matches, head) weights; return the log line."""
    model = getattr(model, "module", model)  # DDP wrapper
    num_stages = len(model.backbone.layers)
    sd = normalize_state_dict(load_state(path), num_stages)
    target = model.state_dict()
    backbone_keys = [k for k in target if k.startswith("backbone.")]
    # relative_position_index is a constant buffer the model computes itself; some exports omit it.
    required = [k for k in backbone_keys if k in sd or not k.endswith("relative_position_index")]
    missing = [k for k in required if k not in sd]
    mismatched = [k for k in required if k in sd and sd[k].shape != target[k].shape]
    if missing or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} backbone tensors missing (e.g. {missing[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} with another shape "
                f"(e.g. {k}: file {tuple(sd[k].shape)} vs model {tuple(target[k].shape)})"
            )
        raise CheckpointError(
            f"{path}: does not fit this backbone: {'; '.join(parts)}; set `backbone:` to the checkpoint's size"
        )
    load = {k: sd[k] for k in required}
    head = {k: v for k, v in sd.items() if k.startswith("cls_head.") and k in target}
    head_note = ""
    if head and all(v.shape == target[k].shape for k, v in head.items()):
        load.update(head)
        head_note = " and the classifier head"
    elif head:
        head_note = " (classifier head dropped: different number of classes)"
    model.load_state_dict(load, strict=False)
    msg = f"loaded {len(required)}/{len(required)} backbone tensors{head_note} from {path}"
    log.info(msg)
    return msg


def find_pretrained(explicit: str | None, search_dir: Path = Path("checkpoints")) -> str | None:
    """`pretrained:` if set ('none' disables), else the first *.pth in ./checkpoints/."""
    if explicit is not None:
        return None if explicit.lower() in ("none", "null", "") else explicit
    found = sorted(search_dir.glob("*.pth")) if search_dir.is_dir() else []
    return str(found[0]) if found else None


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint mmengine's `last_checkpoint` pointer names, if it exists, else the newest epoch_N.pth."""
    pointer = work_dir / "last_checkpoint"
    if pointer.is_file():
        # mmengine writes the absolute path; the name alone also holds when the work dir was moved or synced.
        name = Path(pointer.read_text(errors="replace").strip()).name
        if name and (work_dir / name).is_file():
            return work_dir / name
    epochs = _epoch_checkpoints(work_dir)
    return epochs[0] if epochs else None


def unreadable_reason(path: str | Path) -> str | None:
    """Why a checkpoint cannot be resumed from (truncated, empty, not a checkpoint), or None if it loads."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            return "empty file"
        with resumable_torch_load():
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # truncated zip, legacy/other formats, pickle refusals, I/O errors
        text = str(err).strip()
        return text.splitlines()[0][:200] if text else type(err).__name__
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        return "not a training checkpoint (no state_dict)"
    return None


def quarantine(path: Path, reason: str) -> Path:
    """Move an unreadable checkpoint aside to `<name>.corrupt` (kept for a person to look at)."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    log.warning("%s: unreadable checkpoint (%s); moved aside to %s", path, reason, aside.name)
    return aside


def _epoch_checkpoints(work_dir: Path) -> list[Path]:
    """epoch_N.pth files, newest (highest N) first."""
    found = [p for p in work_dir.glob("epoch_*.pth") if re.fullmatch(r"epoch_\d+\.pth", p.name)]
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.stem)), reverse=True)


def resumable_checkpoint(work_dir: Path) -> Path | None:
    """The newest checkpoint that really loads: unreadable ones are moved aside, the previous one is used."""
    first = latest_checkpoint(work_dir)
    candidates = ([first] if first is not None else []) + [p for p in _epoch_checkpoints(work_dir) if p != first]
    dropped = 0
    for path in candidates:
        reason = unreadable_reason(path)
        if reason is None:
            if dropped:
                log.warning("resuming from %s, the newest complete checkpoint", path.name)
            return path
        quarantine(path, reason)
        dropped += 1
    if dropped:
        log.warning("%s: no complete checkpoint left; training starts from the beginning", work_dir)
    return None


def best_or_latest(work_dir: Path) -> Path:
    """best.pth if present, else the latest epoch checkpoint; error when there is neither."""
    best = work_dir / "best.pth"
    if best.is_file():
        return best
    latest = latest_checkpoint(work_dir)
    if latest is None:
        raise CheckpointError(f"{work_dir}: no best.pth or epoch_N.pth; train first or pass --checkpoint")
    return latest


def _numpy_multiarray() -> Any:
    import numpy as np

    core = getattr(np, "_core", None)  # numpy 2 moved numpy.core to numpy._core
    return core.multiarray if core is not None else np.core.multiarray


def _resume_safe_globals() -> list[Any]:
    """Exactly the non-tensor types inside mmengine checkpoints (message-hub history, numpy values)."""
    import _codecs

    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    multiarray = _numpy_multiarray()
    dtype_classes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "uint8", "bool")]
    return [
        HistoryBuffer,
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        _codecs.encode,
        *dtype_classes,
    ]


def _history_buffer_state(self: Any) -> dict[str, Any]:
    # mmengine pickles its class-level dict of bound statistics methods as getattr(...) calls,
    # which weights_only loading (rightly) refuses; __setstate__ re-registers them anyway.
    return {k: v for k, v in self.__dict__.items() if k != "statistics_methods"}


def make_checkpoints_weights_only_safe() -> None:
    """Make checkpoints saved from now on loadable with torch.load(weights_only=True)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    HistoryBuffer.__getstate__ = _history_buffer_state  # type: ignore[method-assign]


@contextlib.contextmanager
def resumable_torch_load() -> Iterator[None]:
    """Let mmengine's resume read its own checkpoints under torch >= 2.6's weights_only default.

    mmengine 0.10.7 calls torch.load without weights_only (mmengine#1655). Rather than turning the
    check off, we allow exactly the types our checkpoints hold (see make_checkpoints_weights_only_safe).
    """
    with torch.serialization.safe_globals(_resume_safe_globals()):
        yield
