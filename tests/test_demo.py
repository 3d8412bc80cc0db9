"""The demo dataset: real encoded files in two containers, deterministic, and only motion tells classes apart."""

from __future__ import annotations

import filecmp
import itertools
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest

from autox_video.data.annotations import read_annotations, read_class_names
from autox_video.data.demo import DEFAULT_CLASSES, make_demo_dataset, render_clip, write_video

FRAMES, SIZE = 16, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"),
        num_per_class_train=8,
        num_per_class_val=6,
        num_per_class_test=2,
        num_frames=FRAMES,
        size=SIZE,
        seed=0,
    )


def _decode(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _split(ds, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    samples = read_annotations(getattr(ds, f"{split}_list"), ds.data_root, num_class=len(ds.classes))
    return [_decode(ds.data_root / s.path) for s in samples], np.array([s.label for s in samples])


def test_lists_classes_and_both_containers_decode_with_every_frame(dataset) -> None:
    assert read_class_names(dataset.classes_file) == list(DEFAULT_CLASSES)
    counts = {}
    for split, per_class in (("train", 8), ("val", 6), ("test", 2)):
        samples = read_annotations(getattr(dataset, f"{split}_list"), dataset.data_root, num_class=6)
        assert len(samples) == 6 * per_class
        assert sorted({s.label for s in samples}) == list(range(6))
        for s in samples:
            assert s.path.startswith(f"videos/{split}/{DEFAULT_CLASSES[s.label]}_")
            vr = decord.VideoReader(str(dataset.data_root / s.path), num_threads=1)
            assert len(vr) == FRAMES and vr[len(vr) - 1].shape == (SIZE, SIZE, 3)
            counts[Path(s.path).suffix] = counts.get(Path(s.path).suffix, 0) + 1
    assert counts == {".mp4": 48, ".avi": 48}  # alternating, so each class has both


def test_codecs_are_h264_in_mp4_and_mpeg4_in_avi(dataset) -> None:
    import av

    for suffix, codec in ((".mp4", "h264"), (".avi", "mpeg4")):
        path = next((dataset.data_root / "videos" / "val").glob(f"*{suffix}"))
        with av.open(str(path)) as container:
            assert container.streams.video[0].codec_context.name == codec


def test_generation_is_deterministic_and_reuses_a_finished_dataset(tmp_path: Path) -> None:
    kwargs = {
        "num_per_class_train": 1,
        "num_per_class_val": 1,
        "num_per_class_test": 1,
        "num_frames": 8,
        "size": 32,
        "classes": ["grow", "shrink"],
    }
    a = make_demo_dataset(tmp_path / "a", seed=3, **kwargs)
    b = make_demo_dataset(tmp_path / "b", seed=3, **kwargs)
    c = make_demo_dataset(tmp_path / "c", seed=4, **kwargs)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*.*") if p.is_file())
    assert len(files) == 6 + 5  # 6 videos, 3 lists, classes.txt, stamp
    assert all(filecmp.cmp(a.root / f, b.root / f, shallow=False) for f in files)
    assert not filecmp.cmp(a.root / "videos/train/grow_000.mp4", c.root / "videos/train/grow_000.mp4", shallow=False)
    before = (a.root / "videos/train/grow_000.mp4").stat().st_mtime_ns
    make_demo_dataset(tmp_path / "a", seed=3, **kwargs)  # finished: nothing rewritten
    assert (a.root / "videos/train/grow_000.mp4").stat().st_mtime_ns == before
    assert a.classes == ["grow", "shrink"] and a.classes_file.read_text() == "grow\nshrink\n"
    # One seed per video: more training videos leave the other videos as they were.
    d = make_demo_dataset(tmp_path / "d", seed=3, **{**kwargs, "num_per_class_train": 2})
    same = ["videos/train/grow_000.mp4", "videos/val/shrink_000.avi", "videos/test/grow_000.mp4"]
    assert all(filecmp.cmp(a.root / f, d.root / f, shallow=False) for f in same)
    assert (d.root / "videos/train/grow_001.avi").is_file()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes must be"):
        make_demo_dataset(tmp_path, classes=["grow", "jump"])
    with pytest.raises(ValueError, match="size must be even"):
        make_demo_dataset(tmp_path, size=33)
    with pytest.raises(ValueError, match="must be even"):
        write_video(tmp_path / "x.mp4", np.zeros((4, 31, 32, 3), np.uint8))


def _grey(clip: np.ndarray) -> np.ndarray:
    return clip.astype(np.float32).mean(-1)


def _frame_features(frame: np.ndarray) -> np.ndarray:
    """What one frame shows: a coarse picture, its brightness histogram and colour (shape, size, position)."""
    g = _grey(frame[None])[0]
    hist = np.histogram(g, bins=8, range=(0, 256))[0] / g.size
    return np.concatenate(
        [
            cv2.resize(g, (8, 8), interpolation=cv2.INTER_AREA).ravel() / 255,
            4 * hist,
            frame.reshape(-1, 3).mean(0) / 255,
        ]
    )


def _motion_features(clip: np.ndarray) -> np.ndarray:
    """Least-squares optical flow between consecutive frames: translation, curl, and radial flow about the
    centre of what changes (brightness constancy gx*vx + gy*vy + gt = 0)."""
    g = np.stack([cv2.GaussianBlur(f, (0, 0), 1.0) for f in _grey(clip)])
    h, w = g.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    energy = np.abs(np.diff(g, axis=0)).sum(0)
    turn = 2 * np.pi * xs / w  # x wraps around in the demo videos: circular mean for the centre
    cx = (np.angle((energy * np.exp(1j * turn)).sum()) % (2 * np.pi)) * w / (2 * np.pi)
    cy = (energy * ys).sum() / energy.sum()
    rx, ry = (xs - cx + w / 2) % w - w / 2, ys - cy
    norm = np.hypot(rx, ry) + 1e-3
    rx, ry, xc, yc = (rx / norm).ravel(), (ry / norm).ravel(), (xs - w / 2).ravel(), (ys - h / 2).ravel()
    params = []
    for a, b in itertools.pairwise(g):
        mid = (a + b) / 2
        gx, gy, gt = np.gradient(mid, axis=1).ravel(), np.gradient(mid, axis=0).ravel(), (b - a).ravel()
        # affine flow vx = p0+p1*x+p2*y, vy = p3+p4*x+p5*y: translation p0, curl p4-p2
        design = np.stack([gx, gx * xc, gx * yc, gy, gy * xc, gy * yc], 1)
        p = np.linalg.lstsq(design, -gt, rcond=None)[0]
        radial = gx * rx + gy * ry  # flow c * (unit vector away from the centre)
        params.append([p[0], p[4] - p[2], -(gt * radial).sum() / ((radial**2).sum() + 1e-6)])
    return np.mean(params, 0)


def _nearest_centroid_accuracy(train: np.ndarray, y_train: np.ndarray, val: np.ndarray, y_val: np.ndarray) -> float:
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, val = (train - mean) / std, (val - mean) / std
    centroids = np.stack([train[y_train == k].mean(0) for k in range(int(y_train.max()) + 1)])
    pred = np.argmin(((val[:, None] - centroids[None]) ** 2).sum(-1), 1)
    return float((pred == y_val).mean())


def test_no_single_frame_tells_the_class_but_motion_does(dataset) -> None:
    train, y_train = _split(dataset, "train")
    val, y_val = _split(dataset, "val")
    chance = 1 / len(dataset.classes)
    for t in (0, FRAMES // 2, FRAMES - 1):  # first, middle, last frame: none is informative
        acc = _nearest_centroid_accuracy(
            np.stack([_frame_features(c[t]) for c in train]),
            y_train,
            np.stack([_frame_features(c[t]) for c in val]),
            y_val,
        )
        assert acc < chance + 0.2, f"frame {t} alone gives {acc:.0%} (chance {chance:.0%})"
    motion = _nearest_centroid_accuracy(
        np.stack([_motion_features(c) for c in train]), y_train, np.stack([_motion_features(c) for c in val]), y_val
    )
    assert motion >= 0.8, f"motion features give only {motion:.0%}"


def test_the_shape_looks_the_same_at_the_start_and_end_of_every_class() -> None:
    # Paired over the same clips: the bright area of the last frame minus that of the first. A class
    # whose shape really grew (small first frame, big last frame) would give its class away at t=0.
    rng = np.random.default_rng(0)
    for cls in DEFAULT_CLASSES:
        area = np.array([(_grey(render_clip(cls, rng, num_frames=16, size=32)) > 100).mean((1, 2)) for _ in range(30)])
        drift = (area[:, -1] - area[:, 0]).mean() / area.mean()
        assert abs(drift) < 0.05, f"{cls}: bright area changes by {drift:+.0%} from the first to the last frame"


def test_the_direction_of_motion_survives_the_demo_frame_sampling() -> None:
    # The demo model sees every `frame_interval`-th frame: at that sampling, measured flow must still
    # give each class its sign (too fast a motion between sampled frames would alias or wrap).
    from autox_video.demo_run import DEMO_SETTINGS

    step, rng = DEMO_SETTINGS["frame_interval"], np.random.default_rng(1)
    pairs = {("move_right", "move_left"): 0, ("rotate_cw", "rotate_ccw"): 1, ("grow", "shrink"): 2}
    for (positive, negative), feature in pairs.items():
        for cls, sign in ((positive, 1), (negative, -1)):
            for _ in range(8):
                clip = render_clip(cls, rng, num_frames=8 * step, size=DEMO_SETTINGS["img_size"])[::step]
                value = _motion_features(clip)[feature]
                assert np.sign(value) == sign, f"{cls}: flow {value:+.3f} at every {step}th frame"
