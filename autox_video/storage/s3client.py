"""The one way to build a boto3 S3 client: where S3 is (`S3Access`) and how patient to be (`ClientPolicy`)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class S3Access:
    """Endpoint (None: AWS S3), region and credentials (None: boto3's default chain) of one S3."""

    endpoint: str | None
    region: str | None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    profile: str | None = None

    def describe(self) -> str:
        """Where this S3 is, for messages: the endpoint, or "AWS S3 (region)"."""
        if self.endpoint:
            return self.endpoint
        return f"AWS S3 ({self.region})" if self.region else "AWS S3"


@dataclass(frozen=True)
class ClientPolicy:
    """Per-request patience: timeouts and botocore's quick retries (outages are `s3core.call`'s job)."""

    connect_timeout: float = 10
    read_timeout: float = 120
    max_attempts: int = 5
    retry_mode: str = "standard"
    max_pool_connections: int = 10


_lock = threading.Lock()
_clients: OrderedDict[tuple[S3Access, ClientPolicy], Any] = OrderedDict()
_MAX_CLIENTS = 64  # one per job's credentials in the operator: bounded


def client(access: S3Access, policy: ClientPolicy) -> Any:
    """A cached S3 client for this access and policy (thread-safe; raises ValueError for a bad endpoint)."""
    key = (access, policy)
    with _lock:  # boto3 sessions are not thread-safe; the clients they make are
        if key in _clients:
            _clients.move_to_end(key)
            return _clients[key]
        made = _make(access, policy)
        _clients[key] = made
        if len(_clients) > _MAX_CLIENTS:
            _clients.popitem(last=False)
        return made


def _make(access: S3Access, policy: ClientPolicy) -> Any:
    import boto3
    from botocore.config import Config

    extra: dict[str, Any] = {}
    if access.endpoint:
        # MinIO, Ceph and moto: path-style addressing (no bucket DNS names), and checksums only
        # where S3 requires them (several S3-compatible stores reject the newer default CRC headers).
        extra = {
            "s3": {"addressing_style": "path"},
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    config = Config(
        retries={"mode": policy.retry_mode, "max_attempts": policy.max_attempts},
        connect_timeout=policy.connect_timeout,
        read_timeout=policy.read_timeout,
        max_pool_connections=policy.max_pool_connections,
        user_agent_extra="autox-video",
        **extra,
    )
    session = boto3.session.Session(profile_name=access.profile) if access.profile else boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=access.endpoint,
        region_name=access.region,
        aws_access_key_id=access.access_key,
        aws_secret_access_key=access.secret_key,
        aws_session_token=access.session_token,
        config=config,
    )
