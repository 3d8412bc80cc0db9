"""The local download cache: which local file holds which S3 object version (ETag + size).

One small JSON entry per local file under `<cache root>/index/`, keyed by the file's absolute
path, so a restarted process (or pod with the same volume) re-downloads only what changed,
and parallel downloads never contend for one index file. A file edited locally no longer
matches its recorded mtime and size, so it is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from autox_video.storage import atomic
from autox_video.storage.uris import split_uri


def cache_root() -> Path:
    """Root of the cache (AUTOX_CACHE_DIR, default ~/.cache/autox-video)."""
    return Path(os.environ.get("AUTOX_CACHE_DIR") or Path.home() / ".cache" / "autox-video")


def object_path(uri: str) -> Path:
    """Where the cache keeps an S3 object (or a prefix's files): <root>/s3/<bucket>/<key>."""
    bucket, key = split_uri(uri)
    return cache_root() / "s3" / bucket / key.strip("/")


def _entry(local: Path) -> Path:
    digest = hashlib.sha1(os.path.abspath(local).encode()).hexdigest()
    return cache_root() / "index" / digest[:2] / f"{digest}.json"


def is_fresh(local: Path, uri: str, etag: str, size: int) -> bool:
    """Whether `local` already holds this version of `uri` (same ETag and size, untouched since)."""
    try:
        entry = json.loads(_entry(local).read_text())
        st = local.stat()
    except (OSError, ValueError):
        return False
    return bool(
        entry.get("uri") == uri
        and entry.get("etag") == etag
        and entry.get("size") == size == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
    )


def record(local: Path, uri: str, etag: str, size: int) -> None:
    """Remember that `local` now holds this version of `uri` (written atomically)."""
    path = _entry(local)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "uri": uri,
        "etag": etag,
        "size": size,
        "mtime_ns": local.stat().st_mtime_ns,
        "path": os.path.abspath(local),
    }
    atomic.write_text(path, json.dumps(data))
