"""One active operator among replicas: a coordination.k8s.io/v1 Lease, as client-go's leader election does it.

A replica runs kopf only while it holds the Lease. It takes the Lease when none exists, when it was
released (no holder), or when the holder has not renewed it for `duration` seconds as seen by this
replica's own clock (never by comparing clocks across nodes). Every write is a patch carrying the
resourceVersion read before it, so of two replicas racing for the Lease the API server lets only one
win (409 for the other). The holder renews every `renew` seconds; when it cannot renew for `duration - renew` seconds it
exits at once (another replica may take over after `duration`), so two operators never act together.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("autox_operator.leader")


@dataclass(frozen=True)
class LeaseConfig:
    """Which Lease, who we are, and the timings (seconds)."""

    name: str
    namespace: str
    identity: str
    duration: float = 15.0  # a holder silent this long has lost the Lease
    renew: float = 5.0  # the holder renews this often
    retry: float = 2.0  # a standby looks this often

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> LeaseConfig | None:
        """From AUTOX_LEADER_ELECTION (the Lease's name; empty: no election), POD_NAMESPACE, POD_NAME."""
        name = (environ.get("AUTOX_LEADER_ELECTION") or "").strip()
        if not name:
            return None
        identity = environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        duration = float(environ.get("AUTOX_LEASE_DURATION") or cls.duration)
        renew = float(environ.get("AUTOX_LEASE_RENEW") or min(cls.renew, duration / 3))
        retry = float(environ.get("AUTOX_LEASE_RETRY") or min(cls.retry, duration / 5))
        if not 0 < renew < duration:
            raise SystemExit(f"AUTOX_LEASE_RENEW={renew}: must be below AUTOX_LEASE_DURATION={duration}")
        return cls(name, environ.get("POD_NAMESPACE") or "default", identity, duration, renew, retry)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Elector:
    """Acquire and renew one Lease through the CoordinationV1Api (`api`)."""

    def __init__(self, api: Any, config: LeaseConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.api, self.config, self.clock = api, config, clock
        self._seen: tuple[Any, ...] | None = None  # the holder's last record we saw
        self._seen_at = 0.0  # when it last changed, on our clock

    def _body(self, lease: Any | None, *, taking: bool) -> dict[str, Any]:
        now = _now()
        spec: dict[str, Any] = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.duration)),
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if lease is None or taking:
            transitions = (lease.spec.lease_transitions or 0) + 1 if lease is not None else 0
            spec.update(acquireTime=spec["renewTime"], leaseTransitions=transitions)
        meta: dict[str, Any] = {"name": self.config.name, "namespace": self.config.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease.metadata.resource_version  # compare-and-swap: 409 if someone else wrote
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        from kubernetes.client.rest import ApiException

        cfg = self.config
        try:
            lease = self.api.read_namespaced_lease(cfg.name, cfg.namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            try:
                self.api.create_namespaced_lease(cfg.namespace, self._body(None, taking=True))
            except ApiException as err:
                if err.status == 409:
                    return False  # another replica created it first
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity or ""
        record = (holder, spec.renew_time, spec.acquire_time, spec.lease_transitions)
        if record != self._seen:
            self._seen, self._seen_at = record, self.clock()
        mine = holder == cfg.identity
        expired = self.clock() - self._seen_at >= float(spec.lease_duration_seconds or cfg.duration)
        if not mine and holder and not expired:
            return False
        try:
            self.api.patch_namespaced_lease(cfg.name, cfg.namespace, self._body(lease, taking=not mine))
        except ApiException as err:
            if err.status == 409:
                return False  # written by someone else since we read it
            raise
        return True

    def release(self) -> None:
        """Give the Lease up (a graceful stop): a standby takes it on its next look, not after `duration`."""
        from kubernetes.client.rest import ApiException

        cfg = self.config
        try:
            lease = self.api.read_namespaced_lease(cfg.name, cfg.namespace)
            if lease.spec.holder_identity != cfg.identity:
                return
            body = self._body(lease, taking=False)
            body["spec"]["holderIdentity"] = ""
            self.api.patch_namespaced_lease(cfg.name, cfg.namespace, body)
        except ApiException as err:
            log.warning("could not release Lease %s: %s", cfg.name, err.reason)

    def _attempt(self) -> bool:
        from autox_operator import outages

        try:
            return self.try_acquire_or_renew()
        except Exception as err:  # the API server unreachable: a standby waits, a holder's deadline decides
            if outages.unreachable(err) == "api":
                outages.TRACKER.api_down(err)  # one line per outage, not one per look
            else:
                log.warning("Lease %s/%s: %s", self.config.namespace, self.config.name, err)
            return False

    def wait_until_leader(self, stop: threading.Event | None = None) -> bool:
        """Block until this replica holds the Lease (True), or `stop` is set (False)."""
        logged = False
        while not (stop is not None and stop.is_set()):
            if self._attempt():
                log.info("leader: %s holds Lease %s/%s", self.config.identity, self.config.namespace, self.config.name)
                return True
            if not logged:
                log.info(
                    "standby: Lease %s/%s is held by %s",
                    self.config.namespace,
                    self.config.name,
                    self._seen[0] if self._seen else "?",
                )
                logged = True
            (stop or threading.Event()).wait(self.config.retry)
        return False

    def keep_renewing(self, on_lost: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """Renew in a daemon thread; call `on_lost` once renewals failed for `duration - renew` seconds."""

        def run() -> None:
            last_ok = self.clock()
            while not stop.wait(self.config.renew):
                if self._attempt():
                    last_ok = self.clock()
                elif self.clock() - last_ok >= self.config.duration - self.config.renew:
                    log.error("lost Lease %s/%s: stopping this replica", self.config.namespace, self.config.name)
                    on_lost()
                    return

        thread = threading.Thread(target=run, name="lease-renewal", daemon=True)
        thread.start()
        return thread


def serve_health(port: int) -> Any:
    """A bare /healthz on `port` for a standby (kopf serves it once this replica leads); returns the server."""
    import http.server

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            self.send_response(200 if self.path.startswith("/healthz") else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a line
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    return server


def run_as_leader(config: LeaseConfig, run: Callable[[], None], *, health_port: int | None) -> None:
    """Wait (as a standby, answering /healthz) until this replica holds the Lease, then `run` while renewing it.

    Losing the Lease ends the process at once (the pod restarts as a standby): the operator never
    runs on past it. A graceful stop releases the Lease, so a standby takes over on its next look.
    """
    import kubernetes.client

    from autox_operator import outages
    from autox_operator.kube import ApiClient, load_configuration

    for logger in (log, outages.log):
        if not logger.handlers:  # kopf sets up logging only once it runs: a standby says what it waits for
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("[%(asctime)s] %(name)s [%(levelname)s] %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
    # urllib3 says "Retrying ..." per refused connection; the outage line says it once.
    logging.getLogger("urllib3.connectionpool").addFilter(outages.QuietRetries())
    configuration = load_configuration()
    outages.TRACKER.api = outages.api_label(str(configuration.host))
    api = kubernetes.client.CoordinationV1Api(ApiClient(configuration))
    elector = Elector(api, config)
    health = serve_health(health_port) if health_port else None
    elector.wait_until_leader()
    if health is not None:
        health.shutdown()
        health.server_close()  # kopf binds the same port for its own /healthz
    stop = threading.Event()
    elector.keep_renewing(on_lost=lambda: os._exit(1), stop=stop)
    try:
        run()
    finally:
        stop.set()
        elector.release()
