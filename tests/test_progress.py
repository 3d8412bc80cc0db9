"""Progress and ETA from progress.json (autox_video.spec.progress), and what a real tiny run writes for it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autox_video.spec.progress import Estimate, estimate, mean_epoch_seconds

T = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


def iso(seconds_before_t: float) -> str:
    return (T - timedelta(seconds=seconds_before_t)).isoformat()


def run(**fields: Any) -> dict[str, Any]:
    """A running 10-epoch run's progress.json, 4 epochs done at 100 s each, written at T as epoch 5 began."""
    base: dict[str, Any] = {
        "phase": "running",
        "epoch": 4,
        "total_epochs": 10,
        "epoch_seconds": [100.0, 100.0, 100.0, 100.0],
        "epoch_started": iso(0),
        "epoch_iter": 0,
        "epoch_iters": 50,
        "updated": iso(0),
    }
    return {**base, **fields}


CASES = [
    # (what, progress.json, now, expected)
    ("nothing yet", {}, T, Estimate(None, None)),
    (
        "first epoch running, nothing measured",
        run(epoch=0, epoch_seconds=[], epoch_iter=10),
        T,
        Estimate(2, None),  # 10/50 of epoch 1 of 10
    ),
    ("as written", run(), None, Estimate(40, 600)),
    ("as written, now = the write", run(), T, Estimate(40, 600)),
    ("30 s into epoch 5", run(), T + timedelta(seconds=30), Estimate(40, 570)),
    ("epoch 5 overrunning its mean", run(), T + timedelta(seconds=500), Estimate(40, 500)),
    ("mean of unequal epochs", run(epoch_seconds=[50, 150, 100, 100]), None, Estimate(40, 600)),
    (
        "mid-epoch write: 25 of 50 iterations",
        run(epoch_iter=25, epoch_started=iso(50)),
        T + timedelta(seconds=10),
        Estimate(45, 540),  # 5 epochs x 100 - half of epoch 5 - 10 s since the write
    ),
    ("no iteration counts: from the epoch start", run(epoch_iter=None, epoch_iters=None), T, Estimate(40, 600)),
    (
        "resumed: an epoch whose time was lost",
        run(epoch_seconds=[90.0, None, 110.0, None], epoch_started=iso(20)),
        T,
        Estimate(40, 580),
    ),
    ("last epoch done, not yet marked succeeded", run(epoch=10, epoch_seconds=[100.0] * 10), T, Estimate(100, 0)),
    ("last epoch's iterations done, validating", run(epoch=9, epoch_iter=50), T, Estimate(99, 0)),
    ("finished", {"phase": "succeeded", "epoch": 10, "total_epochs": 10}, T, Estimate(100, 0)),
    ("failed: no ETA", run(phase="failed"), T, Estimate(40, None)),
    ("interrupted: no ETA", run(phase="interrupted"), T, Estimate(40, None)),
    ("a pruned trial: no ETA", run(phase="pruned"), T, Estimate(40, None)),
    ("total 0", run(epoch=0, total_epochs=0), T, Estimate(None, None)),
    ("no total", run(total_epochs=None), T, Estimate(None, None)),
    ("more epochs than total", run(epoch=12), T, Estimate(100, 0)),
    (
        "wrong types ignored",
        run(epoch_seconds=["100", True, float("nan"), -5, 0, 200], epoch_iter="7", epoch_started="yesterday"),
        T + timedelta(seconds=30),
        Estimate(40, 1200),
    ),
    ("epoch_seconds not a list", run(epoch_seconds={"1": 100}), T, Estimate(40, None)),
    ("an old progress.json, no timings", {"phase": "running", "epoch": 3, "total_epochs": 30}, T, Estimate(10, None)),
    ("naive times are UTC", run(epoch_started="2024-06-01T11:59:00"), T.replace(tzinfo=None), Estimate(40, 540)),
]


@pytest.mark.parametrize(("what", "progress", "now", "expected"), CASES, ids=[c[0] for c in CASES])
def test_estimate(what: str, progress: dict[str, Any], now: datetime | None, expected: Estimate) -> None:
    assert estimate(progress, now) == expected


def test_mean_epoch_seconds() -> None:
    assert mean_epoch_seconds({"epoch_seconds": [10, None, 20.5]}) == 15.25
    assert mean_epoch_seconds({"epoch_seconds": []}) is None
    assert mean_epoch_seconds({}) is None


def test_the_module_is_torch_free() -> None:
    code = (
        "import sys, autox_video.spec.progress\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'mmengine', 'mmaction'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- a real tiny run --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_run_writes_what_the_estimate_needs_and_keeps_it_across_a_resume(tmp_path: Path) -> None:
    from tinyrun import cli, make_tiny_dataset, write_config

    from autox_video.config import load_config
    from autox_video.training.train import fit

    dataset = make_tiny_dataset(tmp_path / "data", per_class=2)
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3, evaluation=2, keep_checkpoints=3)
    snapshots: list[dict[str, Any]] = []

    def publisher(work: Path, epoch: int, final: bool) -> None:  # called after each epoch's files
        snapshots.append(json.loads((work / "progress.json").read_text()))

    started = datetime.now(UTC).replace(microsecond=0)
    fit(load_config(config), publisher=publisher)
    elapsed = (datetime.now(UTC) - started).total_seconds() + 1

    running = [s for s in snapshots if s["phase"] == "running"]
    assert [s["epoch"] for s in running] == [1, 2, 3]
    for s in running:
        times = s["epoch_seconds"]
        assert len(times) == s["epoch"] and all(isinstance(t, float) and 0 < t < elapsed for t in times)
        assert s["epoch_iter"] == 0 and s["epoch_iters"] == 2  # 6 training videos, 4 per batch
        assert started <= datetime.fromisoformat(s["epoch_started"]) <= datetime.now(UTC)
    assert running[2]["epoch_seconds"][:2] == running[1]["epoch_seconds"] and sum(running[2]["epoch_seconds"]) < elapsed
    first = running[0]["epoch_seconds"][0]
    assert estimate(running[0]) == Estimate(33, round(2 * first))
    assert estimate(running[1]) == Estimate(66, round(sum(running[1]["epoch_seconds"]) / 2))
    final = json.loads((work / "progress.json").read_text())
    assert final["phase"] == "succeeded" and final["epoch_started"] is None and estimate(final) == Estimate(100, 0)
    measured = final["epoch_seconds"]
    assert measured == running[2]["epoch_seconds"]

    # Resume from epoch 1 (as after a kill): epoch 1 keeps its measurement, epochs 2-3 are measured anew.
    (work / "last_checkpoint").write_text(str(work / "epoch_1.pth"))
    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    again = json.loads((work / "progress.json").read_text())
    assert again["epoch"] == 3 and again["epoch_seconds"][0] == measured[0]
    assert len(again["epoch_seconds"]) == 3 and again["epoch_seconds"][1:] != measured[1:]


def test_within_an_epoch_progress_json_counts_iterations_and_a_resume_keeps_earlier_times(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from mmengine.logging import MessageHub

    from autox_video.training.hooks import ProgressHook

    (tmp_path / "progress.json").write_text(json.dumps({"epoch": 3, "epoch_seconds": [5.0, "x", 7.0]}))
    runner = SimpleNamespace(
        work_dir=str(tmp_path), epoch=2, train_dataloader=[None] * 5, message_hub=MessageHub.get_instance("t-progress")
    )
    hook = ProgressHook(total_epochs=4, validate=False)
    hook.before_train(runner)  # resumed from epoch 2's checkpoint: epoch 3's time goes, "x" was no time
    written = json.loads((tmp_path / "progress.json").read_text())
    assert (written["epoch_seconds"], written["epoch_iter"], written["epoch_iters"]) == ([5.0, None], 0, 5)

    hook.after_train_iter(runner, 0)  # within progress_every of the last write: nothing written
    assert json.loads((tmp_path / "progress.json").read_text())["epoch_iter"] == 0
    hook.progress_every = 0.0
    hook.after_train_iter(runner, 2)
    mid = json.loads((tmp_path / "progress.json").read_text())
    assert (mid["epoch"], mid["epoch_iter"], mid["epoch_started"]) == (2, 3, written["epoch_started"])
    assert estimate(mid).percentage == 65  # (2 + 3/5) / 4

    hook.after_train_epoch(runner)
    end = json.loads((tmp_path / "progress.json").read_text())
    assert end["epoch"] == 3 and end["epoch_iter"] == 0 and end["epoch_seconds"][:2] == [5.0, None]
    assert len(end["epoch_seconds"]) == 3 and 0 <= end["epoch_seconds"][2] < 60
