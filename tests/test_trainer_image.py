"""The trainer image: its Dockerfile agrees with pyproject, and its entrypoint starts torchrun
from the PET_* variables of a PyTorchJob (Training Operator v1) or a TrainJob (Trainer v2's torch
plugin), on one node or two (run here on CPU with gloo)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "trainer_image"
DOCKERFILE = (IMAGE / "Dockerfile").read_text()
ENTRYPOINT = IMAGE / "entrypoint.py"


def _entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autox_entrypoint", ENTRYPOINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_pins() -> dict[str, str]:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    return {
        m.group(1).lower(): m.group(2) for m in (re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", r) for r in extra) if m
    }


def _arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"trainer_image/Dockerfile has no `ARG {name}=...`"
    return match.group(1)


# --- the Dockerfile --------------------------------------------------------------------------


def test_base_image_torch_matches_the_pyproject_pins() -> None:
    pins = _train_pins()
    assert _arg("TORCH_VERSION") == pins["torch"], "update ARG TORCH_VERSION (and the base image tag) with pyproject"
    assert _arg("TORCHVISION_VERSION") == pins["torchvision"], "update ARG TORCHVISION_VERSION with pyproject"
    assert re.search(
        r"^ARG BASE_IMAGE=pytorch/pytorch:\$\{TORCH_VERSION\}-cuda\$\{CUDA_VERSION\}-cudnn", DOCKERFILE, re.MULTILINE
    )


def test_the_package_is_installed_from_pyproject_with_the_base_pins() -> None:
    # Every other pin (mmaction2, mmengine, mmcv-lite, decord, ...) comes from pyproject itself.
    # serve: the InferenceService pods run `autox-video serve` in this image, and runtime triton's training exports.
    assert 'pip install --constraint /tmp/base-pins.txt ".[train,loggers,serve]"' in DOCKERFILE
    assert "COPY pyproject.toml README.md ./" in DOCKERFILE


def test_runs_as_a_numeric_non_root_user() -> None:
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1])


def test_entrypoint_is_installed_where_the_operator_calls_it() -> None:
    sys.path.insert(0, str(ROOT / "operator"))
    try:
        from autox_operator import constants
    finally:
        sys.path.remove(str(ROOT / "operator"))
    assert f"COPY --chmod=0755 trainer_image/entrypoint.py /usr/local/bin/{constants.ENTRYPOINT}" in DOCKERFILE
    assert f'ENTRYPOINT ["{constants.ENTRYPOINT}"]' in DOCKERFILE
    assert f"AUTOX_CACHE_DIR={constants.CACHE_DIR}" in DOCKERFILE
    assert ENTRYPOINT.read_text().startswith("#!/usr/bin/env python3\n") and os.access(ENTRYPOINT, os.X_OK)


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    allowed = [
        line[1:] for line in (IMAGE / "Dockerfile.dockerignore").read_text().splitlines() if line.startswith("!")
    ]
    for sources in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
            assert any(source == a or a.startswith(source.rstrip("/") + "/") for a in allowed), (
                f"{source} is dockerignored"
            )


# --- the entrypoint: arguments ------------------------------------------------------------------

OPERATOR_MASTER = {
    "PET_NNODES": "2",
    "PET_NPROC_PER_NODE": "8",
    "PET_NODE_RANK": "0",
    "PET_MASTER_ADDR": "job-master-0",
    "PET_MASTER_PORT": "23456",
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ["--nnodes", "1", "--nproc-per-node", "1", "--standalone"]),
        (
            {**OPERATOR_MASTER, "PET_NNODES": "1"},
            [
                "--nnodes",
                "1",
                "--nproc-per-node",
                "8",
                "--node-rank",
                "0",
                "--master-addr",
                "job-master-0",
                "--master-port",
                "23456",
            ],
        ),
        (
            {**OPERATOR_MASTER, "PET_NODE_RANK": "1", "PET_NPROC_PER_NODE": "auto"},  # no GPU here: one process
            [
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                "1",
                "--master-addr",
                "job-master-0",
                "--master-port",
                "23456",
            ],
        ),
        (
            {"PET_NNODES": "2:4", "PET_RDZV_ENDPOINT": "job-master-0:23456", "PET_RDZV_ID": "job"},
            [
                "--nnodes",
                "2:4",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                "job-master-0:23456",
                "--rdzv-id",
                "job",
            ],
        ),
        (
            {"PET_NNODES": "1", "PET_MASTER_ADDR": "m"},
            [
                "--nnodes",
                "1",
                "--nproc-per-node",
                "1",
                "--node-rank",
                "0",
                "--master-addr",
                "m",
                "--master-port",
                "29500",
            ],
        ),
    ],
)
def test_torchrun_arguments_from_the_operator_variables(env: dict[str, str], expected: list[str]) -> None:
    args = _entrypoint().torchrun_args(env, ["train", "--config", "/etc/autox/config.yaml"], gpus=lambda: 0)
    assert args == [*expected, "-m", "autox_video", "train", "--config", "/etc/autox/config.yaml"]


# What Trainer v2's torch plugin sets in node 1 of a two-node TrainJob named `job` (PET_* only).
TRAINJOB_NODE_1 = {
    "PET_NNODES": "2",
    "PET_NPROC_PER_NODE": "auto",  # trainer.numProcPerNode unset, GPUs requested
    "PET_NODE_RANK": "1",
    "PET_MASTER_ADDR": "job-node-0-0.job",
    "PET_MASTER_PORT": "29400",
}


@pytest.mark.parametrize(
    ("nproc", "gpus", "expected"),
    [("auto", 8, "8"), ("auto", 1, "1"), ("auto", 0, "1"), ("4", 8, "4"), ("2", 0, "2"), ("cpu", 0, "cpu")],
    ids=["auto, 8 GPUs", "auto, 1 GPU", "auto on CPU: one", "a number wins", "a number on CPU", "cpu: per core"],
)
def test_trainjob_variables_and_what_auto_means(nproc: str, gpus: int, expected: str) -> None:
    args = _entrypoint().torchrun_args({**TRAINJOB_NODE_1, "PET_NPROC_PER_NODE": nproc}, ["train"], gpus=lambda: gpus)
    assert args == [
        "--nnodes",
        "2",
        "--nproc-per-node",
        expected,
        "--node-rank",
        "1",
        "--master-addr",
        "job-node-0-0.job",
        "--master-port",
        "29400",
        "-m",
        "autox_video",
        "train",
    ]


def test_gpus_are_asked_only_for_auto() -> None:
    def no(_: object = None) -> int:
        raise AssertionError("asked for the GPU count")

    assert _entrypoint().torchrun_args({"PET_NPROC_PER_NODE": "2"}, [], gpus=no)[:4] == [
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
    ]


def test_gpu_count_here_is_what_torch_sees() -> None:
    import torch

    assert _entrypoint().gpu_count() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_the_module_can_be_overridden() -> None:
    assert _entrypoint().torchrun_args({"AUTOX_ENTRY_MODULE": "probe.ddp"}, [])[-2:] == ["-m", "probe.ddp"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PET_NNODES": "two"}, "autox-entrypoint: PET_NNODES='two' is not a node count (N or MIN:MAX)"),
        (
            {"PET_NPROC_PER_NODE": "0"},
            "autox-entrypoint: PET_NPROC_PER_NODE='0' is not a process count (N, auto, gpu or cpu)",
        ),
        (
            {"PET_NNODES": "2"},
            "autox-entrypoint: PET_NNODES='2' needs PET_MASTER_ADDR (or PET_RDZV_ENDPOINT) to find the other nodes",
        ),
        (
            {"PET_MASTER_ADDR": "m", "PET_MASTER_PORT": "http"},
            "autox-entrypoint: PET_MASTER_PORT='http' is not a port number",
        ),
    ],
)
def test_bad_variables_fail_in_one_line(env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "AUTOX_ENTRY"))}
    done = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "train"],
        env={**clean, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip()) == (2, message)


# --- the entrypoint: real torchrun on CPU ---------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    dist.init_process_group("gloo")
    total = torch.tensor([dist.get_rank() + 1.0])
    dist.all_reduce(total)
    out = {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "local_rank": int(os.environ["LOCAL_RANK"]),
           "node_rank": int(os.environ["GROUP_RANK"]), "sum": total.item(), "argv": sys.argv[1:]}
    with open(os.path.join(os.environ["PROBE_OUT"], f"rank{out['rank']}.json"), "w") as f:
        json.dump(out, f)
    dist.destroy_process_group()
    """
)


LEGACY = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _pod_env(tmp_path: Path, pet: dict[str, str], *, engine: str = "pytorchjob") -> dict[str, str]:
    """A pod's environment as the engine sets it, plus the probe module on the path.

    pytorchjob: PET_* and the legacy names (the Training Operator v1); trainjob: PET_* only (Trainer v2).
    """
    (tmp_path / "autox_probe.py").write_text(PROBE)
    (tmp_path / "out").mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "AUTOX_ENTRY")) and k not in LEGACY}
    legacy = {
        "WORLD_SIZE": pet["PET_NNODES"],
        "RANK": pet["PET_NODE_RANK"],
        "MASTER_ADDR": pet["PET_MASTER_ADDR"],
        "MASTER_PORT": pet["PET_MASTER_PORT"],
    }
    if engine == "trainjob":
        legacy = {}
    return {
        **clean,
        **legacy,  # the operator sets these per pod too; torchrun must not be confused by them
        **pet,
        "AUTOX_ENTRY_MODULE": "autox_probe",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), clean.get("PYTHONPATH", "")]),
        "PROBE_OUT": str(tmp_path / "out"),
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
    }


def _results(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "out").glob("rank*.json"))]


def test_one_pod_runs_the_module_under_torchrun(tmp_path: Path) -> None:
    from netutil import free_port

    pet = {
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "1",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(free_port()),
    }
    done = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "train", "--config", "/etc/autox/config.yaml"],
        env=_pod_env(tmp_path, pet),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert _results(tmp_path) == [
        {
            "rank": 0,
            "world_size": 1,
            "local_rank": 0,
            "node_rank": 0,
            "sum": 1.0,
            "argv": ["train", "--config", "/etc/autox/config.yaml"],
        }
    ]


def test_two_pods_form_one_job_of_world_size_two(tmp_path: Path) -> None:
    from netutil import free_port, pet_env, run_pods

    port = free_port()
    argv = [sys.executable, str(ENTRYPOINT), "test", "--config", "c.yaml"]
    done = run_pods(
        [(argv, _pod_env(tmp_path, pet_env(node, 2, port))) for node in (0, 1)], timeout=180, workdir=tmp_path
    )
    assert [rc for rc, _ in done] == [0, 0], "\n".join(log[-3000:] for _, log in done)
    results = _results(tmp_path)
    assert [(r["rank"], r["node_rank"], r["local_rank"], r["world_size"]) for r in results] == [
        (0, 0, 0, 2),
        (1, 1, 0, 2),
    ]
    assert all(r["sum"] == 3.0 and r["argv"] == ["test", "--config", "c.yaml"] for r in results)  # 1 + 2 via gloo


def _trainjob_env(node: int, nnodes: int, port: int) -> dict[str, str]:
    """What Trainer v2's torch plugin sets in node `node` (numProcPerNode unset: "auto"), rank 0 on localhost."""
    return {
        "PET_NNODES": str(nnodes),
        "PET_NPROC_PER_NODE": "auto",
        "PET_NODE_RANK": str(node),
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
    }


def _probe_world() -> int:
    """How many processes "auto" must give one probe pod here: the GPUs it sees, else one."""
    return _entrypoint().gpu_count() or 1


def test_one_trainjob_node_with_auto_runs_one_process_on_cpu(tmp_path: Path) -> None:
    from netutil import free_port

    env = _pod_env(tmp_path, _trainjob_env(0, 1, free_port()), engine="trainjob")
    assert not set(LEGACY) & set(env)
    done = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "train", "--config", "/etc/autox/config.yaml"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    per_node = _probe_world()
    assert f"--nproc-per-node {per_node} " in done.stderr
    results = _results(tmp_path)
    assert [(r["rank"], r["world_size"], r["node_rank"]) for r in results] == [
        (i, per_node, 0) for i in range(per_node)
    ]
    assert results[0]["argv"] == ["train", "--config", "/etc/autox/config.yaml"]


def test_two_trainjob_nodes_form_one_job(tmp_path: Path) -> None:
    from netutil import free_port, run_pods

    port = free_port()
    argv = [sys.executable, str(ENTRYPOINT), "test", "--config", "c.yaml"]
    pods = []
    for node in (0, 1):
        env = _pod_env(tmp_path, _trainjob_env(node, 2, port), engine="trainjob")
        pods.append((argv, {**env, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}))
    done = run_pods(pods, timeout=180, workdir=tmp_path)
    assert [rc for rc, _ in done] == [0, 0], "\n".join(log[-3000:] for _, log in done)
    per_node = _probe_world()
    results = _results(tmp_path)
    assert [(r["rank"], r["node_rank"], r["world_size"]) for r in results] == [
        (rank, rank // per_node, 2 * per_node) for rank in range(2 * per_node)
    ]
    total = sum(range(1, 2 * per_node + 1))  # each rank adds rank + 1 via gloo
    assert all(r["sum"] == total and r["argv"] == ["test", "--config", "c.yaml"] for r in results)
