"""Shared fixtures: a real S3 server (moto, over HTTP) for every suite.

Fixtures (names are stable; other suites rely on them):

- `s3_server` (session): a moto S3 server on a free 127.0.0.1 port, reached over HTTP like
  AWS S3 or MinIO. Attributes: `.endpoint_url` ("http://127.0.0.1:PORT"), `.port`,
  `.running`; methods `stop()` (an outage: the port refuses connections and open
  connections are cut), `start()` (back on the SAME port, with its buckets and objects),
  `outage(seconds)` (stop now, start again after `seconds` in a background thread, which
  it returns), and `client()` (a boto3 client for setting up or checking objects in tests).
- `s3_env` (function): points this process at the server through the standard AWS
  variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID=testing, AWS_SECRET_ACCESS_KEY=testing,
  AWS_DEFAULT_REGION=us-east-1), a fresh AUTOX_CACHE_DIR under tmp_path, and
  AUTOX_S3_RETRY_SECONDS=30 (a broken test fails in seconds, not 5 minutes; override it
  with monkeypatch.setenv). Restarts the server if a test left it stopped, and clears
  `autox_video.storage.configure()` overrides. Subprocesses inherit the variables.
- `bucket` (function): the name of a new, empty bucket on the server (uses `s3_env`).
- `iam_key` (function): {"id", "secret"} of a new IAM user with no permissions, with the
  server's authentication switched on for the test (uses `s3_env`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from netutil import free_port

# Under pytest-xdist (`make test` runs one worker per core) each worker, and the trainings it starts,
# gets its share of the cores: N workers at torch's default of every core each oversubscribe them.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))

S3_KEY = S3_SECRET = "testing"
S3_REGION = "us-east-1"


class S3Server:
    """A moto S3 server on 127.0.0.1 that can go down and come back on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the server accepts connections."""
        return self._server is not None

    def start(self) -> None:
        """Serve on `self.port` (no-op when running); moto's data survives a stop/start."""
        from moto.server import ThreadedMotoServer

        with self._lock:
            if self._server is not None:
                return
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            server.start()
            self._track_connections(server._server)
            self._server = server

    def stop(self) -> None:
        """Go down like a crashed server: close the listening socket and cut every open connection."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            server.stop()
            server._server.server_close()  # moto's stop() leaves the port listening
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its handler
            self._connections.clear()

    def outage(self, seconds: float) -> threading.Thread:
        """Stop now and start again after `seconds`, in the background; join the returned thread."""
        self.stop()

        def back() -> None:
            threading.Event().wait(seconds)
            self.start()

        thread = threading.Thread(target=back, name="s3-outage", daemon=True)
        thread.start()
        return thread

    def client(self) -> Any:
        """A boto3 S3 client for this server (test setup and checks)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )

    def _track_connections(self, wsgi_server: Any) -> None:
        # Keep-alive connections outlive moto's stop(); remember them so stop() can cut them.
        connections = self._connections
        base = wsgi_server.RequestHandlerClass

        class Tracked(base):  # type: ignore[misc, valid-type]
            def setup(self) -> None:
                connections.add(self.request)
                super().setup()

            def finish(self) -> None:
                connections.discard(self.request)
                try:
                    super().finish()
                except OSError:
                    pass  # the connection was cut by an outage

        wsgi_server.RequestHandlerClass = Tracked


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free 127.0.0.1 port for the whole session (see the module docstring)."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def s3_env(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    """The standard AWS variables pointing at `s3_server`, a fresh cache dir; returns the server."""
    from autox_video import storage

    s3_server.start()  # a previous test may have left it down
    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups here
    monkeypatch.setenv("AUTOX_CACHE_DIR", str(tmp_path_factory.mktemp("s3cache")))
    monkeypatch.setenv("AUTOX_S3_RETRY_SECONDS", "30")
    storage.configure()
    yield s3_server
    storage.configure()


@pytest.fixture()
def bucket(s3_env: S3Server) -> str:
    """A new empty bucket on the test S3 server; use it as f"s3://{bucket}/..."."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_env.client().create_bucket(Bucket=name)
    return name


def set_moto_auth(endpoint: str, free_actions: str) -> None:
    """Turn moto's IAM checks on ("0") or off ("inf") through its HTTP API."""
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth",
        data=free_actions.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["status"] == "ok"


@pytest.fixture()
def iam_key(s3_env: Any) -> Iterator[dict[str, str]]:
    """A real IAM user's access key on the server, with S3 authentication switched on."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=s3_env.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    user = f"autox-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    set_moto_auth(s3_env.endpoint_url, "0")
    try:
        yield {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    finally:
        set_moto_auth(s3_env.endpoint_url, "inf")
