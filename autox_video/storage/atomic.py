"""Local files that a kill cannot tear: write a temporary file beside the target, fsync, rename.

A reader sees the old file or the new one, never half of one. Appended JSON-lines logs cannot be
renamed into place on every line; their readers skip a torn last line and `repair_jsonl` cuts it
off before the writer appends again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autox_video.errors import StorageError

TMP_MARK = ".tmp."  # temporary names: .<name>.tmp.<pid>; left over only by a killed writer


def temp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through (same directory, so the rename is atomic)."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def _fsync(fd: int) -> None:
    os.fsync(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a closed file's bytes to disk (before renaming a file some other writer produced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        _fsync(fd)
    except OSError:  # some filesystems do not sync directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def _disk_error(path: Path, err: OSError) -> StorageError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(path.parent).free // 2**20 if path.parent.is_dir() else 0
        return StorageError(
            f"{path}: no space left on the device ({free} MiB free) while writing it; the previous "
            "version is intact: free some space (or move work_dir), then run the same command again"
        )
    return StorageError(f"{path}: cannot write ({err.strerror or err})")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open `path` for writing through a temporary file that replaces it only when the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            _fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and not isinstance(err, StorageError):
            raise _disk_error(target, err) from None
        raise
    _fsync_dir(target.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (indented, newline-terminated)."""
    write_text(path, json.dumps(data, indent=1) + "\n")


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a file atomically (the destination is never a partial copy)."""
    with open(src, "rb") as inp, atomic_open(dst, "wb") as out:
        shutil.copyfileobj(inp, out, 1 << 20)


def torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a writer killed mid-append) is skipped; [] if missing."""
    p = Path(path)
    if not p.is_file():
        return []
    lines = p.read_text(encoding="utf-8", errors="replace").split("\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:  # only the last line can be torn by a kill; anything else is damage
                raise StorageError(f"{p}:{i + 1}: not a JSON line; fix or delete the line") from None
    return rows


def repair_jsonl(path: str | os.PathLike[str]) -> None:
    """Cut a torn last line off a JSON-lines file, so that the next append starts on a line of its own."""
    p = Path(path)
    if not p.is_file():
        return
    data = p.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data[: data.rfind(b"\n") + 1]
    write_bytes(p, keep)


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one JSON line with a single write, then fsync (a kill leaves at most a torn last line)."""
    p = Path(path)
    repair_jsonl(p)
    try:
        with open(p, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            _fsync(f.fileno())
    except OSError as err:
        raise _disk_error(p, err) from None


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that killed writers left in `directory` (call with the work dir's lock held)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    stale = [p for p in d.glob(f".*{TMP_MARK}*") if p.is_file()]
    for p in stale:
        with contextlib.suppress(OSError):
            p.unlink()
    return stale
