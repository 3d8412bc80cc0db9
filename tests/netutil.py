"""Network helpers shared by test modules (not in conftest.py: two conftest modules share that name)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pet_env(node_rank: int, nnodes: int, port: int) -> dict[str, str]:
    """The variables the Kubeflow training operator sets in pod `node_rank` of a PyTorchJob (one process per pod)."""
    rank, nodes, master = str(node_rank), str(nnodes), str(port)
    return {
        "PET_NNODES": nodes, "PET_NPROC_PER_NODE": "1", "PET_NODE_RANK": rank,
        "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": master,
        # The operator sets the legacy names too; torchrun must not be confused by them.
        "WORLD_SIZE": nodes, "RANK": rank, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": master,
        "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "PYTHONUNBUFFERED": "1",
    }  # fmt: skip


def run_pods(commands: list[tuple[list[str], dict[str, str]]], timeout: float, workdir: Path) -> list[tuple[int, str]]:
    """Start every (argv, env) at once, as a job's pods start; return each one's exit code and output.

    Each pod runs in its own empty working directory under `workdir`, as pods on different nodes
    share no filesystem: anything that passes files through the working directory fails here too.
    """
    cwds = [workdir / f"pod{i}-cwd" for i in range(len(commands))]
    for cwd in cwds:
        cwd.mkdir(parents=True, exist_ok=True)
    pods = [
        subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for (argv, env), cwd in zip(commands, cwds, strict=True)
    ]
    try:
        logs = [pod.communicate(timeout=timeout)[0] for pod in pods]
    finally:
        for pod in pods:
            if pod.poll() is None:
                pod.kill()
                pod.wait()
    return [(pod.returncode, log) for pod, log in zip(pods, logs, strict=True)]
