"""Shared by the GPU benchmarks: the recognizers from mmaction2's registry (every family), batches, peak matmul."""

from __future__ import annotations

import time
from typing import Any

# Sizes: full = the 32x224x224; small = a CPU-runnable shape that keeps every code path.
FULL = dict(frames=32, img=224)
SMALL = dict(frames=8, img=64)
TINY = dict(frames=8, img=32)  # --quick smoke runs only


def pick_device_and_shape(device: str | None, small: bool, quick: bool) -> tuple[str, bool, dict[str, int]]:
    """(device, small?, clip shape) from the common flags: CPU runs are always small, --quick tiny."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    small = small or quick or not device.startswith("cuda")
    return device, small, TINY if quick else SMALL if small else FULL


def recognizer(backbone: str, num_classes: int = 400, *, with_cp: bool = False) -> Any:
    """Recognizer3D(SwinTransformer3D patch (2,4,4), window (8,7,7)) + I3DHead + ActionDataPreprocessor."""
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules

    from autox_video.training.recipe import MEAN, STD, backbone_cfg, feature_dim

    register_all_modules(init_default_scope=True)
    cfg = dict(
        type="Recognizer3D",
        backbone={**backbone_cfg(backbone), "with_cp": with_cp},
        cls_head=dict(
            type="I3DHead",
            in_channels=feature_dim(backbone),
            num_classes=num_classes,
            spatial_type="avg",
            dropout_ratio=0.5,
            average_clips="prob",
        ),
        data_preprocessor=dict(type="ActionDataPreprocessor", mean=MEAN, std=STD, format_shape="NCTHW"),
    )
    model = MODELS.build(cfg)
    # mmaction2 1.1.0's head computes top-k accuracy in numpy inside loss(): bf16 scores (from
    # autocast) crash there ("unsupported ScalarType BFloat16"). Scores leave the head as fp32.
    model.cls_head.register_forward_hook(lambda _m, _args, out: out.float())
    return model


def model_for(backbone: str, frames: int, img: int, num_classes: int = 400, *, with_cp: bool = False) -> Any:
    """Any family's recognizer for clips of `frames` x `img`: Swin as above, the others as the trainer builds them."""
    from autox_video import families

    if families.model(backbone).family.name == "swin":
        return recognizer(backbone, num_classes, with_cp=with_cp)
    from autox_video.config import build_config
    from autox_video.training.recipe import build_recognizer

    cfg = build_config({"backbone": backbone, "clip_len": frames, "img_size": img, "pretrained": "none"})
    return build_recognizer(cfg, num_classes)


def model_batch(backbone: str, n: int, frames: int, img: int, device: str, num_classes: int = 400) -> dict[str, Any]:
    """`batch` in the layout `backbone`'s family reads: [3,T,H,W] clips, or [T,3,H,W] segments (TSM, NCHW)."""
    from autox_video import families

    data = batch(n, 1, frames, img, device, num_classes)
    if families.model(backbone).family.input_format == "NCHW":
        data["inputs"] = [x[0].transpose(0, 1).contiguous() for x in data["inputs"]]
    return data


def clip_shape(backbone: str) -> tuple[int, int]:
    """(frames, crop) of `backbone`'s own recipe (config defaults; Swin: the seed's 32 x 224)."""
    from autox_video.config import build_config

    cfg = build_config({"backbone": backbone})
    return cfg.resolved_clip_len, cfg.img_size


def batch(n: int, views: int, frames: int, img: int, device: str, num_classes: int = 400) -> dict[str, Any]:
    """A loader-style batch: n uint8 clips [views,3,T,H,W] already on `device`, with labels."""
    from autox_video.inference.batching import synthetic_batch

    return synthetic_batch(n, views, frames, img, device, num_classes)


def sync(device: str) -> None:
    """Wait for queued GPU work (timings must cover it)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_matmul_tflops(device: str, dtype: Any, n: int | None = None, seconds: float = 1.0) -> float:
    """Measured dense matmul throughput (TFLOP/s) of an n x n x n product: the MFU denominator."""
    import torch

    n = n or (8192 if device.startswith("cuda") else 512)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            a @ b
        iters += 10
        sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start) / 1e12


class VideoList:
    """Map-style dataset: a pipeline applied to (file, label) pairs (what the trainer's dataset does)."""

    def __init__(self, items: list[tuple[str, int]], pipeline: list[dict[str, Any]]) -> None:
        from mmengine.dataset import Compose

        self.items, self.pipeline = items, Compose(pipeline)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.items[i]
        return self.pipeline(dict(filename=path, label=label, start_index=0, modality="RGB"))
