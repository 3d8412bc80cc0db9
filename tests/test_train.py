"""`autox-video train` / `test` on real encoded videos with a tiny Swin: resume, best.pth, results.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from tinyrun import cli, make_tiny_dataset, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _metrics(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _train_until(config: Path, checkpoint: Path, **popen: Any) -> subprocess.Popen[str]:
    """`autox-video train` in a subprocess, returned (still running) once `checkpoint` exists."""
    cmd = [sys.executable, "-m", "autox_video", "train", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, text=True, **popen)
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be stopped"
    return proc


def test_sigkill_then_same_command_resumes_and_trains_every_epoch_once(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=4)
    proc = _train_until(config, work / "epoch_2.pth", stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = [r["epoch"] for r in _metrics(work)]
    assert killed_at and killed_at[-1] < 4

    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed epoch" in done.stdout + done.stderr
    rows = _metrics(work)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]  # no gap, no repeat
    progress = json.loads((work / "progress.json").read_text())
    assert progress["phase"] == "succeeded" and progress["epoch"] == 4

    # best.pth holds the epoch with the highest top-1 in metrics.jsonl (first one on ties).
    best_row = max(rows, key=lambda r: (r["top1"], -r["epoch"]))
    best = torch.load(work / "best.pth", map_location="cpu", weights_only=True)
    assert best["meta"]["epoch"] == best_row["epoch"] == progress["best_epoch"]
    assert best["meta"]["autox"]["class_names"] == dataset.classes  # self-describing
    assert (work / "config.yaml").is_file() and "num_class: 3" in (work / "config.yaml").read_text()


def test_predict_writes_results_in_list_order_with_names(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=1)
    trained = cli("train", "--config", str(config), "--verbose")
    assert trained.returncode == 0
    # mmengine's log (--verbose) names the epoch just validated (its stock processor would say [0] here).
    assert "Epoch(val) [1][" in trained.stdout + trained.stderr
    assert "Epoch(val) [0][" not in trained.stdout + trained.stderr
    out = tmp_path / "out" / "results.json"
    res = cli("test", "--config", str(config), "--test-results-path", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"results: {out}" in res.stdout and "top1:" in res.stdout
    results = json.loads(out.read_text())
    listed = [line.rsplit(maxsplit=1) for line in Path(dataset.test_list).read_text().splitlines() if line.strip()]
    assert [p["video"] for p in results["predictions"]] == [path for path, _ in listed]
    assert results["classes"] == dataset.classes
    for p in results["predictions"]:
        assert p["label_name"] == dataset.classes[p["label"]]
        assert abs(sum(p["probs"]) - 1) < 1e-4 and p["score"] == max(p["probs"])
        assert p["true_label"] == int(listed[results["predictions"].index(p)][1])
    assert set(results["metrics"]) == {"top1", "top3"} or set(results["metrics"]) == {"top1", "top5"}

    seed = tmp_path / "seed.json"
    assert cli("test", "--config", str(config), "--test-results-path", str(seed), "--format", "seed").returncode == 0
    assert json.loads(seed.read_text()) == [p["probs"] for p in results["predictions"]]

    # Any batch size gives the same scores in the same order (6 videos: batches 4+2 by default, here 1 each).
    one = tmp_path / "one.json"
    single = cli("test", "--config", str(config), "--test-results-path", str(one), "--test-batch-size", "1")
    assert single.returncode == 0 and "prediction: 1 videos per forward pass (test_batch_size), fp32" in single.stderr
    assert "prediction: 4 videos per forward pass (videos_per_gpu), fp32" in res.stderr
    singles = json.loads(one.read_text())["predictions"]
    assert [p["video"] for p in singles] == [p["video"] for p in results["predictions"]]
    assert torch.allclose(
        torch.tensor([p["probs"] for p in singles]),
        torch.tensor([p["probs"] for p in results["predictions"]]),
        atol=1e-5,
    )


def test_python_api_fit_then_transform_without_arguments(
    dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autox_video import AutoXVideo

    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path / "config.yaml", dataset, tmp_path / "run", epoch=1)
    model = AutoXVideo().read_cfg(config)
    result = model.fit(epoch=1, work_dir=str(tmp_path / "api_run"))
    assert result.epochs == 1 and (tmp_path / "api_run" / "best.pth").is_file()
    probs = model.transform()
    listed = [line for line in Path(dataset.test_list).read_text().splitlines() if line.strip()]
    assert len(probs) == len(listed) and all(len(p) == 3 and abs(sum(p) - 1) < 1e-4 for p in probs)
    assert (
        json.loads((tmp_path / "run").parent.joinpath("results.json").read_text())["predictions"][0]["probs"]
        == probs[0]
    )


def test_pretrained_weights_survive_the_runners_weight_init(dataset, tmp_path: Path) -> None:
    """mmengine's Runner.train() calls init_weights(): loading before it must not be undone."""
    from tinyrun import TINY

    from autox_video.config import build_config
    from autox_video.training.recipe import build_recognizer

    torch.manual_seed(123)
    src = build_recognizer(build_config(dict(TINY)), 3)
    for p in src.parameters():
        p.data.uniform_(-0.1, 0.1)  # nothing like the TruncNormal/Constant init
    weights = tmp_path / "pretrained.pth"
    torch.save({"state_dict": src.state_dict()}, weights)
    work = tmp_path / "run"
    # lr 1e-9: one epoch moves no weight by more than ~1e-8, so the checkpoint shows what training started from.
    config = write_config(
        tmp_path / "config.yaml", dataset, work, epoch=1, evaluation=0, lr=1e-9, pretrained=str(weights)
    )
    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded " in done.stderr and f"backbone tensors and the classifier head from {weights}" in done.stderr
    trained = torch.load(work / "epoch_1.pth", map_location="cpu", weights_only=False)["state_dict"]
    for name, value in src.state_dict().items():
        assert torch.allclose(trained[name].float(), value.float(), atol=1e-5), name


def test_a_stale_best_is_rewritten_from_the_resumed_weights(dataset, tmp_path: Path) -> None:
    """S3 output: a pod died after the checkpoint pointer moved, before best.pth was uploaded."""
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=2)
    assert cli("train", "--config", str(config)).returncode == 0
    best_epoch = max(_metrics(work), key=lambda r: (r["top1"], -r["epoch"]))["epoch"]
    (work / "last_checkpoint").write_text(str(work / f"epoch_{best_epoch}.pth"))  # resume at the best epoch
    resumed = torch.load(work / f"epoch_{best_epoch}.pth", map_location="cpu", weights_only=False)["state_dict"]
    stale = {k: torch.zeros_like(v) for k, v in resumed.items()}
    torch.save({"meta": {"epoch": 0, "top1": 0.0}, "state_dict": stale}, work / "best.pth")
    # A best staged by an epoch after the checkpoint (killed before it was saved) must never be promoted.
    torch.save(
        {"meta": {"epoch": best_epoch + 1, "top1": 1.0}, "state_dict": stale},
        work / f"best.pending.epoch_{best_epoch + 1}.pth",
    )

    assert cli("train", "--config", str(config)).returncode == 0
    best = torch.load(work / "best.pth", map_location="cpu", weights_only=True)
    rows = _metrics(work)
    assert best["meta"]["epoch"] == max(rows, key=lambda r: (r["top1"], -r["epoch"]))["epoch"]
    assert [r["epoch"] for r in rows] == [1, 2] and not list(work.glob("best.pending.*"))
    if best["meta"]["epoch"] == best_epoch:  # not beaten by a redone epoch: the resumed weights themselves
        assert all(torch.equal(best["state_dict"][k], v) for k, v in resumed.items())


def test_resuming_with_a_changed_schedule_is_refused_with_what_to_do(dataset, tmp_path: Path) -> None:
    """The saved optimizer and LR schedule win on resume: a longer `epoch` would train at lr ~0."""
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=1, evaluation=0)
    assert cli("train", "--config", str(config)).returncode == 0
    again = cli("train", "--config", str(config), "--epoch", "3", "--lr", "0.01")
    assert again.returncode == 2 and "Traceback" not in again.stderr
    last = again.stderr.strip().splitlines()[-1]
    assert "epoch 1 -> 3, lr 0.002 -> 0.01" in last and f"pretrained: {work / 'best.pth'}" in last
    assert cli("train", "--config", str(config)).returncode == 0  # unchanged settings resume as before


def test_ctrl_c_leaves_the_run_interrupted_not_failed(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=6)
    proc = _train_until(config, work / "epoch_1.pth", stderr=subprocess.PIPE)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    progress = json.loads((work / "progress.json").read_text())
    assert progress["phase"] == "interrupted"
