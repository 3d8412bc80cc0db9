"""Check a run's local locations before any work: a folder that is a file, below a file or unwritable is one line.

Without this, a bad `work_dir` surfaced as a NotADirectoryError traceback, or only after an epoch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from autox_video.errors import ConfigError


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_folder(key: str, path: str | os.PathLike[str]) -> Path:
    """Make sure `path` is (or can be made) a folder this process can write to; return it."""
    folder = Path(path)
    if folder.is_file():
        raise ConfigError(f"{key} {folder}: is a file, not a folder: point {key} at a folder (made if missing)")
    base = _first_existing(folder)
    if base.exists() and not base.is_dir():
        raise ConfigError(f"{key} {folder}: {base} is a file, so no folder can be made below it: choose another {key}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".autox-write-check-"):
            pass
    except OSError as err:
        raise ConfigError(
            f"{key} {folder}: cannot write there ({err.strerror or err}): choose a folder you can write to"
        ) from None
    return folder


def check_file_target(key: str, path: str | os.PathLike[str]) -> Path:
    """Make sure a file can be written at `path` (its folder writable, the path itself no folder)."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{key} {target}: is a folder: give a file path, e.g. {target / 'results.json'}")
    check_folder(f"{key}'s folder", target.parent if str(target.parent) else Path("."))
    return target
