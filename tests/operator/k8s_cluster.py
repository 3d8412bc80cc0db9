"""A Kubernetes API for the end-to-end tests: kmock in a thread, or a real cluster; plus the operator in-process.

The tests talk HTTP to whichever endpoint the kubeconfig names, with the official client, so
the same test code runs against kmock and against a real cluster (AUTOX_E2E_KUBECONFIG).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import itertools
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import kopf
import kubernetes.client
import kubernetes.config
import yaml
from k8s_schemas import SchemaSet
from kubernetes.client.rest import ApiException

T = TypeVar("T")

CR_GROUP, CR_VERSION = "autox.io", "v1alpha1"
PJ_GROUP, PJ_VERSION, PJ_PLURAL = "kubeflow.org", "v1", "pytorchjobs"
TJ_GROUP, TJ_VERSION, TJ_PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
RUNTIME_PLURAL = "clustertrainingruntimes"
CHILD_API = {PJ_PLURAL: (PJ_GROUP, PJ_VERSION), TJ_PLURAL: (TJ_GROUP, TJ_VERSION)}

# What the emulated API server serves (kopf only watches what discovery announces).
RESOURCES: dict[str, dict[str, Any]] = {
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    "v1/secrets": {"kind": "Secret", "namespaced": True},
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "v1/events": {"kind": "Event", "namespaced": True},
    # The operator replicas' leader election (autox_operator.leader).
    "coordination.k8s.io/v1/leases": {"kind": "Lease", "namespaced": True},
    f"{CR_GROUP}/{CR_VERSION}/videotrainingjobs": {
        "kind": "VideoTrainingJob",
        "namespaced": True,
        "shortnames": {"vtj"},
        "categories": {"autox"},
        "subresources": {"status"},
    },
    f"{CR_GROUP}/{CR_VERSION}/videoinferencejobs": {
        "kind": "VideoInferenceJob",
        "namespaced": True,
        "shortnames": {"vij"},
        "categories": {"autox"},
        "subresources": {"status"},
    },
}
PYTORCHJOB_RESOURCES: dict[str, dict[str, Any]] = {
    f"{PJ_GROUP}/{PJ_VERSION}/{PJ_PLURAL}": {"kind": "PyTorchJob", "namespaced": True, "subresources": {"status"}},
}
# Kubeflow Trainer v2: TrainJobs, and the cluster-scoped runtimes they reference.
TRAINER_RESOURCES: dict[str, dict[str, Any]] = {
    f"{TJ_GROUP}/{TJ_VERSION}/{TJ_PLURAL}": {"kind": "TrainJob", "namespaced": True, "subresources": {"status"}},
    f"{TJ_GROUP}/{TJ_VERSION}/{RUNTIME_PLURAL}": {"kind": "ClusterTrainingRuntime", "namespaced": False},
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class Conflict(kmock.KubernetesError):
    """409 for a write whose resourceVersion is not the object's current one (as the API server answers)."""

    status: int = 409
    reason: str = "Conflict"
    message: str = "the object has been modified; please apply your changes to the latest version and try again"


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus what a real API server does: fill in the name from generateName, uid,
    creationTimestamp, generation (bumped on spec changes) and resourceVersion; 201 on create."""

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: Any) -> Any:
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + secrets.token_hex(3)
                meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
                meta["resourceVersion"] = str(next(self._versions))
            elif request.action == kmock.action.UPDATE and request.name is not None:
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    current = self.objects[key].raw.get("metadata", {})
                    # Optimistic concurrency (a resourceVersion in the patch): the Lease election relies on it.
                    if meta.get("resourceVersion") not in (None, current.get("resourceVersion")):
                        raise Conflict()
                    if "spec" in data and request.subresource is None:
                        meta["generation"] = int(current.get("generation") or 1) + 1
                    meta["resourceVersion"] = str(next(self._versions))
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)  # as the API server answers (the client decodes only 201 bodies)
        return response


class _CrashableServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's test server, but closing it cuts open watch streams at once (as a crashed API server
    does) instead of waiting up to 60 s for their handlers to finish."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web.Server(self._handler, loop=self._loop, debug=debug, **kwargs)
        return aiohttp.web.ServerRunner(server, debug=debug, shutdown_timeout=0.2, **kwargs)


class KmockThread:
    """The emulated API server on 127.0.0.1:<free port>, served from its own thread and event loop.

    `go_down()` closes the port and cuts every connection (watch streams included), `come_back()`
    serves again on the same port with every object kept: a real API server's restart (etcd survives)."""

    def __init__(self, extra: dict[str, dict[str, Any]] | None = None) -> None:
        """Serves our resources plus `extra` (default: PyTorchJob, the Training Operator v1)."""
        self.resources = {**RESOURCES, **(PYTORCHJOB_RESOURCES if extra is None else extra)}
        self.url = ""
        self.port: int | None = None
        self._ready = threading.Event()
        self._down = threading.Event()  # set while the port is closed
        self._stop: asyncio.Event | None = None
        self._to_down: asyncio.Event | None = None
        self._to_up: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # surfaced by start()
            self._error = err
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._to_down, self._to_up = asyncio.Event(), asyncio.Event(), asyncio.Event()
        async with ApiServer() as server:
            for key, info in self.resources.items():
                server.resources[key] = kmock.ResourceInfo(verbs=VERBS, **info)
            while not self._stop.is_set():
                async with kmock.Server(server, port=self.port, server_cls=_CrashableServer) as http:
                    self.port = http.port  # the first time a free one; the same one after an outage
                    self.url = str(http.url).rstrip("/")
                    self._down.clear()
                    self._ready.set()
                    await self._first(self._to_down)
                self._down.set()
                await self._first(self._to_up)

    async def _first(self, event: asyncio.Event) -> None:
        """Until `event` or stop is set (`event` is cleared again for the next time)."""
        assert self._stop is not None
        waits = [asyncio.ensure_future(e.wait()) for e in (event, self._stop)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        event.clear()

    def start(self) -> KmockThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None or not self.url:
            raise RuntimeError(f"kmock did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def go_down(self) -> None:
        """Close the port and every open connection; the objects stay (wait until it is down)."""
        assert self._loop is not None and self._to_down is not None
        self._ready.clear()
        self._loop.call_soon_threadsafe(self._to_down.set)
        if not self._down.wait(10):
            raise RuntimeError("kmock did not go down within 10s")

    def come_back(self) -> None:
        """Serve again on the same port, with the objects it had (wait until it listens)."""
        assert self._loop is not None and self._to_up is not None
        self._loop.call_soon_threadsafe(self._to_up.set)
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"kmock did not come back on port {self.port}: {self._error!r}")

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
                    "users": [{"name": "kmock", "user": {"token": "kmock"}}],
                    "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
                    "current-context": "kmock",
                }
            )
        )
        return path


def wait_for(fn: Callable[[], T], *, timeout: float = 60.0, what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy; fail with the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(0.1)


class Cluster:
    """The few API calls the tests make (same code for kmock and a real cluster)."""

    def __init__(self, kubeconfig: Path, *, real: bool, schemas: SchemaSet) -> None:
        self.kubeconfig = kubeconfig
        self.real = real
        self.schemas = schemas  # kmock does not validate: every custom resource we write is checked here
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)

    # --- setup ---

    def install_crds(self, paths: list[Path]) -> None:
        """Create or update our CRDs (real clusters only; kmock declares resources itself)."""
        ext = kubernetes.client.ApiextensionsV1Api(self.api)
        for path in paths:
            crd = yaml.safe_load(path.read_text())
            try:
                ext.create_custom_resource_definition(crd)
            except ApiException as err:
                if err.status != 409:
                    raise
                current = ext.read_custom_resource_definition(crd["metadata"]["name"])
                crd["metadata"]["resourceVersion"] = current.metadata.resource_version
                ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)
        for path in paths:
            name = yaml.safe_load(path.read_text())["metadata"]["name"]
            wait_for(
                lambda name=name: any(
                    c.type == "Established" and c.status == "True"
                    for c in ext.read_custom_resource_definition(name).status.conditions or []
                ),
                what=f"CRD {name} established",
            )

    def create_namespace(self, name: str) -> None:
        # kmock's path parser cannot take POST /api/v1/namespaces; its namespaces exist implicitly.
        if self.real:
            self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def delete_namespace(self, name: str) -> None:
        # Our resources carry kopf's finalizer while followed; the operator is gone by now.
        for plural in ("videotrainingjobs", "videoinferencejobs"):
            for item in self.custom.list_namespaced_custom_object(CR_GROUP, CR_VERSION, name, plural)["items"]:
                if item["metadata"].get("finalizers"):
                    self.custom.patch_namespaced_custom_object(
                        CR_GROUP, CR_VERSION, name, plural, item["metadata"]["name"], {"metadata": {"finalizers": None}}
                    )
        if self.real:
            self.core.delete_namespace(name)

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        self.core.create_namespaced_secret(
            namespace,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": encoded},
        )

    # --- our resources ---

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.schemas.validate(obj)
        group, version = obj["apiVersion"].split("/")
        plural = obj["kind"].lower() + "s"
        namespace = obj["metadata"]["namespace"]
        return self.custom.create_namespaced_custom_object(group, version, namespace, plural, obj)

    def create_runtime(self, runtime: dict[str, Any], schemas: SchemaSet) -> dict[str, Any]:
        """Install a ClusterTrainingRuntime (cluster-scoped), validated against the Trainer CRD."""
        schemas.validate(runtime)
        try:
            return self.custom.create_cluster_custom_object(TJ_GROUP, TJ_VERSION, RUNTIME_PLURAL, runtime)
        except ApiException as err:
            if err.status != 409:  # installed by an earlier test: the same object
                raise
        return self.custom.get_cluster_custom_object(TJ_GROUP, TJ_VERSION, RUNTIME_PLURAL, runtime["metadata"]["name"])

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        group, version = CHILD_API.get(plural, (CR_GROUP, CR_VERSION))
        try:
            return self.custom.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def status(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return (self.get(plural, namespace, name) or {}).get("status") or {}

    def wait_status(self, plural: str, namespace: str, name: str, **expected: Any) -> dict[str, Any]:
        """Wait until the status has all these field values at once; returns that status."""

        def check() -> dict[str, Any] | None:
            status = self.status(plural, namespace, name)
            return status if all(status.get(k) == v for k, v in expected.items()) else None

        return wait_for(check, what=f"{plural}/{name} status {expected}")

    def patch_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        patched = self.custom.patch_namespaced_custom_object(
            CR_GROUP, CR_VERSION, namespace, plural, name, {"spec": spec}
        )
        self.schemas.validate(patched)

    # --- children ---

    def pytorchjobs(self, namespace: str) -> list[dict[str, Any]]:
        return self.children(PJ_PLURAL, namespace)

    def children(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """The PyTorchJobs or TrainJobs (`plural`) in `namespace`."""
        group, version = CHILD_API[plural]
        return self.custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]

    def delete_pytorchjob(self, namespace: str, name: str) -> None:
        """What ttlSecondsAfterFinished (or a user) does."""
        self.delete_child(PJ_PLURAL, namespace, name)

    def delete_child(self, plural: str, namespace: str, name: str) -> None:
        """Delete a PyTorchJob or TrainJob (what a TTL or a user does)."""
        group, version = CHILD_API[plural]
        self.custom.delete_namespaced_custom_object(group, version, namespace, plural, name)

    def patch_child(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Patch a child's spec as another controller would (Kueue flipping suspend)."""
        group, version = CHILD_API[plural]
        self.custom.patch_namespaced_custom_object(group, version, namespace, plural, name, patch)

    def set_trainjob_status(
        self, namespace: str, name: str, *types: str, jobs: list[dict[str, Any]] | None = None, **messages: str
    ) -> None:
        """Play Kubeflow Trainer: these TrainJob condition types True (Created always there), and jobsStatus."""
        now = _now()
        conditions = [
            {
                "type": t,
                "status": "True" if t in types else "False",
                "reason": messages.get(f"{t}_reason", t),
                "message": messages.get(t, f"TrainJob {name} is {t.lower()}"),
                "lastTransitionTime": now,
            }
            for t in ("Created", "Suspended", "Complete", "Failed")
            if t in types or t == "Created"
        ]
        status: dict[str, Any] = {"conditions": conditions}
        if jobs is not None:
            status["jobsStatus"] = jobs
        self.custom.patch_namespaced_custom_object_status(
            TJ_GROUP, TJ_VERSION, namespace, TJ_PLURAL, name, {"status": status}
        )

    def configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            return self.core.read_namespaced_config_map(name, namespace).data
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def set_pytorchjob_status(self, namespace: str, name: str, *types: str, **fields: Any) -> None:
        """Play the Kubeflow training operator: these condition types True (the rest False)."""
        now = _now()
        known = ("Created", "Running", "Restarting", "Succeeded", "Failed", "Suspended")
        conditions = [
            {
                "type": t,
                "status": "True" if t in types else "False",
                "reason": f"PyTorchJob{t}",
                "message": f"PyTorchJob {name} is {t.lower()}.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
            for t in known
            if t in types or t in ("Created", "Running")
        ]
        self.custom.patch_namespaced_custom_object_status(
            PJ_GROUP, PJ_VERSION, namespace, PJ_PLURAL, name, {"status": {"conditions": conditions, **fields}}
        )

    def event_reasons(self, namespace: str, name: str) -> list[str]:
        events = self.core.list_namespaced_event(namespace).items
        return [e.reason for e in events if e.involved_object and e.involved_object.name == name]


class OperatorThread:
    """The real kopf operator (autox_operator.handlers), in-process, in a thread with its own loop."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="autox-operator", daemon=True)

    def _run(self) -> None:
        import autox_operator.handlers  # noqa: F401  (registers the handlers)

        try:
            asyncio.run(
                kopf.operator(
                    registry=kopf.get_default_registry(),
                    namespaces=[self.namespace],
                    standalone=True,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as err:
            self._error = err
            self._ready.set()

    def __enter__(self) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            self._stop.set()
            raise RuntimeError(f"the operator did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop within 30s")
        if self._error is not None and exc[0] is None:
            raise RuntimeError("the operator crashed") from self._error
