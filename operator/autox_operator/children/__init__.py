"""Child builders, one module per engine (PyTorchJob, TrainJob), behind the `Engine` interface of `base`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autox_operator.children import pytorchjob, trainjob
from autox_operator.children.base import Engine, JobSpec

# TrainJob first: the order `auto` tries them in.
ENGINES: dict[str, Engine] = {e.name: e for e in (trainjob.ENGINE, pytorchjob.ENGINE)}


def get_engine(name: str) -> Engine:
    """The engine called `name` (pytorchjob or trainjob)."""
    return ENGINES[name]


def engine_of_kind(kind: str | None) -> Engine | None:
    """The engine whose children have this `kind`, if any."""
    return next((e for e in ENGINES.values() if e.kind == kind), None)


def engine_of_status(status: Mapping[str, Any] | None) -> Engine:
    """The engine a started job runs on (status.engine; jobs from before engines existed ran PyTorchJobs)."""
    return ENGINES[(status or {}).get("engine") or "pytorchjob"]


def child_of_status(status: Mapping[str, Any] | None) -> str | None:
    """The name of a started job's child (status.child, or the older status.pytorchJob)."""
    status = status or {}
    return status.get("child") or status.get("pytorchJob")


__all__ = ["ENGINES", "Engine", "JobSpec", "child_of_status", "engine_of_kind", "engine_of_status", "get_engine"]
