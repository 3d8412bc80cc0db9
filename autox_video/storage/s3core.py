"""The one S3 layer under the trainer and the operator: run a call with its caller's policy, and the
small operations both need (HEAD, read, write, server-side copy). Torch-free: boto3 only.

A `Policy` holds what differs between callers: where S3 is and with which credentials, request
timeouts, how long to keep retrying through an outage (the trainer: minutes; the operator: 0, a
handler must not hang) and the fix each kind of failure gets in its one-line message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autox_video.errors import S3Error
from autox_video.storage import s3client
from autox_video.storage.s3client import ClientPolicy, S3Access
from autox_video.storage.s3errors import BucketMissing, Kind, first_line, is_s3_failure, to_error
from autox_video.storage.uris import split_uri

log = logging.getLogger("autox_video")
T = TypeVar("T")


@dataclass(frozen=True)
class Policy:
    """One caller's S3: access, request timeouts, outage retry budget (seconds) and fixes by failure kind."""

    access: S3Access
    requests: ClientPolicy = ClientPolicy()
    retry_seconds: float = 0.0
    retry_hint: str = ""  # how to wait longer, named when the budget runs out
    hints: Mapping[Kind, str] = field(default_factory=dict)

    def client(self) -> Any:
        """The cached boto3 client for this policy (ValueError for an endpoint boto3 cannot parse)."""
        return s3client.client(self.access, self.requests)


def call(policy: Policy, uri: str, op: Callable[[Any], T], *, what: str) -> T:
    """Run `op(client)` (one S3 operation on `uri`); transient failures are retried within the
    policy's budget, measured from the first failure; any failure ends as a one-line S3Error."""
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            return op(policy.client())
        except S3Error:
            raise
        except Exception as err:
            if not is_s3_failure(err):
                raise  # a bug, not a storage failure: keep its traceback
            error = to_error(err, uri, policy.access.describe(), policy.hints)
            if not error.transient:
                raise error from err
            now = time.monotonic()
            if deadline is None:
                deadline = now + policy.retry_seconds
                if policy.retry_seconds > 0:
                    log.warning(
                        "%s %s: %s; retrying for up to %g s%s",
                        what,
                        uri,
                        first_line(err),
                        policy.retry_seconds,
                        f" ({policy.retry_hint})" if policy.retry_hint else "",
                    )
            if now >= deadline:
                if policy.retry_seconds <= 0:
                    raise error from err
                hint = f" ({policy.retry_hint})" if policy.retry_hint else ""
                raise S3Error(
                    f"{error}; gave up on {what} after {policy.retry_seconds:g} s of retries{hint}",
                    error.reason,
                    transient=True,
                ) from err
            # Exponential backoff with jitter, capped so a server that comes back is noticed within ~10 s.
            pause = min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            time.sleep(max(0.0, min(pause, deadline - now)))
            attempt += 1


def head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """HEAD of an object, None when there is no such key; BucketMissing when the bucket is not there."""
    from botocore.exceptions import ClientError

    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchKey", "NotFound"):
            raise
    # HEAD's 404 does not say whether the key or the bucket is missing: ask the bucket.
    head_bucket(client, bucket)
    return None


def head_bucket(client: Any, bucket: str) -> None:
    """HEAD of a bucket: BucketMissing when it does not exist (other failures raise as botocore's)."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        if str(err.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchBucket", "NotFound"):
            raise BucketMissing(bucket) from None
        raise


def check_bucket(policy: Policy, uri: str) -> None:
    """Raise S3Error unless the bucket of `uri` exists and the policy's credentials may use it."""
    bucket, _ = split_uri(uri)
    call(policy, uri, lambda c: head_bucket(c, bucket), what="check bucket")


def stat(policy: Policy, uri: str) -> dict[str, Any] | None:
    """The HEAD answer of an object (ETag, ContentLength, ...), None when there is no such key."""
    bucket, key = split_uri(uri)
    return call(policy, uri, lambda c: head(c, bucket, key), what="stat")


def read_bytes(policy: Policy, uri: str) -> bytes:
    """The contents of a (small) object; S3Error with reason ObjectNotFound when it is not there."""
    bucket, key = split_uri(uri)
    return call(policy, uri, lambda c: bytes(c.get_object(Bucket=bucket, Key=key)["Body"].read()), what="read")


def write_bytes(policy: Policy, uri: str, data: bytes) -> None:
    """Write a small object in one PUT (readers see the old object or the new one)."""
    bucket, key = split_uri(uri)
    call(policy, uri, lambda c: c.put_object(Bucket=bucket, Key=key, Body=data), what="write")


def copy(policy: Policy, source: str, target: str) -> None:
    """Server-side copy (no bytes through this process); S3Error if `source` does not exist."""
    src_bucket, src_key = split_uri(source)
    bucket, key = split_uri(target)

    def op(c: Any) -> None:
        c.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key})

    call(policy, source, op, what="copy")  # a missing source is the usual failure: name it


def delete(policy: Policy, uri: str) -> None:
    """Remove an object (no error when it is already gone)."""
    bucket, key = split_uri(uri)
    call(policy, uri, lambda c: c.delete_object(Bucket=bucket, Key=key), what="delete")


__all__ = [
    "BucketMissing",
    "ClientPolicy",
    "Kind",
    "Policy",
    "S3Access",
    "call",
    "check_bucket",
    "copy",
    "delete",
    "head",
    "head_bucket",
    "read_bytes",
    "stat",
    "write_bytes",
]
