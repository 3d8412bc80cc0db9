"""The operator as a real process (`python -m autox_operator.main`), as the chart runs it, with its log in a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn_operator(kubeconfig: Path, namespace: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start the operator watching `namespace`, stdout and stderr to `log`; `env` adds or overrides variables."""
    full = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'operator'}",
        "KUBECONFIG": str(kubeconfig),
        "AUTOX_METRICS_PORT": "0",
        "AUTOX_RETRY_DELAY": "1",
        "AUTOX_SYNC_INTERVAL": "0.5",
        "AUTOX_TRAINER_IMAGE": "registry.test/autox-video-trainer:e2e",
        **env,
    }
    for name in ("AUTOX_S3_ENDPOINT", "AUTOX_LEADER_ELECTION"):
        if name not in env:
            full.pop(name, None)
    cmd = [sys.executable, "-m", "autox_operator.main", f"--namespace={namespace}"]
    return subprocess.Popen(cmd, env=full, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the running ones (a graceful stop), SIGKILL whatever has not exited after 20 s."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
