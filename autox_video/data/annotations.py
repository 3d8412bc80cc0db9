"""`path [start end] label` annotation lists (mmaction2 format, optional time range) or Vertex AI JSONL:
read, validate with file:line errors, scan folders."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from autox_video.errors import AnnotationError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


@dataclass(frozen=True)
class Sample:
    """One video of a list: its path relative to data_root, its label (None if unlabelled), its line.

    `start`/`end` (seconds) restrict it to a time range (None: from the start / to the end);
    `instance` is the Vertex AI input object the sample came from.
    """

    path: str
    label: int | None
    line: int
    start: float | None = None
    end: float | None = None
    instance: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def ranged(self) -> bool:
        """Whether the list line gave a time range."""
        return self.start is not None or self.end is not None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation list not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise AnnotationError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); save the list as UTF-8"
        ) from None


def _is_video(token: str) -> bool:
    return any(token.lower().endswith(ext) for ext in VIDEO_EXTENSIONS)


def split_line(line: str) -> tuple[str, list[str]]:
    """'path with spaces.mp4 1.5 4 3' -> ('path with spaces.mp4', ['1.5', '4', '3']).

    The path ends at its last token with a video extension; without one, only the last token
    (the label) is split off, as mmaction2 does.
    """
    tokens = line.split()
    ends = [i for i, t in enumerate(tokens) if _is_video(t)]
    if ends:
        rest = tokens[ends[-1] + 1 :]
        path = line.rsplit(None, len(rest))[0] if rest else line
        return path, rest
    parts = line.rsplit(None, 1)
    return (parts[0], [parts[1]]) if len(parts) == 2 else (line, [])


def _seconds(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(
            f"{where}: {what} time {text!r} is not a number (expected 'relative/path.mp4 START END [LABEL]' in seconds)"
        ) from None
    if math.isnan(value) or value < 0 or (what == "start" and math.isinf(value)):
        raise AnnotationError(f"{where}: {what} time {text!r} must be a number of seconds >= 0")
    return value


def _check_path(rel: str, where: str) -> None:
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise AnnotationError(f"{where}: path {rel!r} is absolute; use a path relative to data_root")
    if ".." in p.parts:
        raise AnnotationError(f"{where}: path {rel!r} escapes data_root; use a path relative to data_root")


def read_annotations(
    ann_file: str | Path,
    data_root: str | Path,
    *,
    num_class: int | None = None,
    require_labels: bool = True,
    check_exists: bool = True,
    root_uri: str | None = None,
) -> list[Sample]:
    """Parse a list (or Vertex AI JSONL); every problem is an AnnotationError naming file:line and the fix.

    `root_uri` is data_root's s3:// prefix, against which JSONL `content` URIs are resolved.
    """
    from autox_video.data.vertex_jsonl import looks_like_jsonl

    path = Path(ann_file)
    root = Path(data_root)
    text = _read_text(path)
    if looks_like_jsonl(path, text):
        return _read_jsonl(path, text, root, root_uri, check_exists)
    samples: list[Sample] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        rel, rest = split_line(line)
        if len(rest) > 3:
            raise AnnotationError(
                f"{where}: {len(rest)} fields after {rel!r} (expected 'relative/path.mp4 [START END] LABEL')"
            )
        start = end = None
        if len(rest) >= 2:
            start, end = _seconds(rest[0], where, "start"), _seconds(rest[1], where, "end")
            if end <= start:
                raise AnnotationError(
                    f"{where}: end {rest[1]} is not after start {rest[0]}; give 'path START END' with START < END"
                )
            end = None if math.isinf(end) else end
        label_text = rest[-1] if len(rest) in (1, 3) else None
        label: int | None = None
        if label_text is not None:
            try:
                label = int(label_text)
            except ValueError:
                raise AnnotationError(
                    f"{where}: label {label_text!r} is not an integer (expected 'relative/path.mp4 LABEL')"
                ) from None
            if label < 0 or (num_class is not None and label >= num_class):
                upper = f"{num_class}) (num_class={num_class})" if num_class is not None else "inf)"
                raise AnnotationError(f"{where}: label {label} outside [0, {upper}")
        elif require_labels:
            raise AnnotationError(f"{where}: no label after {rel!r} (expected 'relative/path.mp4 LABEL')")
        _check_path(rel, where)
        if check_exists and not (root / rel).is_file():
            raise AnnotationError(f"{where}: video {rel!r} not found under {root}")
        samples.append(Sample(rel, label, lineno, start, end))
    return samples


def _read_jsonl(path: Path, text: str, root: Path, root_uri: str | None, check_exists: bool) -> list[Sample]:
    from autox_video.data.vertex_jsonl import read_vertex_instances

    samples = []
    for item in read_vertex_instances(path, text, root, root_uri):
        if check_exists and not (root / item["path"]).is_file():
            raise AnnotationError(f"{path}:{item['line']}: video {item['path']!r} not found under {root}")
        start = item["start"] or None  # 0 s = from the start
        samples.append(Sample(item["path"], None, item["line"], start, item["end"], item["instance"]))
    return samples


def scan_videos(data_root: str | Path) -> list[Sample]:
    """Every video file under data_root (sorted, relative paths, no labels)."""
    root = Path(data_root)
    if not root.is_dir():
        raise AnnotationError(f"{root}: data_root is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    return [Sample(p.relative_to(root).as_posix(), None, 0) for p in files]


def infer_num_class(samples: list[Sample]) -> int:
    """Number of classes implied by the labels: max label + 1."""
    labels = [s.label for s in samples if s.label is not None]
    if not labels:
        raise AnnotationError("cannot infer num_class: the training list has no labelled videos; set num_class")
    if max(labels) == 0:
        raise AnnotationError("cannot infer num_class: every label is 0 (one class); set num_class or fix the labels")
    return max(labels) + 1


def read_class_names(path: str | Path) -> list[str]:
    """One class name per line (line i = label i); blank lines and duplicates are errors."""
    p = Path(path)
    lines = _read_text(p).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    names: list[str] = []
    for lineno, raw in enumerate(lines, start=1):
        name = raw.strip()
        if not name:
            raise AnnotationError(f"{p}:{lineno}: blank class name (line i names label i-1)")
        if name in names:
            raise AnnotationError(f"{p}:{lineno}: duplicate class name {name!r}")
        names.append(name)
    if not names:
        raise AnnotationError(f"{p}: no class names (expected one name per line, line i naming label i-1)")
    return names
