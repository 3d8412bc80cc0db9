"""Many files at once: parallel, cached downloads of dataset videos and whole prefixes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from autox_video.errors import StorageError
from autox_video.storage import cache
from autox_video.storage.objects import ObjectInfo, download, fetch, list_objects, require
from autox_video.storage.uris import is_s3, join, safe_relative

log = logging.getLogger("autox_video")
_LIST_OVER = 32  # more keys than this: one listing of the prefix beats one HEAD per key


def localize(path_or_uri: str | os.PathLike[str], local_path: str | os.PathLike[str] | None = None) -> Path:
    """A local path as is; an S3 object downloaded (cached) to `local_path` or into the cache dir."""
    if not is_s3(path_or_uri):
        return Path(path_or_uri)
    uri = str(path_or_uri)
    return download(uri, local_path if local_path is not None else cache.object_path(uri))


def download_many(
    base_uri: str | os.PathLike[str], rel_keys: Iterable[str], local_root: str | os.PathLike[str], *, workers: int = 16
) -> list[Path]:
    """Fetch `base_uri/<key>` to `local_root/<key>` for every key, in parallel, skipping cached ones.

    Returns the local paths in the order of `rel_keys`. A local `base_uri` is used in place
    (nothing is copied; the paths under it are returned).
    """
    base = str(base_uri)
    keys = [safe_relative(k, base=base) for k in rel_keys]
    if not is_s3(base):
        return [Path(base, k) for k in keys]
    if len(keys) > _LIST_OVER:
        listed = list_objects(base)
        missing = [k for k in keys if k not in listed]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise StorageError(f"no object at {join(base, missing[0])}{more}")
        infos: dict[str, ObjectInfo] | None = {k: listed[k] for k in keys}
    else:
        infos = None
    return _fetch_all(base, keys, Path(local_root), infos, workers)


def sync_down(
    prefix_uri: str,
    local_dir: str | os.PathLike[str] | None = None,
    *,
    suffixes: Iterable[str] | None = None,
    workers: int = 16,
) -> Path:
    """Mirror every object under an S3 folder (optionally only names ending in `suffixes`) to a local dir.

    Unchanged files are not fetched again; local files that are not in S3 are left alone.
    The default local dir is the prefix's place in the cache. A local folder is returned as is.
    """
    if not is_s3(prefix_uri):
        return Path(prefix_uri)
    root = Path(local_dir) if local_dir is not None else cache.object_path(prefix_uri)
    wanted = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    listed = {k: v for k, v in list_objects(prefix_uri).items() if wanted is None or k.lower().endswith(wanted)}
    keys = sorted(safe_relative(k, base=prefix_uri) for k in listed)
    _fetch_all(prefix_uri, keys, root, listed, workers)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _fetch_all(base: str, keys: list[str], root: Path, infos: dict[str, ObjectInfo] | None, workers: int) -> list[Path]:
    def one(key: str) -> Path:
        uri = join(base, key)
        info = infos[key] if infos is not None else require(uri)
        return fetch(uri, info, root / key)

    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys))), thread_name_prefix="autox-s3") as pool:
        futures = [pool.submit(one, k) for k in keys]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for f in futures:
                f.cancel()  # stop queued downloads; running ones finish
            raise failed.exception()  # type: ignore[misc]
        paths = [f.result() for f in futures]
    log.info("%d files from %s ready in %s", len(paths), base, root)
    return paths
