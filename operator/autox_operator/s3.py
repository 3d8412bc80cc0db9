"""The little S3 the operator needs: is a bucket/object there, read small JSON objects, write the search's
ledger, copy the best trial's weights (boto3)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from autox_operator import metrics


class S3Error(Exception):
    """S3 said no, or could not be reached; `reason` is one CamelCase word for conditions."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class S3Access:
    """Endpoint, region and credentials (None: boto3's default chain) of one job's storage."""

    endpoint: str | None
    region: str
    access_key: str | None = None
    secret_key: str | None = None

    def describe(self) -> str:
        return self.endpoint or f"AWS S3 ({self.region})"


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


@functools.lru_cache(maxsize=64)
def _client(access: S3Access) -> Any:
    # Short timeouts and few retries: handlers must not hang on an unreachable endpoint.
    config = botocore.config.Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.session.Session().client(
        "s3",
        endpoint_url=access.endpoint,
        region_name=access.region,
        aws_access_key_id=access.access_key,
        aws_secret_access_key=access.secret_key,
        config=config,
    )


# What botocore raises when it gets no answer, plus ValueError for an endpoint it cannot parse.
_UNREACHABLE = (botocore.exceptions.BotoCoreError, OSError, ValueError)


def _code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _translate(err: Exception, access: S3Access, what: str) -> S3Error:
    if isinstance(err, botocore.exceptions.ClientError):
        code = _code(err)
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            return S3Error(
                "StorageAccessDenied",
                f"access denied to {what} at {access.describe()} ({code}): "
                "check the credentials in spec.storage.secretRef",
            )
        return S3Error("StorageError", f"S3 error on {what} at {access.describe()}: {code or err}")
    if isinstance(err, ValueError):  # botocore: "Invalid endpoint: ..." (a URL it cannot parse)
        return S3Error("InvalidEndpoint", f"invalid S3 endpoint {access.endpoint!r} ({err}): fix spec.storage.endpoint")
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return S3Error("StorageNoCredentials", f"no S3 credentials to read {what}: set spec.storage.secretRef")
    return S3Error(
        "StorageUnreachable",
        f"cannot reach S3 at {access.describe()} ({err}): check spec.storage.endpoint and the network",
    )


def check_bucket(access: S3Access, uri: str) -> None:
    """Raise S3Error unless the bucket of `uri` exists and these credentials may use it."""
    bucket, _ = split_uri(uri)
    try:
        with metrics.s3_call("head_bucket"):
            _client(access).head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as err:
        if _code(err) in ("404", "NoSuchBucket", "NotFound"):
            raise S3Error(
                "BucketNotFound",
                f"bucket {bucket!r} does not exist at {access.describe()}: create it or fix the URI {uri!r}",
            ) from None
        raise _translate(err, access, f"bucket {bucket!r}") from None
    except _UNREACHABLE as err:
        raise _translate(err, access, f"bucket {bucket!r}") from None


def exists(access: S3Access, uri: str) -> bool:
    bucket, key = split_uri(uri)
    try:
        with metrics.s3_call("head_object"):
            _client(access).head_object(Bucket=bucket, Key=key)
        return True
    except botocore.exceptions.ClientError as err:
        if _code(err) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _translate(err, access, uri) from None
    except _UNREACHABLE as err:
        raise _translate(err, access, uri) from None


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


def _get(access: S3Access, uri: str) -> bytes | None:
    bucket, key = split_uri(uri)
    try:
        with metrics.s3_call("get_object"):
            return bytes(_client(access).get_object(Bucket=bucket, Key=key)["Body"].read())
    except botocore.exceptions.ClientError as err:
        if _code(err) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return None
        raise _translate(err, access, uri) from None
    except _UNREACHABLE as err:
        raise _translate(err, access, uri) from None


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
    bucket, key = split_uri(uri)
    try:
        with metrics.s3_call("put_object"):
            _client(access).put_object(Bucket=bucket, Key=key, Body=text.encode())
    except (botocore.exceptions.ClientError, *_UNREACHABLE) as err:
        raise _translate(err, access, uri) from None


def copy(access: S3Access, source: str, target: str) -> None:
    """Server-side copy (no bytes through the operator); S3Error if `source` does not exist."""
    src_bucket, src_key = split_uri(source)
    bucket, key = split_uri(target)
    try:
        with metrics.s3_call("copy_object"):
            _client(access).copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": src_bucket, "Key": src_key})
    except (botocore.exceptions.ClientError, *_UNREACHABLE) as err:
        raise _translate(err, access, f"copy {source} -> {target}") from None
