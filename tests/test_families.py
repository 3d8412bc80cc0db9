"""Model families (families.py): each tiny variant builds through mmaction2, trains a step, predicts;
each family's pretrained release formats load strictly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from autox_video import families
from autox_video.config import build_config
from autox_video.errors import CheckpointError
from autox_video.training.checkpoints import load_pretrained

TINY = ["swin_micro", "tsm_tiny", "x3d_tiny", "uniformerv2_tiny", "videomae_tiny"]
SMALL = dict(pretrained="none", img_size=32, clip_len=8, frame_interval=2, drop_path_rate=0.0, num_workers=0)


def _cfg(backbone: str, **extra: Any) -> Any:
    return build_config({"backbone": backbone, **SMALL, **extra})


def _model(backbone: str, num_classes: int = 3, seed: int = 0) -> torch.nn.Module:
    from autox_video.training.recipe import build_recognizer

    torch.manual_seed(seed)
    model = build_recognizer(_cfg(backbone), num_classes)
    model.init_weights()
    return model.eval()


@pytest.fixture(scope="module")
def video_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tinyrun import make_tiny_dataset

    root = tmp_path_factory.mktemp("fam")
    ds = make_tiny_dataset(root, per_class=1)
    rows = []
    for line in Path(ds.train_list).read_text().splitlines():
        rel, label = line.rsplit(" ", 1)
        rows.append({"filename": str(Path(ds.data_root) / rel), "label": int(label), "video": rel})
    path = root / "list.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_every_backbone_name_has_a_registry_entry_and_config_defaults() -> None:
    assert set(families.NAMES) == set(families.MODELS)
    assert build_config({"backbone": "tsm_r50"}).lr == 0.1  # SGD with fc_lr5, not Swin's AdamW 1e-3
    assert build_config({"backbone": "tsm_r50"}).clip_len == 8
    assert build_config({"backbone": "tsm_r50", "lr": 0.3}).lr == 0.3  # the config wins
    assert build_config({"backbone": "x3d_s"}).img_size == 160
    assert build_config({"backbone": "swin_b"}).clip_len is None  # the seed's video_length meaning stays


def test_help_and_the_guide_table_name_every_backbone(capsys: pytest.CaptureFixture[str]) -> None:
    """The one list reaches the user: `train --help` names every backbone, the guide has a row per full model."""
    from autox_video.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    guide = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "backbones.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in guide.splitlines() if line.startswith("| ")}
    for name in families.NAMES:
        assert name in help_text, name
        if not families.MODELS[name].tiny:
            assert name in rows, f"docs/guide/backbones.md has no row for {name}"


@pytest.mark.parametrize("backbone", TINY)
def test_tiny_family_builds_trains_one_step_and_predicts_from_real_videos(backbone: str, video_list: Path) -> None:
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DATASETS

    from autox_video.training import recipe

    cfg = _cfg(backbone)
    model = _model(backbone).train()
    entry = families.model(backbone)
    train_set = DATASETS.build(
        dict(type="AutoXVideoDataset", ann_file=str(video_list), pipeline=recipe.train_pipeline(cfg))
    )
    batch = pseudo_collate([train_set[0], train_set[1]])
    shape = tuple(batch["inputs"][0].shape)
    if entry.family.input_format == "NCHW":
        assert shape == (8, 3, 32, 32)  # 8 segments of one frame (TSM)
    else:
        assert shape == (1, 3, 8, 32, 32)
    wrapper = build_optim_wrapper(model, recipe.optim_wrapper_cfg(cfg, cuda=False))
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.train_step(batch, wrapper)
    assert torch.isfinite(losses["loss"])
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))

    test_set = DATASETS.build(
        dict(
            type="AutoXVideoDataset",
            ann_file=str(video_list),
            pipeline=recipe.eval_pipeline(cfg, num_clips=2, num_crops=1),
            test_mode=True,
        )
    )
    model.eval()
    with torch.no_grad():
        out = model.test_step(pseudo_collate([test_set[0]]))
    scores = out[0].pred_scores.item
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert torch.allclose(scores.sum(), torch.tensor(1.0), atol=1e-4)


def test_vit_layer_decay_gives_lower_blocks_smaller_learning_rates() -> None:
    from mmengine.optim import build_optim_wrapper

    from autox_video.training import recipe

    cfg = _cfg("videomae_tiny", lr=1e-3)
    wrapper = build_optim_wrapper(_model("videomae_tiny"), recipe.optim_wrapper_cfg(cfg, cuda=False))
    lrs = sorted({round(g["lr"], 12) for g in wrapper.optimizer.param_groups})
    # depth 2, decay 0.75: embeddings 0.75^3, block 0 0.75^2, block 1 0.75, final norm and head 1.
    assert lrs == [round(1e-3 * 0.75**k, 12) for k in (3, 2, 1, 0)]


# --- pretrained formats, each built from a randomly initialised model ---------------------------


def _save(tmp_path: Path, obj: dict[str, Any], name: str = "w.pth") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _backbone_equal(a: torch.nn.Module, b: torch.nn.Module, keys: list[str] | None = None) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in (keys or [k for k in sa if k.startswith("backbone.")]))


@pytest.mark.parametrize("backbone", TINY)
def test_mmaction2_zoo_checkpoint_loads_every_backbone_tensor(backbone: str, tmp_path: Path) -> None:
    src = _model(backbone, num_classes=400, seed=1)
    path = _save(tmp_path, {"meta": {}, "state_dict": src.state_dict()})
    dst = _model(backbone, num_classes=3, seed=2)
    msg = load_pretrained(dst, path)
    assert "backbone tensors" in msg and "classifier head dropped" in msg
    n = int(msg.split("loaded ")[1].split("/")[0])
    assert n >= len([k for k, _ in dst.named_parameters() if k.startswith("backbone.")])
    assert _backbone_equal(src, dst)


def test_torchvision_resnet_weights_fill_every_tsm_tensor(tmp_path: Path) -> None:
    import torchvision

    tv = torchvision.models.resnet18(num_classes=1000)  # tsm_tiny is a ResNet-18 (tsm_r50: resnet50)
    path = _save(tmp_path, tv.state_dict())
    dst = _model("tsm_tiny", seed=3)
    msg = load_pretrained(dst, path)
    assert msg.startswith("loaded ") and "missing" not in msg
    sd = dst.state_dict()
    assert torch.equal(sd["backbone.conv1.conv.weight"], tv.conv1.weight)
    assert torch.equal(sd["backbone.layer1.0.conv1.conv.net.weight"], tv.layer1[0].conv1.weight)  # shifted conv
    assert torch.equal(sd["backbone.layer2.0.downsample.bn.running_var"], tv.layer2[0].downsample[1].running_var)


def test_torchvision_resnet50_layout_does_not_fit_the_resnet18_tsm(tmp_path: Path) -> None:
    import torchvision

    path = _save(tmp_path, torchvision.models.resnet50().state_dict())
    with pytest.raises(CheckpointError, match="does not fit this backbone"):
        load_pretrained(_model("tsm_tiny"), path)


def _pyslowfast_x3d_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """PySlowFast's X3D layout (facebookresearch/SlowFast X3D, x3d_s.pyth): stem s1, stages sN, head."""
    stem = {"conv1_s.conv": "s1.pathway0_stem.conv_xy", "conv1_t.conv": "s1.pathway0_stem.conv"}
    stem.update({"conv1_t.bn": "s1.pathway0_stem.bn", "conv5.conv": "head.conv_5", "conv5.bn": "head.conv_5_bn"})
    block = {"downsample.conv": "branch1", "downsample.bn": "branch1_bn", "se_module": "branch2.se"}
    for i, letter in enumerate("abc", 1):
        block.update({f"conv{i}.conv": f"branch2.{letter}", f"conv{i}.bn": f"branch2.{letter}_bn"})
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("cls_head."):
            fc, suffix = key.removeprefix("cls_head.").split(".", 1)
            if fc == "fc1":  # PySlowFast's lin_5 is a 1x1x1 Conv3d
                out[f"head.lin_5.{suffix}"] = value[:, :, None, None, None]
            else:
                out[f"head.projection.{suffix}"] = value
            continue
        parts = key.removeprefix("backbone.").split(".")
        if parts[0].startswith("layer"):
            module, suffix = ".".join(parts[2:-1]), parts[-1]
            ours = next(k for k in block if module == k or module.startswith(k + "."))  # se_module.fc1 -> se
            out[f"s{int(parts[0][5:]) + 1}.pathway0_res{parts[1]}.{block[ours]}{module[len(ours) :]}.{suffix}"] = value
        else:
            out[f"{stem['.'.join(parts[:2])]}.{parts[-1]}"] = value
    return out


def test_pyslowfast_x3d_release_fills_every_backbone_tensor_and_the_head_mlp(tmp_path: Path) -> None:
    src = _model("x3d_tiny", num_classes=400, seed=9)
    sd = _pyslowfast_x3d_state(src)
    assert {"s1.pathway0_stem.conv_xy.weight", "s2.pathway0_res0.branch2.se.fc1.weight", "head.lin_5.weight"} <= set(sd)
    # As the release saves it: the training state beside the weights, all weights_only-loadable.
    release = {"epoch": 300, "model_state": sd, "optimizer_state": {"state": {}, "param_groups": []}, "cfg": "X3D: {}"}
    dst = _model("x3d_tiny", num_classes=3, seed=10)
    msg = load_pretrained(dst, _save(tmp_path, release, "x3d_s.pyth"))
    assert "missing" not in msg and "classifier head dropped" in msg
    assert _backbone_equal(src, dst)
    assert torch.equal(dst.state_dict()["cls_head.fc1.weight"], src.state_dict()["cls_head.fc1.weight"])
    # A wider X3D's release does not fit the tiny one.
    wide = _pyslowfast_x3d_state(_model("x3d_s", num_classes=400))
    with pytest.raises(CheckpointError, match="does not fit this backbone"):
        load_pretrained(_model("x3d_tiny"), _save(tmp_path, {"model_state": wide}, "wide.pyth"))


def _clip_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """OpenAI CLIP's layout: visual.* (2D patch conv, ln_post, proj) beside a text tower."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone.") and any(
            k[len("backbone.") :].startswith(p) for p in ("conv1", "class_embedding", "positional_embedding", "ln_pre")
        ):
            out["visual." + k[len("backbone.") :]] = v
        elif k.startswith("backbone.transformer.resblocks.") and ".lmhra" not in k:
            out["visual." + k[len("backbone.") :]] = v
    out["visual.conv1.weight"] = out["visual.conv1.weight"][:, :, 0].clone()  # CLIP's kernel is 2D
    width = out["visual.class_embedding"].shape[0]
    out.update({"visual.ln_post.weight": torch.ones(width), "visual.proj": torch.zeros(width, 8)})
    out.update({"transformer.resblocks.0.ln_1.weight": torch.ones(8), "token_embedding.weight": torch.zeros(9, 8)})
    return out


def test_clip_vit_weights_fill_every_clip_tensor_of_uniformerv2(tmp_path: Path) -> None:
    src = _model("uniformerv2_tiny", seed=4)
    path = _save(tmp_path, _clip_state(src))
    dst = _model("uniformerv2_tiny", seed=5)
    msg = load_pretrained(dst, path)
    assert "CLIP ViT tensors" in msg and "new in UniFormerV2" in msg
    keys = [k for k in dst.state_dict() if k.startswith("backbone.transformer.resblocks.0.attn.")]
    assert keys and _backbone_equal(src, dst, keys)
    w = dst.state_dict()["backbone.conv1.weight"]
    assert torch.equal(w[:, :, w.shape[2] // 2], src.state_dict()["backbone.conv1.weight"][:, :, 0])


def test_clip_weights_with_a_missing_block_are_an_error(tmp_path: Path) -> None:
    sd = _clip_state(_model("uniformerv2_tiny"))
    del sd["visual.transformer.resblocks.1.mlp.c_fc.weight"]
    with pytest.raises(CheckpointError, match="1 backbone tensors missing"):
        load_pretrained(_model("uniformerv2_tiny"), _save(tmp_path, sd))


def _videomae_names(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("backbone."):
            name = k[len("backbone.") :].replace("patch_embed.projection.", "patch_embed.proj.")
            out[prefix + name.replace(".mlp.layers.0.0.", ".mlp.fc1.").replace(".mlp.layers.1.", ".mlp.fc2.")] = v
        elif k.startswith("cls_head.fc_cls.") and not prefix:
            out["head." + k[len("cls_head.fc_cls.") :]] = v
    return out


def test_videomae_v2_release_formats_load_strictly(tmp_path: Path) -> None:
    src = _model("videomae_tiny", num_classes=3, seed=6)
    # Fine-tuned release (VideoMAE V2 distilled ViT-S/B): {"module": bare names + head}.
    dst = _model("videomae_tiny", seed=7)
    msg = load_pretrained(dst, _save(tmp_path, {"module": _videomae_names(src, "")}, "ft.pth"))
    assert "and the classifier head" in msg and _backbone_equal(src, dst)
    # Pretraining release: {"model": encoder.* + decoder.*}; no fc_norm (fine-tuning adds it).
    pre = {k: v for k, v in _videomae_names(src, "encoder.").items() if "fc_norm" not in k}
    pre["decoder.blocks.0.norm1.weight"] = torch.ones(4)
    dst = _model("videomae_tiny", seed=8)
    msg = load_pretrained(dst, _save(tmp_path, {"model": pre}, "pt.pth"))
    assert msg.startswith("loaded ")
    assert _backbone_equal(src, dst, ["backbone.blocks.1.attn.qkv.weight", "backbone.patch_embed.projection.weight"])
    # A different depth does not fit.
    bad = {k: v for k, v in pre.items() if not k.startswith("encoder.blocks.1.")}
    with pytest.raises(CheckpointError, match="missing"):
        load_pretrained(_model("videomae_tiny"), _save(tmp_path, {"model": bad}, "bad.pth"))


def test_a_training_job_spec_leaves_family_keys_to_the_backbone_unless_it_sets_them() -> None:
    from autox_video.spec import trainer_config as tc
    from autox_video.spec.training import VideoTrainingJobSpec

    def spec(**training: Any) -> VideoTrainingJobSpec:
        raw = {"dataset": {"videos": "s3://data/v/", "train": "s3://data/t.txt"}, "output": "s3://runs/j"}
        return VideoTrainingJobSpec.model_validate({**raw, "model": {"backbone": "tsm_r50"}, "training": training})

    tsm = families.family_defaults("tsm_r50")
    cfg = tc.training_config(spec())
    assert (cfg.lr, cfg.clip_len, cfg.weight_decay, cfg.grad_clip) == (
        tsm["lr"],
        tsm["clip_len"],
        tsm["weight_decay"],
        tsm["grad_clip"],
    )
    cfg = tc.training_config(spec(lr=0.01, gradClip=None))  # set in the spec: the spec's, null = no clipping
    assert (cfg.lr, cfg.grad_clip, cfg.backbone_lr_mult) == (0.01, None, tsm["backbone_lr_mult"])
    # The operator's (and run's) search trials: a trial switching backbone gets that family's recipe.
    trial = tc.trial_config(spec(), 1, {"backbone": "videomae_tiny"})
    vmae = families.family_defaults("videomae_tiny")
    assert (trial.lr, trial.clip_len, trial.frame_interval) == (vmae["lr"], vmae["clip_len"], vmae["frame_interval"])
    swin = tc.trial_config(spec(lr=0.01), 2, {"backbone": "swin_t"})
    assert (swin.lr, swin.clip_len, swin.weight_decay) == (0.01, None, 0.05)  # spec's lr; Swin = Config's defaults


# --- a real run per family: train, SIGKILL, resume, test (slow) ------------------------------------


@pytest.fixture(scope="module")
def two_classes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tinyrun import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("two"), per_class=3, classes=("move_left", "move_right"))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", [n for n in TINY if n != "swin_micro"])  # Swin: tests/test_train.py
def test_train_sigkill_resume_then_test_per_family(backbone: str, two_classes: Any, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tinyrun import cli, write_config

    from autox_video.training.hooks import read_metrics

    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", two_classes, work, backbone=backbone, epoch=2)
    cmd = [sys.executable, "-m", "autox_video", "train", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rows = work / "metrics.jsonl"  # written after epoch 1's checkpoint and validation

    def metrics() -> list[int]:
        return [r["epoch"] for r in read_metrics(rows)]  # a line torn by the kill is skipped

    deadline = time.time() + 300
    while not ((work / "epoch_1.pth").exists() and metrics()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # epoch 2 has just begun: its decoding alone outlasts the poll
    proc.wait()
    assert metrics() == [1]

    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed epoch" in done.stdout + done.stderr
    assert metrics() == [1, 2]  # no gap, no repeat
    assert f"backbone: {backbone}" in (work / "config.yaml").read_text()

    out = tmp_path / "results.json"
    res = cli("test", "--config", str(config), "--test-results-path", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads(out.read_text())
    listed = [line.rsplit(maxsplit=1)[0] for line in Path(two_classes.test_list).read_text().splitlines() if line]
    assert [p["video"] for p in results["predictions"]] == listed
    assert results["classes"] == two_classes.classes
    assert all(len(p["probs"]) == 2 and abs(sum(p["probs"]) - 1) < 1e-4 for p in results["predictions"])
