"""Find and load weights: pretrained backbones in each family's release formats, best and latest.

Pretrained weights are loaded strictly: every backbone tensor the format provides must be present
with the model's shape, or it is an error (the seed once left its patch embedding random without a
word). Formats: mmaction2 model zoo / our checkpoints (all families); Video Swin's original and
torchvision's; torchvision ResNet-50 for TSM; PySlowFast's X3D release (X3D's own); OpenAI CLIP ViT for
UniFormerV2; VideoMAE (V2) releases.
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


# OpenAI CLIP's visual tower names, as UniFormerV2 keeps them (its own additions: dpe, dec, balance...).
_CLIP_VISUAL = re.compile(
    r"^backbone\.(conv1\.weight|class_embedding|positional_embedding|ln_pre\.(weight|bias)"
    r"|transformer\.resblocks\.\d+\.(attn\.(in_proj_weight|in_proj_bias|out_proj\.(weight|bias))"
    r"|ln_[12]\.(weight|bias)|mlp\.c_(fc|proj)\.(weight|bias)))$"
)


def _tensors(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict inside any wrapper (state_dict / model / module), DDP's `module.` removed."""
    for key in ("state_dict", "model", "module", "model_state"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _from_torchvision_resnet(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision ResNet names (conv1, bn1, layer1.0.conv1, downsample.0) -> mmaction2 ResNetTSM names.

    The same walk as mmaction2's ResNetTSM.load_original_weights: each ConvModule `x.convN` holds
    torchvision's `x.convN` and `x.bnN`; TSM's TemporalShift wraps the first conv as `.net`.
    """
    from mmcv.cnn import ConvModule

    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, module in model.backbone.named_modules():
        if not isinstance(module, ConvModule):
            continue
        tv = name.replace(".net", "").replace(".block", "")
        conv, bn = (tv + ".0", tv + ".1") if "downsample" in tv else (tv, tv.replace("conv", "bn"))
        # TemporalShift wraps a block's first conv: ConvModule.conv.net is the Conv2d.
        ours = f"backbone.{name}.conv.net" if f"backbone.{name}.conv.net.weight" in target else f"backbone.{name}.conv"
        for suffix in ("weight", "bias"):
            if f"{conv}.{suffix}" in sd:
                out[f"{ours}.{suffix}"] = sd[f"{conv}.{suffix}"]
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            if f"{bn}.{suffix}" in sd:
                out[f"backbone.{name}.bn.{suffix}"] = sd[f"{bn}.{suffix}"]
    return out  # torchvision's `fc` is ImageNet's classifier, not this head: left out


def _from_clip(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """OpenAI CLIP (visual.*) or its extracted visual tower -> UniFormerV2 names; 2D patch conv inflated."""
    if any(k.startswith("visual.") for k in sd):  # the whole CLIP: its text tower has resblocks too
        sd = {k.removeprefix("visual."): v for k, v in sd.items() if k.startswith("visual.")}
    visual = sd
    out = {"backbone." + k: v for k, v in visual.items() if _CLIP_VISUAL.match("backbone." + k)}
    conv = out.get("backbone.conv1.weight")
    target = model.state_dict().get("backbone.conv1.weight")
    if conv is not None and target is not None and conv.ndim == 4 and target.ndim == 5:
        # As UniFormerV2._inflate_weight (center): the image kernel at the middle time step.
        weight = conv.new_zeros(*conv.shape[:2], target.shape[2], *conv.shape[2:])
        weight[:, :, target.shape[2] // 2] = conv
        out["backbone.conv1.weight"] = weight
    return out


def _from_videomae(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """VideoMAE / VideoMAE V2 release names (encoder.* pretraining, bare fine-tuned) -> mmaction2 ViT names."""
    if any(k.startswith("encoder.") for k in sd):
        # A pretraining checkpoint: the encoder only (decoder, mask token and encoder_to_decoder dropped).
        sd = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        key = key.replace("patch_embed.proj.", "patch_embed.projection.")
        key = key.replace(".mlp.fc1.", ".mlp.layers.0.0.").replace(".mlp.fc2.", ".mlp.layers.1.")
        if key.startswith("head."):
            out["cls_head.fc_cls." + key.removeprefix("head.")] = value
        else:
            out["backbone." + key] = value
    return out


# PySlowFast's X3D (facebookresearch/SlowFast, the X3D paper's release: {"model_state": ...}) -> mmaction2 X3D.
# Stem s1 = conv_xy (1x3x3) + depthwise conv (5x1x1) + bn; stage sN = layer{N-1}; each block's
# branch1 (+_bn) is the shortcut, branch2.a/b/c (+_bn) the three convs, branch2.se the SE module.
# The head's conv_5 is mmaction2's backbone.conv5; lin_5 (a 1x1x1 conv) is X3DHead.fc1, projection fc2.
_X3D_RULES = [
    (re.compile(r"^s1\.pathway0_stem\.conv_xy\.(.*)$"), r"backbone.conv1_s.conv.\1"),
    (re.compile(r"^s1\.pathway0_stem\.conv\.(.*)$"), r"backbone.conv1_t.conv.\1"),
    (re.compile(r"^s1\.pathway0_stem\.bn\.(.*)$"), r"backbone.conv1_t.bn.\1"),
    (re.compile(r"^s(\d+)\.pathway0_res(\d+)\.branch1\.(.*)$"), r"backbone.layer{s}.\2.downsample.conv.\3"),
    (re.compile(r"^s(\d+)\.pathway0_res(\d+)\.branch1_bn\.(.*)$"), r"backbone.layer{s}.\2.downsample.bn.\3"),
    (re.compile(r"^s(\d+)\.pathway0_res(\d+)\.branch2\.se\.(fc[12]\..*)$"), r"backbone.layer{s}.\2.se_module.\3"),
    (re.compile(r"^s(\d+)\.pathway0_res(\d+)\.branch2\.([abc])\.(.*)$"), r"backbone.layer{s}.\2.conv{n}.conv.\4"),
    (re.compile(r"^s(\d+)\.pathway0_res(\d+)\.branch2\.([abc])_bn\.(.*)$"), r"backbone.layer{s}.\2.conv{n}.bn.\4"),
    (re.compile(r"^head\.conv_5\.(.*)$"), r"backbone.conv5.conv.\1"),
    (re.compile(r"^head\.conv_5_bn\.(.*)$"), r"backbone.conv5.bn.\1"),
    (re.compile(r"^head\.lin_5\.(.*)$"), r"cls_head.fc1.\1"),
    (re.compile(r"^head\.projection\.(.*)$"), r"cls_head.fc2.\1"),
]


def _from_pyslowfast_x3d(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PySlowFast X3D names (s1.pathway0_stem, sN.pathway0_resI.branch2.a, head.lin_5) -> mmaction2 X3D names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        for pattern, template in _X3D_RULES:
            if m := pattern.match(key):
                stage = int(m[1]) - 1 if template.startswith("backbone.layer") else 0
                branch = "abc".index(m[3]) + 1 if "{n}" in template else 0
                out[m.expand(template.format(s=stage, n=branch))] = value
                break
    if (fc1 := out.get("cls_head.fc1.weight")) is not None and fc1.ndim == 5:
        out["cls_head.fc1.weight"] = fc1.flatten(1)  # lin_5 is a 1x1x1 Conv3d, X3DHead.fc1 the Linear it equals
    return out


def _layout(sd: dict[str, torch.Tensor]) -> str:
    """Which release format a state dict is in."""
    if any(k.startswith(("backbone.", "cls_head.")) for k in sd):
        return "mmaction2"
    if "class_embedding" in sd or "visual.class_embedding" in sd:
        return "clip"
    if "layer1.0.conv1.weight" in sd and "conv1.weight" in sd:
        return "torchvision_resnet"
    if any(k.startswith("s1.pathway0_stem.") for k in sd):
        return "pyslowfast_x3d"
    if any(k.startswith(("encoder.blocks.", "blocks.")) for k in sd) and any("patch_embed.proj." in k for k in sd):
        return "videomae"
    return "bare"


def _family_state(obj: dict[str, Any], model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """(mmaction2-named tensors, the backbone keys this format must provide, what it is) for a non-Swin model."""
    sd = _tensors(obj)
    layout = _layout(sd)
    target = model.state_dict()
    backbone = [k for k in target if k.startswith("backbone.")]
    if layout == "clip":
        return _from_clip(sd, model), [k for k in backbone if _CLIP_VISUAL.match(k)], "CLIP ViT"
    if layout == "torchvision_resnet":
        sd = _from_torchvision_resnet(sd, model)
    elif layout == "pyslowfast_x3d":
        sd = _from_pyslowfast_x3d(sd)
    elif layout == "videomae":
        fine_tuned = any(k.startswith("fc_norm.") for k in sd)
        sd = _from_videomae(sd)
        if not fine_tuned:  # a pretraining encoder has no pooled-feature norm: fine-tuning adds it
            backbone = [k for k in backbone if not k.startswith("backbone.fc_norm.")]
    elif layout == "bare":
        sd = {"backbone." + k: v for k, v in sd.items()}
    return sd, backbone, "backbone"


def _optional(model: nn.Module) -> set[str]:
    """Constant buffers a model computes itself (Swin's relative_position_index, VideoMAE's sinusoid
    pos_embed, BatchNorm's counter): used when the file has them, not required of it."""
    stats = ("running_mean", "running_var")
    params = {k for k, _ in model.named_parameters()}
    return {k for k in model.state_dict() if k not in params and not k.endswith(stats)}


def load_pretrained(model: nn.Module, path: str | Path) -> str:
    """Load backbone (and, when the class count matches, head) weights; return the log line."""
    model = getattr(model, "module", model)  # DDP wrapper
    target = model.state_dict()
    if hasattr(model.backbone, "layers") and type(model.backbone).__name__ == "SwinTransformer3D":
        sd = normalize_state_dict(load_state(path), len(model.backbone.layers))
        backbone_keys, what = [k for k in target if k.startswith("backbone.")], "backbone"
    else:
        sd, backbone_keys, what = _family_state(load_state(path), model)
    optional = _optional(model)
    optional_fit = [k for k in backbone_keys if k in optional and k in sd and sd[k].shape == target[k].shape]
    required = [k for k in backbone_keys if k not in optional] + optional_fit
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
            f"{path}: does not fit this backbone: {'; '.join(parts)}; set `backbone:` (and clip_len/img_size "
            "where the model's shape follows them) to the checkpoint's"
        )
    load = {k: sd[k] for k in required}
    head = {k: v for k, v in sd.items() if k.startswith("cls_head.") and k in target}
    head_note = ""
    if head and all(v.shape == target[k].shape for k, v in head.items()):
        load.update(head)
        head_note = " and the classifier head"
    elif head:
        # Class-independent head layers (X3D's fc1) still fit and are kept.
        load.update({k: v for k, v in head.items() if v.shape == target[k].shape})
        head_note = " (classifier head dropped: different number of classes)"
    model.load_state_dict(load, strict=False)
    new = [k for k in target if k.startswith("backbone.") and k not in backbone_keys and k not in optional]
    new_note = f" ({len(new)} tensors new in {type(model.backbone).__name__}, randomly initialised)" if new else ""
    msg = f"loaded {len(required)}/{len(required)} {what} tensors{new_note}{head_note} from {path}"
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
