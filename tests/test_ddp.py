"""Two processes (torchrun, gloo on CPU): one set of outputs, annotation order kept in prediction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tinyrun import cli, make_tiny_dataset, write_config

pytestmark = pytest.mark.slow


# Every family: Swin, a 2D CNN on segments (Recognizer2D, BatchNorm), a 3D CNN with BatchNorm and SE
# blocks, a CLIP ViT with its own temporal blocks, a MAE ViT.
@pytest.mark.parametrize("backbone", ["swin_micro", "tsm_tiny", "x3d_tiny", "uniformerv2_tiny", "videomae_tiny"])
def test_train_and_test_with_two_processes(backbone: str, tmp_path: Path) -> None:
    ds = make_tiny_dataset(tmp_path / "data")
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", ds, work, epoch=2, backbone=backbone)
    res = cli("train", "--config", str(config), "--nproc", "2", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("done: 2 epochs") == 1  # rank 0 alone reports
    rows = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((work / "progress.json").read_text())["phase"] == "succeeded"

    one = tmp_path / "one.json"
    two = tmp_path / "two.json"
    assert cli("test", "--config", str(config), "--test-results-path", str(one)).returncode == 0
    res = cli(
        "test", "--config", str(config), "--test-results-path", str(two), "--nproc", "2", env={"OMP_NUM_THREADS": "1"}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert [p["video"] for p in b["predictions"]] == [p["video"] for p in a["predictions"]]
    for x, y in zip(a["predictions"], b["predictions"], strict=True):
        assert x["label"] == y["label"] and abs(x["score"] - y["score"]) < 1e-4


def test_collectives_wait_hours_not_torchs_ten_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0 checks every video (and downloads the data) while the others wait in a broadcast."""
    import datetime

    from autox_video.training.distributed import collective_timeout

    monkeypatch.delenv("AUTOX_DIST_TIMEOUT_MINUTES", raising=False)
    assert collective_timeout() == datetime.timedelta(hours=4)
    monkeypatch.setenv("AUTOX_DIST_TIMEOUT_MINUTES", "30")
    assert collective_timeout() == datetime.timedelta(minutes=30)
