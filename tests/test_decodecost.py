"""The hint that advises `autox-video prepare` for videos that are slow to read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autox_video.data.decodecost import slow_decoding_hint, source_shape
from autox_video.data.demo import make_demo_dataset, write_video
from autox_video.data.prepare import prepare_dataset


def _long_gop_video(path: Path, frames: int = 96) -> None:
    """H.264 with one keyframe for the whole file, as cameras and x264's default (250) store video."""
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    imgs = [np.roll(np.tile(ramp, (64, 1)), t, axis=1).astype(np.uint8) for t in range(frames)]
    video = np.stack([np.stack([img, img[::-1], img.T], axis=2) for img in imgs])
    write_video(path, video, 24, "libx264", {"g": "250", "x264-params": "scenecut=0"})


def test_long_keyframe_intervals_get_the_prepare_hint_and_prepared_copies_do_not(tmp_path: Path) -> None:
    src = tmp_path / "src" / "clip.mp4"
    _long_gop_video(src)
    shape = source_shape(src)
    assert (shape.width, shape.height, shape.codec, shape.keyframe_interval) == (64, 64, "h264", 96)
    hint = slow_decoding_hint([src])
    assert hint is not None and "a keyframe every 96 frames" in hint and "autox-video prepare" in hint

    report = prepare_dataset(tmp_path / "src", tmp_path / "prepared", progress=False)
    assert report.transcoded == ["clip.mp4"]
    prepared = tmp_path / "prepared" / "clip.mp4"
    assert source_shape(prepared).keyframe_interval == 16
    assert slow_decoding_hint([prepared]) is None


def test_small_videos_with_frequent_keyframes_get_no_hint(tmp_path: Path) -> None:
    ds = make_demo_dataset(tmp_path, num_per_class_train=1, num_per_class_val=0, num_per_class_test=0, size=32)
    videos = sorted(ds.data_root.glob("videos/train/*"))
    assert {v.suffix for v in videos} == {".mp4", ".avi"}
    assert slow_decoding_hint(videos) is None
    assert slow_decoding_hint([tmp_path / "missing.mp4"]) is None  # unreadable files were reported elsewhere


def test_large_frames_get_the_hint_even_with_frequent_keyframes(tmp_path: Path) -> None:
    from autox_video.data.demo import write_video

    big = tmp_path / "big.mp4"
    write_video(big, np.zeros((8, 576, 1024, 3), np.uint8))  # keyframe every 8 frames, but 576p
    hint = slow_decoding_hint([big])
    assert hint is not None and "short side 576 px" in hint and "1024x576 h264" in hint


def test_only_the_first_packets_are_read(tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    _long_gop_video(src)
    assert source_shape(src, max_packets=40).keyframe_interval == 40


def test_h264_with_b_frames_in_avi_gets_the_inexact_seek_hint(tmp_path: Path) -> None:
    from autox_video.data.decodecost import inexact_seek_hint

    def write(path: Path, options: dict[str, str]) -> None:
        write_video(path, np.stack([np.full((64, 64, 3), t * 9, np.uint8) for t in range(24)]), 24, "libx264", options)

    write(tmp_path / "b.avi", {"bf": "2"})
    write(tmp_path / "nob.avi", {"bf": "0"})
    write(tmp_path / "b.mp4", {"bf": "2"})
    hint = inexact_seek_hint([tmp_path / "b.avi", tmp_path / "nob.avi", tmp_path / "b.mp4"])
    assert hint is not None and hint.startswith("1 of 3 sampled training videos (e.g. b.avi)")
    assert inexact_seek_hint([tmp_path / "nob.avi", tmp_path / "b.mp4"]) is None
