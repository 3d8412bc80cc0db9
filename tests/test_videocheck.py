"""Preflight scan on real encoded files: corrupt, empty, truncated files are found, with reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autox_video.annotations import Sample
from autox_video.demo import render_clip, write_corrupt_video, write_empty_video, write_truncated_video, write_video
from autox_video.errors import DataError
from autox_video.videocheck import check_videos, enforce_bad_fraction, probe_file, write_skipped


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    write_video(root / "good.mp4", render_clip("grow", rng, num_frames=48, size=64))
    write_video(root / "good.avi", render_clip("rotate_cw", rng, num_frames=16, size=32))
    write_corrupt_video(root / "corrupt.mp4")
    write_empty_video(root / "empty.avi")
    write_truncated_video(root / "truncated.mp4", root / "good.mp4")
    return root


def test_good_files_pass_and_each_bad_one_has_a_reason(folder: Path) -> None:
    assert probe_file(str(folder / "good.mp4")) is None
    assert probe_file(str(folder / "good.avi")) is None
    assert probe_file(str(folder / "empty.avi")) == "empty file"
    assert probe_file(str(folder / "corrupt.mp4")).startswith("cannot open")
    truncated = probe_file(str(folder / "truncated.mp4"))
    assert truncated is not None and ("decode failed" in truncated or "cannot open" in truncated or "frames" in truncated)


def test_check_keeps_order_skips_bad_and_writes_skipped(folder: Path, tmp_path: Path) -> None:
    names = ["good.mp4", "corrupt.mp4", "good.avi", "empty.avi", "truncated.mp4"]
    samples = [Sample(n, 0, i + 1) for i, n in enumerate(names)]
    good, problems = check_videos(samples, folder, workers=2)
    assert [s.path for s in good] == ["good.mp4", "good.avi"]
    assert [p.path for p in problems] == ["corrupt.mp4", "empty.avi", "truncated.mp4"]
    write_skipped(problems, tmp_path / "skipped.txt")
    lines = (tmp_path / "skipped.txt").read_text().splitlines()
    assert lines[1] == "empty.avi\tempty file"
    with pytest.raises(DataError, match=r"3 of 5 videos in train\.txt are unreadable \(60% > max_bad_fraction 50%\)"):
        enforce_bad_fraction(problems, 5, 0.5, "train.txt")
    enforce_bad_fraction(problems, 5, 0.6, "train.txt")  # at the limit: allowed


def test_a_hanging_probe_times_out_and_the_rest_still_get_probed() -> None:
    import time

    from autox_video import videocheck

    # time.sleep stands in for decord hanging on a bad container: 0 returns at once, 60 hangs.
    reasons = videocheck._probe_all([0, 60, 0, 0], workers=1, timeout_s=2, probe=time.sleep)  # type: ignore[list-item]
    assert reasons == [None, "timed out after 2s (decoder hang)", None, None]
