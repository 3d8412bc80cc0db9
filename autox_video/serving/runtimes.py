"""The network behind the server: ONNX Runtime on an export folder, or torch eager on a checkpoint."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autox_video.export import contract as contract_mod
from autox_video.export.contract import Contract


@dataclass
class Runtime:
    """`run(batch)`: [N, *input_shape] float pixels -> [N, classes] probabilities (float32)."""

    kind: str  # onnx | torch | remote (serving/remote.py: a predictor over v2 REST)
    contract: Contract
    run: Callable[[np.ndarray], np.ndarray]


def onnx_runtime(model_dir: Path) -> Runtime:
    """ONNX Runtime on model_dir/model.onnx, preprocessing from model_dir/model.json."""
    from autox_video.export.onnx_export import session

    spec = contract_mod.read(model_dir / "model.json")
    sess = session(model_dir / "model.onnx")
    dtype = np.float16 if spec.precision == "fp16" else np.float32

    def run(batch: np.ndarray) -> np.ndarray:
        out = sess.run(None, {spec.input_name: batch.astype(dtype, copy=False)})[0]  # type: ignore[attr-defined]
        return np.asarray(out, dtype=np.float32)

    return Runtime("onnx", spec, run)


def torch_runtime(checkpoint: str) -> Runtime:
    """torch eager on a checkpoint (GPU when there is one), with the same contract an export would write."""
    import torch

    from autox_video.export import checkpoint as ckpt_mod
    from autox_video.export.run import build_net

    loaded = ckpt_mod.load(checkpoint)
    names = loaded.class_names or [str(i) for i in range(loaded.num_classes)]
    spec = contract_mod.build(
        loaded.cfg, names, checkpoint=loaded.source, sha256=loaded.sha256, precision="fp32", opset=0, exporter="none"
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_net(loaded).to(device)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)).float().cpu().numpy()

    return Runtime("torch", spec, run)


def load(checkpoint: str | None, model_dir: str | None, kind: str | None) -> Runtime:
    """The runtime asked for: a checkpoint serves torch (or onnx, exported on the fly); a folder serves onnx."""
    if model_dir is not None:
        if kind == "torch":
            return torch_runtime(contract_mod.read(Path(model_dir) / "model.json").checkpoint)
        return onnx_runtime(Path(model_dir))
    assert checkpoint is not None
    if kind == "onnx":
        from autox_video.export.run import export_checkpoint

        out = Path(tempfile.mkdtemp(prefix="autox-serve-"))
        atexit.register(shutil.rmtree, out, ignore_errors=True)  # the session keeps its own copy loaded
        export_checkpoint(checkpoint, str(out))
        return onnx_runtime(out)
    return torch_runtime(checkpoint)
