"""Vertex AI batch-prediction input (JSONL: content, mimeType, timeSegmentStart, timeSegmentEnd) as list samples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from autox_video.errors import AnnotationError


def looks_like_jsonl(path: Path, text: str) -> bool:
    """Whether a list file is JSONL (a .jsonl name, or a first non-blank line that is a JSON object)."""
    if path.suffix.lower() in (".jsonl", ".json"):
        return True
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.startswith("{")


def parse_seconds(value: Any, where: str, field: str) -> float:
    """'1.5s', '2', 3, 'Infinity' -> seconds (inf for Infinity); anything else is one-line error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        text = value.strip()
        text = text[:-1] if text.endswith("s") else text
        if text in ("Infinity", "inf"):
            return math.inf
        try:
            out = float(text)
        except ValueError:
            raise AnnotationError(
                f"{where}: {field} {value!r} is not a time (expected seconds such as '1.5s' or 'Infinity')"
            ) from None
    else:
        raise AnnotationError(f"{where}: {field} {value!r} is not a time (expected seconds such as '1.5s')")
    if math.isnan(out) or out < 0:
        raise AnnotationError(f"{where}: {field} {value!r} must be a time >= 0 s")
    return out


def _relative(content: str, root: Path, root_uri: str | None, where: str) -> str:
    """`content` as a path for the sample: relative to data_root when it lies under it, else absolute."""
    if content.startswith("gs://"):
        raise AnnotationError(
            f"{where}: content {content!r} is in Google Cloud Storage, which is not read here; "
            "copy the videos to S3 (or a local folder) and point content at them"
        )
    if content.startswith("s3://"):
        prefix = (root_uri or "").rstrip("/") + "/"
        if not root_uri or not content.startswith(prefix):
            raise AnnotationError(
                f"{where}: content {content!r} is not under data_root {root_uri or str(root)!r}; "
                "set data_root to the S3 prefix holding the videos"
            )
        return content[len(prefix) :]
    if "://" in content:
        raise AnnotationError(f"{where}: content {content!r}: only local paths and s3:// URIs are read")
    p = Path(content)
    if p.is_absolute():
        try:
            return p.relative_to(root.resolve()).as_posix()
        except ValueError:
            return str(p)  # outside data_root: kept absolute (data_root / abs == abs)
    return content


def read_vertex_instances(path: Path, text: str, root: Path, root_uri: str | None = None) -> list[dict[str, Any]]:
    """One dict per instance: {path, start, end (None = end of video), line, instance (the raw object)}."""
    out = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as err:
            raise AnnotationError(f"{where}: not JSON ({err.msg}); expected one Vertex AI instance per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("content"), str) or not obj["content"]:
            raise AnnotationError(f'{where}: no \'content\' (expected {{"content": "path or s3://...", ...}})')
        start = parse_seconds(obj.get("timeSegmentStart", "0s"), where, "timeSegmentStart")
        end = parse_seconds(obj.get("timeSegmentEnd", "Infinity"), where, "timeSegmentEnd")
        if math.isinf(start):
            raise AnnotationError(f"{where}: timeSegmentStart {obj.get('timeSegmentStart')!r} must be finite")
        if end <= start:
            raise AnnotationError(
                f"{where}: timeSegmentEnd {obj.get('timeSegmentEnd')!r} is not after timeSegmentStart "
                f"{obj.get('timeSegmentStart')!r}; give a segment that ends after it starts"
            )
        rel = _relative(obj["content"], root, root_uri, where)
        out.append(
            {"path": rel, "start": start, "end": None if math.isinf(end) else end, "line": lineno, "instance": obj}
        )
    return out
