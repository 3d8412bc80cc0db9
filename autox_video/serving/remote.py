"""A transformer's runtime: the decoded clips go to a predictor (Triton) over Open Inference Protocol v2 REST.

`serve --model EXPORT --predictor_host HOST` (what KServe's controller passes a transformer) decodes and
post-processes as with a local runtime; the forward pass is POST http://HOST/v2/models/NAME/infer, with NAME,
the input tensor's name, type and shape from the export's Triton repository (triton/NAME/config.pbtxt).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autox_video import storage
from autox_video.errors import ConfigError
from autox_video.export import contract as contract_mod
from autox_video.serving.errors import PredictorError
from autox_video.serving.runtimes import Runtime
from autox_video.spec.serving import MODEL_JSON, TRITON_DIR

if TYPE_CHECKING:
    import httpx

INFERENCE_HEADER = "inference-header-content-length"  # the v2 binary tensor extension (Triton, KServe)
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class TritonModel:
    """What the predictor expects: its model name, input tensor (name, v2 datatype, dims) and output name."""

    name: str
    input_name: str
    datatype: str
    dims: list[int]
    output_name: str


def fetch_export(model_dir: str) -> Path:
    """A local folder with the export's model.json and triton/*/config.pbtxt (copied from S3 when remote)."""
    if not storage.is_s3(model_dir):
        return Path(model_dir)
    local = Path(tempfile.mkdtemp(prefix="autox-transformer-"))
    wanted = [MODEL_JSON] + [
        f"{TRITON_DIR}{k}" for k in storage.list_keys(storage.join(model_dir, TRITON_DIR)) if k.endswith("config.pbtxt")
    ]
    for rel in wanted:
        storage.download(storage.join(model_dir, rel), local / rel)
    return local


def triton_model(model_dir: Path) -> TritonModel:
    """The one model of the export's Triton repository, read with Triton's own config parser."""
    from autox_video.export import triton

    configs = sorted((model_dir / TRITON_DIR).glob("*/config.pbtxt"))
    if len(configs) != 1:
        raise ConfigError(
            f"{model_dir / TRITON_DIR}: {len(configs)} model configs (config.pbtxt), expected 1; "
            "pass --model the folder `autox-video export` wrote"
        )
    config = triton.parse(configs[0])
    inp, out = config.input[0], config.output[0]  # type: ignore[attr-defined]
    datatype = "FP16" if inp.data_type == triton.model_config_pb2().TYPE_FP16 else "FP32"
    name = config.name or configs[0].parent.name  # type: ignore[attr-defined]
    return TritonModel(name, inp.name, datatype, list(inp.dims), out.name)


def predictor_url(host: str, model: str) -> str:
    """The v2 infer URL of `model` on `host` (KServe passes a bare host: http is meant)."""
    base = host if host.startswith(("http://", "https://")) else f"http://{host}"
    return f"{base.rstrip('/')}/v2/models/{model}/infer"


def remote_runtime(model_dir: str, predictor_host: str, timeout: float = TIMEOUT_S) -> Runtime:
    """`run(batch)` posts the clips to the predictor and returns its probabilities; PredictorError when it fails."""
    import httpx

    from autox_video.serving.sdk import InferInput, InferRequest, InferResponse, RequestedOutput

    local = fetch_export(model_dir)
    spec = contract_mod.read(local / MODEL_JSON)
    model = triton_model(local)
    if model.dims != spec.input_shape:
        raise ConfigError(
            f"{model_dir}: config.pbtxt's input dims {model.dims} differ from model.json's {spec.input_shape}; "
            "export the checkpoint again"
        )
    url = predictor_url(predictor_host, model.name)
    client = httpx.Client(timeout=timeout)
    dtype = np.float16 if model.datatype == "FP16" else np.float32

    def run(batch: np.ndarray) -> np.ndarray:
        tensor = InferInput(model.input_name, list(batch.shape), model.datatype)
        tensor.set_data_from_numpy(np.ascontiguousarray(batch, dtype=dtype), binary_data=True)
        request = InferRequest(
            model.name, [tensor], request_outputs=[RequestedOutput(model.output_name, {"binary_data": True})]
        )
        body, json_length = request.to_rest()
        headers = {"content-type": "application/json"}
        if json_length:
            headers = {"content-type": "application/octet-stream", INFERENCE_HEADER: str(json_length)}
        try:
            answer = client.post(url, content=body if isinstance(body, bytes) else _json(body), headers=headers)
        except httpx.HTTPError as err:
            detail = (str(err).splitlines() or [""])[0][:300]
            raise PredictorError(f"predictor {url} unreachable ({type(err).__name__}: {detail}); retry", 503) from None
        if not answer.is_success:
            raise PredictorError(f"predictor {url} answered {answer.status_code}: {_error_text(answer)}", 502)
        try:
            length = int(answer.headers.get(INFERENCE_HEADER, len(answer.content)))
            response = InferResponse.from_bytes(answer.content, length)
            probs = next(o for o in response.outputs if o.name == model.output_name).as_numpy()
        except (StopIteration, ValueError, KeyError, TypeError) as err:
            raise PredictorError(f"predictor {url} answered no {model.output_name!r} tensor ({err})", 502) from None
        if probs.shape != (len(batch), spec.num_classes):
            raise PredictorError(
                f"predictor {url} answered shape {list(probs.shape)}, expected {[len(batch), spec.num_classes]}", 502
            )
        return np.asarray(probs, dtype=np.float32)

    return Runtime("remote", spec, run)


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _error_text(answer: httpx.Response) -> str:
    """The predictor's one-line error message (its v2 `error`), else the start of its body."""
    try:
        data = answer.json()
        text = str(data.get("error") or data.get("detail") or data) if isinstance(data, dict) else str(data)
    except ValueError:
        text = answer.text
    return (text.splitlines() or [""])[0][:300]
