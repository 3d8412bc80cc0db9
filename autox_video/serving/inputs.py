"""A v2 request -> the videos it names (bytes or URIs, fetched into temp files) and its parameters."""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video import storage
from autox_video.errors import AutoXError
from autox_video.serving.errors import BadInput

INPUT_NAMES = ("video", "uri")
GRANULARITIES = ("video", "segment", "shot", "second")
HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Limits:
    """What the server accepts (its flags)."""

    max_bytes: int
    max_seconds: float
    allow_local: bool


@dataclass
class Item:
    """One video of a request: its bytes, or a URI to read; `where` names it in messages."""

    where: str
    data: bytes | None = None
    uri: str | None = None


@dataclass(frozen=True)
class Options:
    """Request parameters: `top_k` classes, and timeline `granularity` (None: one answer per video)."""

    top_k: int
    granularity: tuple[str, ...] | None


def _value(param: Any) -> Any:
    """A parameter's plain value (REST gives it plain; gRPC wraps it in an InferParameter)."""
    for field in ("string_param", "int64_param", "bool_param", "double_param"):
        if hasattr(param, "HasField") and param.HasField(field):
            return getattr(param, field)
    return param


def options(params: dict[str, Any] | None, num_classes: int) -> Options:
    """`top_k` (1..classes, default 5 or fewer) and `granularity` (comma-separated, from GRANULARITIES)."""
    params = dict(params or {})
    raw_k = _value(params.get("top_k", min(5, num_classes)))
    try:
        top_k = int(raw_k)
    except (TypeError, ValueError):
        raise BadInput(
            f"parameter top_k {raw_k!r}: give a whole number from 1 to {num_classes}", "bad_parameter"
        ) from None
    if not 1 <= top_k <= num_classes:
        raise BadInput(f"parameter top_k {top_k}: give a whole number from 1 to {num_classes}", "bad_parameter")
    raw_g = _value(params.get("granularity"))
    gran = None
    if raw_g not in (None, "", "video"):
        parts = tuple(p.strip() for p in str(raw_g).split(",") if p.strip())
        bad = [p for p in parts if p not in GRANULARITIES]
        if bad or not parts:
            raise BadInput(
                f"parameter granularity {raw_g!r}: use one or more of {', '.join(GRANULARITIES)} (comma-separated)",
                "bad_parameter",
            )
        gran = tuple(p for p in parts if p != "video") or None
    return Options(top_k, gran)


def _items_of(name: str, datatype: str, data: Any) -> list[Item]:
    if datatype != "BYTES":
        raise BadInput(f"input {name!r}: datatype {datatype}, expected BYTES", "bad_input")
    values = data if isinstance(data, list) else [data]
    flat: list[Any] = []
    for v in values:  # shape [n] or [n, 1]
        flat.extend(v if isinstance(v, list) else [v])
    if not flat:
        raise BadInput(f"input {name!r}: empty; give one element per video", "bad_input")
    items = []
    for i, v in enumerate(flat):
        where = f"{name}[{i}]"
        if name == "uri":
            text = v.decode() if isinstance(v, bytes) else str(v)
            items.append(Item(where, uri=text))
        elif isinstance(v, bytes):
            items.append(Item(where, data=v))  # binary tensor extension: raw bytes
        else:
            try:
                items.append(Item(where, data=base64.b64decode(str(v), validate=True)))
            except (binascii.Error, ValueError):
                raise BadInput(
                    f"input {where}: not base64; send the video file's bytes base64-encoded", "bad_input"
                ) from None
    return items


def items(inputs: list[Any]) -> list[Item]:
    """The videos of a request's inputs (`video`: base64 bytes; `uri`: s3://, https:// or a local path)."""
    out: list[Item] = []
    for inp in inputs:
        if inp.name not in INPUT_NAMES:
            raise BadInput(f"input {inp.name!r}: unknown; send `video` (BYTES, base64) or `uri` (BYTES)", "bad_input")
        out.extend(_items_of(inp.name, inp.datatype, inp.data))
    if not out:
        raise BadInput("no inputs: send `video` (BYTES, base64) or `uri` (BYTES)", "bad_input")
    return out


def _too_large(where: str, size: int, limits: Limits) -> BadInput:
    return BadInput(f"{where}: {size} bytes, over the server's --max-bytes {limits.max_bytes}", "too_large")


def _suffix(head: bytes) -> str:
    """A file name suffix for the decoder's container choice (FFmpeg itself probes the content)."""
    return ".avi" if head[:4] == b"RIFF" else ".mp4"


def _write_temp(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(prefix="autox-serve-", suffix=_suffix(data[:16]))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Path(name)


def _read_http(item: Item, limits: Limits) -> bytes:
    assert item.uri is not None
    try:
        with urllib.request.urlopen(item.uri, timeout=HTTP_TIMEOUT_S) as response:  # noqa: S310 - scheme checked
            data = response.read(limits.max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        raise BadInput(f"{item.where}: cannot read {item.uri} ({reason})", "unreadable_uri") from None
    if len(data) > limits.max_bytes:
        raise _too_large(item.where, len(data), limits)
    return data


def _read_s3(item: Item, limits: Limits) -> Path:
    assert item.uri is not None
    try:
        info = storage.stat(item.uri)
        if info is None:
            raise BadInput(f"{item.where}: no object at {item.uri}", "unreadable_uri")
        if info.size > limits.max_bytes:
            raise _too_large(item.where, info.size, limits)
        return _write_temp(storage.read_bytes(item.uri))
    except AutoXError as err:
        if isinstance(err, BadInput):
            raise
        raise BadInput(f"{item.where}: cannot read {item.uri} ({err})", "unreadable_uri") from None


def _read_local(item: Item, limits: Limits) -> Path:
    assert item.uri is not None
    if not limits.allow_local:
        raise BadInput(f"{item.where}: local paths are off; send s3:// or https://, or start with --allow-local",
                       "unknown_scheme")  # fmt: skip
    path = Path(item.uri.removeprefix("file://"))
    if not path.is_file():
        raise BadInput(f"{item.where}: no file {path}", "unreadable_uri")
    if path.stat().st_size > limits.max_bytes:
        raise _too_large(item.where, path.stat().st_size, limits)
    return _write_temp(path.read_bytes())  # a copy: the caller deletes what it gets


def fetch(item: Item, limits: Limits) -> Path:
    """The item's video in a temp file (the caller deletes it); BadInput for anything unreadable."""
    if item.data is not None:
        if len(item.data) > limits.max_bytes:
            raise _too_large(item.where, len(item.data), limits)
        return _write_temp(item.data)
    uri = item.uri or ""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if scheme == "s3":
        return _read_s3(item, limits)
    if scheme in ("http", "https"):
        return _write_temp(_read_http(item, limits))
    if scheme in ("", "file"):
        return _read_local(item, limits)
    raise BadInput(f"{item.where}: scheme {scheme}:// not supported; use s3://, https:// (or a local path)",
                   "unknown_scheme")  # fmt: skip
