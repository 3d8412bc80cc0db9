"""What went wrong in an S3 call, as a kind and one line: shared by the trainer and the operator.

`classify` turns a botocore/boto3 error into a `Kind` (the operator's condition reason comes from
it); `to_error` words it as one line naming the URI, with the caller's own fix (`hints`) appended.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from enum import Enum

from autox_video.errors import S3Error


class Kind(Enum):
    """What went wrong; `reason` is the CamelCase word the operator's conditions use."""

    NO_CREDENTIALS = "NoCredentials"
    INVALID_ENDPOINT = "InvalidEndpoint"
    UNREACHABLE = "Unreachable"
    CONNECTION_BROKE = "ConnectionBroke"
    BUCKET_NOT_FOUND = "BucketNotFound"
    OBJECT_NOT_FOUND = "ObjectNotFound"
    UNKNOWN_ACCESS_KEY = "UnknownAccessKey"
    BAD_SIGNATURE = "BadSignature"
    ACCESS_DENIED = "AccessDenied"
    TRANSIENT = "Transient"  # a 5xx or throttling answer
    OTHER = "Other"

    @property
    def reason(self) -> str:
        """The condition reason (one CamelCase word) for this kind."""
        return _REASONS.get(self, self.value)


_REASONS = {
    Kind.NO_CREDENTIALS: "StorageNoCredentials",
    Kind.UNREACHABLE: "StorageUnreachable",
    Kind.CONNECTION_BROKE: "StorageUnreachable",
    Kind.UNKNOWN_ACCESS_KEY: "StorageAccessDenied",
    Kind.BAD_SIGNATURE: "StorageAccessDenied",
    Kind.ACCESS_DENIED: "StorageAccessDenied",
    Kind.TRANSIENT: "StorageUnavailable",
    Kind.OTHER: "StorageError",
}
TRANSIENT_KINDS = frozenset({Kind.UNREACHABLE, Kind.CONNECTION_BROKE, Kind.TRANSIENT})

_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
}
_KEY_MISSING = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden"}


class BucketMissing(Exception):
    """Raised inside an S3 operation that found out (by HEAD) that the bucket does not exist."""


def chain(err: BaseException) -> Iterator[BaseException]:
    """The error, what it wraps (s3transfer's RetriesExceededError) and what caused it."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [getattr(e, "last_exception", None), e.__cause__, e.__context__]


def _client_error(err: BaseException) -> tuple[str, int, str] | None:
    """(code, HTTP status, message) of the first botocore ClientError in the chain."""
    from botocore.exceptions import ClientError

    for e in chain(err):
        if isinstance(e, ClientError):
            info = e.response.get("Error", {})
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return str(info.get("Code", "")), status, str(info.get("Message", "") or "")
    return None


def _invalid_endpoint(err: BaseException) -> bool:
    # botocore raises a plain ValueError("Invalid endpoint: ...") for a URL it cannot parse.
    return isinstance(err, ValueError) and str(err).startswith("Invalid endpoint")


def is_s3_failure(err: BaseException) -> bool:
    """Whether `err` came from S3 or the way to it (else it is a bug: keep its traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (
        isinstance(err, (BotoCoreError, ClientError, OSError, BucketMissing))
        or _invalid_endpoint(err)
        or type(err).__module__.startswith(("boto3", "s3transfer"))
    )


def classify(err: BaseException) -> Kind:
    """The kind of an S3 failure."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import (
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        PartialCredentialsError,
        ResponseStreamingError,
    )

    errors = list(chain(err))
    if any(isinstance(e, BucketMissing) for e in errors):
        return Kind.BUCKET_NOT_FOUND
    if any(isinstance(e, (NoCredentialsError, PartialCredentialsError)) for e in errors):
        return Kind.NO_CREDENTIALS
    if any(_invalid_endpoint(e) for e in errors):
        return Kind.INVALID_ENDPOINT
    client_error = _client_error(err)
    if client_error is None:
        if any(isinstance(e, (BotoConnectionError, ConnectionRefusedError)) for e in errors):
            return Kind.UNREACHABLE
        broke = (HTTPClientError, IncompleteReadError, ResponseStreamingError, ConnectionError, socket.timeout)
        return Kind.CONNECTION_BROKE if any(isinstance(e, broke) for e in errors) else Kind.OTHER
    code, status, _ = client_error
    if status >= 500 or code in _TRANSIENT_CODES:
        return Kind.TRANSIENT
    if code == "NoSuchBucket":
        return Kind.BUCKET_NOT_FOUND
    if code in _KEY_MISSING:
        return Kind.OBJECT_NOT_FOUND
    if code == "InvalidAccessKeyId":
        return Kind.UNKNOWN_ACCESS_KEY
    if code == "SignatureDoesNotMatch":
        return Kind.BAD_SIGNATURE
    if code in _DENIED or status == 403:
        return Kind.ACCESS_DENIED
    return Kind.OTHER


def is_transient(err: BaseException) -> bool:
    """Whether retrying later may succeed: connection failures, timeouts, 5xx and throttling."""
    return classify(err) in TRANSIENT_KINDS


def first_line(err: BaseException) -> str:
    """The first line of an error's text (its type's name when it has none)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# What is wrong, per kind ({where}: the endpoint; {bucket}; {detail}: botocore's first line).
_PROBLEMS = {
    Kind.NO_CREDENTIALS: "no S3 credentials found",
    Kind.INVALID_ENDPOINT: "invalid S3 endpoint {where!r} ({detail})",
    Kind.UNREACHABLE: "cannot reach S3 at {where} ({detail})",
    Kind.CONNECTION_BROKE: "the connection to S3 at {where} broke ({detail})",
    Kind.BUCKET_NOT_FOUND: "bucket {bucket!r} does not exist at {where}",
    Kind.UNKNOWN_ACCESS_KEY: "S3 at {where} does not know the access key",
    Kind.BAD_SIGNATURE: "S3 at {where} rejected the signature",
    Kind.ACCESS_DENIED: "access denied by S3 at {where}",
}


def problem(kind: Kind, err: BaseException, uri: str, where: str) -> str:
    """What is wrong, in a few words naming where (no fix: that is the caller's hint)."""
    template = _PROBLEMS.get(kind)
    if template is not None:
        bucket = uri[len("s3://") :].split("/", 1)[0]
        return template.format(where=where, bucket=bucket, detail=first_line(err))
    client_error = _client_error(err)
    if client_error is None:
        return first_line(err)
    code, status, message = client_error
    return f"S3 error {code or status} at {where}: {message or first_line(err)}"


def to_error(err: BaseException, uri: str, where: str, hints: Mapping[Kind, str]) -> S3Error:
    """`err` as a one-line S3Error: "<uri>: <problem>[: <hint>]" ("no object at <uri>" for a missing key)."""
    kind = classify(err)
    if kind is Kind.OBJECT_NOT_FOUND:
        text = f"no object at {uri}"
    else:
        text = f"{uri}: {problem(kind, err, uri, where)}"
    hint = hints.get(kind)
    return S3Error(f"{text}: {hint}" if hint else text, kind.reason, transient=kind in TRANSIENT_KINDS)
