"""Chaos: the operator (a real process) rides out an API server restart and an S3 outage.

kmock goes down (its port closed, every connection and watch stream cut) and comes back on the same
port with its objects kept, as a real API server restarts over etcd; the moto server stops and
starts again on the same port with its buckets kept. After each outage every job reaches the phase
it would have reached, with the same children (no duplicate, none re-created) and the same trials,
and the operator's log says one line when the dependency goes away and one when it is back: no
traceback per retry. Under leader election an API server outage longer than the Lease's renew
deadline stops the active replica, and the standby finishes the job once the API server is back.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from autox_operator import outages
from k8s_cluster import PJ_PLURAL, Cluster, KmockThread, wait_for
from k8s_schemas import SchemaSet
from opproc import spawn_operator, stop_all
from ops3 import S3
from prom import free_port
from test_operator_e2e import progress, setup_storage, training_job

from autox_video.errors import S3Error

VTJ, PJ = "videotrainingjobs", PJ_PLURAL
NAMESPACE = "autox-chaos"
# How long a dependency stays down: the 60 s S3 outage and an API server restart, shortened.
OUTAGE_S = 3.0
SEARCH_EPOCHS = 3
SEARCH = {
    "trials": 3,
    "parallel": 2,
    "pruner": "none",
    "seed": 7,
    "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
}
API_DOWN = re.compile(r"the Kubernetes API server at \S+ is unreachable")
API_BACK = re.compile(r"the Kubernetes API server at \S+ is reachable again")


class _Lines(logging.Handler):
    """Collects what passes the filter, as the operator's log handler would print it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (" +traceback" if record.exc_info else ""))


@pytest.fixture()
def quiet_log() -> Iterator[tuple[logging.Logger, _Lines, outages.Tracker, list[float]]]:
    """A logger whose handler carries QuietRetries over a tracker of its own (the outages logger prints there)."""
    lines = _Lines()
    clock = [100.0]
    tracker = outages.Tracker(clock=lambda: clock[0])
    tracker.api = outages.api_label("https://10.0.0.1:443")
    lines.addFilter(outages.QuietRetries(tracker))
    logger = logging.getLogger(f"chaos-test-{id(lines)}")
    logger.propagate = False
    logger.addHandler(lines)
    outages.log.addHandler(lines)
    level = outages.log.level
    outages.log.setLevel(logging.INFO)  # as kopf sets the root logger
    try:
        yield logger, lines, tracker, clock
    finally:
        outages.log.removeHandler(lines)
        outages.log.setLevel(level)


def _failed(logger: logging.Logger, err: BaseException) -> None:
    try:
        raise err
    except BaseException:
        logger.exception("Timer 'follow_training' failed with an exception and will try again in 15 seconds")


def test_retries_of_an_unreachable_api_server_make_one_line_and_its_return_another(quiet_log: Any) -> None:
    logger, lines, tracker, clock = quiet_log
    for attempt in (1, 2, 3):  # kopf's watch retries, urllib3's, a handler that failed on the same outage
        logger.error(
            f"Request attempt #{attempt}/9 failed; will retry: GET https://10.0.0.1:443/apis/autox.io/v1alpha1/"
            "videotrainingjobs?watch=true -> ClientConnectorError(ConnectionKey(host='10.0.0.1'))"
        )
        logger.warning(
            "Retrying (Retry(total=2, connect=None, read=None, redirect=None, status=None)) after connection broken "
            "by 'NewConnectionError(\"HTTPConnection(host='10.0.0.1', port=443): Connection refused\")': /version/"
        )
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as cause:
            try:
                raise RuntimeError("HTTPConnectionPool(host='10.0.0.1', port=443): Max retries exceeded") from cause
            except RuntimeError as err:
                _failed(logger, err)  # a handler's traceback, its cause a refused connection
    assert lines.lines == [
        "the Kubernetes API server at https://10.0.0.1:443 is unreachable (ClientConnectorError): "
        "retrying quietly until it is back"
    ]
    clock[0] += 42
    tracker.api_up()
    tracker.api_up()
    assert lines.lines[1:] == ["the Kubernetes API server at https://10.0.0.1:443 is reachable again after 42 s"]
    # A failure reported just after it answered happened before (a slower thread): not a new outage ...
    clock[0] += 1
    _failed(logger, ConnectionResetError(104, "Connection reset by peer"))
    assert len(lines.lines) == 2
    # ... the retries of a real new one still fail a moment later.
    clock[0] += 2
    _failed(logger, ConnectionResetError(104, "Connection reset by peer"))
    assert lines.lines[2:] == [
        "the Kubernetes API server at https://10.0.0.1:443 is unreachable (ConnectionResetError: "
        "[Errno 104] Connection reset by peer): retrying quietly until it is back"
    ]


def test_real_errors_keep_their_traceback_and_other_waits_their_line(quiet_log: Any) -> None:
    from kubernetes.client.rest import ApiException

    logger, lines, tracker, _ = quiet_log
    tracker.down("S3 at http://minio:9000", "EndpointConnectionError")
    _failed(logger, ValueError("a bug"))
    _failed(logger, ApiException(status=422, reason="Unprocessable Entity"))
    _failed(logger, S3Error("s3://b/k: access denied by S3 at http://minio:9000", "StorageAccessDenied"))
    logger.error("Handler 'start_training' failed temporarily: Secret 's3' not found in namespace 'team'")
    # The same wait, for the S3 that is down: the outage's line says it already.
    logger.error(
        "Handler 'start_training' failed temporarily: s3://b/runs/x: cannot reach S3 at http://minio:9000 (..)"
    )
    _failed(logger, S3Error("s3://b/k: cannot reach S3 at http://minio:9000", "StorageUnreachable", transient=True))
    _failed(logger, ApiException(status=503, reason="Service Unavailable"))  # the API server restarting
    _failed(logger, aiohttp.ClientPayloadError("Response payload is not completed"))  # cut off mid-response
    assert lines.lines == [
        "S3 at http://minio:9000 is unreachable (EndpointConnectionError): retrying quietly until it is back",
        *["Timer 'follow_training' failed with an exception and will try again in 15 seconds +traceback"] * 3,
        "Handler 'start_training' failed temporarily: Secret 's3' not found in namespace 'team'",
        "the Kubernetes API server at https://10.0.0.1:443 is unreachable (ApiException: (503)): "
        "retrying quietly until it is back",
    ]


def test_an_api_server_that_accepts_but_never_answers_fails_the_call_instead_of_hanging_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A half-open API server (one restarting behind a load balancer): the operator's call gives up and
    says the API server is unreachable; without a timeout its handler thread would wait forever."""
    import socket
    import threading

    import kubernetes.client
    from autox_operator.kube import ApiClient, Kube

    monkeypatch.setattr("autox_operator.kube.REQUEST_TIMEOUT", (1.0, 0.3))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # accepts (the kernel does), never answers
        config = kubernetes.client.Configuration(host=f"http://127.0.0.1:{listener.getsockname()[1]}")
        kube = Kube(ApiClient(config))
        outcome: list[BaseException | dict[str, Any] | None] = []

        def call() -> None:
            try:
                outcome.append(kube.get_job(VTJ, NAMESPACE, "ucf"))
            except Exception as err:
                outcome.append(err)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(60)
        assert not caller.is_alive(), "the call hung on an API server that does not answer"
    (err,) = outcome
    assert isinstance(err, Exception) and outages.unreachable(err) == "api", repr(err)


@pytest.fixture()
def api() -> Iterator[KmockThread]:
    """A kmock of this test's own, so that its outages touch no other test."""
    server = KmockThread().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def cluster_of(api: KmockThread, tmp_path: Path, crd_schemas: SchemaSet) -> Cluster:
    return Cluster(api.write_kubeconfig(tmp_path / "kubeconfig"), real=False, schemas=crd_schemas)


@pytest.fixture()
def s3(s3_server: Any) -> S3:
    """The session's moto server (it can stop and start again on the same port, its data kept)."""
    s3_server.start()
    return S3(s3_server.endpoint_url)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _logged(log: Path, pattern: re.Pattern[str], count: int) -> None:
    """Wait until the operator's log has `count` lines matching `pattern`."""
    wait_for(lambda: len(pattern.findall(log.read_text())) >= count, what=f"{count} x {pattern.pattern!r} in the log")


def _children(cluster: Cluster, owner: str) -> dict[str, str]:
    """name -> uid of the PyTorchJobs owned by the job `owner` (a re-created child has a new uid)."""
    return {
        pj["metadata"]["name"]: pj["metadata"]["uid"]
        for pj in cluster.pytorchjobs(NAMESPACE)
        if any(ref["name"] == owner for ref in pj["metadata"].get("ownerReferences") or [])
    }


def _trials(cluster: Cluster, name: str) -> list[tuple[int, dict[str, Any]]]:
    return [(t["number"], t["params"]) for t in cluster.status(VTJ, NAMESPACE, name).get("trials") or []]


def _trial_state(cluster: Cluster, name: str, number: int) -> str | None:
    trials = cluster.status(VTJ, NAMESPACE, name).get("trials") or []
    return next((t.get("state") for t in trials if t["number"] == number), None)


def play_trial(s3: S3, out: str, number: int, top1: list[float], *, done: bool = False) -> None:
    """The trainer of trial `number`: metrics.jsonl, progress.json (and best.pth at the end)."""
    prefix = f"{out}trials/{number:04d}/"
    s3.put_text(
        f"{prefix}metrics.jsonl", "".join(json.dumps({"epoch": e + 1, "top1": v}) + "\n" for e, v in enumerate(top1))
    )
    if done:
        s3.put_text(f"{prefix}best.pth", f"weights of trial {number}")
    s3.put_json(
        f"{prefix}progress.json",
        {
            "phase": "succeeded" if done else "running",
            "epoch": len(top1),
            "total_epochs": SEARCH_EPOCHS,
            "best_top1": max(top1),
            "best_epoch": top1.index(max(top1)) + 1,
        },
    )


def jobs(bucket: str, endpoint: str, namespace: str = NAMESPACE) -> tuple[dict[str, Any], dict[str, Any]]:
    """A plain training job and a search, both 3 epochs."""
    train = training_job(namespace, "ucf", bucket, endpoint)
    search = training_job(
        namespace,
        "hpo",
        bucket,
        endpoint,
        training={"epochs": SEARCH_EPOCHS, "evalInterval": 1, "lr": 0.001},
        resources={"replicas": 1, "gpusPerReplica": 1},
        search=SEARCH,
    )
    return train, search


def _start(cluster: Cluster, s3: S3, bucket: str, tmp_path: Path) -> tuple[Any, Path]:
    """The operator process (healthy), the training job running at epoch 1, the search's first two trials running."""
    health = free_port()
    log = tmp_path / "operator.log"
    proc = spawn_operator(cluster.kubeconfig, NAMESPACE, log, AUTOX_LIVENESS=f"http://127.0.0.1:{health}/healthz")
    wait_for(lambda: _healthy(health) or proc.poll() is not None, timeout=60, what="the operator's /healthz")
    assert proc.poll() is None, log.read_text()
    train, search = jobs(bucket, s3.endpoint_url)
    cluster.create(train)
    cluster.create(search)
    wait_for(lambda: cluster.get(PJ, NAMESPACE, "ucf"), what="the training PyTorchJob")
    s3.put_json(
        f"s3://{bucket}/runs/ucf/progress.json",
        progress(bucket, "ucf", phase="running", epoch=1, best=0.5, best_epoch=1),
    )
    cluster.set_pytorchjob_status(NAMESPACE, "ucf", "Created", "Running")
    cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Running", epoch=1)
    wait_for(lambda: sorted(_children(cluster, "hpo")) == ["hpo-t0000", "hpo-t0001"], what="two trials")
    for number in (0, 1):
        cluster.set_pytorchjob_status(NAMESPACE, f"hpo-t{number:04d}", "Created", "Running")
    cluster.wait_status(VTJ, NAMESPACE, "hpo", phase="Running", trialsSummary="2/3")
    return proc, log


def _finish(cluster: Cluster, s3: S3, bucket: str) -> dict[str, Any]:
    """Play the trainers to the end: the training job succeeds at epoch 3; trials 0, 1 and 2 succeed."""
    out = f"s3://{bucket}/runs/hpo/"
    s3.put_text(f"s3://{bucket}/runs/ucf/best.pth", "weights")
    s3.put_json(
        f"s3://{bucket}/runs/ucf/progress.json",
        progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.9, best_epoch=3),
    )
    cluster.set_pytorchjob_status(NAMESPACE, "ucf", "Created", "Succeeded")
    status = cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Succeeded", epoch=3, bestTop1=0.9)
    assert status["bestCheckpoint"] == f"s3://{bucket}/runs/ucf/best.pth"
    for number in (0, 1):
        if _trial_state(cluster, "hpo", number) != "succeeded":
            play_trial(s3, out, number, [0.5, 0.6, (0.7, 0.8)[number]], done=True)
            cluster.set_pytorchjob_status(NAMESPACE, f"hpo-t{number:04d}", "Created", "Succeeded")
    wait_for(lambda: cluster.get(PJ, NAMESPACE, "hpo-t0002"), what="trial 2")
    play_trial(s3, out, 2, [0.4, 0.5, 0.6], done=True)
    cluster.set_pytorchjob_status(NAMESPACE, "hpo-t0002", "Created", "Succeeded")
    status = cluster.wait_status(VTJ, NAMESPACE, "hpo", phase="Succeeded")
    assert status["trialCounts"] == {"total": 3, "running": 0, "succeeded": 3, "pruned": 0, "failed": 0}
    assert status["bestTrial"] == 1 and status["bestTop1"] == 0.8
    return status


def test_the_api_server_restarts_mid_training_and_mid_search(
    api: KmockThread, cluster_of: Cluster, s3: S3, tmp_path: Path
) -> None:
    cluster = cluster_of
    bucket = setup_storage(cluster, NAMESPACE, s3)
    out = f"s3://{bucket}/runs/hpo/"
    proc, log = _start(cluster, s3, bucket, tmp_path)
    try:
        children = {"ucf": _children(cluster, "ucf"), "hpo": _children(cluster, "hpo")}
        trials = _trials(cluster, "hpo")

        # Restart 1, mid-training: the trainer goes on while the API server is away.
        api.go_down()
        s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="running", epoch=2, best=0.7, best_epoch=2),
        )
        time.sleep(OUTAGE_S)
        api.come_back()
        cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Running", epoch=2, bestTop1=0.7)
        _logged(log, API_BACK, 1)

        # Restart 2, mid-search: trial 0 ends while the API server is away; trial 1 trains on.
        play_trial(s3, out, 0, [0.5, 0.6, 0.7], done=True)
        api.go_down()
        play_trial(s3, out, 1, [0.5])
        time.sleep(OUTAGE_S)
        api.come_back()
        _logged(log, API_BACK, 2)
        cluster.set_pytorchjob_status(NAMESPACE, "hpo-t0000", "Created", "Succeeded")
        wait_for(lambda: _trial_state(cluster, "hpo", 0) == "succeeded", what="trial 0 succeeded")
        assert _trials(cluster, "hpo")[:2] == trials  # the same trials: none lost, none renumbered

        _finish(cluster, s3, bucket)
        assert _children(cluster, "ucf") == children["ucf"]  # the same object: not re-created
        after = _children(cluster, "hpo")
        assert sorted(after) == ["hpo-t0000", "hpo-t0001", "hpo-t0002"]
        assert {k: after[k] for k in children["hpo"]} == children["hpo"]
        assert _trials(cluster, "hpo")[:2] == trials
    finally:
        stop_all([proc])
    text = log.read_text()
    assert "Traceback" not in text, text
    assert len(API_DOWN.findall(text)) == 2, text
    assert len(API_BACK.findall(text)) == 2, text
    assert sum(api.url in line for line in text.splitlines()) == 4, text  # those lines, no line per retry


def test_an_s3_outage_mid_training_and_mid_search_loses_nothing_and_fails_no_job(
    cluster_of: Cluster, s3_server: Any, s3: S3, tmp_path: Path
) -> None:
    cluster = cluster_of
    bucket = setup_storage(cluster, NAMESPACE, s3)
    out = f"s3://{bucket}/runs/hpo/"
    proc, log = _start(cluster, s3, bucket, tmp_path)
    down = re.compile(rf"S3 at {re.escape(s3.endpoint_url)} is unreachable")
    back = re.compile(rf"S3 at {re.escape(s3.endpoint_url)} is reachable again")
    try:
        children = {"ucf": _children(cluster, "ucf"), "hpo": _children(cluster, "hpo")}
        trials = _trials(cluster, "hpo")
        # The trainers' last writes before the outage: the training run's final progress, trial 1's end.
        s3.put_text(f"s3://{bucket}/runs/ucf/best.pth", "weights")
        s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.9, best_epoch=3),
        )
        play_trial(s3, out, 1, [0.5, 0.6, 0.8], done=True)
        s3_server.stop()
        # While S3 is away: both runs end, and a new job arrives.
        cluster.set_pytorchjob_status(NAMESPACE, "ucf", "Created", "Succeeded")
        cluster.set_pytorchjob_status(NAMESPACE, "hpo-t0001", "Created", "Succeeded")
        late, _ = jobs(bucket, s3.endpoint_url)
        late["metadata"]["name"] = "late"
        cluster.create(late)
        # The finished run is not closed on what was read before the outage, the new job waits, none fails.
        status = wait_for(
            lambda: (s := cluster.status(VTJ, NAMESPACE, "ucf")).get("message", "").startswith("the run ended;") and s,
            what="the training job waiting for its progress.json",
        )
        assert status["phase"] == "Running"
        wait_for(
            lambda: (
                ((cluster.status(VTJ, NAMESPACE, "late").get("conditions") or [{}])[0].get("reason"))
                == "StorageUnreachable"
            ),
            what="the new job waiting for S3",
        )
        _logged(log, down, 1)
        time.sleep(OUTAGE_S)
        for name in ("ucf", "hpo", "late"):
            assert cluster.status(VTJ, NAMESPACE, name).get("phase") != "Failed"
        assert cluster.get(PJ, NAMESPACE, "late") is None
        s3_server.start()

        status = cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Succeeded", epoch=3, bestTop1=0.9)
        assert status["bestCheckpoint"] == f"s3://{bucket}/runs/ucf/best.pth"
        wait_for(lambda: _trial_state(cluster, "hpo", 1) == "succeeded", what="trial 1 succeeded")
        wait_for(lambda: cluster.get(PJ, NAMESPACE, "late"), what="the new job's PyTorchJob")
        _logged(log, back, 1)
        _finish(cluster, s3, bucket)
        assert _children(cluster, "ucf") == children["ucf"]
        after = _children(cluster, "hpo")
        assert sorted(after) == ["hpo-t0000", "hpo-t0001", "hpo-t0002"]
        assert {k: after[k] for k in children["hpo"]} == children["hpo"]
        assert _trials(cluster, "hpo")[:2] == trials
        assert list(_children(cluster, "late")) == ["late"]
    finally:
        s3_server.start()
        stop_all([proc])
    text = log.read_text()
    assert "Traceback" not in text, text
    assert len(down.findall(text)) == 1 and len(back.findall(text)) == 1, text
    assert sum(s3.endpoint_url in line for line in text.splitlines()) == 2, text  # no line per retry


def test_an_api_server_restart_under_two_replicas_hands_over_with_one_line_per_replica(
    api: KmockThread, cluster_of: Cluster, s3: S3, tmp_path: Path
) -> None:
    """Longer than the Lease's renew deadline: the active replica stops (it cannot renew, so it may not act),
    the standby takes over once the API server is back and finishes the job; each says the outage once."""
    cluster = cluster_of
    bucket = setup_storage(cluster, NAMESPACE, s3)
    lease = {"AUTOX_LEADER_ELECTION": "autox-operator", "POD_NAMESPACE": NAMESPACE, "AUTOX_LEASE_DURATION": "4"}
    lease.update(AUTOX_LEASE_RENEW="1", AUTOX_LEASE_RETRY="0.5")
    procs, logs, health = {}, {}, {}
    try:
        for name in ("op-a", "op-b"):
            health[name], logs[name] = free_port(), tmp_path / f"{name}.log"
            liveness = f"http://127.0.0.1:{health[name]}/healthz"
            procs[name] = spawn_operator(
                cluster.kubeconfig, NAMESPACE, logs[name], POD_NAME=name, AUTOX_LIVENESS=liveness, **lease
            )
            wait_for(lambda name=name: _healthy(health[name]), timeout=60, what=f"{name}'s /healthz")
        assert "leader: op-a holds" in logs["op-a"].read_text()
        train, _ = jobs(bucket, s3.endpoint_url)
        cluster.create(train)
        wait_for(lambda: cluster.get(PJ, NAMESPACE, "ucf"), what="the PyTorchJob")
        cluster.set_pytorchjob_status(NAMESPACE, "ucf", "Created", "Running")
        cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Running")
        children = _children(cluster, "ucf")

        api.go_down()
        assert procs["op-a"].wait(30) == 1  # it could not renew the Lease: it stopped
        api.come_back()
        wait_for(lambda: "leader: op-b holds" in logs["op-b"].read_text(), what="op-b to take over")
        s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.9, best_epoch=3),
        )
        cluster.set_pytorchjob_status(NAMESPACE, "ucf", "Created", "Succeeded")
        cluster.wait_status(VTJ, NAMESPACE, "ucf", phase="Succeeded", epoch=3, bestTop1=0.9)
        assert _children(cluster, "ucf") == children
    finally:
        api.come_back()
        stop_all(procs.values())
    active, standby = logs["op-a"].read_text(), logs["op-b"].read_text()
    assert "lost Lease" in active and "Traceback" not in active + standby, active + standby
    assert len(API_DOWN.findall(active)) == 1, active
    # The standby looked every 0.5 s while the API server was away: one line for it all, and one when back.
    assert len(API_DOWN.findall(standby)) == 1 and len(API_BACK.findall(standby)) == 1, standby
    assert sum(str(api.port) in line for line in standby.splitlines()) == 2, standby  # no line per look
