"""Process-group facts and helpers; works the same single-process, under torchrun, or in a PyTorchJob."""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist

from autox_video.errors import AutoXError

T = TypeVar("T")


def world_size() -> int:
    """Processes in the job (1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """Global rank of this process."""
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """Rank of this process on its node."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_local_rank0() -> bool:
    """The process of each node that downloads and writes node-local files."""
    return local_rank() == 0


def launcher() -> str:
    """mmengine launcher name: 'pytorch' under torchrun, else 'none'."""
    return "pytorch" if world_size() > 1 else "none"


# How long a rank waits in a collective for the others. Rank 0 alone checks every video before
# training (and local rank 0 downloads the dataset) while the others wait in a broadcast: on a large
# dataset that takes far longer than torch's default (10 minutes for nccl), whose watchdog would
# abort the job at every start. AUTOX_DIST_TIMEOUT_MINUTES overrides it.
DEFAULT_TIMEOUT_MINUTES = 240


def collective_timeout() -> datetime.timedelta:
    """Timeout of the process group's collectives."""
    return datetime.timedelta(minutes=float(os.environ.get("AUTOX_DIST_TIMEOUT_MINUTES", DEFAULT_TIMEOUT_MINUTES)))


def setup() -> bool:
    """Join the process group (nccl on GPU, gloo on CPU) if started by torchrun; return whether CUDA is used."""
    cuda = torch.cuda.is_available()
    if world_size() > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if cuda else "gloo", timeout=collective_timeout())
    return cuda


def _tensor_device() -> torch.device:
    """Where a tensor must live for this group's collectives: nccl serves CUDA tensors only."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def teardown() -> None:
    """Leave the process group once every rank is done.

    A rank that exits with the group alive (rank != 0 finishes prediction first) can abort in
    gloo's threads at interpreter exit ("terminate called without an active exception").
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op single-process)."""
    if dist.is_initialized():
        dist.barrier()


def on_rank0_then_broadcast(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result (or its AutoXError) to every rank."""
    if not dist.is_initialized():
        return fn()
    box: list[object] = [None]
    if rank() == 0:
        try:
            box[0] = ("ok", fn())
        except AutoXError as err:
            box[0] = ("err", err)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]  # type: ignore[misc]
    if kind == "err":
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def local_rank0_first(fetch: Callable[[], None]) -> None:
    """Local rank 0 of each node runs `fetch` (downloads); then the others do (cache hits only).

    A failure on any rank is raised on every rank, so nobody waits forever at a barrier.
    """
    error: AutoXError | None = None
    if is_local_rank0():
        try:
            fetch()
        except AutoXError as err:
            error = err
    _raise_if_any_failed(error)
    if not is_local_rank0():
        fetch()


def _raise_if_any_failed(error: AutoXError | None) -> None:
    if dist.is_initialized():
        flag = torch.tensor([1 if error is not None else 0], device=_tensor_device())
        dist.all_reduce(flag)
        if error is None and int(flag) > 0:
            raise AutoXError("another process of this job failed while preparing data (see its error)")
    if error is not None:
        raise error
