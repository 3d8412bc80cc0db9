"""One live run per work dir: an advisory lock file that names its holder (pid, host, since when).

The lock is an `flock` on `<work_dir>/.autox.lock`: the kernel drops it when the holder dies however it
dies (SIGKILL included), so a stale file is simply taken over. Where the filesystem has no flock,
a holder's pid that is alive on this host still counts as taken. The holder removes the file when it
lets go (however the block ends), so a run that stops leaves the work dir as it found it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autox_video.errors import ConfigError

LOCK_NAME = ".autox.lock"


class WorkDirBusy(ConfigError):
    """Another live process holds the work dir."""


def _holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        return {}


def _alive_here(info: dict[str, Any]) -> bool:
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    if info["pid"] == os.getpid():
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _busy(work_dir: Path, info: dict[str, Any]) -> WorkDirBusy:
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    return WorkDirBusy(
        f"{work_dir} is in use by another run ({info.get('command', 'autox-video')}, pid {info.get('pid', '?')} "
        f"on host {info.get('host', '?')}, since {when}): wait for it to finish or stop it, or use another work_dir"
    )


def _flock_or_wait_for_the_dead(fd: int, grace: float = 15.0) -> None:
    """flock; when the holder named in the file is dead, wait a little for its children to let go.

    Forked data-loader workers share the lock with the process that forked them and notice its
    death only within seconds (torch checks every 5 s).
    """
    deadline = time.monotonic() + grace
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            info = _holder(fd)
            dead = info.get("host") == socket.gethostname() and not _alive_here(info)
            if not dead or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a releasing holder may have unlinked it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _lock(work: Path) -> int:
    """An fd holding the lock on the file now at work/LOCK_NAME; WorkDirBusy if a live run has it."""
    path = work / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                _flock_or_wait_for_the_dead(fd)
            except BlockingIOError:
                raise _busy(work, _holder(fd)) from None
            except OSError as err:  # no flock on this filesystem: fall back to the pid it names
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                if _alive_here(info := _holder(fd)):
                    raise _busy(work, info) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder we waited for unlinks the file before letting go: a lock on that orphan guards
        # nothing (a third process may already lock a new file at the path), so start again.
        if _same_file(fd, path):
            return fd
        os.close(fd)


@contextlib.contextmanager
def hold_work_dir(work_dir: str | os.PathLike[str], command: str | None = None) -> Iterator[None]:
    """Hold the work dir's lock for the block; WorkDirBusy (one line naming the holder) if a live run has it."""
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    fd = _lock(work)
    try:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": int(time.time()),
            "command": command or " ".join(["autox-video", *sys.argv[1:2]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield
    finally:
        # Unlink while still holding the flock (so nobody else holds this file), then let go.
        with contextlib.suppress(OSError):
            if _same_file(fd, work / LOCK_NAME):
                os.unlink(work / LOCK_NAME)
        os.close(fd)
