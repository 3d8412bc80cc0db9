"""The operator's S3 policy over the shared core (`autox_video.storage.s3core`): per-job credentials,
short timeouts and no outage retries (a handler must not hang), fixes that name spec fields, and
each call timed for the metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from autox_operator import metrics, outages
from autox_video.errors import S3Error
from autox_video.storage import s3core
from autox_video.storage.s3client import ClientPolicy, S3Access
from autox_video.storage.s3errors import Kind
from autox_video.storage.uris import split_uri

__all__ = [
    "S3Access",
    "S3Error",
    "check_bucket",
    "copy",
    "delete",
    "exists",
    "list_folder",
    "put_text",
    "read_json",
    "read_jsonl",
    "split_uri",
]
T = TypeVar("T")

# Short timeouts and few retries: handlers must not hang on an unreachable endpoint.
REQUESTS = ClientPolicy(connect_timeout=3, read_timeout=10, max_attempts=2)
_CREDENTIALS = "check the credentials in spec.storage.secretRef"
HINTS = {
    Kind.NO_CREDENTIALS: "set spec.storage.secretRef",
    Kind.INVALID_ENDPOINT: "fix spec.storage.endpoint",
    Kind.UNREACHABLE: "check spec.storage.endpoint and the network",
    Kind.CONNECTION_BROKE: "check spec.storage.endpoint and the network",
    Kind.BUCKET_NOT_FOUND: "create it or fix the URI",
    Kind.UNKNOWN_ACCESS_KEY: _CREDENTIALS,
    Kind.BAD_SIGNATURE: _CREDENTIALS,
    Kind.ACCESS_DENIED: _CREDENTIALS,
}


def policy(access: S3Access) -> s3core.Policy:
    """The operator's policy for one job's storage."""
    return s3core.Policy(access, REQUESTS, retry_seconds=0.0, hints=HINTS)


def _timed(access: S3Access, operation: str, run: Callable[[], T]) -> T:
    """Run one S3 call, timed; an outage of its endpoint is logged once (outages), not per failed call."""
    where = access.describe()
    with metrics.s3_call(operation):
        try:
            result = run()
        except S3Error as err:
            if err.transient:
                outages.TRACKER.storage_down(where, err)
            else:  # S3 answered (no such key, access denied): it is reachable
                outages.TRACKER.storage_up(where)
            raise
    outages.TRACKER.storage_up(where)
    return result


def check_bucket(access: S3Access, uri: str) -> None:
    """Raise S3Error unless the bucket of `uri` exists and these credentials may use it."""
    _timed(access, "head_bucket", lambda: s3core.check_bucket(policy(access), uri))


def exists(access: S3Access, uri: str) -> bool:
    """Whether the object at `uri` exists (S3Error when its bucket does not, or S3 says no)."""
    return _timed(access, "head_object", lambda: s3core.stat(policy(access), uri)) is not None


def _get(access: S3Access, uri: str) -> bytes | None:
    try:
        return _timed(access, "get_object", lambda: s3core.read_bytes(policy(access), uri))
    except S3Error as err:
        if err.reason in (Kind.OBJECT_NOT_FOUND.reason, Kind.BUCKET_NOT_FOUND.reason):
            return None  # not written yet
        raise


def read_json(access: S3Access, uri: str) -> dict[str, Any] | None:
    """The JSON object at `uri`; None when it does not exist (yet) or is not a JSON object."""
    body = _get(access, uri)
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_jsonl(access: S3Access, uri: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file ([] when it does not exist); torn or foreign lines are skipped."""
    body = _get(access, uri)
    rows = []
    for line in (body or b"").decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line being written
        if isinstance(row, dict):
            rows.append(row)
    return rows


def put_text(access: S3Access, uri: str, text: str) -> None:
    """Write a small object (one PUT: readers see the old object or the new one)."""
    _timed(access, "put_object", lambda: s3core.write_bytes(policy(access), uri, text.encode()))


def copy(access: S3Access, source: str, target: str) -> None:
    """Server-side copy (no bytes through the operator); S3Error if `source` does not exist."""
    _timed(access, "copy_object", lambda: s3core.copy(policy(access), source, target))


def list_folder(access: S3Access, prefix: str) -> list[str]:
    """Keys under the folder `prefix` (an s3:// URI ending in /), relative to it, sorted; [] when empty."""
    bucket, key = split_uri(prefix)

    def listing(client: Any) -> list[str]:
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            found += [o["Key"][len(key) :] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
        return sorted(found)

    return _timed(access, "list_objects", lambda: s3core.call(policy(access), prefix, listing, what="list"))


def delete(access: S3Access, uri: str) -> None:
    """Remove an object (no error when it is already gone)."""
    _timed(access, "delete_object", lambda: s3core.delete(policy(access), uri))
