"""config.yaml: seed keys accepted, unknown keys named with a suggestion, overrides win."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autox_video.config import build_config, load_config
from autox_video.errors import ConfigError

SEED_CONFIG = """\
data_root: /data/videos
ann_file_train: /data/train.txt
ann_file_val: /data/val.txt
ann_file_test: /data/test.txt
video_length: 2
num_class: 5
videos_per_gpu: 4
epoch: 3
evaluation: 1
work_dir: ./wd
test_results_path: ./out/results.json
"""


def test_seed_config_is_accepted_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_CONFIG)
    cfg = load_config(path)
    assert cfg.num_class == 5 and cfg.videos_per_gpu == 4 and cfg.epoch == 3 and cfg.evaluation == 1
    # The seed's meaning of video_length: 4 frames per unit, interval 6.
    assert cfg.resolved_clip_len == 8 and cfg.resolved_frame_interval == 6


def test_unknown_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("data_rot: /x\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data_rot'; did you mean 'data_root'\?"):
        load_config(path)


def test_overrides_beat_the_file_and_none_overrides_are_ignored() -> None:
    cfg = build_config({"epoch": 3, "lr": 0.1}, {"epoch": 7, "lr": None})
    assert cfg.epoch == 7 and cfg.lr == 0.1


def test_bad_value_names_field_and_value() -> None:
    with pytest.raises(ConfigError, match=r"epoch=0: Input should be greater than or equal to 1"):
        build_config({"epoch": 0})
    with pytest.raises(ConfigError, match=r"backbone='swin_xl'"):
        build_config({"backbone": "swin_xl"})


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("epoch: 3\nlr: [1,\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+: invalid YAML"):
        load_config(path)


def test_resolved_yaml_round_trips() -> None:
    cfg = build_config({"data_root": "s3://bkt/v/", "clip_len": 16, "frame_interval": 2})
    again = build_config(__import__("yaml").safe_load(cfg.to_yaml()))
    assert again == cfg and again.resolved_clip_len == 16


def test_config_and_spec_import_without_torch() -> None:
    # The operator image has no torch: these modules must not pull it in.
    code = "import sys, autox_video, autox_video.config, autox_video.errors; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_example_config_is_the_demo_config() -> None:
    from autox_video.config import load_config
    from autox_video.demo_run import DEMO_SETTINGS

    example = load_config(Path(__file__).resolve().parents[1] / "examples" / "config.yaml")
    assert {k: getattr(example, k) for k in DEMO_SETTINGS} == DEMO_SETTINGS
    assert example.data_root == "demo_run/data" and example.num_class is None


def test_flags_are_taken_as_typed_and_null_clears_a_key(tmp_path: Path) -> None:
    from autox_video.cli import _config, build_parser

    path = tmp_path / "config.yaml"
    path.write_text("grad_clip: 5.0\nclip_len: 16\nwork_dir: runs/a\n")
    args = build_parser().parse_args(
        ["train", "--config", str(path), "--grad-clip", "null", "--data-root", "/data/clips #2", "--work-dir", "2024",
         "--epoch", "4", "--lr", "1e-3", "--flip", "false", "--pretrained", "none"]
    )  # fmt: skip
    cfg = _config(args, required=True)
    assert cfg.grad_clip is None and cfg.clip_len == 16  # null clears; what is not typed stays
    assert cfg.data_root == "/data/clips #2" and cfg.work_dir == "2024"  # text stays text
    assert (cfg.epoch, cfg.lr, cfg.flip, cfg.pretrained) == (4, 0.001, False, "none")


def test_api_aliases_and_canonical_names_override_each_other_in_call_order(tmp_path: Path) -> None:
    from autox_video import AutoXVideo

    (tmp_path / "a.yaml").write_text("epoch: 30\n")
    (tmp_path / "b.yaml").write_text("epochs: 7\n")
    api = AutoXVideo(epochs=5).read_cfg(tmp_path / "a.yaml")
    assert api.config.epoch == 30
    assert api.read_cfg(tmp_path / "b.yaml").config.epoch == 7  # the latest call wins, whatever the spelling
