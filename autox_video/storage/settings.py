"""The trainer's S3 policy: endpoint, region, credentials, retries, transfer sizes and the boto3 client.

Precedence for endpoint and region: `configure()` (the config keys `s3_endpoint_url`,
`s3_region`) > the environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_REGION`,
`AWS_DEFAULT_REGION`) > boto3's defaults. Credentials come from boto3's standard chain
(`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, a profile, an IAM role), never from a config file.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from autox_video.storage.s3client import ClientPolicy, S3Access
from autox_video.storage.s3core import Policy
from autox_video.storage.s3errors import Kind

_MB = 1024 * 1024
_lock = threading.Lock()
_overrides: dict[str, str | None] = {"endpoint_url": None, "region": None}


def configure(endpoint_url: str | None = None, region: str | None = None) -> None:
    """Set the S3 endpoint and region for this process (None: take it from the environment)."""
    with _lock:
        _overrides["endpoint_url"] = endpoint_url or None
        _overrides["region"] = region or None


def endpoint_url() -> str | None:
    """The S3 endpoint in use (None: AWS S3 itself)."""
    return (
        _overrides["endpoint_url"]
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def region() -> str | None:
    """The S3 region in use (None: boto3's default)."""
    return _overrides["region"] or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        from autox_video.errors import ConfigError

        raise ConfigError(f"{name}={raw!r} is not a number") from None


def retry_seconds() -> float:
    """How long one operation keeps retrying through an outage (AUTOX_S3_RETRY_SECONDS, default 300)."""
    return _env_float("AUTOX_S3_RETRY_SECONDS", 300.0)


def multipart_bytes() -> int:
    """Files at least this large move in parts, several at once (AUTOX_S3_MULTIPART_MB, default 64; min 5)."""
    return max(5, int(_env_float("AUTOX_S3_MULTIPART_MB", 64))) * _MB


def transfer_config() -> Any:
    """boto3 TransferConfig for upload_file/download_file (multipart threshold and part size)."""
    from boto3.s3.transfer import TransferConfig

    size = multipart_bytes()
    return TransferConfig(multipart_threshold=size, multipart_chunksize=size, max_concurrency=8)


def access() -> S3Access:
    """Endpoint, region and the environment's credentials (unset: boto3's chain of profile and role)."""
    env = os.environ
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    explicit = bool(key and secret)  # else boto3 looks for a profile or role itself
    return S3Access(
        endpoint_url(),
        region(),
        key if explicit else None,
        secret if explicit else None,
        env.get("AWS_SESSION_TOKEN") if explicit else None,
        env.get("AWS_PROFILE") or None,
    )


# The fix each failure gets in the trainer's one-line messages (the operator names spec fields instead).
HINTS = {
    Kind.NO_CREDENTIALS: "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or role)",
    Kind.INVALID_ENDPOINT: "fix AWS_ENDPOINT_URL (or the config key s3_endpoint_url)",
    Kind.UNKNOWN_ACCESS_KEY: "check AWS_ACCESS_KEY_ID",
    Kind.BAD_SIGNATURE: "check AWS_SECRET_ACCESS_KEY",
    Kind.ACCESS_DENIED: "the credentials (AWS_ACCESS_KEY_ID) lack permission",
}


def policy() -> Policy:
    """The trainer's S3 policy: patient requests, outages retried for AUTOX_S3_RETRY_SECONDS."""
    requests = ClientPolicy(
        connect_timeout=10,
        read_timeout=120,
        max_attempts=int(_env_float("AWS_MAX_ATTEMPTS", 5)),
        retry_mode=os.environ.get("AWS_RETRY_MODE") or "standard",
        max_pool_connections=32,  # download_many runs up to 16 workers, multipart 8 parts at once
    )
    return Policy(
        access(),
        requests,
        retry_seconds(),
        retry_hint="raise AUTOX_S3_RETRY_SECONDS to wait longer",
        hints=HINTS,
    )


def client() -> Any:
    """The process's S3 client for the current endpoint, region and credentials (thread-safe, cached)."""
    return policy().client()
