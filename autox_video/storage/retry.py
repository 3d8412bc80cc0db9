"""Retry policy and error messages for S3 calls.

Two layers: botocore's standard retry mode (a few quick attempts with backoff per request),
then `call()`, which re-runs the whole operation through an outage for up to
AUTOX_S3_RETRY_SECONDS (default 300), measured from the first failure, so a restarted S3
server is survived. Permanent errors (no bucket, no key, bad credentials) fail at once as a
one-line StorageError naming the URI.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from autox_video.errors import StorageError
from autox_video.storage import settings

log = logging.getLogger("autox_video")
T = TypeVar("T")

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


def _chain(err: BaseException) -> Iterator[BaseException]:
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

    for e in _chain(err):
        if isinstance(e, ClientError):
            info = e.response.get("Error", {})
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return str(info.get("Code", "")), status, str(info.get("Message", "") or "")
    return None


def is_transient(err: BaseException) -> bool:
    """Whether retrying later may succeed: connection failures, timeouts, 5xx and throttling."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError, ResponseStreamingError

    client_error = _client_error(err)
    if client_error is not None:
        code, status, _ = client_error
        return status >= 500 or code in _TRANSIENT_CODES
    transient = (
        BotoConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
        ConnectionError,
        socket.timeout,
    )
    return any(isinstance(e, transient) for e in _chain(err))


def _where() -> str:
    return settings.endpoint_url() or "AWS S3"


def describe(err: BaseException, uri: str) -> str:
    """One line naming the URI and what is wrong, with the fix where there is one."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    bucket = uri[len("s3://") :].split("/", 1)[0]
    if any(isinstance(e, (NoCredentialsError, PartialCredentialsError)) for e in _chain(err)):
        fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or role)"
        return f"{uri}: no S3 credentials found: {fix}"
    client_error = _client_error(err)
    if client_error is None:
        if is_transient(err):
            from botocore.exceptions import ConnectionError as BotoConnectionError

            if any(isinstance(e, (BotoConnectionError, ConnectionRefusedError)) for e in _chain(err)):
                return f"{uri}: cannot reach S3 at {_where()} ({_first_line(err)})"
            return f"{uri}: the connection to S3 at {_where()} broke ({_first_line(err)})"
        return f"{uri}: {_first_line(err)}"
    code, status, message = client_error
    if code == "NoSuchBucket":
        return f"{uri}: bucket {bucket!r} does not exist at {_where()}"
    if code in _KEY_MISSING:
        return f"no object at {uri}"
    if code == "InvalidAccessKeyId":
        return f"{uri}: S3 at {_where()} does not know the access key: check AWS_ACCESS_KEY_ID"
    if code == "SignatureDoesNotMatch":
        return f"{uri}: S3 at {_where()} rejected the signature: check AWS_SECRET_ACCESS_KEY"
    if code in ("AccessDenied", "403", "Forbidden") or status == 403:
        return f"{uri}: access denied by S3 at {_where()}: the credentials (AWS_ACCESS_KEY_ID) lack permission"
    return f"{uri}: S3 error {code or status}: {message or _first_line(err)}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def call(uri: str, op: Callable[[], T], *, what: str) -> T:
    """Run `op` (one S3 operation on `uri`), retrying transient failures within the time budget."""
    budget = settings.retry_seconds()
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            return op()
        except StorageError:
            raise
        except Exception as err:
            from botocore.exceptions import BotoCoreError, ClientError

            ours = isinstance(err, (BotoCoreError, ClientError, OSError)) or type(err).__module__.startswith(
                ("boto3", "s3transfer")
            )
            if not ours:
                raise  # a bug, not a storage failure: keep its traceback
            if not is_transient(err):
                raise StorageError(describe(err, uri)) from err
            now = time.monotonic()
            if deadline is None:
                deadline = now + budget
                log.warning(
                    "%s %s: %s; retrying for up to %g s (AUTOX_S3_RETRY_SECONDS)", what, uri, _first_line(err), budget
                )
            if now >= deadline:
                hint = "raise AUTOX_S3_RETRY_SECONDS to wait longer"
                raise StorageError(
                    f"{describe(err, uri)}; gave up on {what} after {budget:g} s of retries ({hint})"
                ) from err
            # Exponential backoff with jitter, capped so a server that comes back is noticed within ~10 s.
            pause = min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            time.sleep(max(0.0, min(pause, deadline - now)))
            attempt += 1
