"""`s3://bucket/key` URIs and local paths: tell them apart, split and join them."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from autox_video.errors import StorageError

SCHEME = "s3://"


def is_s3(uri: str | os.PathLike[str]) -> bool:
    """Whether `uri` is an `s3://bucket/key` URI (anything else is a local path)."""
    return isinstance(uri, str) and uri.startswith(SCHEME)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def uri_problem(value: str) -> str | None:
    """What is wrong with an `s3:` location (None for a well-formed URI or a local path)."""
    if not value.lower().startswith("s3:"):
        return None
    if not value.startswith(SCHEME):
        return f"{value!r} is not an S3 URI: write it as s3://BUCKET/KEY"
    bucket = value[len(SCHEME) :].partition("/")[0]
    if not bucket:
        return f"{value!r} names no bucket: write it as s3://BUCKET/KEY"
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        return (
            f"{value!r}: {bucket!r} is not a bucket name (3-63 lowercase letters, digits, '.' or '-'; "
            "starts and ends with a letter or digit)"
        )
    return None


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b"); the key may be empty (the bucket itself)."""
    bucket, _, key = uri[len(SCHEME) :].partition("/")
    if not is_s3(uri) or not bucket:
        raise StorageError(f"{uri!r} is not an S3 URI: write it as s3://BUCKET/KEY")
    return bucket, key


def folder_key(key: str) -> str:
    """A key used as a folder prefix: '' stays '', 'a/b' becomes 'a/b/' (so 'a/bc' is not under it)."""
    return key if not key or key.endswith("/") else key + "/"


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or an S3 URI (`s3://b/runs` + `x.pth` -> `s3://b/runs/x.pth`)."""
    if not is_s3(base):
        return str(Path(base, *parts))
    text = str(base).rstrip("/")
    pieces = [p.strip("/") for p in parts if p.strip("/")]
    return "/".join([text, *pieces]) if pieces else text


def safe_relative(rel: str, *, base: str) -> str:
    """A relative key cleaned for use as a local path: no leading './' or '/', no '..' (stays under root)."""
    clean = PurePosixPath(rel.replace("\\", "/").lstrip("/"))
    if ".." in clean.parts or str(clean) in ("", "."):
        raise StorageError(f"{join(base, rel)}: {rel!r} is not a file path under {base}")
    return str(clean)
