"""Fixtures for the operator tests: schemas, an S3 server, a Kubernetes API and the operator itself.

End-to-end tests run against kmock (an HTTP server that speaks the Kubernetes API) unless
AUTOX_E2E_KUBECONFIG names a real cluster's kubeconfig (with the PyTorchJob CRD installed).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# Read by autox_operator.settings at import (the kopf timer's interval): follow progress quickly here.
os.environ.setdefault("AUTOX_SYNC_INTERVAL", "0.5")

import pytest
from k8s_cluster import Cluster, KmockThread, OperatorThread
from k8s_schemas import KSERVE_CRD, PYTORCHJOB_CRD, SchemaSet, our_crd_paths
from ops3 import S3, S3_KEY, S3_SECRET  # noqa: F401  (tests import them from ops3)


@pytest.fixture(scope="session")
def crd_schemas() -> SchemaSet:
    """Our CRDs' openAPIV3Schemas (strict: unknown fields are errors, as with `kubectl apply`)."""
    return SchemaSet(our_crd_paths())


@pytest.fixture(scope="session")
def pytorchjob_schema() -> SchemaSet:
    """The real Kubeflow PyTorchJob CRD schema (vendored in third_party/k8s), strict."""
    return SchemaSet([PYTORCHJOB_CRD])


@pytest.fixture(scope="session")
def kserve_schema() -> SchemaSet:
    """The real KServe InferenceService CRD schema (vendored in third_party/k8s, ~2 MB: loaded once), strict."""
    return SchemaSet([KSERVE_CRD])


@pytest.fixture(scope="session")
def operator_s3() -> Iterator[S3]:
    """Our own moto S3 server on a free 127.0.0.1 port (independent of other suites' fixtures)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, crd_schemas: SchemaSet) -> Iterator[Cluster]:
    """A Kubernetes API: a real cluster when AUTOX_E2E_KUBECONFIG is set, else kmock in a thread.
    Every custom resource the tests create or patch is validated against the generated CRD schema."""
    real = os.environ.get("AUTOX_E2E_KUBECONFIG")
    if real:
        c = Cluster(Path(real), real=True, schemas=crd_schemas)
        c.install_crds(our_crd_paths())
        yield c
        return
    server = KmockThread().start()
    try:
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        yield Cluster(kubeconfig, real=False, schemas=crd_schemas)
    finally:
        server.stop()


@pytest.fixture()
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"autox-e2e-{uuid.uuid4().hex[:8]}"
    cluster.create_namespace(name)
    yield name
    cluster.delete_namespace(name)


@pytest.fixture()
def run_operator(cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., OperatorThread]:
    """`with run_operator(): ...` runs the real operator in-process, watching `namespace`;
    `run_operator(metrics_port=N)` also serves /metrics on N (off by default: no fixed port to collide on)."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.setenv("AUTOX_RETRY_DELAY", "1")
    monkeypatch.setenv("AUTOX_TRAINER_IMAGE", "registry.test/autox-video-trainer:e2e")
    monkeypatch.delenv("AUTOX_S3_ENDPOINT", raising=False)

    def start(metrics_port: int = 0) -> OperatorThread:
        monkeypatch.setenv("AUTOX_METRICS_PORT", str(metrics_port))
        return OperatorThread(namespace)

    return start
