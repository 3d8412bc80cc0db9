"""`path label` annotation lists (mmaction2 format): read, validate with file:line errors, scan folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from autox_video.errors import AnnotationError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")


@dataclass(frozen=True)
class Sample:
    """One video of a list: its path relative to data_root, its label (None if unlabelled), its line."""

    path: str
    label: int | None
    line: int


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


def _split(line: str) -> tuple[str, str | None]:
    """'path with spaces.mp4 3' -> ('path with spaces.mp4', '3'); the label is the last token."""
    parts = line.rsplit(None, 1)
    if len(parts) == 2 and not any(parts[1].lower().endswith(ext) for ext in VIDEO_EXTENSIONS):
        return parts[0], parts[1]
    return line, None


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
) -> list[Sample]:
    """Parse a list; every problem is an AnnotationError naming file:line and the fix."""
    path = Path(ann_file)
    root = Path(data_root)
    samples: list[Sample] = []
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{lineno}"
        rel, label_text = _split(line)
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
        samples.append(Sample(rel, label, lineno))
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
