"""A train, tune or test refused on a config or list error leaves an existing work_dir exactly as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from tinyrun import TINY, make_tiny_dataset, write_config

from autox_video import cli

COMMANDS = ("train", "tune", "test")
ERRORS = ("bad_key", "non_utf8_list", "label_out_of_range", "empty_list", "wrong_type")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"), per_class=1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Bytes of a real (untrained) tiny-model checkpoint with our meta, so `test` gets as far as the lists."""
    import io

    import torch

    from autox_video.config import Config
    from autox_video.training.recipe import build_recognizer

    cfg = Config(**TINY, num_class=3)
    buf = io.BytesIO()
    meta = {"autox": {"config": cfg.model_dump(mode="json"), "num_classes": 3, "class_names": None}}
    torch.save({"meta": meta, "state_dict": build_recognizer(cfg, 3).state_dict()}, buf)
    return buf.getvalue()


def _existing_work_dir(work: Path, checkpoint: bytes) -> None:
    """A work_dir a previous run left: checkpoints, lists, run files (no lock file)."""
    (work / "lists").mkdir(parents=True)
    (work / "best.pth").write_bytes(checkpoint)
    (work / "config.yaml").write_text("backbone: swin_micro\nnum_class: 3\n")
    (work / "progress.json").write_text('{"epoch": 2, "phase": "done"}\n')
    (work / "lists" / "train.jsonl").write_text('{"filename": "x.mp4", "label": 0}\n')
    (work / "notes.txt").write_bytes(b"\x00\x01 kept as is")


def _snapshot(work: Path) -> dict[str, bytes | None]:
    return {p.relative_to(work).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(work.rglob("*"))}


def _bad_list(tmp_path: Path, dataset: Any, error: str) -> Path:
    path = tmp_path / "bad_list.txt"
    first = Path(dataset.train_list).read_text().splitlines()[0].rsplit(" ", 1)[0]
    if error == "non_utf8_list":
        path.write_bytes(first.encode() + b" 0\n\xff\xfe caf\xe9.mp4 1\n")
    elif error == "label_out_of_range":
        path.write_text(f"{first} 9\n")
    else:
        path.write_text("")
    return path


def _config(tmp_path: Path, dataset: Any, work: Path, command: str, error: str) -> Path:
    key = "ann_file_test" if command == "test" else "ann_file_train"
    extra: dict[str, Any] = {"num_class": 3, "test_results_path": str(work / "results.json")}
    if error in ("non_utf8_list", "label_out_of_range", "empty_list"):
        extra[key] = str(_bad_list(tmp_path, dataset, error))
    if command == "tune":
        extra["search"] = {"trials": 2, "parallel": 1}
    path = write_config(tmp_path / "config.yaml", dataset, work, **extra)
    if error in ("bad_key", "wrong_type"):
        data = yaml.safe_load(path.read_text())
        data.update({"data_rot": "/x"} if error == "bad_key" else {"epoch": "many"})
        path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize("command", COMMANDS)
def test_refused_start_leaves_the_work_dir_unchanged(
    command: str, error: str, dataset: Any, checkpoint: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "run"
    _existing_work_dir(work, checkpoint)
    before = _snapshot(work)
    config = _config(tmp_path, dataset, work, command, error)
    code = cli.main([command, "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("autox-video: error: "), err
    assert _snapshot(work) == before


def test_the_early_list_check_reads_a_local_jsonl_of_s3_videos_against_an_s3_data_root(tmp_path: Path) -> None:
    from autox_video.config import Config
    from autox_video.errors import AnnotationError
    from autox_video.training.inputs import check_lists

    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text('{"content": "s3://videos/clips/a.mp4"}\n')
    check_lists(Config(data_root="s3://videos/clips/", ann_file_test=str(jsonl)), "test")  # no refusal
    with pytest.raises(AnnotationError, match="not under data_root"):
        check_lists(Config(data_root="s3://other/", ann_file_test=str(jsonl)), "test")
