"""Annotation list -> checked sample list (unreadable videos skipped and reported) -> jsonl for the dataset."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from autox_video.data.annotations import Sample, read_annotations, scan_videos
from autox_video.data.videocheck import VideoProblem, check_videos, enforce_bad_fraction, write_skipped
from autox_video.storage import atomic

log = logging.getLogger("autox_video")


@dataclass
class CheckedSplit:
    """One split after the preflight scan."""

    name: str
    samples: list[Sample]
    problems: list[VideoProblem] = field(default_factory=list)
    source: str = ""


def load_split(
    name: str,
    ann_file: str | None,
    data_root: Path,
    *,
    num_class: int | None,
    require_labels: bool,
    max_bad_fraction: float,
    check: bool = True,
    workers: int = 2,
    skipped: Path | None = None,
    decoder: str = "auto",
    root_uri: str | None = None,
) -> CheckedSplit:
    """Read a list (or scan data_root when there is none), probe every video, enforce the bad share."""
    if ann_file is None:
        samples, source = scan_videos(data_root), f"videos under {data_root}"
    else:
        samples = read_annotations(
            ann_file, data_root, num_class=num_class, require_labels=require_labels, root_uri=root_uri
        )
        source = Path(ann_file).name
    if not check:
        return CheckedSplit(name, samples, [], source)
    good, problems = check_videos(samples, data_root, workers=workers, progress=False, decoder=decoder)
    for p in problems:
        log.warning("skipping unreadable video %s: %s", p.path, p.reason)
    if skipped is not None and problems and len(problems) / len(samples) > max_bad_fraction:
        skipped.parent.mkdir(parents=True, exist_ok=True)
        write_skipped(problems, skipped)  # before aborting: the message points the user at it
    enforce_bad_fraction(problems, len(samples), max_bad_fraction, source, skipped=skipped or "skipped.txt")
    return CheckedSplit(name, good, problems, source)


def write_list(split: CheckedSplit, data_root: Path, path: Path) -> str:
    """Write the jsonl list AutoXVideoDataset reads; returns its path."""
    rows = (
        json.dumps(
            {
                "filename": str(data_root / s.path),
                "label": s.label,
                "video": s.path,
                **({"start": s.start, "end": s.end} if s.ranged else {}),
            }
        )
        for s in split.samples
    )
    atomic.write_text(path, "".join(r + "\n" for r in rows))
    return str(path)


def record_skipped(splits: list[CheckedSplit], work_dir: Path) -> int:
    """work_dir/skipped.txt with every unreadable video of every split; returns how many."""
    problems = [p for s in splits for p in s.problems]
    write_skipped(problems, work_dir / "skipped.txt")
    return len(problems)
