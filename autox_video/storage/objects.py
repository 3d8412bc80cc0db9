"""Single-object operations on S3 URIs or local paths: read, write, upload, download, list, delete."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video.errors import StorageError
from autox_video.storage import atomic, cache, s3core, settings
from autox_video.storage.uris import folder_key, is_s3, split_uri

Progress = Callable[[int], None]  # called with the number of bytes just moved
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """An S3 object's version (ETag) and size."""

    etag: str
    size: int


def stat(uri: str) -> ObjectInfo | None:
    """ETag and size of an S3 object, None when there is no such key (a missing bucket is an error)."""
    head = s3core.stat(settings.policy(), uri)
    return None if head is None else ObjectInfo(str(head.get("ETag", "")), int(head.get("ContentLength", 0)))


def require(uri: str) -> ObjectInfo:
    """Like `stat`, but a missing object is a StorageError ("no object at s3://...")."""
    info = stat(uri)
    if info is None:
        raise StorageError(f"no object at {uri}")
    return info


def exists(uri: str) -> bool:
    """Whether an S3 object or a local file exists."""
    return stat(uri) is not None if is_s3(uri) else Path(uri).exists()


def _tmp_beside(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")


def _write_local(dest: Path, data: bytes) -> None:
    atomic.write_bytes(dest, data)  # readers never see a half-written file


def read_bytes(uri: str) -> bytes:
    """The contents of an S3 object or a local file."""
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except OSError as err:
            raise StorageError(f"{uri}: {err.strerror or err}") from err
    return s3core.read_bytes(settings.policy(), uri)


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """The text of an S3 object or a local file."""
    return read_bytes(uri).decode(encoding)


def write_bytes(uri: str, data: bytes) -> None:
    """Write an S3 object or a local file in one piece (a reader sees the old or the new, never half)."""
    if not is_s3(uri):
        _write_local(Path(uri), data)
        return
    s3core.write_bytes(settings.policy(), uri, data)


def write_text(uri: str, text: str, encoding: str = "utf-8") -> None:
    """Write text to an S3 object or a local file."""
    write_bytes(uri, text.encode(encoding))


def upload(local_path: str | os.PathLike[str], uri: str, *, progress: Progress | None = None) -> None:
    """Copy a local file to `uri` (S3: multipart, parts in parallel, when large; local: atomic copy)."""
    src = Path(local_path)
    if not src.is_file():
        raise StorageError(f"{src}: no such file to upload to {uri}")
    if not is_s3(uri):
        atomic.copy_file(src, uri)
        return
    bucket, key = split_uri(uri)

    def put(client: Any) -> ObjectInfo:
        client.upload_file(str(src), bucket, key, Config=settings.transfer_config(), Callback=progress)
        head = client.head_object(Bucket=bucket, Key=key)
        return ObjectInfo(str(head["ETag"]), int(head["ContentLength"]))

    info = s3core.call(settings.policy(), uri, put, what="upload")
    cache.record(src, uri, info.etag, info.size)  # downloading it back to the same path is free


def download(uri: str, local_path: str | os.PathLike[str], *, progress: Progress | None = None) -> Path:
    """Fetch `uri` to `local_path` unless the cache says it already holds this version; return the path."""
    dest = Path(local_path)
    if not is_s3(uri):
        if not Path(uri).is_file():
            raise StorageError(f"{uri}: no such file")
        if Path(uri).resolve() != dest.resolve():
            upload(uri, str(dest))
        return dest
    return fetch(uri, require(uri), dest, progress=progress)


def fetch(uri: str, info: ObjectInfo, dest: Path, *, progress: Progress | None = None) -> Path:
    """Download a known object version to `dest` (skipped when cached); atomic and recorded in the cache."""
    if cache.is_fresh(dest, uri, info.etag, info.size):
        return dest
    bucket, key = split_uri(uri)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(dest)

    def get(client: Any) -> str:
        if info.size >= settings.multipart_bytes():  # large: ranged GETs in parallel
            client.download_file(bucket, key, str(tmp), Config=settings.transfer_config(), Callback=progress)
            return info.etag
        response = client.get_object(Bucket=bucket, Key=key)
        with open(tmp, "wb") as out:
            for chunk in response["Body"].iter_chunks(_CHUNK):  # botocore checks the length: a cut stream raises
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        return str(response.get("ETag", info.etag))

    try:
        etag = s3core.call(settings.policy(), uri, get, what="download")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    cache.record(dest, uri, etag, dest.stat().st_size)
    return dest


def list_objects(prefix_uri: str) -> dict[str, ObjectInfo]:
    """Every object under an S3 folder prefix, by key relative to it (folder markers skipped)."""
    bucket, key = split_uri(prefix_uri)
    prefix = folder_key(key)

    def listing(client: Any) -> dict[str, ObjectInfo]:
        found: dict[str, ObjectInfo] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix) :]
                if rel and not rel.endswith("/"):
                    found[rel] = ObjectInfo(str(obj.get("ETag", "")), int(obj.get("Size", 0)))
        return found

    return s3core.call(settings.policy(), prefix_uri, listing, what="list")


def list_keys(prefix_uri: str) -> list[str]:
    """Sorted keys (S3) or file paths (local folder) under a folder, relative to it; [] when there are none."""
    if is_s3(prefix_uri):
        return sorted(list_objects(prefix_uri))
    root = Path(prefix_uri)
    if not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def delete(uri: str) -> None:
    """Remove an S3 object or a local file (no error when it is already gone)."""
    if not is_s3(uri):
        Path(uri).unlink(missing_ok=True)
        return
    s3core.delete(settings.policy(), uri)
