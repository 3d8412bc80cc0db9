"""`python tests/faulty_cli.py ARGS` = `autox-video ARGS` with slowed writes, so a test can SIGKILL inside them.

AUTOX_TEST_WRITE_DELAY=S   each atomic write of a matching file writes half its first chunk, sleeps S, writes
                           the rest, and sleeps S again before its rename; each metrics.jsonl append writes
                           half a line, sleeps S, then the rest (a kill between leaves a torn last line)
AUTOX_TEST_SLOW_NAMES=a,b  only files whose names contain one of these (default: all)
AUTOX_TEST_MARKS=DIR       touch DIR/upload-NAME while an S3 upload of NAME is in flight (slowed by S)
AUTOX_TEST_ENOSPC=NAME     fail the first atomic write of a file whose name contains NAME with ENOSPC
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autox_video import storage
from autox_video.cli import main
from autox_video.storage import atomic

DELAY = float(os.environ.get("AUTOX_TEST_WRITE_DELAY", "0"))
NAMES = [n for n in os.environ.get("AUTOX_TEST_SLOW_NAMES", "").split(",") if n]
MARKS = os.environ.get("AUTOX_TEST_MARKS")
ENOSPC = os.environ.get("AUTOX_TEST_ENOSPC")


class _HalfThenSleep:
    """A file whose first write lands half, then pauses: a kill then finds a partial temporary file."""

    def __init__(self, f: IO[Any]) -> None:
        self._f, self._first = f, True

    def write(self, data: Any) -> int:
        if self._first and len(data) > 1:
            self._first = False
            half = len(data) // 2
            self._f.write(data[:half])
            self._f.flush()
            time.sleep(DELAY)
            return half + self._f.write(data[half:])
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


_real_open = atomic.atomic_open


@contextlib.contextmanager
def _slow_open(path: Any, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    global ENOSPC
    name = Path(path).name
    if ENOSPC and ENOSPC in name:
        ENOSPC = None
        raise atomic._disk_error(Path(path), OSError(errno.ENOSPC, "No space left on device"))
    slow = DELAY > 0 and (not NAMES or any(n in name for n in NAMES))
    with _real_open(path, mode, encoding) as f:
        yield _HalfThenSleep(f) if slow else f
        if slow:
            time.sleep(DELAY)  # the temporary file is complete; the rename has not happened


_real_append = atomic.append_jsonl


def _slow_append(path: Any, row: dict[str, Any]) -> None:
    if DELAY > 0 and (not NAMES or any(n in Path(path).name for n in NAMES)):
        import json

        atomic.repair_jsonl(path)
        line = json.dumps(row) + "\n"
        with open(path, "a", encoding="utf-8") as f:
            f.write(line[: len(line) // 2])
            f.flush()
            time.sleep(DELAY)
            f.write(line[len(line) // 2 :])
        return
    _real_append(path, row)


_real_upload = storage.upload


def _slow_upload(local_path: Any, uri: str, *args: Any, **kwargs: Any) -> Any:
    mark = Path(MARKS) / f"upload-{uri.rsplit('/', 1)[-1]}" if MARKS else None
    if mark is not None:
        mark.touch()
    time.sleep(DELAY)
    try:
        return _real_upload(local_path, uri, *args, **kwargs)
    finally:
        if mark is not None:
            mark.unlink(missing_ok=True)


if DELAY > 0 or ENOSPC:
    atomic.atomic_open = _slow_open  # type: ignore[assignment]
    atomic.append_jsonl = _slow_append  # type: ignore[assignment]
if MARKS:
    storage.upload = _slow_upload  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
