"""The `export` config key: a real tiny training leaves a whole export of its best.pth under work_dir/export/
(locally and in S3), kept when it is there already, written again when a kill left it incomplete."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tinyrun import cli, make_tiny_dataset, s3_config, upload_tree, write_config

from autox_video.export import onnx_export, triton
from autox_video.spec.serving import export_files


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny real-video dataset (both containers)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("train-export-data"), per_class=2)


def _check_export(folder: Path, best: Path, names: list[str]) -> None:
    """A whole export of `best`: model.json naming its sha256, Triton's config parsing, the ONNX model running."""
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == sorted(export_files())
    spec = json.loads((folder / "model.json").read_text())
    assert spec["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert spec["class_names"] == names and spec["input_shape"] == [1, 3, 8, 32, 32]
    config = triton.parse(folder / "triton" / "autox_video" / "config.pbtxt")  # tritonclient's model_config proto
    assert config.name == "autox_video" and config.platform == "onnxruntime_onnx"  # type: ignore[attr-defined]
    assert config.input[0].name == "clips" and list(config.input[0].dims) == [1, 3, 8, 32, 32]  # type: ignore[attr-defined]
    assert list(config.output[0].dims) == [len(names)]  # type: ignore[attr-defined]
    session = onnx_export.session(folder / "model.onnx")
    probs = session.run(None, {"clips": np.zeros((2, 1, 3, 8, 32, 32), np.float32)})[0]  # type: ignore[attr-defined]
    assert probs.shape == (2, len(names)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_export_trained_keeps_an_export_of_the_same_checkpoint_and_redoes_any_other(tmp_path: Path) -> None:
    from exportutil import random_checkpoint

    from autox_video.export.after_training import export_trained

    work = tmp_path / "work"
    best = random_checkpoint(work / "best.pth", "swin_micro", ["a", "b", "c"], seed=1)
    out = Path(export_trained(work, None, ["onnx"]) or "")
    assert out == work / "export"
    _check_export(out, best, ["a", "b", "c"])
    stamp = (out / "model.onnx").stat().st_mtime_ns
    assert export_trained(work, None, ["onnx"]) == str(out) and (out / "model.onnx").stat().st_mtime_ns == stamp
    # Other weights in best.pth (a resumed run's better epoch): its export replaces the old one.
    random_checkpoint(work / "best.pth", "swin_micro", ["a", "b", "c"], seed=2)
    export_trained(work, None, ["onnx"])
    _check_export(out, best, ["a", "b", "c"])
    assert export_trained(work, None, []) is None  # the key unset: nothing exported


@pytest.mark.slow
def test_a_run_with_export_onnx_exports_its_best_pth_once_and_again_after_a_kill_mid_export(
    dataset: Any, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    config = write_config(tmp_path / "config.yaml", dataset, work, epoch=1, export="onnx")
    run = cli("train", "--config", str(config))
    assert run.returncode == 0, run.stderr[-3000:]
    names = Path(dataset.classes_file).read_text().split()
    out = work / "export"
    _check_export(out, work / "best.pth", names)
    assert json.loads((work / "progress.json").read_text())["phase"] == "succeeded"

    # The same command again (a restarted pod of a finished run): the export of this best.pth is kept.
    onnx_before = (out / "model.onnx").stat().st_mtime_ns
    again = cli("train", "--config", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already holds best.pth" in again.stdout + again.stderr
    assert (out / "model.onnx").stat().st_mtime_ns == onnx_before

    # Killed mid-export: model.json (written last) is missing and the repository half there: exported again.
    (out / "model.json").unlink()
    (out / "triton" / "autox_video" / "config.pbtxt").unlink()
    resumed = cli("train", "--config", str(config))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already holds" not in resumed.stdout + resumed.stderr
    _check_export(out, work / "best.pth", names)


@pytest.mark.slow
def test_an_s3_run_with_export_onnx_writes_the_export_under_its_output_prefix(
    s3_server: Any, s3_env: Any, bucket: str, dataset: Any, tmp_path: Path
) -> None:
    client = s3_server.client()
    upload_tree(client, bucket, dataset.root, "data")
    config = s3_config(tmp_path, dataset, bucket, epoch=1, export=["onnx"])
    run = cli("train", "--config", str(config), env={"AUTOX_CACHE_DIR": str(tmp_path / "disk")})
    assert run.returncode == 0, run.stderr[-3000:]
    local = tmp_path / "fetched"
    for rel in export_files():
        target = local / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, f"runs/r1/export/{rel}", str(target))
    best = tmp_path / "best.pth"
    client.download_file(bucket, "runs/r1/best.pth", str(best))
    _check_export(local, best, Path(dataset.classes_file).read_text().split())
