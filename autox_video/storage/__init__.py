"""Storage for local paths and `s3://bucket/key` URIs alike (boto3; no torch).

Endpoint, region and credentials come from the standard AWS environment
(`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), or
from `configure()` (the config keys `s3_endpoint_url`, `s3_region`). Failures raise one-line
`StorageError`s naming the URI; outages are retried for AUTOX_S3_RETRY_SECONDS (default 300).
Downloads are cached by ETag and size under AUTOX_CACHE_DIR (default ~/.cache/autox-video).
"""

from __future__ import annotations

from autox_video.storage.bulk import download_many, localize, sync_down
from autox_video.storage.cache import cache_root
from autox_video.storage.cache import object_path as cache_path
from autox_video.storage.objects import (
    ObjectInfo,
    delete,
    download,
    exists,
    list_keys,
    read_bytes,
    read_text,
    stat,
    upload,
    write_bytes,
    write_text,
)
from autox_video.storage.settings import configure, endpoint_url
from autox_video.storage.uris import is_s3, join, split_uri

__all__ = [
    "ObjectInfo",
    "cache_path",
    "cache_root",
    "configure",
    "delete",
    "download",
    "download_many",
    "endpoint_url",
    "exists",
    "is_s3",
    "join",
    "list_keys",
    "localize",
    "read_bytes",
    "read_text",
    "split_uri",
    "stat",
    "sync_down",
    "upload",
    "write_bytes",
    "write_text",
]
