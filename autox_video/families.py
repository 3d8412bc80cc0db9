"""The model families as data: one entry per `backbone:` name, taken from mmaction2 1.1.0's own configs.

Torch-free (config.py, the CRDs and the operator read it). Each entry names the mmaction2 modules to
build (the recipe builds them through mmaction2's registry), the input it expects (frames, sampling,
size, normalisation) and the config keys whose defaults differ from Video Swin's (Config's own
defaults are Swin's recipe). Config paths below are relative to mmaction/.mim/configs/recognition/.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# The one list of backbone names: config.py's Literal, the CRD enum, --help and the README table.
# Tiny variants (swin_micro ... videomae_tiny) are ours: same modules, a few layers, for CPU tests,
# the demo and `search: auto` on CPU; they train from scratch.
Backbone = Literal[
    "swin_t",
    "swin_s",
    "swin_b",
    "tsm_r50",
    "x3d_s",
    "x3d_m",
    "uniformerv2_b16",
    "videomae_s",
    "videomae_b",
    "swin_micro",
    "swin_mini",
    "tsm_tiny",
    "x3d_tiny",
    "uniformerv2_tiny",
    "videomae_tiny",
]

# Config keys a family may give its own default (absent from config.yaml -> the family's value).
FAMILY_KEYS = (
    "clip_len",
    "frame_interval",
    "img_size",
    "lr",
    "backbone_lr_mult",
    "weight_decay",
    "warmup_epochs",
    "grad_clip",
    "drop_path_rate",
)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
X3D_MEAN = (114.75, 114.75, 114.75)


@dataclass(frozen=True)
class Family:
    """What all sizes of one architecture share."""

    name: str
    recognizer: Literal["Recognizer3D", "Recognizer2D"]
    input_format: Literal["NCTHW", "NCHW"]
    # clip: clip_len frames every frame_interval (SampleFrames); segments: clip_len segments of one
    # frame each (TSM); uniform: one frame from each of clip_len equal parts (UniformSample).
    sampling: Literal["clip", "segments", "uniform"]
    head: str  # our float32-output subclass of the mmaction2 head (training/modules.py)
    optimizer: Literal["AdamW", "SGD"]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pretrained_formats: tuple[str, ...] = ("mmaction2 model zoo (state_dict, backbone./cls_head.)",)


@dataclass(frozen=True)
class Weights:
    """Where a backbone's official pretrained weights live and what they are (`pretrained: auto`)."""

    url: str
    sha256_prefix: str  # torch.hub's convention: the hex after the last '-' of the file name
    size_mb: int  # approximate (parameters x 4 bytes); the hash, not the size, is checked
    licence: str
    dataset: str  # what the weights were trained on
    non_commercial: bool = False

    @property
    def file_name(self) -> str:
        """The release's file name: ./checkpoints/<it> or <AUTOX_WEIGHTS_MIRROR>/<it>."""
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Model:
    """One `backbone:` value: its mmaction2 backbone and head arguments and its config defaults."""

    name: str
    family: Family
    backbone: dict[str, Any]
    head: dict[str, Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    layer_decay: float | None = None  # ViTs: lr x decay^(depth + 1 - layer) per block
    tiny: bool = False
    source: str = ""  # the mmaction2 config the values come from
    kinetics400_top1: float | None = None  # published, of the pretrained model in `source`'s metafile
    weights: Weights | None = None  # `pretrained: auto`; None for the tiny ones (random init)
    recipe_batch: int | None = None  # total videos per step of the recipe its lr comes from

    def scaled_lr(self, lr: float, batch: int) -> tuple[float, str]:
        """The family lr scaled linearly from the recipe's total batch to `batch`, and why (one phrase)."""
        if self.recipe_batch is None or batch == self.recipe_batch:
            why = "tiny backbone: unscaled" if self.recipe_batch is None else f"recipe batch {batch}"
            return lr, f"{self.name}'s default ({why})"
        scaled = lr * batch / self.recipe_batch
        return (
            scaled,
            f"{self.name}'s default {lr:g} for a total batch of {self.recipe_batch}, scaled linearly to {batch}",
        )

    @property
    def depth(self) -> int:
        """Transformer blocks (the layers of layer-wise lr decay); 0 for CNNs and Swin."""
        return int(self.backbone.get("depth", self.backbone.get("layers", 0)))


SWIN = Family("swin", "Recognizer3D", "NCTHW", "clip", "Float32I3DHead", "AdamW")
TSM = Family(
    "tsm",
    "Recognizer2D",
    "NCHW",
    "segments",
    "Float32TSMHead",
    "SGD",
    pretrained_formats=("mmaction2 model zoo", "torchvision ResNet-50 ImageNet (conv1.weight, layer1.0.conv1.weight)"),
)
X3D = Family(
    "x3d",
    "Recognizer3D",
    "NCTHW",
    "clip",
    "Float32X3DHead",
    "SGD",
    mean=X3D_MEAN,
    std=(57.38, 57.38, 57.38),
    pretrained_formats=("mmaction2 model zoo", "PySlowFast X3D release (model_state, s1.pathway0_stem.conv_xy)"),
)
UNIFORMERV2 = Family(
    "uniformerv2",
    "Recognizer3D",
    "NCTHW",
    "uniform",
    "Float32UniFormerHead",
    "AdamW",
    mean=X3D_MEAN,
    std=(57.375, 57.375, 57.375),
    pretrained_formats=("mmaction2 model zoo", "OpenAI CLIP ViT-B/16 (visual.transformer.resblocks.N...)"),
)
VIDEOMAE = Family(
    "videomae",
    "Recognizer3D",
    "NCTHW",
    "clip",
    "Float32TimeSformerHead",
    "AdamW",
    pretrained_formats=("mmaction2 model zoo", "VideoMAE / VideoMAE V2 release (model|module, encoder.)"),
)

# Official Kinetics weights (`pretrained: auto`), from the metafile.yml of each `source` config as the
# installed mmaction2 1.1.0 ships it; the hash prefix is the one in the file name. Licences: OpenMMLab's
# model zoo is released under mmaction2's Apache-2.0; X3D's are converted from PySlowFast (Apache-2.0).
_MMA = "https://download.openmmlab.com/mmaction/v1.0/recognition/"
_APACHE = "Apache-2.0"
_K400 = "Kinetics-400"


def _zoo(config: str, stamp: str, size_mb: int, **kw: Any) -> Weights:
    folder, name = config.split("/")
    url = f"{_MMA}{folder}/{name}/{name}_{stamp}.pth"
    return Weights(url, stamp.split("-")[1], size_mb, kw.pop("licence", _APACHE), kw.pop("dataset", _K400), **kw)


# videomaev2/metafile.yml gives the ViT-S entry the ViT-B file's URL (a copy-paste slip): the ViT-S file
# is the same release's `..._20230510-25c748fd.pth`. The metafiles carry no licence; VideoMAE V2's model
# zoo states none for its distilled weights, and VideoMAE's own release is CC-BY-NC-4.0: recorded as
# non-commercial until its authors say otherwise.
_VMAE_LICENCE = "CC-BY-NC-4.0 (assumed: VideoMAE's release licence; VideoMAE V2 states none for its weights)"
_VMAE_DATA = "Kinetics-400 (distilled from ViT-g, pretrained on UnlabeledHybrid and Kinetics-710)"
_VMAE = "videomaev2/vit-{}-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400"
_SWIN_ZOO = "swin/swin-{}-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb"
WEIGHTS: dict[str, Weights] = {
    "swin_t": _zoo(_SWIN_ZOO.format("tiny"), "20220930-241016b2", 113),
    "swin_s": _zoo(_SWIN_ZOO.format("small"), "20220930-e91ab986", 199),
    "swin_b": _zoo(_SWIN_ZOO.format("base"), "20220930-182ec6cc", 352),
    "tsm_r50": _zoo("tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb", "20220831-64d69186", 97),
    "x3d_s": Weights(
        _MMA + "x3d/facebook/x3d_s_13x6x1_facebook-kinetics400-rgb_20201027-623825a0.pth",
        "623825a0",
        15,
        _APACHE,
        _K400,
    ),
    "x3d_m": Weights(
        _MMA + "x3d/facebook/x3d_m_16x5x1_facebook-kinetics400-rgb_20201027-3f42382a.pth",
        "3f42382a",
        15,
        _APACHE,
        _K400,
    ),
    "uniformerv2_b16": _zoo(
        "uniformerv2/uniformerv2-base-p16-res224_clip_8xb32-u8_kinetics400-rgb",
        "20230313-e29fc968",
        460,
        dataset="Kinetics-400 (from OpenAI CLIP ViT-B/16)",
    ),
    "videomae_s": _zoo(
        _VMAE.format("small"), "20230510-25c748fd", 88, licence=_VMAE_LICENCE, dataset=_VMAE_DATA, non_commercial=True
    ),
    "videomae_b": _zoo(
        _VMAE.format("base"), "20230510-3e7f93b2", 346, licence=_VMAE_LICENCE, dataset=_VMAE_DATA, non_commercial=True
    ),
}
# Total videos per optimizer step of the recipe each family's lr comes from (families' comments below):
# Swin 8 GPUs x 8, TSM 8 x 16, UniFormerV2 8 x 32, X3D PySlowFast's 128 clips, VideoMAE lr per 256.
RECIPE_BATCH = {"swin": 64, "tsm": 128, "uniformerv2": 256, "x3d": 128, "videomae": 256}

_SWIN_SOURCE = "swin/swin-{}-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py"
# tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py: SGD lr 0.02 with fc_lr5 (head
# at 5x), momentum 0.9, wd 1e-4, clip 20, 5 warmup epochs of 50; 8 segments of 1 frame, 224 px.
_TSM_DEFAULTS = dict(
    clip_len=8,
    frame_interval=1,
    lr=0.1,
    backbone_lr_mult=0.2,
    weight_decay=1e-4,
    warmup_epochs=5.0,
    grad_clip=20.0,
    drop_path_rate=0.0,
)
_TSM_HEAD = dict(
    in_channels=2048,
    spatial_type="avg",
    consensus=dict(type="AvgConsensus", dim=1),
    dropout_ratio=0.5,
    init_std=0.001,
    is_shift=True,
)
# mmaction2 ships X3D test configs only (weights converted from PySlowFast): input from them,
# optimisation from the training recipe of those weights, facebookresearch/SlowFast
# configs/Kinetics/X3D_{S,M}.yaml: SGD momentum 0.9, BASE_LR 0.1 (one 8-GPU machine, 128 clips),
# cosine, wd 5e-5 (none on BN), warmup from 0.1x (ours: start_factor 0.1), no gradient clipping,
# head dropout 0.5. Its warmup is 35 of 300 epochs from scratch: the same share of our 30 is 3.5.
_X3D_OPT = dict(lr=0.1, backbone_lr_mult=1.0, weight_decay=5e-5, warmup_epochs=3.5, grad_clip=None, drop_path_rate=0.0)
_X3D_HEAD = dict(spatial_type="avg", dropout_ratio=0.5, fc1_bias=False)
# uniformerv2/uniformerv2-base-p16-res224_clip_8xb32-u8_kinetics400-rgb.py: AdamW lr 1e-5 (all
# parameters), wd 0.05 (none on norms/biases), clip 20, 5 warmup epochs of 55; 8 uniform frames, 224 px.
_UNI_DEFAULTS = dict(
    clip_len=8,
    frame_interval=1,
    lr=1e-5,
    backbone_lr_mult=1.0,
    weight_decay=0.05,
    warmup_epochs=5.0,
    grad_clip=20.0,
    drop_path_rate=0.0,
)
_UNI_BACKBONE = dict(
    type="UniFormerV2",
    patch_size=16,
    dw_reduction=1.5,
    temporal_downsample=False,
    no_lmhra=True,
    double_lmhra=True,
    mlp_factor=4.0,
    drop_path_rate=0.0,
    clip_pretrained=False,  # weights come through `pretrained:` (strictly checked), never downloaded
)
# videomae/ and videomaev2/ configs (test only): ViT with mean pooling, 16 frames every 4, 224 px.
# Fine-tuning from the release's own recipe, MCG-NJU/VideoMAE
# scripts/kinetics/videomae_vit_{small,base}_patch16_224_tubemasking_ratio_0.9_epoch_1600/finetune.sh
# (AdamW betas 0.9/0.999, lr 5e-4 per 256 clips, wd 0.05) and run_class_finetuning.py's defaults
# (layer decay 0.75, drop path 0.1, 5 warmup epochs, no gradient clipping).
_VMAE_DEFAULTS = dict(
    clip_len=16,
    frame_interval=4,
    lr=5e-4,
    backbone_lr_mult=1.0,
    weight_decay=0.05,
    warmup_epochs=5.0,
    grad_clip=None,
    drop_path_rate=0.1,
)
_VIT = dict(type="VisionTransformer", patch_size=16, mlp_ratio=4, qkv_bias=True, norm_cfg=dict(type="LN", eps=1e-6))
_TINY_OPT = dict(lr=1e-3, backbone_lr_mult=1.0, weight_decay=0.05, warmup_epochs=0.0, grad_clip=40.0)


def _swin(name: str, word: str | None, top1: float | None = None) -> Model:
    return Model(
        name,
        SWIN,
        backbone={},
        head={},
        tiny=word is None,
        source=_SWIN_SOURCE.format(word) if word else "",
        kinetics400_top1=top1,
    )


MODELS: dict[str, Model] = {
    m.name: m
    for m in [
        # swin/metafile.yml: Kinetics-400 top-1 of the three in1k-pre 32x2x1 models.
        _swin("swin_t", "tiny", 78.90),
        _swin("swin_s", "small", 80.54),
        _swin("swin_b", "base", 80.57),
        Model(
            "tsm_r50",
            TSM,
            backbone=dict(type="ResNetTSM", depth=50, norm_eval=False, shift_div=8),
            head=_TSM_HEAD,
            defaults=_TSM_DEFAULTS,
            source="tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb.py",
            kinetics400_top1=73.18,
        ),
        Model(
            "x3d_s",
            X3D,
            backbone=dict(type="X3D", gamma_w=1, gamma_b=2.25, gamma_d=2.2),
            head=dict(in_channels=432, **_X3D_HEAD),
            defaults=dict(clip_len=13, frame_interval=6, img_size=160, **_X3D_OPT),
            source="x3d/x3d_s_13x6x1_facebook-kinetics400-rgb.py",  # test crop 182; trained at 160 (metafile)
            kinetics400_top1=73.3,
        ),
        Model(
            "x3d_m",
            X3D,
            backbone=dict(type="X3D", gamma_w=1, gamma_b=2.25, gamma_d=2.2),
            head=dict(in_channels=432, **_X3D_HEAD),
            defaults=dict(clip_len=16, frame_interval=5, img_size=224, **_X3D_OPT),
            source="x3d/x3d_m_16x5x1_facebook-kinetics400-rgb.py",
            kinetics400_top1=76.4,
        ),
        Model(
            "uniformerv2_b16",
            UNIFORMERV2,
            backbone=dict(
                _UNI_BACKBONE,
                width=768,
                layers=12,
                heads=12,
                return_list=[8, 9, 10, 11],
                n_layers=4,
                n_dim=768,
                n_head=12,
                mlp_dropout=[0.5, 0.5, 0.5, 0.5],
            ),
            head=dict(in_channels=768, dropout_ratio=0.5),
            defaults=_UNI_DEFAULTS,
            source="uniformerv2/uniformerv2-base-p16-res224_clip_8xb32-u8_kinetics400-rgb.py",
            kinetics400_top1=84.3,
        ),
        Model(
            "videomae_s",
            VIDEOMAE,
            backbone=dict(_VIT, embed_dims=384, depth=12, num_heads=6),
            head=dict(in_channels=384),
            defaults=_VMAE_DEFAULTS,
            layer_decay=0.75,
            source="videomaev2/vit-small-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py",
            kinetics400_top1=83.6,
        ),
        Model(
            "videomae_b",
            VIDEOMAE,
            backbone=dict(_VIT, embed_dims=768, depth=12, num_heads=12),
            head=dict(in_channels=768),
            defaults=_VMAE_DEFAULTS,
            layer_decay=0.75,
            source="videomaev2/vit-base-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py",
            kinetics400_top1=86.6,
        ),
        _swin("swin_micro", None),
        _swin("swin_mini", None),
        Model(
            "tsm_tiny",  # ResNet-18 is the smallest depth ResNetTSM shifts (its widths are fixed)
            TSM,
            backbone=dict(type="ResNetTSM", depth=18, norm_eval=False, shift_div=8),
            head=dict(_TSM_HEAD, in_channels=512),
            defaults=dict(_TSM_DEFAULTS, clip_len=4, **_TINY_OPT),
            tiny=True,
        ),
        Model(
            "x3d_tiny",
            X3D,
            backbone=dict(type="X3D", gamma_w=0.5, gamma_b=1.0, gamma_d=1.0, num_stages=2, spatial_strides=(2, 2)),
            head=dict(in_channels=32, **_X3D_HEAD),
            defaults=dict(clip_len=8, frame_interval=2, drop_path_rate=0.0, **_TINY_OPT),
            tiny=True,
        ),
        Model(
            "uniformerv2_tiny",
            UNIFORMERV2,
            backbone=dict(
                _UNI_BACKBONE,
                width=64,
                layers=2,
                heads=2,
                return_list=[0, 1],
                n_layers=2,
                n_dim=64,
                n_head=2,
                mlp_dropout=[0.5, 0.5],
            ),
            head=dict(in_channels=64, dropout_ratio=0.5),
            defaults=dict(_UNI_DEFAULTS, **_TINY_OPT),
            tiny=True,
        ),
        Model(
            "videomae_tiny",
            VIDEOMAE,
            backbone=dict(_VIT, embed_dims=64, depth=2, num_heads=2),
            head=dict(in_channels=64),
            defaults=dict(_VMAE_DEFAULTS, clip_len=8, frame_interval=2, drop_path_rate=0.0, **_TINY_OPT),
            layer_decay=0.75,
            tiny=True,
        ),
    ]
}
MODELS = {
    n: m if m.tiny else replace(m, weights=WEIGHTS[n], recipe_batch=RECIPE_BATCH[m.family.name])
    for n, m in MODELS.items()
}
NAMES: tuple[str, ...] = typing.get_args(Backbone)
if set(NAMES) != set(MODELS):  # the Literal and the registry are one list: fail at import, not at train
    raise RuntimeError(f"families: Backbone and MODELS differ: {sorted(set(NAMES) ^ set(MODELS))}")


def model(name: str) -> Model:
    """The registry entry of a backbone name."""
    return MODELS[name]


def family_defaults(name: Any) -> dict[str, Any]:
    """Config-key defaults of a backbone that differ from Config's own (Swin's); {} for unknown names."""
    entry = MODELS.get(name) if isinstance(name, str) else None
    return dict(entry.defaults) if entry is not None else {}


def describe() -> str:
    """The names for --help and field descriptions: the full-size ones, then the tiny ones."""
    full = [n for n in NAMES if not MODELS[n].tiny]
    tiny = [n for n in NAMES if MODELS[n].tiny]
    return f"{', '.join(full)} (tiny, for CPU tests and the demo: {', '.join(tiny)})"
