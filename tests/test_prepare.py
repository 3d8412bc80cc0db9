"""`prepare_dataset`: transcode once to small frames + short keyframe interval; resumable; lists rewritten."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

decord = pytest.importorskip("decord")
pytest.importorskip("av")

from autox_video.data.demo import write_video  # noqa: E402
from autox_video.data.prepare import PART_SUFFIX, prepare_dataset  # noqa: E402
from autox_video.errors import ConfigError  # noqa: E402


def _frames(n: int, width: int = 160, height: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), np.uint8))
    return np.stack([np.roll(big, 3 * t, axis=1) for t in range(n)])


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_video(src / "walk" / "a.avi", _frames(40))  # MPEG-4 Part 2: renamed to .mp4
    write_video(src / "run" / "b c.mp4", _frames(33, seed=1))  # a space in the name
    (src / "notes.txt").parent.mkdir(parents=True, exist_ok=True)
    (src / "notes.txt").write_text("not a video")
    (src / "broken.mp4").write_bytes(b"\x00" * 300)
    (tmp_path / "train.txt").write_text("walk/a.avi 0\nrun/b c.mp4 1\n# comment\nmissing.avi 2\nbroken.mp4 1\n")
    return src


def test_transcodes_to_short_side_and_gop_keeping_every_frame(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    report = prepare_dataset(
        source, dst, short_side=48, gop=8, workers=1, ann_files=[tmp_path / "train.txt"], progress=False
    )
    assert report.transcoded == ["run/b c.mp4", "walk/a.avi"]
    assert [f for f, _ in report.failed] == ["broken.mp4"]
    assert not (dst / "broken.mp4").exists() and not list(dst.rglob(f"*{PART_SUFFIX}"))
    assert not (dst / "notes.txt").exists()
    for rel, frames in (("walk/a.mp4", 40), ("run/b c.mp4", 33)):
        vr = decord.VideoReader(str(dst / rel))
        assert len(vr) == frames  # frame indices keep their meaning
        assert vr[0].shape == (48, 80, 3)
        assert list(vr.get_key_indices()) == list(range(0, frames, 8))
    # The list keeps labels, comments and unknown paths; renamed videos change, failed ones are left
    # out (they have no prepared copy: the list would name a missing file).
    assert (dst / "train.txt").read_text() == "walk/a.mp4 0\nrun/b c.mp4 1\n# comment\nmissing.avi 2\n"
    assert report.left_out == 1 and "1 failed (left out of the lists: 1 line)" in report.summary()
    assert report.renamed == {"walk/a.avi": "walk/a.mp4"}


def test_prepared_frames_match_the_source(source: Path, tmp_path: Path) -> None:
    import cv2

    dst = tmp_path / "dst"
    prepare_dataset(source, dst, short_side=48, gop=8, workers=1, progress=False)
    inds = [0, 7, 8, 39]
    src = decord.VideoReader(str(source / "walk" / "a.avi")).get_batch(inds).asnumpy()
    out = decord.VideoReader(str(dst / "walk" / "a.mp4")).get_batch(inds).asnumpy()
    small = np.stack([cv2.resize(f, (80, 48), interpolation=cv2.INTER_AREA) for f in src])
    diff = np.abs(small.astype(int) - out).mean()
    assert diff < 12, diff  # same frames, up to scaling and re-encoding
    assert np.abs(np.roll(small, 1, 0).astype(int) - out).mean() > diff + 5  # not shifted by a frame


def test_rerun_skips_done_files_and_redoes_partial_ones(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    prepare_dataset(source, dst, short_side=48, workers=1, progress=False)
    done, partial = dst / "walk" / "a.mp4", dst / "run" / "b c.mp4"
    old = time.time() - 3600
    os.utime(done, (old, old))
    # An interrupted transcode leaves only its temp file, never a final name.
    partial.unlink()
    part = partial.with_name(partial.name + PART_SUFFIX)
    part.write_bytes(b"half a video")
    report = prepare_dataset(source, dst, short_side=48, workers=1, progress=False)
    assert report.skipped == ["walk/a.avi"]
    assert report.transcoded == ["run/b c.mp4"]
    assert done.stat().st_mtime == pytest.approx(old)  # untouched
    assert len(decord.VideoReader(str(partial))) == 33 and not part.exists()


def test_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(6):
        write_video(src / f"v{i}.avi", _frames(60, 320, 192, seed=i))
    code = (
        "import sys; from autox_video.data.prepare import prepare_dataset;"
        "prepare_dataset(sys.argv[1], sys.argv[2], short_side=64, workers=1, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(dst)], start_new_session=True)
    deadline = time.time() + 120
    while not list(dst.glob("*.mp4")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in dst.glob("*.mp4")}
    assert 1 <= len(finished) < 6, f"expected a run killed part-way, got {sorted(finished)}"
    report = prepare_dataset(src, dst, short_side=64, workers=2, progress=False)
    assert sorted(report.skipped) == sorted(p.replace(".mp4", ".avi") for p in finished)
    assert len(report.transcoded) == 6 - len(finished) and not report.failed
    for p in dst.glob("*.mp4"):
        assert len(decord.VideoReader(str(p))) == 60
        if p.name in finished:
            assert p.stat().st_mtime_ns == finished[p.name]
    assert not list(dst.glob(f"*{PART_SUFFIX}"))


def test_bad_arguments_are_config_errors(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="source folder not found"):
        prepare_dataset(tmp_path / "nope", tmp_path / "dst")
    with pytest.raises(ConfigError, match="must differ"):
        prepare_dataset(source, source)
    with pytest.raises(ConfigError, match="annotation list not found"):
        prepare_dataset(source, tmp_path / "dst", ann_files=[tmp_path / "nope.txt"])
