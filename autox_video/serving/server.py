"""serve(): load the runtime, wrap it in VideoModel, run KServe's ModelServer (REST, v2 + health + /metrics)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autox_video.errors import ConfigError

if TYPE_CHECKING:
    from autox_video.serving.runtimes import Runtime

log = logging.getLogger("autox_video")


@dataclass(frozen=True)
class ServeOptions:
    """`autox-video serve` flags."""

    checkpoint: str | None = None
    model_dir: str | None = None
    runtime: str | None = None  # onnx | torch; default: torch for a checkpoint, onnx for an export folder
    port: int = 8080
    host: str = "0.0.0.0"  # every interface (a pod); 127.0.0.1 keeps a workstation's server to itself
    name: str = "autox-video"
    max_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 600.0
    allow_local: bool = False
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    decode_workers: int | None = None
    predictor_host: str | None = None  # a KServe transformer: the predictor (Triton) that runs the network


def _runtime(opts: ServeOptions) -> Runtime:
    """The runtime asked for; with a predictor host (a KServe transformer), that predictor runs the network."""
    from autox_video.serving import runtimes

    if opts.predictor_host is None:
        return runtimes.load(opts.checkpoint, opts.model_dir, opts.runtime)
    if opts.model_dir is None or opts.runtime is not None:
        raise ConfigError(
            "serve --predictor_host: pass --model (the export folder or its s3:// URI) and no --runtime; "
            "the predictor runs the network"
        )
    from autox_video.serving.remote import remote_runtime

    return remote_runtime(opts.model_dir, opts.predictor_host)


def build_model(opts: ServeOptions) -> object:
    """The loaded, warmed-up VideoModel of these options."""
    from autox_video.export.run import require_extra

    require_extra("autox-video serve")
    from autox_video.serving.inputs import Limits
    from autox_video.serving.model import VideoModel

    if opts.max_bytes < 1 or opts.max_seconds <= 0 or opts.max_batch < 1:
        raise ConfigError("serve: --max-bytes, --max-seconds and --max-batch must be positive")
    runtime = _runtime(opts)
    model = VideoModel(
        opts.name,
        runtime,
        Limits(opts.max_bytes, opts.max_seconds, opts.allow_local),
        max_batch=opts.max_batch,
        batch_wait_s=opts.batch_wait_ms / 1000,
        decode_workers=opts.decode_workers,
    )
    model.load()
    return model


def install_rest_server(host: str) -> None:
    """KServe's REST server, listening on `host` (it hard-codes 0.0.0.0) and answering a failed predictor
    with 503/502 and its one-line message (KServe's own handlers would say 500)."""
    from fastapi.responses import JSONResponse
    from kserve import model_server
    from kserve.protocol.rest import server as rest

    from autox_video.serving.errors import PredictorError

    async def predictor_error(_: object, exc: Exception) -> JSONResponse:
        status = exc.status if isinstance(exc, PredictorError) else 502
        return JSONResponse(status_code=status, content={"error": str(exc)})

    class AutoXRESTServer(rest.RESTServer):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            if host != "0.0.0.0":
                self.config.host = host
                self._server = rest._RefreshingServer(self.config)

        def _add_exception_handlers(self, app: object) -> None:
            super()._add_exception_handlers(app)
            app.add_exception_handler(PredictorError, predictor_error)  # type: ignore[attr-defined]

    model_server.RESTServer = AutoXRESTServer


def serve(opts: ServeOptions) -> int:
    """Serve until SIGINT/SIGTERM (KServe's ModelServer handles both, draining requests)."""
    model = build_model(opts)  # first: it names a missing `serve` extra in one line
    from autox_video.serving.sdk import kserve

    spec = model.runtime.contract  # type: ignore[attr-defined]
    log.info(
        "serving %s (%s, %s runtime, %d classes) on %s:%d: POST /v2/models/%s/infer",
        opts.name, spec.backbone, model.runtime.kind, spec.num_classes, opts.host, opts.port, opts.name,  # type: ignore[attr-defined]
    )  # fmt: skip
    if opts.predictor_host is not None:
        log.info("transformer: the network runs on the predictor %s (Open Inference Protocol v2)", opts.predictor_host)
    install_rest_server(opts.host)
    kserve.ModelServer(http_port=opts.port, enable_grpc=False, workers=1).start([model])
    return 0
