"""curves.png after every validation of a real tiny run (local and S3), the report `test` writes beside
results.json, and search.png from a search's trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tinyrun import cli, make_tiny_dataset, s3_config, upload_tree, write_config

from autox_video.search import ledger
from autox_video.search.plot import SEARCH_PNG, draw_search
from autox_video.training.curves import MAX_POINTS, compact, draw_curves, new_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking that it is one and that it decodes whole."""
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as img:
        img.load()
        return img.size


def test_history_compacts_to_half_keeping_later_iterations() -> None:
    h = new_history()
    h.update(iter=[1, 2, 3, 4, 5], loss=[1.0, 3.0, 2.0, 4.0, 9.0], lr=[0.1, 0.2, 0.3, 0.4, 0.5])
    compact(h)
    assert h == {"stride": 2, "iter": [2, 4, 5], "loss": [2.0, 3.0, 9.0], "lr": [0.2, 0.4, 0.5]}


def test_curves_png_from_a_history_and_metrics(tmp_path: Path) -> None:
    n = MAX_POINTS
    h = {"stride": 1, "iter": list(range(1, n + 1)), "loss": [2.0 / (1 + i / 100) for i in range(n)],
         "lr": [1e-3 * (1 - i / n) for i in range(n)]}  # fmt: skip
    rows = [{"epoch": e, "top1": t, "top5": min(1.0, t + 0.2)} for e, t in [(1, 0.3), (2, 0.6), (3, 0.5)]]
    draw_curves(tmp_path / "curves.png", h, rows)
    assert png_size(tmp_path / "curves.png") == (960, 256)  # 12 x 3.2 in at 80 dpi
    draw_curves(tmp_path / "empty.png", new_history(), [])  # before the first iteration: empty axes, no error
    assert png_size(tmp_path / "empty.png") == (960, 256)


def _trial(work: Path, number: int, top1: list[float]) -> None:
    tdir = work / ledger.trial_dir_name(number)
    tdir.mkdir(parents=True)
    (tdir / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": i + 1, "top1": t}) + "\n" for i, t in enumerate(top1))
    )


def test_search_png_draws_every_trial_with_a_curve(tmp_path: Path) -> None:
    _trial(tmp_path, 0, [0.3, 0.5, 0.7])
    _trial(tmp_path, 1, [0.1])  # pruned at its first rung
    _trial(tmp_path, 2, [0.4, 0.6, 0.65])
    rows: list[dict[str, Any]] = [
        {"number": 0, "state": "succeeded", "best_top1": 0.7},
        {"number": 1, "state": "pruned", "best_top1": 0.1},
        {"number": 2, "state": "succeeded", "best_top1": 0.65},
        {"number": 3, "state": "failed", "best_top1": None},  # no metrics.jsonl: left out
    ]
    out = draw_search(tmp_path, rows)
    assert out == tmp_path / SEARCH_PNG
    w, h = png_size(out)
    assert (w, h) == (675, 378)  # 7.5 x 4.2 in at 90 dpi


def test_the_plane_joins_the_front_dashes_the_limit_on_either_axis_and_stars_the_promoted() -> None:
    from autox_video.report import plots
    from autox_video.search.plot import draw_plane
    from autox_video.spec.search import LatencyConfig

    rows: list[dict[str, Any]] = [
        {"number": 0, "state": "succeeded", "best_top1": 0.9, "latency_ms": 4.0, "videos_per_s": 1000.0},
        {"number": 1, "state": "succeeded", "best_top1": 0.7, "latency_ms": 1.0, "videos_per_s": 4000.0},
        {"number": 2, "state": "succeeded", "best_top1": 0.6, "latency_ms": 3.0, "videos_per_s": 1333.0},
        {"number": 3, "state": "pruned", "best_top1": 0.3, "latency_ms": 0.5, "videos_per_s": 8000.0},
    ]
    for speed, limit, x in (("latency", LatencyConfig(batch_size=4, max_ms=2.0), 2.0),
                            ("throughput", LatencyConfig(batch_size=4, max_ms=2.0), 2000.0),
                            ("latency", LatencyConfig(min_videos_per_s=500.0), 2.0)):  # fmt: skip
        ax = plots.new_figure(6.0, 4.0).add_subplot()
        draw_plane(ax, rows, speed, 1, limit)
        lines = {line.get_label(): line for line in ax.get_lines()}
        front_line = lines["Pareto front"]
        assert sorted(front_line.get_ydata()) == [0.7, 0.9]  # trial 2 is dominated, trial 3 was pruned
        dashed = lines[next(k for k in lines if k.startswith(("latency <=", "throughput >=")))]
        assert list(dashed.get_xdata()) == [x, x] and dashed.get_linestyle() == "--"
        assert "promoted (trial 1)" in lines
    ax = plots.new_figure(6.0, 4.0).add_subplot()
    draw_plane(ax, rows, "latency", 0, LatencyConfig())  # no limit: no dashed line
    assert not any(line.get_linestyle() == "--" for line in ax.get_lines())


# --- real runs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.mark.slow
def test_tiny_run_draws_curves_and_test_writes_the_report_beside_results(dataset, tmp_path: Path) -> None:
    work = tmp_path / "run"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=2)
    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    w, h = png_size(work / "curves.png")
    assert (w, h) == (960, 256)
    assert (work / "curves.png").stat().st_size > 15_000  # three panels with lines, not empty axes
    # The loss/lr history rides in the checkpoint, so a resumed run draws its whole past.
    from autox_video.training.checkpoints import load_state, resumable_torch_load

    with resumable_torch_load():  # the message hub's types, allowed as mmengine's resume allows them
        ckpt = load_state(work / "epoch_2.pth")
    history = ckpt["message_hub"]["runtime_info"]["autox_curves"]
    iters = ckpt["meta"]["iter"]
    assert iters > 2 and history["iter"] == list(range(1, iters + 1)) and len(history["lr"]) == iters

    out = tmp_path / "out" / "results.json"
    tested = cli("test", "--config", str(config), "--test-results-path", str(out))
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert f"report: {out.parent / 'report.html'}" in tested.stdout
    results = json.loads(out.read_text())
    assert results["checkpoint_epoch"] in (1, 2) and results["config"]["backbone"] == "swin_micro"
    report = json.loads((out.parent / "report.json").read_text())
    assert report["summary"]["top1"] == pytest.approx(results["metrics"]["top1"])
    assert [c["name"] for c in report["per_class"]] == dataset.classes
    assert sum(c["support"] for c in report["per_class"]) == len(results["predictions"])
    page = (out.parent / "report.html").read_text()
    assert 'id="confusion-matrix"' in page and "data:image/png;base64," in page

    # Later: `autox-video report` redraws it from results.json alone.
    (out.parent / "report.html").unlink()
    again = cli("report", str(out))
    assert again.returncode == 0 and (out.parent / "report.html").is_file()


@pytest.mark.slow
def test_s3_run_uploads_curves_and_the_report_lands_beside_s3(dataset, tmp_path: Path, bucket: str, s3_env) -> None:  # type: ignore[no-untyped-def]
    client = s3_env.client()
    upload_tree(client, bucket, Path(dataset.data_root), "data")
    config = s3_config(tmp_path, dataset, bucket, epoch=1)
    results_uri = f"s3://{bucket}/results/r1/results.json"
    done = cli("train", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    curves = tmp_path / "curves.png"
    client.download_file(bucket, "runs/r1/curves.png", str(curves))
    assert png_size(curves) == (960, 256)

    tested = cli("test", "--config", str(config), "--test-results-path", results_uri)
    assert tested.returncode == 0, tested.stderr[-3000:]
    assert f"report: s3://{bucket}/results/r1/report.html" in tested.stdout
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="results/r1/")["Contents"]}
    assert keys == {"results/r1/results.json", "results/r1/report.json", "results/r1/report.html"}
    results = json.loads(client.get_object(Bucket=bucket, Key="results/r1/results.json")["Body"].read())
    assert results["checkpoint_source"] == f"s3://{bucket}/runs/r1/"
