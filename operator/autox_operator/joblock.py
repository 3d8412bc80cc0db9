"""One lock per job: status updates of a job are serialised across the operator's threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_locks: dict[tuple[str, str, str], threading.Lock] = {}


@contextmanager
def job_lock(plural: str, namespace: str, name: str) -> Iterator[None]:
    """Serialise status updates of one job (the PyTorchJob watch and the timer run in threads)."""
    with _locks.setdefault((plural, namespace, name), threading.Lock()):
        yield
