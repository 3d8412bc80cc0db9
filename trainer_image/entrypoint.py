#!/usr/bin/env python3
"""autox-entrypoint: run `torchrun -m autox_video ARGS` from the PET_* variables of a PyTorchJob or TrainJob.

Both engines inject the same names into every training pod: the Kubeflow Training Operator v1
(PyTorchJob; it also sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, which torchrun ignores) and
Kubeflow Trainer v2's torch plugin (TrainJob; PET_* only):
  PET_NNODES          pods in the job ("2"; elastic PyTorchJobs "MIN:MAX")
  PET_NPROC_PER_NODE  processes per pod, i.e. GPUs per pod ("8", "auto", "gpu" or "cpu"); unset: 1
  PET_NODE_RANK       this pod's index (PyTorchJob: Master 0, Worker-N N+1; TrainJob: the Job
                      completion index)
  PET_MASTER_ADDR     rank 0's address (PyTorchJob: the Master's service; TrainJob:
                      <job>-node-0-0.<job>);  PET_MASTER_PORT its port (29500; TrainJob 29400)
  PET_RDZV_ENDPOINT   (+ PET_RDZV_BACKEND, PET_RDZV_ID) only for elastic PyTorchJobs
"auto" (a PyTorchJob without nprocPerNode, a TrainJob without numProcPerNode) means one process
per GPU this pod can see, and ONE process when it sees none: torchrun's own "auto" would start one
per CPU core there, each a full copy of the model and the data loaders. "cpu" keeps torchrun's
meaning (one per core) for whoever wants that. Without PET_* it runs one process on this machine
(`--standalone`). AUTOX_ENTRY_MODULE overrides the module that torchrun starts (default
autox_video), e.g. for a network probe.

Installed in the trainer image as /usr/local/bin/autox-entrypoint; the operator's pods run
`autox-entrypoint train --config /etc/autox/config.yaml`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence

DEFAULT_MODULE = "autox_video"
DEFAULT_PORT = "29500"


class UsageError(Exception):
    """A PET_* or AUTOX_* variable with a value torchrun cannot use."""


def _check(env: Mapping[str, str], name: str, pattern: str, meaning: str, default: str) -> str:
    value = (env.get(name) or default).strip()
    if not re.fullmatch(pattern, value):
        raise UsageError(f"{name}={value!r} is not {meaning}")
    return value


def gpu_count() -> int:
    """CUDA devices this pod can use (0 without any, or without a CUDA build of torch)."""
    try:
        import torch  # only for "auto": the other cases start torchrun without importing torch twice

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver means no usable GPU here; torchrun then runs on CPU
        return 0


def torchrun_args(env: Mapping[str, str], argv: Sequence[str], gpus: Callable[[], int] = gpu_count) -> list[str]:
    """torchrun's arguments (after `python -m torch.distributed.run`) for this pod's environment."""
    nnodes = _check(env, "PET_NNODES", r"[1-9]\d*(:[1-9]\d*)?", "a node count (N or MIN:MAX)", "1")
    nproc = _check(
        env, "PET_NPROC_PER_NODE", r"[1-9]\d*|auto|gpu|cpu|xpu", "a process count (N, auto, gpu or cpu)", "1"
    )
    if nproc == "auto":
        nproc = str(gpus() or 1)  # one per GPU, one on CPU (see the module docstring)
    module = _check(env, "AUTOX_ENTRY_MODULE", r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", "a Python module name", DEFAULT_MODULE)
    args = ["--nnodes", nnodes, "--nproc-per-node", nproc]
    if env.get("PET_RDZV_ENDPOINT"):  # elastic PyTorchJob: dynamic rendezvous, ranks assigned by it
        args += [
            "--rdzv-backend", env.get("PET_RDZV_BACKEND") or "c10d",
            "--rdzv-endpoint", env["PET_RDZV_ENDPOINT"],
            "--rdzv-id", env.get("PET_RDZV_ID") or "autox",
        ]  # fmt: skip
    elif env.get("PET_MASTER_ADDR"):  # static rendezvous at the Master pod
        args += [
            "--node-rank", _check(env, "PET_NODE_RANK", r"\d+", "a node rank (0, 1, ...)", "0"),
            "--master-addr", env["PET_MASTER_ADDR"],
            "--master-port", _check(env, "PET_MASTER_PORT", r"\d{1,5}", "a port number", DEFAULT_PORT),
        ]  # fmt: skip
    elif nnodes == "1":
        args.append("--standalone")  # one machine, a free local port
    else:
        raise UsageError(f"PET_NNODES={nnodes!r} needs PET_MASTER_ADDR (or PET_RDZV_ENDPOINT) to find the other nodes")
    return [*args, "-m", module, *argv]


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with torchrun (so signals from the kubelet reach it directly)."""
    try:
        args = torchrun_args(os.environ, sys.argv[1:] if argv is None else argv)
    except UsageError as err:
        print(f"autox-entrypoint: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print("autox-entrypoint: torchrun " + " ".join(args), file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", *args])


if __name__ == "__main__":
    main()
