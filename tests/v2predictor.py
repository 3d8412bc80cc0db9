"""A stand-in for Triton in transformer tests: a KServe model server on 127.0.0.1 running an export's
triton/<name>/1/model.onnx in ONNX Runtime, answering v2 tensor requests strictly as config.pbtxt says
(the model's name, the input's name, datatype and dims; anything else is a 400, as Triton would refuse it).

Run: python tests/v2predictor.py EXPORT_DIR PORT [NAME]  (NAME overrides the config's model name).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def main(export: Path, port: int, name: str | None) -> None:
    """Serve until SIGTERM."""
    import numpy as np

    from autox_video.export import onnx_export
    from autox_video.serving.remote import triton_model
    from autox_video.serving.sdk import InferOutput, InferRequest, InferResponse, InvalidInput, kserve
    from autox_video.serving.server import install_rest_server

    spec = triton_model(export)
    session = onnx_export.session(export / "triton" / spec.name / "1" / "model.onnx")

    class OnnxPredictor(kserve.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name or spec.name)
            self.ready = True

        async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> InferResponse:
            assert isinstance(payload, InferRequest)
            (tensor,) = payload.inputs
            if tensor.name != spec.input_name or tensor.datatype != spec.datatype or tensor.shape[1:] != spec.dims:
                raise InvalidInput(f"input {tensor.name} {tensor.datatype} {tensor.shape}: not what config.pbtxt says")
            probs = session.run(None, {spec.input_name: tensor.as_numpy()})[0]  # type: ignore[attr-defined]
            out = InferOutput(spec.output_name, list(probs.shape), "FP32")
            out.set_data_from_numpy(np.asarray(probs, np.float32), binary_data=True)
            return InferResponse(payload.id or "", self.name, [out], use_binary_outputs=True)

    install_rest_server("127.0.0.1")
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([OnnxPredictor()])


if __name__ == "__main__":
    sys.path[:0] = [str(REPO)]
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
