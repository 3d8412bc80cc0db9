"""torch -> ONNX with the installed torch's exporter (dynamo), dynamic batch axis, then checked in ONNX Runtime."""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from autox_video.errors import ExportError

OPSET = 18
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


def exporter_version() -> str:
    """Which exporter wrote the file (model.json's `exporter`)."""
    return f"torch.onnx (dynamo) torch {torch.__version__}"


def _operator(err: BaseException) -> str:
    """The aten operator an exporter error names (else the error's first line)."""
    text = f"{err}\n{err.__cause__ or ''}"
    found = re.search(r"aten[.:]{1,2}([A-Za-z0-9_]+)", text)
    return f"aten::{found.group(1)}" if found else (str(err).splitlines() or [type(err).__name__])[0][:200]


def export(net: torch.nn.Module, example: torch.Tensor, path: Path, *, backbone: str, opset: int = OPSET) -> None:
    """Write `net` (one input `clips`, one output `probs`, batch axis dynamic) as a single .onnx file."""
    from autox_video.export.contract import INPUT_NAME, OUTPUT_NAME

    batch = torch.export.Dim("batch", min=1, max=1024)
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx"):  # INFO lines per deduplicated initializer
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's own deprecation and tracing notes
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"clips": {0: batch}},
                opset_version=opset,
                external_data=False,
                verbose=False,
            )
        assert program is not None
        program.save(str(path), external_data=False)
    except Exception as err:
        raise ExportError(
            f"{backbone}: cannot export to ONNX: torch {torch.__version__}'s exporter fails on operator "
            f"{_operator(err)}; serve this checkpoint with `autox-video serve --runtime torch`"
        ) from err


def session(path: Path) -> object:
    """An ONNX Runtime CPU session (CUDA when onnxruntime-gpu and a GPU are there)."""
    import onnxruntime as ort

    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
    return ort.InferenceSession(str(path), options, providers=providers)


def max_abs_diff(net: torch.nn.Module, path: Path, clips: torch.Tensor) -> float:
    """Largest |ONNX Runtime - torch| over the probabilities of `clips`."""
    from autox_video.export.contract import INPUT_NAME

    with torch.no_grad():
        ref = net(clips).float().numpy()
    out = session(path).run(None, {INPUT_NAME: clips.numpy()})[0]  # type: ignore[attr-defined]
    return float(np.abs(out.astype(np.float32) - ref).max())
