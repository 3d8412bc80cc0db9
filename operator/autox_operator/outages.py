"""One log line when the Kubernetes API server or an S3 endpoint becomes unreachable, one when it is back.

kopf and the clients retry by themselves: the watch streams reconnect, a failed timer runs again,
urllib3 retries a refused connection. While a dependency is away each of those retries would log a
line, and each failed handler a traceback. `QuietRetries`, a filter on the operator's log handlers,
drops exactly those records and reports the outage once instead; every other record, and every
error that is not about reaching a dependency, is logged as before.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("autox_operator.outages")

API = "the Kubernetes API server"
PROBE_INTERVAL = 1.0  # seconds between two looks at an unreachable API server
# A failure reported this soon after the dependency answered is taken for one that happened before
# (a thread that was slower to report it): a real new outage is reported by the retries that follow.
GRACE = 2.0
# API answers that mean "not reachable now" (a load balancer or an API server starting), not a bad request.
UNAVAILABLE_STATUSES = frozenset({502, 503, 504})
# What kopf's "Request attempt ... failed" lines name when the API server cannot be reached (aiohttp's errors).
_KOPF_RETRY = re.compile(r"^Request attempt #\S+ failed; (?:will retry|escalating): .* -> (\w+)\(")
_URLLIB3_RETRY = re.compile(r"^Retrying \(Retry\(.*after connection broken by '(\w+)")
_UNREACHABLE_NAMES = frozenset(
    {
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientConnectorDNSError",
        "ClientOSError",
        "ClientConnectionResetError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ContentLengthError",
        "TransferEncodingError",
        "ServerTimeoutError",
        "ConnectionTimeoutError",
        "SocketTimeoutError",
        "ConnectionRefusedError",
        "ConnectionResetError",
        "TimeoutError",
        "NewConnectionError",
        "ProtocolError",
        "RemoteDisconnected",
        "ConnectTimeoutError",
        "ReadTimeoutError",
    }
)


class Tracker:
    """Which dependencies are down now, and since when; logs the transitions (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down: dict[str, float] = {}
        self._up_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._probe: Callable[[], None] | None = None
        self.api = API  # how the lines name the API server (install() adds its URL)

    def set_probe(self, probe: Callable[[], None] | None) -> None:
        """A cheap API call (raises while the API server is unreachable), tried every PROBE_INTERVAL in an outage."""
        self._probe = probe

    def down(self, what: str, detail: str) -> bool:
        """`what` is unreachable: log it unless already known; True when this call noticed the outage."""
        with self._lock:
            now = self._clock()
            if what in self._down or now - self._up_at.get(what, -GRACE) < GRACE:
                return False
            self._down[what] = now
        log.warning("%s is unreachable (%s): retrying quietly until it is back", what, detail)
        if what == self.api and self._probe is not None:
            threading.Thread(target=self._watch_api, args=(what, self._probe), name="api-probe", daemon=True).start()
        return True

    def storage_down(self, where: str, err: BaseException) -> None:
        """The S3 at `where` could not be reached (`err`: an S3Error, its cause botocore's error)."""
        self.down(f"S3 at {where}", _detail(err.__cause__ or err))

    def storage_up(self, where: str) -> None:
        """The S3 at `where` answered."""
        self.up(f"S3 at {where}")

    def up(self, what: str) -> None:
        """`what` answered: log that it is back if it was down."""
        with self._lock:
            since = self._down.pop(what, None)
            if since is not None:
                self._up_at[what] = self._clock()
        if since is not None:
            log.info("%s is reachable again after %.0f s", what, self._clock() - since)

    def api_down(self, err: BaseException) -> None:
        """The API server could not be reached (`err`)."""
        self.down(self.api, _detail(err))

    def api_up(self) -> None:
        """The API server answered."""
        self.up(self.api)

    def is_down(self, what: str) -> bool:
        """Whether `what` is down now."""
        with self._lock:
            return what in self._down

    def down_now(self) -> list[str]:
        """The dependencies down now."""
        with self._lock:
            return list(self._down)

    def _watch_api(self, what: str, probe: Callable[[], None]) -> None:
        while self.is_down(what):
            time.sleep(PROBE_INTERVAL)
            try:
                probe()
            except Exception:  # still away (the probe's own retries are filtered like any other)
                continue
            self.up(what)


TRACKER = Tracker()  # one process, one set of dependencies


def api_label(server: str) -> str:
    """How the log lines name the API server at `server`."""
    return f"{API} at {server}" if server else API


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [
            e.__cause__,
            e.__context__,
            getattr(e, "reason", None) if isinstance(getattr(e, "reason", None), BaseException) else None,
        ]


def unreachable(err: BaseException) -> str | None:
    """Which dependency `err` says is unreachable: "s3" (the s3 module reports those itself), "api" (the API
    server), or None for anything else (a real error, logged as it is)."""
    from autox_video.errors import S3Error

    errors = list(_chain(err))
    if any(isinstance(e, S3Error) for e in errors):
        return "s3" if any(isinstance(e, S3Error) and e.transient for e in errors) else None
    for e in errors:
        status = getattr(e, "status", None)
        if type(e).__name__ in ("ApiException", "APIServerError") and status in UNAVAILABLE_STATUSES:
            return "api"
        if isinstance(e, _unreachable_types()) or type(e).__name__ in _UNREACHABLE_NAMES:
            return "api"
    return None


def _unreachable_types() -> tuple[type[BaseException], ...]:
    """Connection errors of the clients the operator uses: refused, reset, cut off mid-response, timed out."""
    import aiohttp  # kopf's client
    import urllib3.exceptions  # the kubernetes client's

    return (
        ConnectionError,
        TimeoutError,
        aiohttp.ClientConnectionError,
        aiohttp.ClientPayloadError,  # the server went away in the middle of a response
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
    )


def _detail(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


class QuietRetries(logging.Filter):
    """Drops the retry lines and tracebacks of an unreachable dependency and reports the outage once."""

    def __init__(self, tracker: Tracker = TRACKER) -> None:
        super().__init__()
        self.tracker = tracker

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == log.name:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            kind = unreachable(exc)
            if kind == "api":
                self.tracker.api_down(exc)
            return kind is None
        message = record.getMessage()
        match = _KOPF_RETRY.match(message) or _URLLIB3_RETRY.match(message)
        if match is not None and match.group(1) in _UNREACHABLE_NAMES:
            self.tracker.down(self.tracker.api, match.group(1))
            return False
        # A job waiting for a dependency that is down (kopf's line per retry of its start): the outage says it.
        return not (" failed temporarily: " in message and any(what in message for what in self.tracker.down_now()))


def install(api_server: str, probe: Callable[[], None] | None, logger: logging.Logger | None = None) -> QuietRetries:
    """Put a QuietRetries on every handler of `logger` (default: the root logger, where kopf prints)."""
    quiet = QuietRetries(TRACKER)
    TRACKER.api = api_label(api_server)
    TRACKER.set_probe(probe)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(quiet)
    return quiet


def uninstall(quiet: QuietRetries, logger: logging.Logger | None = None) -> None:
    """Take the filter off again (the operator stops)."""
    TRACKER.set_probe(None)
    for handler in (logger or logging.getLogger()).handlers:
        handler.removeFilter(quiet)
