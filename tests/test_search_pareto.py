"""The accuracy/latency search: a trial's own measurement, promotion under a limit, `tune --pick`, a real search."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from exportutil import random_checkpoint
from tinyrun import TINY, cli, make_tiny_dataset, write_config

from autox_video import cli as cli_module
from autox_video.search import ledger
from autox_video.search.measure import measure_checkpoint, time_batches
from autox_video.search.tune import finish
from autox_video.spec.search import LatencyConfig, SearchConfig

NAMES = ["a", "b", "c"]


def _model_json(export: Path) -> dict:
    return json.loads((export / "model.json").read_text())


def _same_file(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def test_time_batches_warms_up_then_takes_the_median_of_the_timed_calls() -> None:
    calls: list[int] = []
    seconds = time_batches(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8 and 0 <= seconds < 1


def test_a_checkpoint_is_exported_and_measured_with_its_own_clip_shape(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    small = random_checkpoint(tmp_path / "small" / "best.pth", "swin_micro", NAMES, img_size=32)
    big = random_checkpoint(tmp_path / "big" / "best.pth", "swin_micro", NAMES, img_size=64)
    on_torch = LatencyConfig(batch_size=2, runtime="torch", warmup=1, repeats=3)
    a = measure_checkpoint(small, on_torch.model_copy(update={"runtime": "onnx"}))
    b = measure_checkpoint(big, on_torch)
    for figures, size, runtime in ((a, 32, "onnx"), (b, 64, "torch")):
        assert set(ledger.FIGURES) <= figures.keys()
        assert figures["clip_shape"] == [1, 3, 8, size, size] and figures["batch_size"] == 2
        assert figures["runtime"] == runtime and figures["precision"] == "fp32"  # fp16 is timed on a GPU only
        assert figures["latency_ms"] > 0
        assert figures["videos_per_s"] == pytest.approx(2000 / figures["latency_ms"], rel=1e-3)
    assert a["model_params"] == b["model_params"] > 0  # same network, 4x the pixels: counted, not timed
    assert b["gflops"] > 3 * a["gflops"] > 0
    # ONNX times the exported file (the one `serve` loads), exported beside the checkpoint; torch exports nothing.
    assert _model_json(tmp_path / "small" / "export")["input_shape"] == [1, 3, 8, 32, 32]
    assert not (tmp_path / "big" / "export").exists()


def _fake_search(work: Path) -> list[dict]:
    """Two finished trials (random weights) and their ledger: 0 big, accurate and slow; 1 small and fast."""
    rows = []
    for number, size, top1, ms in ((0, 64, 0.8, 40.0), (1, 32, 0.6, 10.0), (2, 32, 0.9, None)):
        tdir = work / ledger.trial_dir_name(number)
        if number < 2:
            random_checkpoint(tdir / "best.pth", "swin_micro", NAMES, seed=number, img_size=size)
            (tdir / "config.yaml").write_text(yaml.safe_dump({"img_size": size}))
        rows.append(
            {
                "number": number,
                "state": "pruned" if number == 2 else "succeeded",
                "params": {"img_size": size},
                "overrides": {"img_size": size},
                "epochs": 2,
                "best_top1": top1,
                "dir": ledger.trial_dir_name(number),
                "top1_by_epoch": {"2": top1},
                "latency_ms": ms,
                "videos_per_s": None if ms is None else 1000 / ms,
                "gflops": None,
                "model_params": None,
            }
        )
    ledger.write(work / ledger.LEDGER, rows)
    return rows


def test_the_limit_promotes_the_faster_trial_and_its_export_follows(tmp_path: Path) -> None:
    work = tmp_path / "search"
    rows = _fake_search(work)
    lines: list[str] = []
    free = finish(work, rows, SearchConfig(objectives=["top1", "latency"]), echo=lines.append)
    assert free.best_trial == 0 and free.front == [0, 1]
    assert _same_file(work / "best.pth", work / "trials/0000/best.pth")
    assert _model_json(work / "export")["input_shape"][-1] == 64
    assert (work / "search.png").stat().st_size > 0
    lines = "\n".join(lines).splitlines()
    assert "Pareto front (top-1 vs latency; * promoted):" in lines
    head = next(i for i, line in enumerate(lines) if line.startswith("trial  top-1"))
    assert [line.split()[:3] for line in lines[head + 1 : head + 3]] == [["0", "*", "0.8000"], ["1", "0.6000", "10.00"]]

    limited = SearchConfig(objectives=["top1", "latency"], latency={"max_ms": 20})
    lines.clear()
    result = finish(work, rows, limited, echo=lines.append)
    assert result.best_trial == 1 and result.export_dir == work / "export"
    assert _same_file(work / "best.pth", work / "trials/0001/best.pth")
    assert _model_json(work / "export")["input_shape"][-1] == 32
    summary = json.loads((work / "search.json").read_text())
    assert summary["best_trial"] == 1 and summary["promotion"] == "the most accurate with latency <= 20 ms"
    assert [p["trial"] for p in summary["pareto"]] == [0, 1] and summary["limit"] == "latency <= 20 ms"
    assert "best: trial 1 (the most accurate with latency <= 20 ms), top-1 0.6000, 10.00 ms" in lines[-1]


def test_tune_pick_promotes_trial_n_afterwards_and_refuses_what_it_cannot(tmp_path: Path, capsys) -> None:
    work = tmp_path / "search"
    _fake_search(work)
    config = tmp_path / "config.yaml"
    search = {"objectives": ["top1", "latency"], "latency": {"max_ms": 20}}
    config.write_text(yaml.safe_dump({**TINY, "work_dir": str(work), "search": search}))
    assert cli_module.main(["tune", "--config", str(config), "--pick", "0"]) == 0
    assert "best: trial 0 (picked with --pick)" in capsys.readouterr().out
    assert _same_file(work / "best.pth", work / "trials/0000/best.pth")
    assert _model_json(work / "export")["input_shape"][-1] == 64
    assert json.loads((work / "search.json").read_text())["promotion"] == "picked with --pick"
    for number, message in ((7, "--pick 7: no trial 7 in"), (2, "--pick 2: trial 2 is pruned with no best.pth")):
        assert cli_module.main(["tune", "--config", str(config), "--pick", str(number)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    shutil.rmtree(work)
    assert cli_module.main(["tune", "--config", str(config), "--pick", "0"]) == 2
    assert "no search here; run `autox-video tune` first" in capsys.readouterr().err


def test_the_python_api_picks_a_trial_of_the_front_as_tune_pick_does(tmp_path: Path) -> None:
    from autox_video import AutoXVideo
    from autox_video.errors import ConfigError

    work = tmp_path / "search"
    _fake_search(work)
    search = {"objectives": ["top1", "latency"], "latency": {"max_ms": 20}}
    auto = AutoXVideo(**{**TINY, "work_dir": str(work), "search": search})
    result = auto.pick(0)  # the accurate trial over the limit: the user's call, not the limit's
    assert auto.last_search is result and result.best_trial == 0 and result.front == [0, 1]
    assert result.best_checkpoint == work / "best.pth" and result.export_dir == work / "export"
    assert _same_file(work / "best.pth", work / "trials/0000/best.pth")
    assert _model_json(work / "export")["input_shape"][-1] == 64
    assert auto.pick(1).best_top1 == 0.6 and _model_json(work / "export")["input_shape"][-1] == 32
    with pytest.raises(ConfigError, match="trial 2 is pruned with no best.pth"):
        auto.pick(2)


# --- a real search: two families ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


def _rows(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "trials.jsonl").read_text().splitlines()]


# Swin with three clips per video learns (the config's lr) and costs three times its compute; X3D with
# one clip at an lr that moves nothing stays at its initial guess: the larger family accurate and slow
# against the smaller one fast and poor, the trade-off a front shows.
BIG = {"backbone": "swin_micro", "test_clips": 3, "lr": TINY["lr"]}
SMALL = {"backbone": "x3d_tiny", "test_clips": 1, "lr": 1e-7}
FIGURES = ledger.FIGURES


@pytest.mark.slow
def test_two_families_front_limit_promotion_export_and_a_killed_search_keeps_figures(dataset, tmp_path: Path) -> None:
    work = tmp_path / "search"
    search = dict(
        sampler="grid",
        pruner="none",
        objectives=["top1", "latency"],
        latency={"warmup": 2, "repeats": 5},
        space={"variant": [BIG, SMALL]},
    )
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3, search=search)
    cmd = [sys.executable, "-m", "autox_video", "tune", "--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoint = work / "trials/0001/epoch_1.pth"  # trial 0 measured and told; trial 1 under way
    deadline = time.time() + 600
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _rows(work)
    assert [r["state"] for r in before] == ["succeeded", "running"]
    assert before[0]["latency_ms"] > 0 and before[0]["gflops"] > 0 and before[1]["latency_ms"] is None

    run = cli("tune", "--config", str(config))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "trial 1 started (resuming)" in run.stdout
    rows = _rows(work)
    assert [r["state"] for r in rows] == ["succeeded", "succeeded"]
    assert {k: rows[0][k] for k in FIGURES} == {k: before[0][k] for k in FIGURES}  # kept, not re-measured
    by_family = {r["overrides"]["backbone"]: r for r in rows}
    big, small = by_family["swin_micro"], by_family["x3d_tiny"]  # the grid's order is the sampler's
    assert all(r[k] is not None for r in rows for k in FIGURES)
    assert big["gflops"] > 2.5 * small["gflops"] and big["latency_ms"] > small["latency_ms"]
    assert big["best_top1"] > small["best_top1"]
    # The front holds both; with no limit the most accurate is promoted, and exported beside best.pth.
    assert "Pareto front (top-1 vs latency; * promoted):" in run.stdout
    summary = json.loads((work / "search.json").read_text())
    assert [p["trial"] for p in summary["pareto"]] == [big["number"], small["number"]]
    assert summary["best_trial"] == big["number"]
    assert _same_file(work / "best.pth", work / big["dir"] / "best.pth")
    exported = _model_json(work / "export")
    assert exported["backbone"] == "swin_micro" and exported["input_shape"][0] == 3  # views per video
    assert (work / "search.png").stat().st_size > 0

    # A limit between the two: the same command (no training) promotes the faster one, and exports it.
    limit = (big["latency_ms"] + small["latency_ms"]) / 2
    cfg = yaml.safe_load(config.read_text())
    cfg["search"]["latency"]["max_ms"] = limit
    config.write_text(yaml.safe_dump(cfg))
    again = cli("tune", "--config", str(config))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert "started" not in again.stdout
    assert f"best: trial {small['number']} (the most accurate with latency <= {limit:g} ms)" in again.stdout
    assert _same_file(work / "best.pth", work / small["dir"] / "best.pth")
    exported = _model_json(work / "export")
    assert exported["backbone"] == "x3d_tiny" and exported["input_shape"][0] == 1
    assert [{k: r[k] for k in FIGURES} for r in _rows(work)] == [{k: r[k] for k in FIGURES} for r in rows]


@pytest.mark.slow
def test_a_multi_objective_search_prunes_on_top1_in_the_trial_process_and_measures_the_pruned(
    dataset, tmp_path: Path
) -> None:
    work = tmp_path / "search"
    search = dict(
        sampler="grid",
        min_epochs=2,
        objectives=["top1", "throughput"],
        latency={"warmup": 1, "repeats": 3, "min_videos_per_s": 1e9},  # a limit no trial meets
        space={"lr": [TINY["lr"], 10.0]},
    )
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=3, search=search)
    run = cli("tune", "--config", str(config))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    good, chance = _rows(work)
    assert good["state"] == "succeeded" and good["epochs"] == 3
    # ASHA stopped the chance-level trial at its rung (epoch 2) on top-1 alone, in its own process.
    assert chance["state"] == "pruned" and chance["epochs"] == 2 and chance["top1_by_epoch"].keys() == {"1", "2"}
    assert all(r["videos_per_s"] > 0 and r["model_params"] > 0 for r in (good, chance))  # the pruned one too
    assert "best: trial 0 (the most accurate: no trial has throughput >= 1e+09 videos/s)" in run.stdout
    summary = json.loads((work / "search.json").read_text())
    assert [p["trial"] for p in summary["pareto"]] == [0]  # a pruned trial is on no front
    assert _model_json(work / "export")["input_shape"] == [1, 3, 8, 32, 32]


def _yaml_after(text: str, marker: str) -> dict:
    start = text.index("```yaml", text.index(marker)) + len("```yaml")
    return yaml.safe_load(text[start : text.index("```", start)])


@pytest.mark.parametrize(
    ("doc", "marker"), [("docs/guide/search.md", "## Accuracy against latency"), ("README.md", "within 40 ms")]
)
def test_the_accuracy_latency_examples_are_valid_configs(doc: str, marker: str) -> None:
    from autox_video.config import build_config
    from autox_video.search import space as sp

    text = (Path(__file__).resolve().parents[1] / doc).read_text()
    cfg = build_config(_yaml_after(text, marker))
    assert isinstance(cfg.search, SearchConfig) and cfg.search.space is not None
    assert cfg.search.speed_objective == "latency" and cfg.search.latency.max_ms == 40
    assert "backbone" in sp.distributions(cfg.search.space)
