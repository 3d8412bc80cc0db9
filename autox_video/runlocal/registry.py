"""Local runs by kind and name (`<AUTOX_CACHE_DIR>/runs.json`), so a VideoInferenceJob's trainingJobRef finds them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autox_video.errors import ConfigError
from autox_video.storage import atomic, cache_root

REGISTRY_FILE = "runs.json"


def registry_path() -> Path:
    """Where the registry lives: AUTOX_CACHE_DIR (default ~/.cache/autox-video)/runs.json."""
    return cache_root() / REGISTRY_FILE


def _load() -> dict[str, dict[str, Any]]:
    path = registry_path()
    if not path.is_file():
        return {}
    try:
        runs = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable registry of local runs ({err}); delete it to start afresh") from None
    return runs if isinstance(runs, dict) else {}


def record_run(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    """Create or update the entry of run `kind/name` (written atomically) and return it."""
    runs = _load()
    entry = {**runs.get(f"{kind}/{name}", {}), "kind": kind, "name": name, **fields}
    runs[f"{kind}/{name}"] = entry
    atomic.write_json(registry_path(), runs)
    return entry


def find_run(kind: str, name: str) -> dict[str, Any] | None:
    """The entry of run `kind/name`, or None when none was run on this machine."""
    return _load().get(f"{kind}/{name}")
