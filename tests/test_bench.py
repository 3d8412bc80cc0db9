"""Every benchmark runs in --quick mode and ends with its `name: value` headline lines (no timing asserts)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[1] / "bench"
HEADLINE = re.compile(r"^([a-z0-9_]+): (\S+)$")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Source videos shared by the data-pipeline and inference runs of this module."""
    return tmp_path_factory.mktemp("bench-cache")


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a bench script; return its trailing headlines (every line after the table must be one)."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    heads: dict[str, float] = {}
    for line in reversed(lines):
        m = HEADLINE.match(line)
        if not m:
            break
        heads[m.group(1)] = float(m.group(2))
    assert heads, f"no headline lines at the end of:\n{proc.stdout}"
    assert len(lines) > len(heads), "a table must come before the headlines"
    return heads


def _positive(heads: dict[str, float], *names: str) -> None:
    for name in names:
        assert name in heads, f"missing headline {name!r}: {sorted(heads)}"
        assert math.isfinite(heads[name]) and heads[name] > 0, (name, heads[name])


def test_data_pipeline_prints_both_ratios_and_records(cache: Path, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    heads = _run("data_pipeline.py", "--cache-dir", str(cache), "--record", env={"AUTOX_BENCH_RESULTS": str(results)})
    _positive(
        heads, "pipeline_ratio_720p", "prepared_ratio_720p", "pipeline_ratio_320p", "mmaction_clips_per_core_s_720p"
    )
    text = results.read_text()
    assert "## CPU results" in text and "Machine: " in text and "Command: `" in text and "pipeline_ratio_720p: " in text
    assert "data_pipeline.py --quick" in text


def test_train_step_runs_on_cpu(tmp_path: Path) -> None:
    heads = _run("train_step.py", "--device", "cpu")
    for model in ("swin_micro", "tsm_tiny", "x3d_tiny", "uniformerv2_tiny", "videomae_tiny"):  # every family
        _positive(
            heads,
            f"{model}_seed_fp32_clips_per_s",
            f"{model}_bf16_clips_per_s",
            f"{model}_bf16_mfu_pct",
            f"{model}_gflops_per_clip",
            f"{model}_params_m",
            f"{model}_gflops_fwd_per_clip",
        )
    # --complexity: parameters and forward GFLOPs only, at each model's recipe clip (here the tiny ones).
    sizes = _run("train_step.py", "--device", "cpu", "--complexity")
    _positive(sizes, "tsm_tiny_params_m", "videomae_tiny_gflops_fwd_per_clip")
    assert not any(k.endswith("_clips_per_s") for k in sizes)


def test_inference_runs_on_cpu(cache: Path) -> None:
    heads = _run("inference.py", "--device", "cpu", "--cache-dir", str(cache))
    _positive(heads, "seed_videos_per_s", "ours_videos_per_s", "inference_speedup", "tuned_batch_size")


def test_e2e_runs_on_cpu(cache: Path) -> None:
    heads = _run("e2e.py", "--device", "cpu", "--cache-dir", str(cache))
    _positive(heads, "e2e_clips_per_s", "compute_only_clips_per_s")
    assert 0 <= heads["input_wait_share"] <= 1


def test_search_runs_on_cpu(cache: Path) -> None:
    heads = _run("search.py", "--cache-dir", str(cache))
    for name in ("default_top1", "random_top1", "tpe_top1", "tpe_asha_top1"):
        assert 0 < heads[name] <= 1, (name, heads)
    assert 0 < heads["asha_epoch_fraction"] <= 1


def test_search_accuracy_against_latency_runs_on_cpu_and_records(cache: Path, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    small = ("--trials", "2", "--epochs", "1", "--per-class", "2", "--record", "--shared")
    heads = _run(
        "search.py", "--objectives", "top1,latency", "--cache-dir", str(cache), *small,
        env={"AUTOX_BENCH_RESULTS": str(results)},
    )  # fmt: skip
    _positive(heads, "pareto_points", "default_latency_ms", "limit")
    assert heads["limit"] == pytest.approx(heads["default_latency_ms"] * 0.5, rel=1e-2)
    for name in ("constrained_top1", "top1_only_constrained_top1", "top1_only_best_top1", "pareto_best_top1"):
        assert 0 <= heads[name] <= 1, (name, heads)
    text = results.read_text()
    assert "Search, accuracy against latency (quick)" in text and "2 CPU cores shared" in text
    assert "pareto_points: " in text


def test_timeline_bench_measures_both_passes_and_records(cache: Path, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    heads = _run("timeline.py", "--cache-dir", str(cache), "--record", env={"AUTOX_BENCH_RESULTS": str(results)})
    _positive(heads, "timeline_vs_decode", "timeline_video_s_per_s", "decode_video_s_per_s")
    # Both passes read the same file: the ratio is the two video-seconds-per-second figures' ratio.
    assert heads["timeline_vs_decode"] == pytest.approx(
        heads["decode_video_s_per_s"] / heads["timeline_video_s_per_s"], rel=1e-2
    )
    text = results.read_text()
    assert "### Timeline (quick)" in text and "timeline.py --quick" in text and "30 seconds predicted" in text


def test_serve_compares_onnx_and_torch_over_http_and_records(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n")
    heads = _run("serve.py", "--record", env={"AUTOX_BENCH_RESULTS": str(results)})
    _positive(heads, "onnx_vs_torch_rps", "onnx_rps_c1", "onnx_rps_c16", "torch_rps_c1", "torch_rps_c16")
    _positive(heads, "onnx_p95_ms_c16", "torch_p95_ms_c16")
    text = results.read_text()
    assert "### Serving (quick)" in text and "onnx_vs_torch_rps: " in text and "serve.py --quick" in text
