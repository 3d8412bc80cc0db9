"""Prometheus metrics of the operator, served on /metrics (AUTOX_METRICS_PORT; 0 = off).

autox_jobs{kind,phase}                          jobs by phase, from the watch (what the API server holds)
autox_search_trials{state}                      trials of all searching jobs, from their status.trialCounts
autox_reconcile_duration_seconds{kind,step}     one start / sync / search pass
autox_s3_request_duration_seconds{operation}    each S3 call (reads: head_bucket, head_object, get_object)
autox_errors_total{kind,reason}                 why a job waits or failed, or an unexpected exception's class
autox_child_creations_total{kind,engine}        PyTorchJobs and TrainJobs created
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, get_args

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from autox_video.spec.common import Phase

log = logging.getLogger(__name__)

KINDS = ("VideoTrainingJob", "VideoInferenceJob")
PHASES = get_args(Phase)
TRIAL_STATES = ("running", "succeeded", "pruned", "failed")

JOBS = Gauge("autox_jobs", "Jobs by kind and phase (a job without a phase yet is Pending).", ["kind", "phase"])
TRIALS = Gauge("autox_search_trials", "Trials of the searching jobs, by state.", ["state"])
RECONCILE = Histogram(
    "autox_reconcile_duration_seconds",
    "Duration of one reconcile step: start (create the children), sync (status of a job), search (one pass).",
    ["kind", "step"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
S3_REQUEST = Histogram(
    "autox_s3_request_duration_seconds",
    "Duration of one S3 call by operation (reads: head_bucket, head_object, get_object).",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERRORS = Counter(
    "autox_errors",
    "Errors by reason: a job that waits or fails, an unreadable S3 object, an exception.",
    ["kind", "reason"],
)
CREATIONS = Counter("autox_child_creations", "Children created, by owner kind and engine kind.", ["kind", "engine"])

_lock = threading.Lock()
_jobs: dict[tuple[str, str, str], tuple[str, Mapping[str, Any]]] = {}  # (kind, namespace, name) -> phase, trials
_server: Any = None


def observe_job(kind: str, namespace: str, name: str, status: Mapping[str, Any] | None) -> None:
    """Record a job's status as the watch delivered it (None: the job is gone); refreshes the gauges."""
    with _lock:
        if status is None:
            _jobs.pop((kind, namespace, name), None)
        else:
            _jobs[(kind, namespace, name)] = (status.get("phase") or "Pending", status.get("trialCounts") or {})
        _refresh()


def _refresh() -> None:
    # Every (kind, phase) and state is exported, zeros included: dashboards and alerts need no absent().
    phases = {(k, p): 0 for k in KINDS for p in PHASES}
    trials = dict.fromkeys(TRIAL_STATES, 0)
    for (kind, _, _), (phase, counts) in _jobs.items():
        phases[(kind, phase)] = phases.get((kind, phase), 0) + 1
        for state in TRIAL_STATES:
            value = counts.get(state)
            trials[state] += value if isinstance(value, int) else 0
    for (kind, phase), n in phases.items():
        JOBS.labels(kind, phase).set(n)
    for state, n in trials.items():
        TRIALS.labels(state).set(n)


@contextmanager
def timed(kind: str, step: str, *, handled: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Time one reconcile step; an exception other than `handled` ones (counted where raised) counts by class."""
    start = time.perf_counter()
    try:
        yield
    except Exception as err:
        if not isinstance(err, handled):
            ERRORS.labels(kind, type(err).__name__).inc()
        raise
    finally:
        RECONCILE.labels(kind, step).observe(time.perf_counter() - start)


@contextmanager
def s3_call(operation: str) -> Iterator[None]:
    """Time one S3 call (failures included: a timeout is the slowest read)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        S3_REQUEST.labels(operation).observe(time.perf_counter() - start)


def error(kind: str, reason: str) -> None:
    """Count one error of a job of `kind` (reason: a CamelCase word, as in the job's conditions)."""
    ERRORS.labels(kind, reason).inc()


def child_created(kind: str, engine: str) -> None:
    """Count one child (engine: PyTorchJob or TrainJob) created for a job of `kind`."""
    CREATIONS.labels(kind, engine).inc()


def start(port: int, addr: str = "0.0.0.0") -> int | None:
    """Serve /metrics on `port` (0: off) and forget the jobs of an earlier run; the bound port, or None."""
    global _server
    stop()
    with _lock:
        _jobs.clear()
        _refresh()
    if port == 0:
        return None
    try:
        _server, _ = start_http_server(port, addr)
    except OSError as err:  # monitoring must not stop the operator from running jobs
        log.error("metrics: cannot listen on %s:%d (%s): no /metrics", addr, port, err)
        return None
    log.info("metrics: serving http://%s:%d/metrics", addr, port)
    return int(_server.server_port)


def stop() -> None:
    """Stop serving /metrics (operator shutdown; an in-process restart starts it again)."""
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None
