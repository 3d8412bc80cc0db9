"""A Triton model repository: triton/<name>/config.pbtxt, triton/<name>/1/model.onnx, labels.txt."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

from autox_video.export.contract import Contract

# Triton batches requests itself: up to this many videos per forward pass, waiting at most 5 ms.
MAX_BATCH = 8
QUEUE_DELAY_US = 5000


def config_text(name: str, contract: Contract, max_batch: int = MAX_BATCH) -> str:
    """config.pbtxt for the ONNX Runtime backend (dims leave out the batch axis)."""
    dtype = "TYPE_FP16" if contract.precision == "fp16" else "TYPE_FP32"
    dims = ", ".join(str(d) for d in contract.input_shape)
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch}
input [
  {{
    name: "{contract.input_name}"
    data_type: {dtype}
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{contract.output_name}"
    data_type: {dtype}
    dims: [ {contract.num_classes} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: {QUEUE_DELAY_US}
}}
instance_group [
  {{
    kind: KIND_AUTO
    count: 1
  }}
]
"""


def write_repository(root: Path, name: str, onnx_file: Path, contract: Contract) -> Path:
    """Lay out root/<name>/ (version 1) beside the export; returns the config.pbtxt path."""
    model_dir = root / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_file, model_dir / "1" / "model.onnx")
    (model_dir / "labels.txt").write_text("".join(f"{n}\n" for n in contract.class_names))
    config = model_dir / "config.pbtxt"
    config.write_text(config_text(name, contract))
    return config


def model_config_pb2() -> Any:
    """tritonclient's model-config protobuf module, loaded without the tritonclient.grpc package: that
    package also registers Triton's GRPC service protos, whose names clash with KServe's (same package
    `inference`), so it cannot be imported in a process that serves with KServe."""
    name = "tritonclient.grpc.model_config_pb2"
    if name in sys.modules:
        return sys.modules[name]
    found = importlib.util.find_spec("tritonclient")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("tritonclient")
    path = Path(next(iter(found.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def parse(path: Path) -> object:
    """config.pbtxt read with Triton's own model-config protobuf (raises when Triton would not load it)."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2().ModelConfig())
