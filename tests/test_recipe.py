"""The recipe: Swin shape, optimizer groups, schedule, precision, deterministic evaluation sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autox_video.config import build_config
from autox_video.training.checkpoints import find_pretrained
from autox_video.training.recipe import build_recognizer, eval_pipeline, optim_wrapper_cfg, schedule_cfg, train_pipeline


def _optimizer(cfg_overrides: dict) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    from mmengine.optim import build_optim_wrapper

    from autox_video.training import engine  # noqa: F401  (registers SwinParamGroupsConstructor)

    cfg = build_config({"backbone": "swin_micro", **cfg_overrides})
    model = build_recognizer(cfg, 4)
    return model, build_optim_wrapper(model, optim_wrapper_cfg(cfg, cuda=False)).optimizer


def test_no_weight_decay_on_norms_biases_and_position_tables_and_lower_backbone_lr() -> None:
    model, opt = _optimizer({"lr": 1e-3, "backbone_lr_mult": 0.1, "weight_decay": 0.05})
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(group_of) == len(named)  # every trainable tensor is optimised exactly once
    for name, p in named.items():
        g = group_of[id(p)]
        no_decay = p.ndim == 1 or "relative_position_bias_table" in name
        assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
        assert g["lr"] == pytest.approx(1e-4 if name.startswith("backbone.") else 1e-3), name
    assert named["backbone.layers.0.blocks.0.attn.relative_position_bias_table"].ndim == 2  # caught by name, not ndim
    assert len(opt.param_groups) == 4


def test_warmup_then_cosine_and_clipping_and_precision() -> None:
    cfg = build_config({"epoch": 10, "warmup_epochs": 2, "grad_clip": 5.0, "precision": "auto"})
    warm, cos = schedule_cfg(cfg)
    assert (warm["type"], warm["end"], cos["type"], cos["T_max"]) == ("LinearLR", 2, "CosineAnnealingLR", 10)
    assert schedule_cfg(build_config({"warmup_epochs": 0}))[0]["type"] == "CosineAnnealingLR"
    cpu = optim_wrapper_cfg(cfg, cuda=False)
    assert cpu["type"] == "OptimWrapper" and cpu["clip_grad"] == {"max_norm": 5.0, "norm_type": 2}
    gpu = optim_wrapper_cfg(build_config({"precision": "fp16"}), cuda=True)
    assert gpu["type"] == "AmpOptimWrapper" and gpu["dtype"] == "float16"
    assert gpu["optimizer"]["fused"] is True and cpu["optimizer"]["fused"] is False


@pytest.mark.parametrize(("backbone", "channels"), [("swin_t", 768), ("swin_s", 768), ("swin_b", 1024)])
def test_swin_sizes_use_patch_244_window_877(backbone: str, channels: int) -> None:
    from autox_video.training.recipe import backbone_cfg, feature_dim

    cfg = backbone_cfg(backbone)
    assert cfg["patch_size"] == (2, 4, 4) and cfg["window_size"] == (8, 7, 7)
    assert feature_dim(backbone) == channels


def test_evaluation_sampling_is_deterministic_and_training_is_not() -> None:
    cfg = build_config({"clip_len": 8, "frame_interval": 2, "img_size": 32, "test_clips": 4, "test_crops": 3})
    ev = eval_pipeline(cfg, num_clips=cfg.test_clips, num_crops=cfg.test_crops)
    sample = next(s for s in ev if s["type"] == "SampleFrames")
    assert sample["test_mode"] is True and sample["num_clips"] == 4
    assert any(s["type"] == "ThreeCrop" for s in ev)
    tr = train_pipeline(cfg)
    assert not next(s for s in tr if s["type"] == "SampleFrames").get("test_mode")
    assert any(s["type"] == "Flip" for s in tr)
    assert not any(s["type"] == "Flip" for s in train_pipeline(build_config({"flip": False})))


def test_default_pretrained_is_the_first_pth_in_checkpoints(tmp_path: Path) -> None:
    assert find_pretrained(None, tmp_path / "checkpoints") is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "b.pth").write_bytes(b"")
    (tmp_path / "checkpoints" / "a.pth").write_bytes(b"")
    assert find_pretrained(None, tmp_path / "checkpoints") == str(tmp_path / "checkpoints" / "a.pth")
    assert find_pretrained("none", tmp_path / "checkpoints") is None
    assert find_pretrained("s3://b/w.pth", tmp_path / "checkpoints") == "s3://b/w.pth"


def test_window_padding_finds_the_crop_sizes_swin_windows_tile_exactly() -> None:
    from autox_video.training.recipe import exact_window_size, window_padding

    assert window_padding("swin_b", 224) == 1.0  # 56, 28, 14, 7 tokens: the pretrained models' size
    assert window_padding("swin_mini", 56) == 1.0  # 14, 7 tokens
    # 64 px: 16 -> 21 and 8 -> 14 tokens per side, (441 + 196) / (256 + 64) of the real tokens.
    assert window_padding("swin_mini", 64) == pytest.approx(637 / 320)
    assert exact_window_size("swin_mini", 64) == 56
    assert exact_window_size("swin_t", 256) == 224
    assert exact_window_size("swin_micro", 28) == 28


def test_training_warns_about_a_crop_size_whose_windows_pad(caplog: pytest.LogCaptureFixture) -> None:
    from autox_video.training.train import _warn_if_windows_pad

    with caplog.at_level("WARNING", logger="autox_video"):
        _warn_if_windows_pad(build_config({"backbone": "swin_mini", "img_size": 64}))
        _warn_if_windows_pad(build_config({"backbone": "swin_mini", "img_size": 56}))
    assert [r.getMessage() for r in caplog.records] == [
        "img_size 64: Swin's 7x7 windows pad the token grids to 2.0x the real tokens (wasted compute); "
        "img_size 56 tiles them exactly"
    ]


def test_data_loader_workers_follow_the_cpus_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from autox_video.training.recipe import default_num_workers

    def cpus(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cpus(16)
    assert default_num_workers(cuda=True) == 15  # one CPU left for the training process
    cpus(64)
    assert default_num_workers(cuda=True) == 16  # at most 16
    cpus(16)
    assert default_num_workers(cuda=False) == 4  # CPU training: the model's threads need the cores
    cpus(2)
    assert default_num_workers(cuda=True) == 1
    assert default_num_workers(cuda=False) == 0  # decode inline: a worker only slows the model's threads
    cpus(16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four ranks share the node's CPUs
    assert default_num_workers(cuda=True) == 3
    assert default_num_workers(cuda=False) == 0


def test_at_least_two_epoch_checkpoints_stay_on_disk() -> None:
    """mmengine deletes the oldest kept checkpoint before writing the next: with one kept, a kill
    during that write would leave nothing complete to resume from."""
    from autox_video.training.recipe import Lists, runner_cfg

    lists = Lists(train="train.jsonl", val=None, test=None, num_classes=3)
    for keep, kept in ((1, 2), (2, 2), (5, 5)):
        cfg = runner_cfg(
            build_config({"keep_checkpoints": keep}), lists, work_dir="w", cuda=False, launcher="none", load_from=None
        )
        assert cfg["default_hooks"]["checkpoint"]["max_keep_ckpts"] == kept
