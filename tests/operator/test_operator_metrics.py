"""/metrics: the gauges follow the watched jobs, errors and durations are counted, the server starts and
stops cleanly (read back over HTTP, as Prometheus would). The e2e story scrapes it against kmock."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from autox_operator import metrics
from autox_operator.settings import OperatorSettings
from prom import free_port, scrape, total, value


@pytest.fixture()
def port() -> Iterator[int]:
    """/metrics on a free port, for the length of one test."""
    bound = metrics.start(free_port(), "127.0.0.1")
    assert bound is not None
    yield bound
    metrics.stop()


def test_jobs_by_kind_and_phase_and_trials_by_state_follow_the_watch(port: int) -> None:
    metrics.observe_job("VideoTrainingJob", "ns", "a", {"phase": "Running"})
    metrics.observe_job("VideoTrainingJob", "ns", "b", {})  # just created: no phase yet
    metrics.observe_job("VideoInferenceJob", "ns", "c", {"phase": "Queued"})
    search = {"phase": "Running", "trialCounts": {"total": 5, "running": 2, "succeeded": 1, "pruned": 2, "failed": 0}}
    metrics.observe_job("VideoTrainingJob", "ns", "s", search)
    now = scrape(port)
    assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Running") == 2
    assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Pending") == 1
    assert value(now, "autox_jobs", kind="VideoInferenceJob", phase="Queued") == 1
    assert value(now, "autox_jobs", kind="VideoInferenceJob", phase="Failed") == 0  # exported, as 0
    assert total(now, "autox_jobs") == 4
    trials = {s: value(now, "autox_search_trials", state=s) for s in ("running", "succeeded", "pruned", "failed")}
    assert trials == {"running": 2, "succeeded": 1, "pruned": 2, "failed": 0}

    # A phase change moves the job; a deleted job leaves the counts.
    metrics.observe_job("VideoTrainingJob", "ns", "s", {**search, "phase": "Succeeded"})
    metrics.observe_job("VideoTrainingJob", "ns", "a", None)
    now = scrape(port)
    assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Running") == 0
    assert value(now, "autox_jobs", kind="VideoTrainingJob", phase="Succeeded") == 1
    assert total(now, "autox_jobs") == 3

    # A new start (an operator restarted in-process) forgets what the earlier run saw: the watch lists every job again.
    fresh = metrics.start(free_port(), "127.0.0.1")
    assert fresh is not None and total(scrape(fresh), "autox_jobs") == 0


def test_a_reconcile_step_is_timed_and_an_unexpected_exception_counted_by_class(port: int) -> None:
    before = scrape(port)
    with metrics.timed("VideoTrainingJob", "sync"):
        pass
    with pytest.raises(KeyError), metrics.timed("VideoTrainingJob", "sync"):
        raise KeyError("spec")
    with pytest.raises(TimeoutError), metrics.timed("VideoTrainingJob", "start", handled=(TimeoutError,)):
        raise TimeoutError  # what the caller counts itself (a job that waits: by its reason)
    metrics.error("VideoTrainingJob", "SecretNotFound")
    with metrics.s3_call("get_object"):
        pass
    now = scrape(port)

    def delta(name: str, **labels: str) -> float:
        return value(now, name, **labels) - value(before, name, **labels)

    assert delta("autox_reconcile_duration_seconds_count", kind="VideoTrainingJob", step="sync") == 2
    assert delta("autox_reconcile_duration_seconds_count", kind="VideoTrainingJob", step="start") == 1
    assert delta("autox_errors_total", kind="VideoTrainingJob", reason="KeyError") == 1
    assert delta("autox_errors_total", kind="VideoTrainingJob", reason="TimeoutError") == 0
    assert delta("autox_errors_total", kind="VideoTrainingJob", reason="SecretNotFound") == 1
    assert delta("autox_s3_request_duration_seconds_count", operation="get_object") == 1


def test_stop_frees_the_port_and_a_busy_port_does_not_stop_the_operator(caplog: pytest.LogCaptureFixture) -> None:
    port = metrics.start(free_port(), "127.0.0.1")
    assert port is not None and scrape(port)
    metrics.stop()
    assert metrics.start(port, "127.0.0.1") == port and scrape(port)  # an in-process restart gets it again
    metrics.stop()
    with socket.socket() as sock, caplog.at_level(logging.ERROR, logger="autox_operator.metrics"):
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        assert metrics.start(busy, "127.0.0.1") is None
    assert f"cannot listen on 127.0.0.1:{busy}" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [(None, 8081), ("9100", 9100), ("0", 0), (" 8000 ", 8000)],
    ids=["default", "set", "off", "spaces"],
)
def test_metrics_port_setting(monkeypatch: pytest.MonkeyPatch, env: str | None, expected: int) -> None:
    if env is None:
        monkeypatch.delenv("AUTOX_METRICS_PORT", raising=False)
    else:
        monkeypatch.setenv("AUTOX_METRICS_PORT", env)
    assert OperatorSettings.from_env().metrics_port == expected


@pytest.mark.parametrize("bad", ["http", "-1", "65536"])
def test_a_bad_metrics_port_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("AUTOX_METRICS_PORT", bad)
    with pytest.raises(SystemExit, match=f"AUTOX_METRICS_PORT='{bad}': expected a port number"):
        OperatorSettings.from_env()
