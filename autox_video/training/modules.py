"""Our small additions to mmaction2's modules for the non-Swin families (families.py), registered on import.

Float32 heads: under bf16 autocast mmaction2's loss calls .numpy() on the scores for top-k accuracy,
and numpy has no bfloat16 (the same reason as engine.Float32I3DHead). Same parameters, same keys.
"""

from __future__ import annotations

import re
from typing import Any

import torch.nn as nn
from mmaction.models.heads import TimeSformerHead, TSMHead, UniFormerHead, X3DHead
from mmaction.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.optim import DefaultOptimWrapperConstructor


def _float32(base: type) -> type:
    def forward(self: Any, x: Any, **kwargs: Any) -> Any:
        return base.forward(self, x, **kwargs).float()

    cls = type(f"Float32{base.__name__}", (base,), {"forward": forward, "__doc__": f"{base.__name__}, float32 out."})
    MODELS.register_module(module=cls)
    return cls


Float32TSMHead = _float32(TSMHead)
Float32X3DHead = _float32(X3DHead)
Float32UniFormerHead = _float32(UniFormerHead)
Float32TimeSformerHead = _float32(TimeSformerHead)

_BLOCK = re.compile(r"^backbone\.blocks\.(\d+)\.")


def vit_layer(name: str, depth: int) -> int:
    """Layer of a ViT parameter for lr decay: 0 embeddings, i + 1 block i, depth + 1 the final norm."""
    if m := _BLOCK.match(name):
        return int(m[1]) + 1
    if name.startswith(("backbone.patch_embed", "backbone.pos_embed", "backbone.cls_token")):
        return 0
    return depth + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FamilyParamGroupsConstructor(DefaultOptimWrapperConstructor):
    """Param groups for any family: backbone at lr x backbone_lr_mult (x decay^(depth + 1 - layer) for
    ViTs with `layer_decay`), the head at lr; no weight decay on norms, biases and embeddings.

    One group per (layer, decay) pair, not one per tensor as mmaction2's
    LearningRateDecayOptimizerConstructor builds (it also logs every tensor and rejects BatchNorm).
    """

    def add_params(self, params: list[dict[str, Any]], module: nn.Module, prefix: str = "", **kwargs: Any) -> None:
        """Fill `params` with the groups."""
        cfg = self.paramwise_cfg
        mult = float(cfg.get("backbone_lr_mult", 1.0))
        decay = cfg.get("layer_decay")
        depth = int(cfg.get("depth", 0))
        groups: dict[tuple[int, bool], list[nn.Parameter]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim <= 1 or name.endswith(("pos_embed", "positional_embedding", "class_embedding"))
            if not name.startswith("backbone."):
                layer = -1  # the head
            else:
                layer = vit_layer(name, depth) if decay else 0
            groups.setdefault((layer, no_decay), []).append(param)
        for (layer, no_decay), tensors in sorted(groups.items()):
            scale = 1.0 if layer < 0 else mult * (float(decay) ** (depth + 1 - layer) if decay else 1.0)
            params.append(dict(params=tensors, lr=self.base_lr * scale, weight_decay=0.0 if no_decay else self.base_wd))
