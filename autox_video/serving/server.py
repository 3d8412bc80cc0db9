"""serve(): load the runtime, wrap it in VideoModel, run KServe's ModelServer (REST, v2 + health + /metrics)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from autox_video.errors import ConfigError

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


def build_model(opts: ServeOptions) -> object:
    """The loaded, warmed-up VideoModel of these options."""
    from autox_video.export.run import require_extra

    require_extra("autox-video serve")
    from autox_video.serving import runtimes
    from autox_video.serving.inputs import Limits
    from autox_video.serving.model import VideoModel

    if opts.max_bytes < 1 or opts.max_seconds <= 0 or opts.max_batch < 1:
        raise ConfigError("serve: --max-bytes, --max-seconds and --max-batch must be positive")
    runtime = runtimes.load(opts.checkpoint, opts.model_dir, opts.runtime)
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


def _bind(host: str) -> None:
    """Listen on `host`: KServe's REST server hard-codes 0.0.0.0, so its class is swapped for one that does not."""
    from kserve import model_server
    from kserve.protocol.rest import server as rest

    class HostRESTServer(rest.RESTServer):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.config.host = host
            self._server = rest._RefreshingServer(self.config)

    model_server.RESTServer = HostRESTServer


def serve(opts: ServeOptions) -> int:
    """Serve until SIGINT/SIGTERM (KServe's ModelServer handles both, draining requests)."""
    model = build_model(opts)  # first: it names a missing `serve` extra in one line
    from autox_video.serving.sdk import kserve

    spec = model.runtime.contract  # type: ignore[attr-defined]
    log.info(
        "serving %s (%s, %s runtime, %d classes) on %s:%d: POST /v2/models/%s/infer",
        opts.name, spec.backbone, model.runtime.kind, spec.num_classes, opts.host, opts.port, opts.name,  # type: ignore[attr-defined]
    )  # fmt: skip
    if opts.host != "0.0.0.0":
        _bind(opts.host)
    kserve.ModelServer(http_port=opts.port, enable_grpc=False, workers=1).start([model])
    return 0
