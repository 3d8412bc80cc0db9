"""Bad input: one line naming the file/line/key and what to do; no traceback; never lost work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, write_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), per_class=2)


def _one_line_error(res) -> str:  # type: ignore[no-untyped-def]
    err = res.stderr.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("autox-video: error: "), err
    return last


def test_unknown_config_key_exits_2_with_suggestion(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("data_rot: /x\n")
    res = cli("train", cwd=tmp_path)
    assert res.returncode == 2
    assert "config.yaml: unknown key 'data_rot'; did you mean 'data_root'?" in _one_line_error(res)


def test_train_without_config_says_what_to_pass(tmp_path: Path) -> None:
    res = cli("train", cwd=tmp_path)
    assert res.returncode == 2 and "no ./config.yaml here" in _one_line_error(res)


def test_missing_video_names_list_and_line(dataset, tmp_path: Path) -> None:
    bad_list = tmp_path / "train.txt"
    lines = Path(dataset.train_list).read_text().splitlines()
    bad_list.write_text("\n".join(lines[:2] + ["videos/train/ghost.mp4 1"] + lines[2:]) + "\n")
    config = write_config(tmp_path / "config.yaml", dataset, tmp_path / "run", ann_file_train=str(bad_list))
    res = cli("train", "--config", str(config))
    assert res.returncode == 2
    assert "train.txt:3: video 'videos/train/ghost.mp4' not found" in _one_line_error(res)


def test_label_outside_num_class_names_the_line(dataset, tmp_path: Path) -> None:
    bad_list = tmp_path / "train.txt"
    bad_list.write_text(Path(dataset.train_list).read_text().splitlines()[0].rsplit(" ", 1)[0] + " 9\n")
    config = write_config(
        tmp_path / "config.yaml", dataset, tmp_path / "run", ann_file_train=str(bad_list), num_class=3
    )
    res = cli("train", "--config", str(config))
    assert res.returncode == 2 and "train.txt:1: label 9 outside [0, 3)" in _one_line_error(res)


def test_flag_value_error_names_the_key(dataset, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", dataset, tmp_path / "run")
    res = cli("train", "--config", str(config), "--epoch", "0")
    assert res.returncode == 2 and "epoch=0" in _one_line_error(res)


@pytest.mark.slow
def test_corrupt_videos_are_skipped_and_reported_then_too_many_abort(dataset, tmp_path: Path) -> None:
    from autox_video.data.demo import write_corrupt_video, write_empty_video

    root = tmp_path / "data"
    shutil.copytree(dataset.data_root, root)
    lines = Path(dataset.train_list).read_text().splitlines()
    broken = lines[0].rsplit(" ", 1)[0]
    write_corrupt_video(root / broken)
    config = write_config(
        tmp_path / "config.yaml", dataset, tmp_path / "run", data_root=str(root), epoch=1, max_bad_fraction=0.2
    )
    res = cli("train", "--config", str(config))
    assert res.returncode == 0, res.stderr[-2000:]
    skipped = (tmp_path / "run" / "skipped.txt").read_text()
    assert skipped.startswith(broken + "\t")

    for line in lines[1:3]:
        write_empty_video(root / line.rsplit(" ", 1)[0])
    res = cli("train", "--config", str(config), "--work-dir", str(tmp_path / "run2"))
    assert res.returncode == 1
    last = _one_line_error(res)
    assert "3 of 6 videos in train_list.txt are unreadable" in last and "max_bad_fraction 20%" in last
    assert last.endswith(f"see {tmp_path / 'run2' / 'skipped.txt'}")
    assert len((tmp_path / "run2" / "skipped.txt").read_text().splitlines()) == 3
