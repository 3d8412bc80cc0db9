"""Synthetic labelled dataset of real encoded videos whose classes only motion can tell apart.

Every clip shows one striped polygon (random type, colours, size, position, background, noise)
moving in a way that defines its class: left/right translation, clockwise/anticlockwise rotation,
stripes flowing outwards/inwards (grow/shrink). Any single frame has the same distribution under
every class; only time decides. Videos alternate between H.264 in .mp4 (libx264) and MPEG-4 Part 2
in .avi, encoded with PyAV (FFmpeg), so both decode paths are exercised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

DEFAULT_CLASSES = ("move_left", "move_right", "rotate_cw", "rotate_ccw", "grow", "shrink")
FORMATS = ((".mp4", "libx264"), (".avi", "mpeg4"))  # (extension, PyAV encoder), alternated per video
GENERATOR_VERSION = 6  # part of the completion stamp: a changed generator regenerates old datasets


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


def write_video(path: str | Path, frames: np.ndarray, fps: int = 16, codec: str | None = None) -> None:
    """Encode uint8 frames [T,H,W,3] (even H and W) to `path`; the codec follows the extension unless given."""
    import av

    path = Path(path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {list(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} must be even (yuv420p)")
    codec = codec or dict(FORMATS).get(path.suffix, "mpeg4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = cast("av.video.stream.VideoStream", container.add_stream(codec, rate=fps))
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


def _edges(sides: int, long_vertex: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit outward normals and distances from the centre of the edges of a convex polygon.

    Circumradius 1, with one vertex `long_vertex` times further out: the asymmetry makes a rotation
    visible for every shape type. For pixel offsets p of a polygon scaled by r,
    D(p) = min_i(r * dist_i - n_i . p) is the distance to the outline inside it (negative outside);
    its level sets are the outline offset inwards, which draws the concentric stripes.
    """
    k = np.arange(sides)
    r = np.where(k == 0, long_vertex, 1.0)
    verts = np.stack([r * np.cos(2 * np.pi * k / sides), r * np.sin(2 * np.pi * k / sides)], 1)
    edges = np.roll(verts, -1, axis=0) - verts
    normals = np.stack([edges[:, 1], -edges[:, 0]], 1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    dist = (normals * verts).sum(1)
    normals *= np.sign(dist)[:, None]  # outward whatever the vertex order
    return normals.astype(np.float32), np.abs(dist).astype(np.float32)


def _ramp(d: np.ndarray) -> np.ndarray:
    """Coverage of a pixel whose centre lies d pixels inside an edge: anti-aliased, no drawing library."""
    return np.clip(d + 0.5, 0.0, 1.0)


def render_clip(cls: str, rng: np.random.Generator, *, num_frames: int, size: int) -> np.ndarray:
    """One clip [T,size,size,3] of class `cls`: every frame has the same distribution in every class.

    The scene is a striped polygon (random type, colours, size, stripe width, position). Each
    moving quantity starts at a uniformly random phase on a circle and moves along it: the
    horizontal position wraps around the frame, the angle wraps at 2*pi, the stripes wrap at their
    period. So the position, angle and stripe phase of ANY frame are uniform whatever the class,
    and only the change between frames (direction of motion, sense of rotation, stripes flowing
    out of or into the centre) tells the classes apart.
    """
    if cls not in DEFAULT_CLASSES:
        raise ValueError(f"unknown demo class {cls!r}; choose from {DEFAULT_CLASSES}")
    s = size
    bg = rng.integers(0, 70, 3).astype(np.float32)
    fg = rng.integers(150, 256, 3).astype(np.float32)
    dark = fg * 0.3  # the second stripe colour: same hue, far darker, so flowing stripes have high contrast
    normals, dist = _edges(int(rng.integers(3, 6)), 1.3)
    radius = rng.uniform(0.30, 0.36) * s  # x1.3 for the long vertex: still under s/2, so the wrap never cuts it
    period = rng.uniform(0.14, 0.17) * s
    border = max(1.0, 0.03 * s)
    cx, cy = rng.uniform(0, s), rng.uniform(0.35, 0.65) * s
    angle, phase = rng.uniform(0, 2 * np.pi), rng.uniform(0, period)
    # Each motion moves the stripes by about a tenth of their period per frame: sampled every 3rd frame
    # that is a third of a period, under the half period past which periodic stripes seem to move the
    # other way (wagon-wheel aliasing). A rotation may turn a little faster: its outer vertex reaches
    # half a period per step, but across the stripes (what aliasing needs) the motion is smaller.
    speed = rng.uniform(0.10, 0.12) * period
    spin = rng.uniform(0.16, 0.18) * period / (1.3 * radius)
    flow = rng.uniform(0.09, 0.11) * period
    sign = 1.0 if cls in ("move_right", "rotate_cw", "grow") else -1.0
    noise = rng.integers(0, 16, (num_frames, s, s, 1)).astype(np.float32)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    frames = np.empty((num_frames, s, s, 3), np.uint8)
    for t in range(num_frames):
        x, a, ph = cx, angle, phase
        if cls.startswith("move"):
            x = cx + sign * speed * t
        elif cls.startswith("rotate"):
            a = angle + sign * spin * t  # image y points down: a growing angle turns clockwise on screen
        else:
            ph = phase + sign * flow * t  # stripes flow outwards (grow) or inwards (shrink)
        dx = (xs - x + s / 2) % s - s / 2  # horizontal wrap-around: the shape never leaves the frame
        dy = ys - cy
        c, sn = math.cos(a), math.sin(a)
        u, v = c * dx + sn * dy, -sn * dx + c * dy  # scene coordinates rotated by -a
        depth = np.min(radius * dist[:, None, None] - normals[:, 0, None, None] * u - normals[:, 1, None, None] * v, 0)
        w = (depth + ph) % period  # stripes: bright on [0, period/2), dark on [period/2, period)
        into_stripe = np.where(w < period / 2, np.minimum(w, period / 2 - w), -np.minimum(w - period / 2, period - w))
        bright = np.maximum(_ramp(into_stripe), _ramp(border - depth))[..., None]
        colour = dark + bright * (fg - dark)
        frame = bg + _ramp(depth)[..., None] * (colour - bg) + noise[t]
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def make_demo_dataset(
    root: str | Path,
    *,
    num_per_class_train: int = 48,
    num_per_class_val: int = 8,
    num_per_class_test: int = 8,
    num_frames: int = 32,
    size: int = 64,
    fps: int = 16,
    seed: int = 0,
    classes: Sequence[str] | None = None,
) -> DemoDataset:
    """Write videos/<split>/<class>_<i>.{mp4,avi}, train/val/test lists and classes.txt.

    Deterministic for a given seed; a second call with the same arguments finds the finished
    dataset (a stamp written last) and returns at once, so an interrupted run just regenerates.
    """
    root = Path(root)
    names = list(classes or DEFAULT_CLASSES)
    unknown = [n for n in names if n not in DEFAULT_CLASSES]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"classes must be at least 2 distinct names from {DEFAULT_CLASSES}, got {names}")
    if size < 16 or size % 2 or num_frames < 2:
        raise ValueError(f"size must be even and >= 16, num_frames >= 2; got size={size}, num_frames={num_frames}")
    ds = DemoDataset(
        root, root, root / "train_list.txt", root / "val_list.txt", root / "test_list.txt", root / "classes.txt", names
    )
    stamp = root / ".complete"
    counts = f"{num_per_class_train} {num_per_class_val} {num_per_class_test}"
    signature = f"v{GENERATOR_VERSION} {names} {counts} {num_frames} {size} {fps} {seed}"
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


def write_corrupt_video(path: str | Path) -> None:
    """Garbage bytes under a video name (for tests and demos of the preflight scan)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_truncated_video(path: str | Path, src: str | Path) -> None:
    """The first 30% of a real video file (its header may still promise every frame)."""
    path = Path(path)
    data = Path(src).read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * 0.3)])


def write_empty_video(path: str | Path) -> None:
    """A zero-byte video file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
