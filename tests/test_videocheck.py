"""Preflight scan on real encoded files: corrupt, empty, truncated files are found, with reasons."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from autox_video.data import videocheck
from autox_video.data.annotations import Sample
from autox_video.data.demo import (
    render_clip,
    write_corrupt_video,
    write_empty_video,
    write_truncated_video,
    write_video,
)
from autox_video.data.videocheck import check_videos, enforce_bad_fraction, probe_file, probe_video, write_skipped
from autox_video.errors import DataError


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    write_video(root / "good.mp4", render_clip("grow", rng, num_frames=48, size=32))
    write_video(root / "good.avi", render_clip("rotate_cw", rng, num_frames=48, size=32))
    write_video(root / "one frame.avi", render_clip("move_left", rng, num_frames=1, size=32))
    write_corrupt_video(root / "corrupt.mp4")
    write_empty_video(root / "empty.avi")
    write_truncated_video(root / "truncated.mp4", root / "good.mp4")  # index (moov) lost: cannot open
    write_truncated_video(root / "truncated.avi", root / "good.avi")  # opens, but 70% of the frames are gone
    return root


def test_good_files_pass_and_each_bad_one_has_its_reason(folder: Path) -> None:
    assert probe_file(str(folder / "good.mp4")) is None
    assert probe_file(str(folder / "good.avi")) is None
    assert probe_file(str(folder / "one frame.avi")) is None  # short is fine: clips loop over it
    assert probe_file(str(folder / "empty.avi")) == "empty file"
    assert probe_file(str(folder / "missing.mp4")) == "file not found"
    assert probe_file(str(folder / "corrupt.mp4")).startswith("cannot open: ")
    assert probe_file(str(folder / "truncated.mp4")).startswith("cannot open: ")
    assert probe_file(str(folder / "truncated.avi")).startswith("truncated: ")
    assert "of 48 frames decodable" in probe_file(str(folder / "truncated.avi"))


def test_probe_video_runs_in_a_child_process(folder: Path) -> None:
    assert probe_video(folder / "good.avi", timeout_s=30) is None
    assert probe_video(folder / "corrupt.mp4", timeout_s=30).startswith("cannot open: ")


def test_check_keeps_order_skips_bad_and_writes_skipped(folder: Path, tmp_path: Path) -> None:
    names = ["good.mp4", "corrupt.mp4", "good.avi", "empty.avi", "truncated.mp4", "one frame.avi", "truncated.avi"]
    samples = [Sample(n, i % 3, i + 1) for i, n in enumerate(names)]
    good, problems = check_videos(samples, folder, workers=2, progress=False)
    assert good == [samples[0], samples[2], samples[5]]
    assert [p.path for p in problems] == ["corrupt.mp4", "empty.avi", "truncated.mp4", "truncated.avi"]
    write_skipped(problems, tmp_path / "run" / "skipped.txt")
    lines = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert len(lines) == 4 and lines[1] == "empty.avi\tempty file"
    assert all(line.split("\t")[1] for line in lines)


def test_too_many_unreadable_videos_abort_with_one_clear_line(folder: Path) -> None:
    problems = [videocheck.VideoProblem(f"v{i}.mp4", "empty file") for i in range(12)]
    with pytest.raises(DataError) as err:
        enforce_bad_fraction(problems, 40, 0.1, "train_list.txt", skipped="run/skipped.txt")
    assert str(err.value) == (
        "12 of 40 videos in train_list.txt are unreadable (30% > max_bad_fraction 10%); "
        "first: v0.mp4: empty file; see run/skipped.txt"
    )
    assert "\n" not in str(err.value)
    enforce_bad_fraction(problems, 120, 0.1, "train_list.txt")  # exactly 10%: allowed
    enforce_bad_fraction([], 0, 0.0, "empty list")  # nothing to check: nothing to abort


def test_many_small_videos_are_probed_in_seconds(folder: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(4):
        write_video(
            tmp_path / f"v{i}.avi" if i % 2 else tmp_path / f"v{i}.mp4",
            render_clip("shrink", rng, num_frames=16, size=32),
        )
    samples = [Sample(f"v{i % 4}.avi" if i % 2 else f"v{i % 4}.mp4", 0, i + 1) for i in range(120)]
    start = time.monotonic()
    good, problems = check_videos(samples, tmp_path, workers=2, progress=True)
    elapsed = time.monotonic() - start
    assert len(good) == 120 and problems == []
    assert elapsed < 30, f"probing 120 small videos took {elapsed:.1f}s"


def test_a_hanging_probe_times_out_and_the_rest_still_get_probed() -> None:
    # time.sleep stands in for decord hanging on a bad container: 0 returns at once, 60 hangs.
    start = time.monotonic()
    reasons = videocheck._probe_all([0, 60, 0, 0, 60, 0], workers=2, timeout_s=2, probe=time.sleep)  # type: ignore[list-item]
    assert reasons == [None, "timed out after 2s (decoder hang)", None, None, "timed out after 2s (decoder hang)", None]
    assert time.monotonic() - start < 20


def test_a_user_script_without_main_guard_is_not_re_run_by_the_probe_workers(folder: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    marker = tmp_path / "runs.txt"
    script = tmp_path / "user_script.py"
    script.write_text(
        "from pathlib import Path\n"
        "from autox_video.data.annotations import Sample\n"
        "from autox_video.data.videocheck import check_videos\n"
        f"open({str(marker)!r}, 'a').write('x')\n"
        f"good, bad = check_videos([Sample('good.mp4', 0, 1), Sample('corrupt.mp4', 0, 2)], Path({str(folder)!r}))\n"
        "print(len(good), len(bad))\n"
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-2:] == ["1", "1"]
    assert marker.read_text() == "x"  # the script body ran once, not once per worker


def test_the_check_reads_with_the_decoder_training_uses(tmp_path: Path) -> None:
    """decord opens this MPEG-PS file (but seeks in it wrongly); PyAV, which auto uses for it, cannot
    read it: the check must say so, or the file would pass here and abort validation later."""
    path = tmp_path / "clip.mpg"
    ys, xs = np.mgrid[0:108, 0:192].astype(np.float32)
    channels = [
        (128 + 100 * np.sin(xs / 23 + t * 1.3), 128 + 100 * np.cos(ys / 17 - t * 1.3), xs * 0 + (t * 37) % 256)
        for t in range(50)
    ]
    write_video(
        path, np.stack([np.stack(c, 2) for c in channels]).astype(np.uint8), 25, "mpeg2video", {"g": "24", "bf": "2"}
    )
    reason = probe_file(str(path))
    assert reason is not None and reason.startswith("cannot be read exactly (decoder auto)")
    assert probe_file(str(path), decoder="decord") is None  # the user's explicit choice is what is checked


def test_a_variable_frame_rate_avi_is_not_called_truncated(tmp_path: Path) -> None:
    """Capture AVIs leave dropped frames out but count them in the header; every stored frame is there."""
    from fractions import Fraction

    import av

    path = tmp_path / "vfr.avi"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(80):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (i * 3) % 256, np.uint8), format="rgb24")
            frame.pts, frame.time_base = (i if i < 20 else 20 + (i - 20) * 3), Fraction(1, 25)  # gaps after 20
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert videocheck._declared_frames(str(path)) > 150  # the header counts the dropped frames
    assert probe_file(str(path)) is None
