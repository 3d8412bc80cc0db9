"""Synthetic labelled dataset of real encoded videos whose classes only motion can tell apart.

Every clip shows one random shape (type, colour, size, start position, background) moving in a way
that defines its class: left/right translation, clockwise/anticlockwise rotation, growing/shrinking.
Any single frame is equally likely under every class; time decides. Videos alternate between
H.264 in .mp4 and MPEG-4 Part 2 in .avi, encoded with PyAV (FFmpeg), so both decode paths are used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_CLASSES = ("move_left", "move_right", "rotate_cw", "rotate_ccw", "grow", "shrink")
FORMATS = ((".mp4", "libx264"), (".avi", "mpeg4"))


@dataclass(frozen=True)
class DemoDataset:
    """Where the generated dataset lies."""

    root: Path
    data_root: Path
    train_list: Path
    val_list: Path
    test_list: Path
    classes_file: Path
    classes: list[str]


def write_video(path: Path, frames: np.ndarray, fps: int = 16, codec: str | None = None) -> None:
    """Encode uint8 frames [T,H,W,3] to `path` (codec from the extension unless given)."""
    import av

    codec = codec or dict(FORMATS).get(path.suffix, "mpeg4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "crf": "18", "g": "8"}
        else:
            stream.bit_rate = 2_000_000
            stream.options = {"g": "8"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _polygon(sides: int, radius: float, angle: float) -> np.ndarray:
    k = np.arange(sides)
    # Irregular polygon (one long vertex) so rotation is visible even for symmetric shapes.
    r = np.where(k == 0, radius * 1.35, radius)
    return np.stack([r * np.cos(angle + 2 * np.pi * k / sides), r * np.sin(angle + 2 * np.pi * k / sides)], 1)


def _inside(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon over a pixel grid (no drawing library needed)."""
    inside = np.zeros(xs.shape, bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x2 - x1) * (ys - y1) / (y2 - y1) + x1
        inside ^= crosses & (xs < x_at)
    return inside


def render_clip(cls: str, rng: np.random.Generator, *, num_frames: int, size: int) -> np.ndarray:
    """One clip [T,size,size,3] of class `cls`; parameters drawn so no frame reveals the class."""
    s = size
    bg = rng.integers(0, 90, 3)
    fg = rng.integers(150, 256, 3)
    sides = int(rng.integers(3, 6))
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    # Start mid-motion at a random phase: positions/sizes/angles share one distribution across classes.
    base_r = rng.uniform(0.14, 0.22) * s
    cx, cy = rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.022, 0.035) * s  # pixels per frame
    spin = rng.uniform(0.10, 0.16)  # radians per frame
    rate = rng.uniform(0.025, 0.04)  # relative size change per frame
    noise = rng.integers(0, 20, (num_frames, s, s, 1))
    frames = np.empty((num_frames, s, s, 3), np.uint8)
    mid = (num_frames - 1) / 2
    for t in range(num_frames):
        dt = t - mid
        x, y, r, a = cx, cy, base_r, angle
        if cls == "move_left":
            x = (cx - speed * dt) % s
        elif cls == "move_right":
            x = (cx + speed * dt) % s
        elif cls == "rotate_cw":
            a = angle + spin * dt
        elif cls == "rotate_ccw":
            a = angle - spin * dt
        elif cls == "grow":
            r = base_r * math.exp(rate * dt)
        elif cls == "shrink":
            r = base_r * math.exp(-rate * dt)
        poly = _polygon(sides, r, a) + np.array([x, y])
        mask = np.zeros((s, s), bool)
        for ox in (-s, 0, s):  # wrap around horizontally so translation never leaves the frame
            mask |= _inside(poly + np.array([ox, 0]), xs, ys)
        frame = np.where(mask[..., None], fg, bg).astype(np.int16) + noise[t]
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def make_demo_dataset(
    root: str | Path,
    *,
    num_per_class_train: int = 24,
    num_per_class_val: int = 8,
    num_per_class_test: int = 8,
    num_frames: int = 32,
    size: int = 64,
    fps: int = 16,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> DemoDataset:
    """Write videos/<split>/<class>_<i>.{mp4,avi}, train/val/test lists and classes.txt (skips if present)."""
    root = Path(root)
    names = list(classes or DEFAULT_CLASSES)
    unknown = set(names) - set(DEFAULT_CLASSES)
    if unknown:
        raise ValueError(f"unknown demo classes {sorted(unknown)}; choose from {DEFAULT_CLASSES}")
    ds = DemoDataset(root, root, root / "train_list.txt", root / "val_list.txt", root / "test_list.txt",
                     root / "classes.txt", names)
    stamp = root / ".complete"
    signature = f"{names} {num_per_class_train} {num_per_class_val} {num_per_class_test} {num_frames} {size} {fps} {seed}"
    if stamp.is_file() and stamp.read_text() == signature:
        return ds
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_per_class_train), ("val", num_per_class_val), ("test", num_per_class_test)):
        lines = []
        for i in range(count):
            for label, cls in enumerate(names):
                ext, codec = FORMATS[(i + label) % 2]
                rel = f"videos/{split}/{cls}_{i:03d}{ext}"
                write_video(root / rel, render_clip(cls, rng, num_frames=num_frames, size=size), fps, codec)
                lines.append(f"{rel} {label}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds.classes_file.write_text("\n".join(names) + "\n", encoding="utf-8")
    stamp.write_text(signature)
    return ds


def write_corrupt_video(path: Path) -> None:
    """Garbage bytes under a video name (for tests and demos of the preflight scan)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_truncated_video(path: Path, src: Path) -> None:
    """The first 30% of a real video file."""
    data = src.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * 0.3)])


def write_empty_video(path: Path) -> None:
    """A zero-byte video file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
