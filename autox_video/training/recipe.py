"""Config -> mmengine config dict: model, pipelines, optimizer, schedule, hooks (data only).

Video Swin follows mmaction2's Swin configs (configs/recognition/swin) with the seed's defects fixed:
patch size (2,4,4) to match the pretrained checkpoints, and deterministic (test-mode) sampling for
validation and test so the best-checkpoint choice is reproducible. The other families (TSM, X3D,
UniFormerV2, VideoMAE) take their modules, input and defaults from autox_video/families.py.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autox_video import families
from autox_video.config import Config

if TYPE_CHECKING:
    import torch

# name -> (embed_dims, depths, num_heads); swin_micro/mini are ours: 2-stage models for CPU tests/demo.
ARCHS: dict[str, tuple[int, list[int], list[int]]] = {
    "swin_t": (96, [2, 2, 6, 2], [3, 6, 12, 24]),
    "swin_s": (96, [2, 2, 18, 2], [3, 6, 12, 24]),
    "swin_b": (128, [2, 2, 18, 2], [4, 8, 16, 32]),
    "swin_micro": (32, [1, 1], [2, 4]),
    "swin_mini": (48, [1, 1], [3, 6]),
}
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


@dataclass(frozen=True)
class Lists:
    """Resolved, checked sample lists (jsonl files written by train/predict) and class info."""

    train: str | None
    val: str | None
    test: str | None
    num_classes: int
    class_names: list[str] | None = None


def backbone_cfg(backbone: str, drop_path_rate: float = 0.1) -> dict[str, Any]:
    """SwinTransformer3D config for a named size, patch (2,4,4), window (8,7,7)."""
    embed, depths, heads = ARCHS[backbone]
    return dict(
        type="SwinTransformer3D",
        arch=dict(embed_dims=embed, depths=depths, num_heads=heads),
        pretrained=None,
        pretrained2d=False,
        patch_size=(2, 4, 4),
        window_size=(8, 7, 7),
        drop_path_rate=drop_path_rate,
        out_indices=(len(depths) - 1,),
    )


def window_padding(backbone: str, img_size: int, window: int = 7) -> float:
    """Tokens Swin's attention processes over the real ones (1.0: the windows tile every stage exactly).

    Each stage pads its token grid up to a multiple of the window (a grid no larger than the window
    becomes one window), so e.g. 64 px gives 16 -> 21 tokens per side in the first stage.
    """
    if backbone not in ARCHS:
        return 1.0  # not a Swin: no attention windows
    _, depths, _ = ARCHS[backbone]
    real = padded = 0
    side = math.ceil(img_size / 4)  # patch size 4
    for depth in depths:
        win = min(window, side)
        real += depth * side * side
        padded += depth * (math.ceil(side / win) * win) ** 2
        side = math.ceil(side / 2)  # patch merging halves the grid (padding odd sides)
    return padded / real


def exact_window_size(backbone: str, img_size: int) -> int:
    """The crop size nearest `img_size` whose token grids Swin's windows tile exactly."""
    candidates = range(16, 2 * img_size + 4, 4)
    return min((c for c in candidates if window_padding(backbone, c) == 1.0), key=lambda c: (abs(c - img_size), c))


def feature_dim(backbone: str) -> int:
    """Channels of the last Swin stage (the head's input)."""
    embed, depths, _ = ARCHS[backbone]
    return embed * 2 ** (len(depths) - 1)


def _family_backbone(cfg: Config, entry: families.Model) -> dict[str, Any]:
    """The registry's backbone arguments plus those that follow the config (frames, size, drop path)."""
    out = dict(entry.backbone)
    clip_len = cfg.resolved_clip_len
    name = entry.family.name
    if name == "tsm":
        out.update(num_segments=clip_len, pretrained=None, pretrained2d=False)  # weights: checkpoints.py
    elif name == "uniformerv2":
        out.update(input_resolution=cfg.img_size, t_size=clip_len, backbone_drop_path_rate=cfg.drop_path_rate)
    elif name == "videomae":
        out.update(img_size=cfg.img_size, num_frames=clip_len, drop_path_rate=cfg.drop_path_rate)
    return out


def model_cfg(cfg: Config, num_classes: int) -> dict[str, Any]:
    """The recognizer of `cfg.backbone`: Recognizer3D(Swin + I3DHead) or the family's from families.py."""
    entry = families.model(cfg.backbone)
    fam = entry.family
    if fam.name != "swin":
        head = dict(entry.head, type=fam.head, num_classes=num_classes, average_clips="prob")
        if fam.name == "tsm":
            head["num_segments"] = cfg.resolved_clip_len
        return dict(
            type=fam.recognizer,
            backbone=_family_backbone(cfg, entry),
            cls_head=head,
            data_preprocessor=dict(
                type="ActionDataPreprocessor", mean=list(fam.mean), std=list(fam.std), format_shape=fam.input_format
            ),
        )
    return dict(
        type="Recognizer3D",
        backbone=backbone_cfg(cfg.backbone, cfg.drop_path_rate),
        cls_head=dict(
            type="Float32I3DHead",
            in_channels=feature_dim(cfg.backbone),
            num_classes=num_classes,
            spatial_type="avg",
            dropout_ratio=0.5,
            average_clips="prob",
        ),
        data_preprocessor=dict(type="ActionDataPreprocessor", mean=MEAN, std=STD, format_shape="NCTHW"),
    )


def _with_backend(steps: list[dict[str, Any]], cfg: Config, *, test: bool = False) -> list[dict[str, Any]]:
    """Set the decoder, and the family's frame sampling and tensor layout (Swin's are fast_decode's)."""
    steps[0]["backend"] = cfg.decoder
    fam = families.model(cfg.backbone).family
    clip_len = cfg.resolved_clip_len
    for i, step in enumerate(steps):
        if step["type"] == "SampleFrames" and fam.sampling == "segments":
            # TSM: one frame from each of clip_len segments; a second test view at half-segment offsets.
            views = step["num_clips"]
            step.update(clip_len=1, frame_interval=1, num_clips=clip_len)
            if test and views > 1:
                step["twice_sample"] = True
        elif step["type"] == "SampleFrames" and fam.sampling == "uniform":
            views = step["num_clips"]
            steps[i] = dict(type="UniformSample", clip_len=clip_len, num_clips=views, test_mode=test)
        elif step["type"] == "FormatShape":
            step["input_format"] = fam.input_format
    return steps


def train_pipeline(cfg: Config) -> list[dict[str, Any]]:
    """Decode small (in the decoder), random temporal offset, random resized crop, optional flip."""
    from autox_video.data import fast_decode

    return _with_backend(
        fast_decode.train_pipeline(
            cfg.resolved_clip_len,
            cfg.resolved_frame_interval,
            cfg.img_size,
            area_range=(cfg.min_crop_area, 1.0),
            flip_ratio=0.5 if cfg.flip else 0.0,
        ),
        cfg,
    )


def eval_pipeline(cfg: Config, *, num_clips: int, num_crops: int) -> list[dict[str, Any]]:
    """Deterministic sampling (test_mode): evenly spaced clips, center or three crops."""
    from autox_video.data import fast_decode

    steps = fast_decode.test_pipeline(
        cfg.resolved_clip_len, cfg.resolved_frame_interval, cfg.img_size, num_clips, num_crops
    )
    return _with_backend(steps, cfg, test=True)


def default_num_workers(*, cuda: bool) -> int:
    """Data-loader workers per process, from the CPUs this process may use (split across local ranks).

    On GPU: all CPUs but one (at most 16) decode while the GPU computes: our pipeline yields ~2.5
    clips per core-second from raw 720p H.264 and ~29 after `prepare` (bench/RESULTS.md), while
    Swin-B at 32x224 (~0.85 TFLOP per training clip) at 45% of an H100's bf16 peak takes ~500
    clips a second, so a 16-core node needs every core it has; each worker holds only its prefetched
    batches (2 x 67 MB at 8 uint8 clips of 32x256x341). On CPU the model's own
    threads already use every core and a worker only takes cores from them: measured on 2 cores
    (demo, swin_mini), 1 worker made a step 0.165 s against 0.122 s with decoding inline. So no
    workers up to 4 CPUs, then a quarter of them for decoding.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    per_rank = cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if cuda:
        return max(0, min(16, per_rank - 1))
    return 0 if per_rank <= 4 else min(8, per_rank // 4)


def _loader(
    cfg: Config, list_file: str, pipeline: list[dict[str, Any]], *, train: bool, batch: int, cuda: bool = False
) -> dict[str, Any]:
    workers = cfg.num_workers if cfg.num_workers is not None else default_num_workers(cuda=cuda)
    return dict(
        batch_size=batch,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=cuda,
        sampler=dict(type="DefaultSampler", shuffle=train),
        dataset=dict(type="AutoXVideoDataset", ann_file=list_file, pipeline=pipeline, test_mode=not train),
    )


def _precision(cfg: Config, cuda: bool) -> str:
    if not cuda:
        return "fp32"  # autocast on CPU is slow and numerically pointless here
    if cfg.precision != "auto":
        return cfg.precision
    import torch

    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def amp_dtype(cfg: Config, cuda: bool) -> torch.dtype | None:
    """The autocast dtype for this config and device (None: fp32, no autocast)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(_precision(cfg, cuda))


def optim_wrapper_cfg(cfg: Config, cuda: bool) -> dict[str, Any]:
    """The family's optimizer (AdamW or SGD) with no decay on norms/biases/position tables, backbone lr x
    mult (x layer decay for ViTs), grad clipping, AMP on GPU."""
    precision = _precision(cfg, cuda)
    entry = families.model(cfg.backbone)
    if entry.family.optimizer == "SGD":
        optimizer = dict(type="SGD", lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        # Fused on GPU: one kernel per step for all tensors (bench/train_step.py's "ours" variants).
        optimizer = dict(type="AdamW", lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay, fused=cuda)
    paramwise: dict[str, Any] = dict(backbone_lr_mult=cfg.backbone_lr_mult)
    if entry.family.name != "swin":
        paramwise.update(layer_decay=entry.layer_decay, depth=entry.depth)
    wrapper: dict[str, Any] = dict(
        type="OptimWrapper" if precision == "fp32" else "AmpOptimWrapper",
        optimizer=optimizer,
        constructor="SwinParamGroupsConstructor" if entry.family.name == "swin" else "FamilyParamGroupsConstructor",
        paramwise_cfg=paramwise,
    )
    if precision != "fp32":
        wrapper["dtype"] = "bfloat16" if precision == "bf16" else "float16"
    if cfg.grad_clip is not None:
        wrapper["clip_grad"] = dict(max_norm=cfg.grad_clip, norm_type=2)
    return wrapper


def schedule_cfg(cfg: Config) -> list[dict[str, Any]]:
    """Linear warmup then cosine decay to 0 over all epochs, stepped per iteration."""
    warmup = min(cfg.warmup_epochs, float(cfg.epoch))
    steps: list[dict[str, Any]] = []
    if warmup > 0:
        steps.append(
            dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=warmup, convert_to_iter_based=True)
        )
    steps.append(
        dict(
            type="CosineAnnealingLR",
            T_max=cfg.epoch,
            eta_min=0,
            by_epoch=True,
            begin=0,
            end=cfg.epoch,
            convert_to_iter_based=True,
        )
    )
    return steps


def _guard_hook() -> dict[str, Any]:
    from autox_video.training import (
        guards,  # noqa: F401  (registers NonFiniteLossGuard)
        modules,  # noqa: F401  (registers the families' heads and param groups)
    )

    return dict(type="NonFiniteLossGuard")


def runner_cfg(
    cfg: Config, lists: Lists, *, work_dir: str, cuda: bool, launcher: str, load_from: str | None
) -> dict[str, Any]:
    """The whole mmengine Runner config for training (and validation when a val list exists)."""
    validate = lists.val is not None and cfg.evaluation > 0
    assert lists.train is not None
    out: dict[str, Any] = dict(
        default_scope="mmaction",
        work_dir=work_dir,
        model=model_cfg(cfg, lists.num_classes),
        train_dataloader=_loader(
            cfg, lists.train, train_pipeline(cfg), train=True, batch=cfg.videos_per_gpu, cuda=cuda
        ),
        train_cfg=dict(type="ValidateThenSaveLoop", max_epochs=cfg.epoch, val_interval=cfg.evaluation or cfg.epoch),
        optim_wrapper=optim_wrapper_cfg(cfg, cuda),
        param_scheduler=schedule_cfg(cfg),
        default_hooks=dict(
            runtime_info=dict(type="RuntimeInfoHook"),
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=cfg.log_interval, ignore_last=False),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="AtomicCheckpointHook",  # temp file + fsync + rename; prunes after the save
                interval=1,
                by_epoch=True,
                # Two kept, so that a checkpoint damaged on disk after its save still has one to fall back to.
                max_keep_ckpts=max(2, cfg.keep_checkpoints),
                save_last=True,
                backend_args=dict(backend="autox_atomic"),  # checkpoint_hook.AtomicLocalBackend
            ),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[
            dict(type="ProgressHook", total_epochs=cfg.epoch, validate=validate, log_interval=cfg.log_interval),
            dict(type="CurvesHook"),  # curves.png (training/curves.py), drawn before ProgressHook publishes
            _guard_hook(),
            *(
                [
                    dict(
                        type="LoggersHook",
                        loggers=cfg.loggers,
                        interval=cfg.log_interval,
                        params=cfg.model_dump(mode="json"),
                    )
                ]
                if cfg.loggers
                else []
            ),
        ],
        env_cfg=dict(cudnn_benchmark=cuda, dist_cfg=dict(backend="nccl" if cuda else "gloo")),
        launcher=launcher,
        randomness=dict(seed=cfg.seed, deterministic=False),
        log_level="INFO",
        log_processor=dict(type="EpochLogProcessor", window_size=cfg.log_interval, by_epoch=True),
        load_from=load_from,
        resume=False,
    )
    if not cuda:
        # mmengine's default DDP wrapper passes device_ids=[LOCAL_RANK], which DDP rejects for CPU modules.
        out["model_wrapper_cfg"] = dict(type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False)
    if validate:
        assert lists.val is not None
        pipeline = eval_pipeline(cfg, num_clips=cfg.test_clips, num_crops=1)
        out["val_dataloader"] = _loader(cfg, lists.val, pipeline, train=False, batch=cfg.videos_per_gpu, cuda=cuda)
        out["val_cfg"] = dict(type="ValLoop")
        out["val_evaluator"] = dict(
            type="AccMetric",
            metric_options=dict(top_k_accuracy=dict(topk=(1, min(5, lists.num_classes)))),
            # Gather predictions with all_gather_object, not through a temporary directory that
            # pods on different nodes do not share (mmengine's default, collect_device="cpu").
            collect_device="gpu",
        )
    return out


def build_recognizer(cfg: Config, num_classes: int) -> Any:
    """Instantiate the recognizer of `model_cfg` (randomly initialised)."""
    from mmaction.registry import MODELS
    from mmaction.utils import register_all_modules

    from autox_video.training import engine, modules  # noqa: F401  (register Float32I3DHead, the families' heads)

    register_all_modules(init_default_scope=True)  # nested parts resolve in the mmaction scope
    return MODELS.build(model_cfg(cfg, num_classes))
