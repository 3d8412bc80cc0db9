"""A real `autox-video serve` process on 127.0.0.1 and a v2 client over HTTP (urllib)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from netutil import free_port

REPO = Path(__file__).resolve().parents[1]


class Server:
    """`python -m autox_video serve ARGS` on a free loopback port (`{port}` in ARGS stands for it); `post`/`get`
    talk to it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, name: str = "autox-video") -> None:
        self.port = free_port()
        args = tuple(a.replace("{port}", str(self.port)) for a in args)
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the server
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "operator"), full_env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autox_video", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--name", name, *args],
            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 300) -> None:
        """Until /v2/health/ready says so (fails with the server's output if it exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}:\n{self.proc.stdout.read()[-3000:]}")  # type: ignore[union-attr]
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError("server not ready in time")

    def stop(self) -> str:
        """SIGTERM, wait; returns its output."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""

    def get(self, path: str) -> tuple[int, Any]:
        """GET path -> (status, JSON or text)."""
        return _call(urllib.request.Request(self.url + path))

    def infer(self, inputs: list[dict[str, Any]], parameters: dict[str, Any] | None = None) -> tuple[int, Any]:
        """POST /v2/models/NAME/infer."""
        body: dict[str, Any] = {"inputs": inputs, **({"parameters": parameters} if parameters else {})}
        request = urllib.request.Request(
            f"{self.url}/v2/models/{self.name}/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return _call(request)


def _call(request: urllib.request.Request) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def video_input(data: bytes) -> dict[str, Any]:
    """A `video` input: one file's bytes, base64 in JSON."""
    return {"name": "video", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(data).decode()]}


def uri_input(*uris: str) -> dict[str, Any]:
    """A `uri` input of one or more videos."""
    return {"name": "uri", "shape": [len(uris)], "datatype": "BYTES", "data": list(uris)}


def outputs(body: dict[str, Any]) -> dict[str, list[Any]]:
    """A v2 response's outputs by name."""
    return {o["name"]: o["data"] for o in body["outputs"]}


def metric(text: str, name: str) -> float:
    """One sample's value in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
