"""Fast training decode returns the frames mmaction2's DecordDecode returns, on real encoded files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
decord = pytest.importorskip("decord")

from autox_video.data.demo import write_video  # noqa: E402
from autox_video.errors import DataError  # noqa: E402

W, H = 192, 108  # 16:9, short side 108


def _frames(n: int, width: int = W, height: int = H) -> np.ndarray:
    """Smooth frames (scaling changes them little) that differ a lot from one frame to the next."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        phase = t * 1.3  # radians per frame: neighbours are far apart, frames never repeat
        out[t, ..., 0] = 128 + 100 * np.sin(xs / 23 + phase)
        out[t, ..., 1] = 128 + 100 * np.cos(ys / 17 - phase)
        out[t, ..., 2] = (t * 37) % 256
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fastdecode")
    files = {
        "mp4": root / "clip.mp4",  # H.264
        "avi": root / "clip.avi",  # MPEG-4 Part 2
        "short": root / "short.mp4",  # fewer frames than one clip
        "portrait": root / "portrait.avi",
    }
    write_video(files["mp4"], _frames(40))
    write_video(files["avi"], _frames(40))
    write_video(files["short"], _frames(10))
    write_video(files["portrait"], _frames(12, width=96, height=160))
    for ext, codec in (("avi", "mpeg4"), ("mp4", "libx264")):
        files[f"bframes_{ext}"] = root / f"bframes.{ext}"
        _write_with_bframes(files[f"bframes_{ext}"], _frames(50), codec)
    return files


def _write_with_bframes(path: Path, frames: np.ndarray, codec: str) -> None:
    """Long keyframe interval and B-frames (decode order != display order), as in the wild."""
    options = {"g": "24", "bf": "2"} if codec == "mpeg4" else {"g": "24", "bframes": "3", "preset": "fast"}
    write_video(path, frames, 25, codec, options)


def _which_frames(decoded: np.ndarray, n: int) -> list[int]:
    """Index of the source frame (of `_frames(n)`) nearest to each decoded frame."""
    src = _frames(n).astype(np.float32)
    return [int(np.argmin(((src - f.astype(np.float32)) ** 2).mean(axis=(1, 2, 3)))) for f in decoded]


# Keyframes at 0, 24, 48: one window, the start, across a keyframe, the last frame, far-apart clips.
SEEKS = (
    np.arange(27, 49, 3),
    np.array([0, 1, 2, 3]),
    np.array([23, 24, 25]),
    np.array([49]),
    np.array([1, 2, 30, 31, 49]),
)


@pytest.mark.parametrize(
    ("kind", "backend"),
    [
        ("bframes_mp4", "decord"),
        ("bframes_mp4", "pyav"),
        ("bframes_avi", "pyav"),  # what "auto" uses for MPEG-4 Part 2
        pytest.param(
            "bframes_avi",
            "decord",
            marks=pytest.mark.xfail(
                strict=True, reason="decord 0.6 returns frame i+2 after seeking in AVI with B-frames"
            ),
        ),
    ],
)
def test_b_frames_and_seeks_give_the_requested_frames(
    videos: dict[str, Path], mm: Any, kind: str, backend: str
) -> None:
    for inds in SEEKS:
        assert _which_frames(_ours(videos[kind], inds, None, backend), 50) == inds.tolist()


def test_auto_backend_is_right_where_mmaction_decord_decode_is_wrong(videos: dict[str, Path], mm: Any) -> None:
    inds = SEEKS[0]
    assert _which_frames(_ours(videos["bframes_avi"], inds, None), 50) == inds.tolist()
    assert _which_frames(_reference(videos["bframes_avi"], inds), 50) != inds.tolist()  # the seed's decoder
    np.testing.assert_array_equal(_ours(videos["bframes_mp4"], inds, None), _reference(videos["bframes_mp4"], inds))


@pytest.fixture(scope="module")
def mm() -> Any:
    """mmaction2 registries with our transforms registered; returns `Compose`."""
    from mmaction.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    from mmengine.dataset import Compose

    import autox_video.data.fast_decode  # noqa: F401  (registers the transforms)

    return Compose


def _reference(path: Path, inds: np.ndarray) -> np.ndarray:
    """mmaction2's own DecordInit + DecordDecode for the same indices."""
    from mmaction.datasets.transforms import DecordDecode, DecordInit

    results = DecordInit()(dict(filename=str(path)))
    results["frame_inds"] = np.asarray(inds)
    return np.stack(DecordDecode()(results)["imgs"])


def _ours(path: Path, inds: np.ndarray, short_side: int | None, backend: str = "auto") -> np.ndarray:
    from autox_video.data.fast_decode import FastDecordDecode, FastDecordInit

    results = FastDecordInit(short_side=short_side, backend=backend)(dict(filename=str(path)))
    results["frame_inds"] = np.asarray(inds)
    out = FastDecordDecode()(results)
    assert out["video_reader"] is None  # the reader is released after decoding
    return np.stack(out["imgs"])


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_native_size_is_identical_to_mmaction_decord_decode(
    videos: dict[str, Path], mm: Any, kind: str, backend: str
) -> None:
    inds = np.array([3, 5, 7, 9, 30, 31])  # 30: past the first keyframes (the demo encoder uses gop 8)
    ours = _ours(videos[kind], inds, short_side=None, backend=backend)
    ref = _reference(videos[kind], inds)
    assert ours.dtype == np.uint8 and ours.shape == ref.shape == (6, H, W, 3)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_scaled_decode_matches_reference_up_to_resize(
    videos: dict[str, Path], mm: Any, kind: str, backend: str
) -> None:
    inds = np.array([0, 2, 4, 6, 20, 39])
    ours = _ours(videos[kind], inds, short_side=54, backend=backend)
    assert ours.shape == (6, 54, 96, 3) and ours.dtype == np.uint8
    ref = _reference(videos[kind], inds)
    small = np.stack([cv2.resize(f, (96, 54), interpolation=cv2.INTER_AREA) for f in ref])
    same = _mean_diff(ours, small)
    # The right frames differ from the reference by scaler rounding only; off-by-one frames by far more.
    shifted = _mean_diff(ours, np.roll(small, 1, axis=0))
    assert same < 4.0, same
    assert shifted > 5 * same + 10, (same, shifted)


@pytest.mark.parametrize("kind", ["mp4", "avi"])
def test_unsorted_and_repeated_indices_come_back_in_requested_order(
    videos: dict[str, Path], mm: Any, kind: str
) -> None:
    inds = np.array([9, 1, 9, 0, 33, 1])
    ours = _ours(videos[kind], inds, short_side=None)
    np.testing.assert_array_equal(ours, _reference(videos[kind], inds))
    ours[0] += 1  # repeated frames are independent arrays: in-place augmentation of one leaves the other
    assert not np.array_equal(ours[0], ours[2])


def test_portrait_video_keeps_aspect_with_short_side_exact(videos: dict[str, Path], mm: Any) -> None:
    ours = _ours(videos["portrait"], np.array([0, 11]), short_side=64)
    assert ours.shape == (2, 106, 64, 3)


def test_source_smaller_than_short_side_is_decoded_natively(videos: dict[str, Path], mm: Any) -> None:
    ours = _ours(videos["mp4"], np.array([0]), short_side=256)
    assert ours.shape == (1, H, W, 3)


def test_scaled_size() -> None:
    from autox_video.data.fast_decode import scaled_size

    assert scaled_size(1280, 720, 256) == (456, 256)
    assert scaled_size(720, 1280, 256) == (256, 456)
    assert scaled_size(568, 320, 320) == (-1, -1)  # never upscale in the decoder
    assert scaled_size(568, 320, 256) == (-1, -1)  # small reductions: OpenCV resizes faster after the crop
    assert scaled_size(568, 320, 200) == (356, 200)
    assert scaled_size(1280, 720, None) == (-1, -1)
    assert scaled_size(160, 96, 40) == (-1, -1)  # 66 px wide: decord 0.6 misreads it, decode natively


def test_widths_decord_cannot_read_fall_back_to_native(videos: dict[str, Path], mm: Any) -> None:
    # 48x80 would make decord 0.6 fail ("The size must exactly match"): native decode instead.
    assert _ours(videos["portrait"], np.array([0, 11]), short_side=48).shape == (2, 160, 96, 3)


def test_short_video_loops_and_matches_reference(videos: dict[str, Path], mm: Any) -> None:
    from autox_video.data.fast_decode import train_pipeline

    steps = train_pipeline(clip_len=8, frame_interval=2, img_size=224)  # short side 256 > 108: native size
    sample = mm(steps[:3])  # init, SampleFrames, decode
    out = sample(dict(filename=str(videos["short"]), label=0, start_index=0, modality="RGB"))
    inds = out["frame_inds"]
    assert len(inds) == 8 and inds.max() < 10
    assert np.any(np.diff(inds) < 0), f"16 frames from a 10-frame video must wrap around: {inds}"
    np.testing.assert_array_equal(np.stack(out["imgs"]), _reference(videos["short"], inds))


def test_train_pipeline_output_is_uint8_clip(videos: dict[str, Path], mm: Any) -> None:
    from autox_video.data.fast_decode import train_pipeline

    pipe = mm(train_pipeline(clip_len=8, frame_interval=2, img_size=32, short_side=40))
    for kind in ("mp4", "avi", "short", "portrait"):
        out = pipe(dict(filename=str(videos[kind]), label=1, start_index=0, modality="RGB"))
        assert tuple(out["inputs"].shape) == (1, 3, 8, 32, 32), kind
        assert str(out["inputs"].dtype) == "torch.uint8"  # stays uint8 until the GPU normalises it


@pytest.mark.parametrize(("clips", "crops"), [(1, 1), (2, 3)])
def test_test_pipeline_is_deterministic_with_clips_times_crops(
    videos: dict[str, Path], mm: Any, clips: int, crops: int
) -> None:
    from autox_video.data.fast_decode import test_pipeline

    steps = test_pipeline(clip_len=8, frame_interval=2, img_size=48, num_clips=clips, num_crops=crops)
    pipe, sample = mm(steps), mm(steps[:2])
    for kind in ("mp4", "avi", "short"):  # short: 10 frames < one 16-frame clip span, indices loop
        a = pipe(dict(filename=str(videos[kind]), label=0, start_index=0, modality="RGB"))
        b = pipe(dict(filename=str(videos[kind]), label=0, start_index=0, modality="RGB"))
        assert tuple(a["inputs"].shape) == (clips * crops, 3, 8, 48, 48)
        assert np.array_equal(a["inputs"].numpy(), b["inputs"].numpy())
        inds = sample(dict(filename=str(videos[kind]), start_index=0))["frame_inds"]
        assert len(inds) == clips * 8 and inds.max() < (10 if kind == "short" else 40)


def test_missing_and_corrupt_files_raise_data_error_naming_the_file(tmp_path: Path, mm: Any) -> None:
    from autox_video.data.fast_decode import FastDecordInit

    missing = tmp_path / "nope.mp4"
    with pytest.raises(DataError, match="nope.mp4"):
        FastDecordInit(short_side=64)(dict(filename=str(missing)))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00not a video" * 64)
    for short in (64, None):
        for backend in ("auto", "decord", "pyav"):
            with pytest.raises(DataError, match="corrupt.mp4"):
                FastDecordInit(short_side=short, backend=backend)(dict(filename=str(corrupt)))


def test_out_of_range_indices_raise_data_error(videos: dict[str, Path], mm: Any) -> None:
    from autox_video.data.fast_decode import FastDecordDecode, FastDecordInit

    results = FastDecordInit(short_side=None)(dict(filename=str(videos["short"])))
    results["frame_inds"] = np.array([0, 10])
    with pytest.raises(DataError, match="short.mp4"):
        FastDecordDecode()(results)


@pytest.mark.parametrize(
    ("name", "codec", "options"),
    [
        ("mpeg2.mp4", "mpeg2video", {"g": "24", "bf": "2"}),
        ("h264.avi", "libx264", {"g": "24", "bf": "0"}),
        ("hevc.mp4", "libx265", {"g": "24", "x265-params": "log-level=none"}),
    ],
)
def test_auto_reads_exact_frames_where_decord_seeks_wrongly(
    tmp_path: Path, mm: Any, name: str, codec: str, options: dict[str, str]
) -> None:
    """decord returned wrong frames after seeks in these (MPEG-2, H.264 in AVI, HEVC): auto uses PyAV."""
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg build has no {codec} encoder")
    path = tmp_path / name
    write_video(path, _frames(50), 25, codec, options)
    for inds in SEEKS:
        assert _which_frames(_ours(path, inds, None), 50) == inds.tolist()
