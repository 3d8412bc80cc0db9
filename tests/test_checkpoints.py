"""Pretrained weights: original Video Swin names, mmaction2, torchvision; strict, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autox_video.config import build_config
from autox_video.errors import CheckpointError
from autox_video.training.checkpoints import load_pretrained


def _model(backbone: str = "swin_micro", num_classes: int = 5) -> torch.nn.Module:
    from autox_video.training.recipe import build_recognizer

    torch.manual_seed(0)
    return build_recognizer(build_config({"backbone": backbone, "drop_path_rate": 0.0}), num_classes).eval()


def _original_video_swin_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The seed's swin_base_patch244_window877_kinetics600_22k.pth names the final norm `backbone.norm`.
    return {k.replace("backbone.norm1.", "backbone.norm."): v for k, v in sd.items()}


def test_original_video_swin_checkpoint_loads_every_tensor_and_gives_the_same_outputs(tmp_path: Path) -> None:
    src = _model()
    path = tmp_path / "swin_original.pth"
    torch.save({"meta": {}, "state_dict": _original_video_swin_names(src.state_dict())}, path)
    assert "backbone.norm.weight" in torch.load(path, weights_only=True)["state_dict"]

    dst = _model()
    torch.manual_seed(1)
    for p in dst.parameters():  # make sure nothing is equal by accident
        p.data.uniform_(-1, 1)
    msg = load_pretrained(dst, path)
    n = len([k for k in dst.state_dict() if k.startswith("backbone.")])
    assert msg.startswith(f"loaded {n}/{n} backbone tensors and the classifier head from ")

    x = torch.randn(2, 1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.allclose(src(x, mode="tensor"), dst(x, mode="tensor"), atol=1e-6)


def test_head_is_dropped_when_the_class_count_differs(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"state_dict": _model(num_classes=400).state_dict()}, path)
    dst = _model(num_classes=5)
    before = dst.cls_head.fc_cls.weight.clone()
    assert "classifier head dropped" in load_pretrained(dst, path)
    assert torch.equal(before, dst.cls_head.fc_cls.weight)


def test_seed_patch_size_defect_is_an_error_not_a_warning(tmp_path: Path) -> None:
    sd = _model().state_dict()
    sd["backbone.patch_embed.proj.weight"] = torch.zeros(32, 3, 4, 4, 4)  # the seed's 4x4x4 patches
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(
        CheckpointError, match=r"patch_embed\.proj\.weight: file \(32, 3, 4, 4, 4\) vs model \(32, 3, 2, 4, 4\)"
    ):
        load_pretrained(_model(), path)


def test_missing_backbone_tensor_is_an_error(tmp_path: Path) -> None:
    sd = {k: v for k, v in _model().state_dict().items() if "layers.1.blocks.0.attn.qkv.weight" not in k}
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(
        CheckpointError,
        match=r"1 backbone tensors missing \(e\.g\. backbone\.layers\.1\.blocks\.0\.attn\.qkv\.weight\)",
    ):
        load_pretrained(_model(), path)


def test_torchvision_swin3d_state_dict_loads_completely(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "swin3d_t.pth"
    torch.save(torchvision.models.video.swin3d_t().state_dict(), path)
    dst = _model("swin_t", num_classes=400)
    msg = load_pretrained(dst, path)
    n = len([k for k in dst.state_dict() if k.startswith("backbone.")])
    assert msg.startswith(f"loaded {n}/{n} backbone tensors and the classifier head")


def test_unreadable_or_missing_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth: checkpoint not found"):
        load_pretrained(_model(), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pth: cannot read checkpoint"):
        load_pretrained(_model(), junk)
