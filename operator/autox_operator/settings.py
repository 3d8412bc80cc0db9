"""Operator settings from the environment (the Helm chart sets them); read once, at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name}={raw!r}: expected a number of seconds") from None


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        port = int(raw) if raw else default
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise SystemExit(f"{name}={raw!r}: expected a port number 1-65535, or 0 for off")
    return port


def _mirror(name: str) -> str | None:
    raw = os.environ.get(name, "").strip()
    if raw and not raw.startswith(("s3://", "https://", "http://")):
        raise SystemExit(f"{name}={raw!r}: expected an s3:// or https:// prefix holding the weights files, or empty")
    return raw or None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "true", "false"):
        return default if not raw else raw == "true"
    raise SystemExit(f"{name}={raw!r}: expected true or false")


BACKENDS = ("auto", "pytorchjob", "trainjob")

# How often a running job's progress.json is read (kopf timer interval; fixed at import).
SYNC_INTERVAL = _float("AUTOX_SYNC_INTERVAL", 15.0)


@dataclass(frozen=True)
class OperatorSettings:
    """What the chart's values configure."""

    trainer_image: str = "ghcr.io/autox/autox-video-trainer:latest"
    default_s3_endpoint: str | None = None
    image_pull_policy: str = "IfNotPresent"
    retry_delay: float = 30.0  # waiting for a Secret, a bucket or a training job
    namespaces: tuple[str, ...] = field(default_factory=tuple)  # empty: all namespaces
    backend: str = "auto"  # auto | pytorchjob | trainjob (a job's spec.runtime.backend overrides it)
    runtime_name: str = "autox-video"  # the ClusterTrainingRuntime of a TrainJob without spec.runtime.name
    metrics_port: int = 8081  # /metrics (Prometheus); 0: off. 8080 is kopf's liveness endpoint
    weights_mirror: str | None = None  # AUTOX_WEIGHTS_MIRROR of the trainer pods: pretrained weights offline
    read_secrets: bool = True  # false: no Secret is read, and no bucket is checked before a job starts

    @classmethod
    def from_env(cls) -> OperatorSettings:
        namespaces = tuple(n.strip() for n in os.environ.get("AUTOX_NAMESPACES", "").split(",") if n.strip())
        backend = (os.environ.get("AUTOX_TRAINER_BACKEND") or cls.backend).strip().lower()
        if backend not in BACKENDS:
            raise SystemExit(f"AUTOX_TRAINER_BACKEND={backend!r}: expected one of {', '.join(BACKENDS)}")
        return cls(
            trainer_image=os.environ.get("AUTOX_TRAINER_IMAGE") or cls.trainer_image,
            default_s3_endpoint=os.environ.get("AUTOX_S3_ENDPOINT") or None,
            image_pull_policy=os.environ.get("AUTOX_IMAGE_PULL_POLICY") or cls.image_pull_policy,
            retry_delay=_float("AUTOX_RETRY_DELAY", cls.retry_delay),
            namespaces=namespaces,
            backend=backend,
            runtime_name=os.environ.get("AUTOX_TRAINING_RUNTIME") or cls.runtime_name,
            metrics_port=_port("AUTOX_METRICS_PORT", cls.metrics_port),
            weights_mirror=_mirror("AUTOX_WEIGHTS_MIRROR"),
            read_secrets=_bool("AUTOX_READ_SECRETS", cls.read_secrets),
        )
