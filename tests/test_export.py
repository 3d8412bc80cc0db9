"""`autox-video export`: ONNX parity with torch on real decoded clips, model.json, Triton's config.pbtxt."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from exportutil import decoded, random_checkpoint
from tinyrun import cli, make_tiny_dataset, write_config

from autox_video.errors import CheckpointError, ConfigError
from autox_video.export import checkpoint, contract, export_checkpoint, onnx_export, triton
from autox_video.export.run import build_net

FAMILIES = ["swin_micro", "tsm_tiny", "x3d_tiny", "uniformerv2_tiny", "videomae_tiny"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny real-video dataset (both containers)."""
    return make_tiny_dataset(tmp_path_factory.mktemp("export-data"), per_class=2)


@pytest.fixture(scope="module")
def trained(dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pth of a real 1-epoch swin_micro training (the only training in the export and serve tests)."""
    root = tmp_path_factory.mktemp("export-run")
    config = write_config(root / "config.yaml", dataset, root / "work", epoch=1)
    run = cli("train", "--config", str(config))
    assert run.returncode == 0, run.stderr[-2000:]
    best = root / "work" / "best.pth"
    assert best.is_file()
    return best


def _test_videos(ds: Any) -> list[Path]:
    return sorted(p for p in (Path(ds.data_root) / "videos" / "test").iterdir() if p.is_file())


def _ort(out: Path, clips: np.ndarray) -> np.ndarray:
    sess = onnx_export.session(out / "model.onnx")
    return sess.run(None, {"clips": clips.astype(np.float32)})[0]  # type: ignore[attr-defined]


def test_cli_export_of_a_trained_best_pth_writes_a_verified_onnx_model_json_and_a_triton_repository(
    trained: Path, dataset: Any
) -> None:
    run = cli("export", "--checkpoint", str(trained))
    assert run.returncode == 0, run.stderr[-2000:]
    out = trained.parent / "export"  # default: beside best.pth
    assert str(out) in run.stdout and "max abs diff" in run.stdout
    spec = json.loads((out / "model.json").read_text())
    names = Path(dataset.classes_file).read_text().split()
    assert spec["class_names"] == names and spec["num_classes"] == len(names)
    assert (spec["clip_len"], spec["frame_interval"], spec["size"], spec["clips"], spec["crops"]) == (8, 2, 32, 1, 1)
    assert spec["sampling"] == "clip" and spec["input_layout"] == "NCTHW" and spec["input_shape"] == [1, 3, 8, 32, 32]
    assert spec["mean"] == [123.675, 116.28, 103.53] and spec["std"] == [58.395, 57.12, 57.375]
    assert spec["checkpoint"] == str(trained)
    assert spec["checkpoint_sha256"] == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert spec["opset"] == onnx_export.OPSET and torch.__version__ in spec["exporter"]
    assert spec["precision"] == "fp32" and spec["verified"]["max_abs_diff"] <= 1e-4
    # Triton's own parser reads the repository's config, with the shapes and batching filled in.
    config = triton.parse(out / "triton" / "autox_video" / "config.pbtxt")
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == triton.MAX_BATCH  # type: ignore[attr-defined]
    assert list(config.input[0].dims) == [1, 3, 8, 32, 32] and list(config.output[0].dims) == [len(names)]  # type: ignore[attr-defined]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0  # type: ignore[attr-defined]
    assert (out / "triton" / "autox_video" / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    assert (out / "triton" / "autox_video" / "labels.txt").read_text().split() == names
    # Parity on real decoded clips, against the recognizer's own test path (mmaction2's test_step).
    loaded = checkpoint.load(str(trained))
    clips = decoded(_test_videos(dataset), contract.read(out / "model.json"))
    onnx_probs = _ort(out, clips)
    from mmaction.structures import ActionDataSample

    with torch.no_grad():
        samples = loaded.model.test_step(
            dict(inputs=[torch.from_numpy(c).to(torch.uint8) for c in clips],
                 data_samples=[ActionDataSample() for _ in clips])
        )  # fmt: skip
    reference = np.stack([s.pred_scores.item.float().numpy() for s in samples])
    assert np.abs(onnx_probs - reference).max() <= 1e-4
    assert onnx_probs.shape == (len(clips), len(names)) and np.allclose(onnx_probs.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("backbone", FAMILIES)
def test_every_tiny_family_exports_with_parity_on_real_decoded_clips(
    backbone: str, dataset: Any, tmp_path: Path
) -> None:
    ckpt = random_checkpoint(tmp_path / "run" / "best.pth", backbone, ["a", "b", "c"], test_clips=2)
    result = export_checkpoint(str(ckpt), str(tmp_path / "out"))
    spec = result.contract
    clips = decoded(_test_videos(dataset), spec)  # the pipeline's tensors have model.json's input_shape
    assert list(clips.shape[1:]) == spec.input_shape
    with torch.no_grad():
        reference = build_net(checkpoint.load(str(ckpt)))(torch.from_numpy(clips)).numpy()
    diff = float(np.abs(_ort(tmp_path / "out", clips) - reference).max())
    print(f"{backbone}: max abs diff {diff:.3g}")
    assert diff <= 1e-4
    assert reference.std(axis=0).max() > 1e-3  # the videos get different answers: the check means something


def test_export_to_s3_from_s3_through_the_api(trained: Path, bucket: str) -> None:
    from autox_video import storage
    from autox_video.api import AutoXVideo

    storage.upload(trained, f"s3://{bucket}/runs/r1/best.pth")
    out = AutoXVideo().export(checkpoint=f"s3://{bucket}/runs/r1/")  # a run prefix: its best.pth
    assert out == f"s3://{bucket}/runs/r1/export"
    keys = set(storage.list_keys(out))
    assert {"model.json", "model.onnx", "triton/autox_video/config.pbtxt", "triton/autox_video/1/model.onnx"} <= {
        k.removeprefix("runs/r1/export/") for k in keys
    } | keys
    spec = json.loads(storage.read_text(f"{out}/model.json"))
    assert spec["checkpoint"] == f"s3://{bucket}/runs/r1/best.pth"


def test_fp16_export_is_checked_too(tmp_path: Path) -> None:
    ckpt = random_checkpoint(tmp_path / "best.pth", "swin_micro", ["a", "b"])
    result = export_checkpoint(str(ckpt), str(tmp_path / "out"), fp16=True)
    assert result.contract.precision == "fp16" and result.max_abs_diff <= onnx_export.TOLERANCE["fp16"]
    config = triton.parse(tmp_path / "out" / "triton" / "autox_video" / "config.pbtxt")
    from tritonclient.grpc import model_config_pb2

    assert config.input[0].data_type == config.output[0].data_type == model_config_pb2.TYPE_FP16  # type: ignore[attr-defined]


def test_bad_sources_and_flags_fail_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not an autox-video checkpoint"):
        export_checkpoint(str(foreign))
    with pytest.raises(ConfigError, match="no such file"):
        export_checkpoint(str(tmp_path / "missing.pth"))
    run = cli("export", "--checkpoint", str(foreign))
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "not an autox-video checkpoint" in run.stderr


def test_a_missing_serve_extra_is_named_in_one_line() -> None:
    from autox_video.export.run import require_extra

    require_extra("autox-video export")  # installed here
    with pytest.raises(ConfigError, match=r"needs no_such_module_x: pip install 'autox-video\[serve\]'"):
        require_extra("autox-video export", ("onnx", "no_such_module_x"))


def test_an_operator_the_exporter_cannot_handle_is_named(tmp_path: Path) -> None:
    from autox_video.errors import ExportError

    class Unexportable(torch.nn.Module):
        def forward(self, clips: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten.histc(clips, bins=4).expand(clips.shape[0], 4)

    with pytest.raises(ExportError, match=r"tiny_test: cannot export to ONNX: .*operator aten::histc"):
        onnx_export.export(Unexportable(), torch.rand(2, 3), tmp_path / "m.onnx", backbone="tiny_test")
