"""Operator HA: replicas elect one active operator through a coordination.k8s.io/v1 Lease; when it dies the
standby takes over, reconciles from the cluster's state and creates no second child."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from autox_operator.leader import Elector, LeaseConfig
from k8s_cluster import Cluster, wait_for
from kubernetes.client.rest import ApiException
from opproc import spawn_operator, stop_all
from ops3 import S3
from prom import free_port
from test_operator_chaos import jobs, play_trial
from test_operator_e2e import PJ, VTJ, progress, setup_storage, training_job

LEASE = "autox-operator"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _leases(cluster: Cluster) -> Any:
    return kubernetes.client.CoordinationV1Api(kubernetes.config.new_client_from_config(str(cluster.kubeconfig)))


def _holder(api: Any, namespace: str) -> str | None:
    try:
        return api.read_namespaced_lease(LEASE, namespace).spec.holder_identity
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def test_one_replica_leads_the_other_takes_over_only_after_the_lease_expires(cluster: Cluster, namespace: str) -> None:
    api = _leases(cluster)
    a_clock, b_clock = Clock(), Clock()
    a = Elector(api, LeaseConfig(LEASE, namespace, "op-a"), clock=a_clock)
    b = Elector(api, LeaseConfig(LEASE, namespace, "op-b"), clock=b_clock)
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert _holder(api, namespace) == "op-a"
    for _ in range(5):  # a renews every 5 s: b never sees the Lease go stale
        a_clock.now += 5
        b_clock.now += 5
        assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    b_clock.now += 14  # a died: silent for less than the 15 s duration
    assert not b.try_acquire_or_renew()
    b_clock.now += 1
    assert b.try_acquire_or_renew()
    lease = api.read_namespaced_lease(LEASE, namespace)
    assert lease.spec.holder_identity == "op-b" and lease.spec.lease_transitions == 1
    a_clock.now += 1  # a comes back (a paused process): it is a standby now, it cannot renew
    assert not a.try_acquire_or_renew()
    b.release()
    assert _holder(api, namespace) == ""
    assert a.try_acquire_or_renew()  # a released Lease is taken at once


def test_defaults_take_over_within_30_seconds() -> None:
    cfg = LeaseConfig.from_env({"AUTOX_LEADER_ELECTION": LEASE, "POD_NAME": "p", "POD_NAMESPACE": "ops"})
    assert cfg is not None and (cfg.name, cfg.namespace, cfg.identity) == (LEASE, "ops", "p")
    assert cfg.duration + cfg.retry <= 30 and cfg.renew < cfg.duration
    assert LeaseConfig.from_env({}) is None  # no election: one replica, as before


def test_a_write_based_on_a_stale_read_loses(cluster: Cluster, namespace: str) -> None:
    """Two standbys that both saw the Lease expire: only the first replace wins (the API server's 409)."""
    api = _leases(cluster)
    assert Elector(api, LeaseConfig(LEASE, namespace, "op-a")).try_acquire_or_renew()
    seen = api.read_namespaced_lease(LEASE, namespace)
    b, c = (Elector(api, LeaseConfig(LEASE, namespace, n)) for n in ("op-b", "op-c"))
    api.patch_namespaced_lease(LEASE, namespace, b._body(seen, taking=True))
    with pytest.raises(ApiException) as err:
        api.patch_namespaced_lease(LEASE, namespace, c._body(seen, taking=True))
    assert err.value.status == 409 and _holder(api, namespace) == "op-b"


def _operator(cluster: Cluster, namespace: str, name: str, health: int, logs: Path) -> subprocess.Popen[bytes]:
    return spawn_operator(
        cluster.kubeconfig,
        namespace,
        logs / f"{name}.log",
        AUTOX_LEADER_ELECTION=LEASE,
        POD_NAMESPACE=namespace,
        POD_NAME=name,
        AUTOX_LEASE_DURATION="4",  # the chart's 15 s, shortened to keep the test short
        AUTOX_LEASE_RENEW="1",
        AUTOX_LEASE_RETRY="0.5",
        AUTOX_LIVENESS=f"http://127.0.0.1:{health}/healthz",
    )


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _owned(items: list[dict[str, Any]], owner_uid: str) -> list[tuple[str, str]]:
    return sorted(
        (o["metadata"]["name"], o["metadata"]["uid"])
        for o in items
        if owner_uid in {r["uid"] for r in o["metadata"].get("ownerReferences") or []}
    )


def _configmaps(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return [
        cluster.core.api_client.sanitize_for_serialization(c)
        for c in cluster.core.list_namespaced_config_map(namespace).items
    ]


def test_the_standby_takes_over_when_the_active_operator_is_killed_mid_training(
    cluster: Cluster, namespace: str, operator_s3: S3, tmp_path: Path
) -> None:
    api = _leases(cluster)
    bucket = setup_storage(cluster, namespace, operator_s3)
    ports = {"op-a": free_port(), "op-b": free_port()}
    procs = {"op-a": _operator(cluster, namespace, "op-a", ports["op-a"], tmp_path)}
    try:
        wait_for(lambda: _holder(api, namespace) == "op-a" or None, timeout=60, what="op-a to lead")
        procs["op-b"] = _operator(cluster, namespace, "op-b", ports["op-b"], tmp_path)
        wait_for(lambda: _healthy(ports["op-b"]) or None, timeout=60, what="op-b's standby /healthz")

        cluster.create(training_job(namespace, "ucf", bucket, operator_s3.endpoint_url))
        wait_for(lambda: cluster.get(PJ, namespace, "ucf"), what="the PyTorchJob")
        owner_uid = cluster.get(VTJ, namespace, "ucf")["metadata"]["uid"]
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="running", epoch=1, best=0.5, best_epoch=1),
        )
        cluster.set_pytorchjob_status(namespace, "ucf", "Created", "Running", startTime="2024-06-01T11:00:00Z")
        cluster.wait_status(VTJ, namespace, "ucf", phase="Running", epoch=1)
        assert _holder(api, namespace) == "op-a"  # op-b waited all along, without running kopf
        standby = (tmp_path / "op-b.log").read_text()
        assert "standby: Lease" in standby and "leader:" not in standby and "kopf" not in standby.lower()
        children = _owned(cluster.pytorchjobs(namespace), owner_uid)
        configmaps = _owned(_configmaps(cluster, namespace), owner_uid)
        assert [n for n, _ in children] == ["ucf"] and [n for n, _ in configmaps] == ["ucf-config"]

        procs["op-a"].send_signal(signal.SIGKILL)  # mid-training: no release, no goodbye
        procs["op-a"].wait(10)
        killed = time.monotonic()
        wait_for(lambda: _holder(api, namespace) == "op-b" or None, timeout=30, what="op-b to take over")
        assert time.monotonic() - killed < 30

        # op-b follows the job from the cluster's state: the trainer goes on and finishes.
        operator_s3.put_json(
            f"s3://{bucket}/runs/ucf/progress.json",
            progress(bucket, "ucf", phase="succeeded", epoch=3, best=0.8, best_epoch=3),
        )
        cluster.set_pytorchjob_status(namespace, "ucf", "Created", "Running", "Succeeded")
        status = cluster.wait_status(VTJ, namespace, "ucf", phase="Succeeded", epoch=3)
        assert status["bestTop1"] == 0.8
        # The children are exactly those one operator makes: the same objects, none added or re-created.
        assert _owned(cluster.pytorchjobs(namespace), owner_uid) == children
        assert _owned(_configmaps(cluster, namespace), owner_uid) == configmaps
        assert procs["op-b"].poll() is None and "leader: op-b holds Lease" in (tmp_path / "op-b.log").read_text()
    finally:
        stop_all(procs.values())
    assert _holder(api, namespace) == ""  # op-b stopped gracefully: it released the Lease


def _two_replicas(cluster: Cluster, namespace: str, tmp_path: Path) -> dict[str, subprocess.Popen[bytes]]:
    """op-a leading, op-b a healthy standby."""
    api = _leases(cluster)
    ports = {"op-a": free_port(), "op-b": free_port()}
    procs = {"op-a": _operator(cluster, namespace, "op-a", ports["op-a"], tmp_path)}
    wait_for(lambda: _holder(api, namespace) == "op-a" or None, timeout=60, what="op-a to lead")
    procs["op-b"] = _operator(cluster, namespace, "op-b", ports["op-b"], tmp_path)
    wait_for(lambda: _healthy(ports["op-b"]) or None, timeout=60, what="op-b's standby /healthz")
    return procs


def _trials(cluster: Cluster, namespace: str) -> list[tuple[int, str, dict[str, Any]]]:
    trials = cluster.status(VTJ, namespace, "hpo").get("trials") or []
    return [(t["number"], t["state"], t["params"]) for t in trials]


def test_the_standby_takes_over_when_the_active_operator_is_killed_mid_search(
    cluster: Cluster, namespace: str, operator_s3: S3, tmp_path: Path
) -> None:
    api = _leases(cluster)
    bucket = setup_storage(cluster, namespace, operator_s3)
    out = f"s3://{bucket}/runs/hpo/"
    procs = _two_replicas(cluster, namespace, tmp_path)
    try:
        _, search = jobs(bucket, operator_s3.endpoint_url, namespace)
        cluster.create(search)
        owner_uid = cluster.get(VTJ, namespace, "hpo")["metadata"]["uid"]
        wait_for(lambda: len(_owned(cluster.pytorchjobs(namespace), owner_uid)) == 2, what="two trials")
        for name in ("hpo-t0000", "hpo-t0001"):
            cluster.set_pytorchjob_status(namespace, name, "Created", "Running")
        play_trial(operator_s3, out, 0, [0.5])
        wait_for(
            lambda: (
                [(n, s) for n, s, _ in _trials(cluster, namespace)] == [(0, "running"), (1, "running")]
                and cluster.status(VTJ, namespace, "hpo")["trials"][0].get("epochs") == 1
            ),
            what="trial 0 at epoch 1",
        )
        trials = _trials(cluster, namespace)
        children = _owned(cluster.pytorchjobs(namespace), owner_uid)
        configmaps = _owned(_configmaps(cluster, namespace), owner_uid)
        assert [n for n, _ in children] == ["hpo-t0000", "hpo-t0001"]
        assert [n for n, _ in configmaps] == ["hpo-t0000-config", "hpo-t0001-config"]

        procs["op-a"].send_signal(signal.SIGKILL)  # mid-search: two trials in flight
        procs["op-a"].wait(10)
        wait_for(lambda: _holder(api, namespace) == "op-b" or None, timeout=30, what="op-b to take over")

        # op-b drives the same search on: trial 0 ends, trial 2 (and only it) starts, all three end.
        play_trial(operator_s3, out, 0, [0.5, 0.6, 0.7], done=True)
        cluster.set_pytorchjob_status(namespace, "hpo-t0000", "Created", "Succeeded")
        wait_for(lambda: cluster.get(PJ, namespace, "hpo-t0002"), what="trial 2")
        for number, top1 in ((1, [0.5, 0.6, 0.8]), (2, [0.4, 0.5, 0.6])):
            play_trial(operator_s3, out, number, top1, done=True)
            cluster.set_pytorchjob_status(namespace, f"hpo-t{number:04d}", "Created", "Succeeded")
        status = cluster.wait_status(VTJ, namespace, "hpo", phase="Succeeded")
        assert status["trialCounts"] == {"total": 3, "running": 0, "succeeded": 3, "pruned": 0, "failed": 0}
        assert status["bestTrial"] == 1
        # The trials and children are exactly those one operator makes: the first two kept, one added.
        assert [(n, p) for n, _, p in _trials(cluster, namespace)][:2] == [(n, p) for n, _, p in trials]
        after = _owned(cluster.pytorchjobs(namespace), owner_uid)
        assert after[:2] == children and [n for n, _ in after] == ["hpo-t0000", "hpo-t0001", "hpo-t0002"]
        assert _owned(_configmaps(cluster, namespace), owner_uid)[:2] == configmaps
        ledger = operator_s3.client.get_object(Bucket=bucket, Key="runs/hpo/trials.jsonl")["Body"].read().decode()
        assert [json.loads(line)["number"] for line in ledger.splitlines()] == [0, 1, 2]
        assert procs["op-b"].poll() is None
    finally:
        stop_all(procs.values())
    assert _holder(api, namespace) == ""
