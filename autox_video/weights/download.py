"""One HTTP(S) file into a local path: resumable from a `.part` file (Range), sha256-checked, atomic, locked.

torch.hub.download_url_to_file checks a hash prefix but cannot resume a cut-off download; this keeps
its conventions (a `name-<hex>.pth` file name carries the sha256 prefix) and adds Range resume.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from autox_video import terminal
from autox_video.errors import CheckpointError

_CHUNK = 1024 * 1024
_ATTEMPTS = 4  # a connection cut half way is resumed this many times within one call
_TIMEOUT = 60.0
# torch.hub's HASH_REGEX, narrowed to 8+ hex digits right before the extension.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$")


class Offline(CheckpointError):
    """The host could not be reached at all (no route, DNS, refused): the offline advice applies."""


def hash_prefix_of(name: str) -> str | None:
    """The sha256 prefix a file name carries (`name-<8 or more hex>.pth`), else None."""
    m = _HASH_IN_NAME.search(name.rsplit("/", 1)[-1])
    return m[1] if m else None


def sha256_of(path: Path) -> str:
    """The file's full sha256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_hash(path: Path, expected_prefix: str | None, source: str, *, remove: bool = True) -> str:
    """The file's sha256; a mismatch with `expected_prefix` is a one-line error (and the file is removed)."""
    found = sha256_of(path)
    if expected_prefix and not found.startswith(expected_prefix.lower()):
        if remove:
            path.unlink(missing_ok=True)
        what = "the file was not kept (a damaged download or another file under this name): try again"
        raise CheckpointError(
            f"{source}: sha256 mismatch: expected prefix {expected_prefix}, found {found[: len(expected_prefix)]}; "
            + (what if remove else f"replace {path}")
        )
    return found


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created) for the block: one download per file per node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another process downloads the same file
        yield
    finally:
        os.close(fd)


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": "autox-video"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _one_attempt(url: str, part: Path, progress: bool) -> None:
    """Append the rest of `url` to `part` (Range from its size; from scratch when the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = urllib.request.urlopen(_request(url, offset), timeout=_TIMEOUT)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the part file already holds everything (or more): start over
            part.unlink()
            raise ConnectionError("range not satisfiable") from None
        raise CheckpointError(f"{url}: HTTP {err.code} {err.reason}; check the URL (or its mirror)") from None
    except urllib.error.URLError as err:
        raise Offline(f"{url}: cannot connect ({err.reason})") from None
    with resp:
        if offset and resp.status != 206:
            offset = 0  # no Range support: the whole file comes again
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(part, "ab" if offset else "wb") as out,
            terminal.bar(
                total, part.name.removesuffix(".part")[:40], "B", initial=offset, unit_scale=True, enabled=progress
            ) as bar,
        ):
            while block := resp.read(_CHUNK):
                out.write(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and part.stat().st_size < total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def download(url: str, dest: Path, *, sha256_prefix: str | None = None, progress: bool = True) -> str:
    """Fetch `url` to `dest` unless it is there; return its sha256. Resumes, checks, renames into place."""
    lock = dest.with_name(f".{dest.name}.lock")  # hidden; an empty file left for the next run
    with file_lock(lock):
        if dest.is_file():  # another process (rank, pod on this node) finished it while we waited
            return check_hash(dest, sha256_prefix, str(dest))
        part = dest.with_name(dest.name + ".part")
        last: Exception | None = None
        for _ in range(_ATTEMPTS):
            try:
                _one_attempt(url, part, progress)
                break
            except (OSError, http.client.HTTPException) as err:  # reset, timeout, IncompleteRead
                last = err  # cut off half way: the .part file keeps what came; the next request resumes
        else:
            raise CheckpointError(
                f"{url}: download cut off {_ATTEMPTS} times ({last}); run again to resume from {part}"
            ) from None
        digest = check_hash(part, sha256_prefix, url)
        os.replace(part, dest)  # never a half file under the final name
        return digest
