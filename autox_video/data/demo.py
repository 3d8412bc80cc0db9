"""Synthetic labelled dataset of real encoded videos whose classes only motion can tell apart.

Every clip shows one polygon textured with a polar checkerboard (concentric rings x angular
sectors; random type, colours, size, position, background, noise) moving in a way that defines its
class: left/right translation, clockwise/anticlockwise rotation, rings flowing outwards/inwards
(grow/shrink). Any single frame has the same distribution under
every class; only time decides. Videos alternate between H.264 in .mp4 (libx264) and MPEG-4 Part 2
in .avi, encoded with PyAV (FFmpeg), so both decode paths are exercised.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

DEFAULT_CLASSES = ("move_left", "move_right", "rotate_cw", "rotate_ccw", "grow", "shrink")
FORMATS = ((".mp4", "libx264"), (".avi", "mpeg4"))  # (extension, PyAV encoder), alternated per video
GENERATOR_VERSION = 7  # part of the completion stamp: a changed generator regenerates old datasets


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


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 16,
    codec: str | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """Encode uint8 frames [T,H,W,3] (even H and W) to `path`; the codec follows the extension unless given.

    `options` (FFmpeg encoder options, e.g. {"g": "250", "bf": "2"}) override the defaults below.
    """
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
            stream.options = {"preset": "ultrafast", "crf": "18", "g": "8", **(options or {})}
        else:
            stream.bit_rate = 2_000_000
            stream.options = {"g": "8", **(options or {})}
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


# Background per class in `easy` mode (fast tests): a single frame then tells the class apart.
EASY_BACKGROUNDS = ((90, 0, 0), (0, 90, 0), (0, 0, 90), (90, 90, 0), (0, 90, 90), (90, 0, 90))


def render_clip(cls: str, rng: np.random.Generator, *, num_frames: int, size: int, easy: bool = False) -> np.ndarray:
    """One clip [T,size,size,3] of class `cls`: every frame has the same distribution in every class.

    The scene is a polygon (random type, colours, size, ring width, sector count, position) whose
    texture is a checkerboard of concentric rings (the outline offset inwards) and angular sectors.
    The sectors make a rotation visible everywhere on the shape: with rings alone only the corners
    show it (motion along a ring is invisible, the aperture problem), and a small model confused the
    two senses of rotation on 25% of clips. Each moving quantity starts at a uniformly random phase
    on a circle and moves along it: the horizontal position wraps around the frame, the angle wraps
    at 2*pi, the rings wrap at their period. So the position, angle and ring phase of ANY frame
    are uniform whatever the class, and only the change between frames (direction of motion, sense
    of rotation, rings flowing out of or into the centre) tells the classes apart.
    """
    if cls not in DEFAULT_CLASSES:
        raise ValueError(f"unknown demo class {cls!r}; choose from {DEFAULT_CLASSES}")
    s = size
    bg = rng.integers(0, 70, 3).astype(np.float32)
    if easy:  # a tiny model trained for seconds learns this, where the motions alone take minutes
        bg = np.array(EASY_BACKGROUNDS[DEFAULT_CLASSES.index(cls)], np.float32)
    fg = rng.integers(150, 256, 3).astype(np.float32)
    dark = fg * 0.3  # the second texture colour: same hue, far darker, so moving edges have high contrast
    normals, dist = _edges(int(rng.integers(3, 6)), 1.3)
    # Python floats, not numpy float64 scalars, so that the arrays below stay float32.
    radius = float(rng.uniform(0.30, 0.36)) * s  # x1.3 for the long vertex: still under s/2, so the wrap never cuts it
    period = float(rng.uniform(0.14, 0.17)) * s
    border = max(1.0, 0.03 * s)
    cx, cy = float(rng.uniform(0, s)), float(rng.uniform(0.35, 0.65)) * s
    angle, phase = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, period))
    sectors = int(rng.choice([6, 8]))
    # Each motion moves the texture by about a tenth of the ring period per frame: sampled every 3rd
    # frame that is a third of a period, under the half period past which a periodic pattern seems to
    # move the other way (wagon-wheel aliasing). A rotation may turn a little faster: its outer vertex
    # reaches half a ring period per step, but across the rings (what aliasing needs) the motion is
    # smaller; and it turns ~11 degrees per step, far under one sector (45-60 degrees: half the
    # period of the sector pattern).
    speed = float(rng.uniform(0.10, 0.12)) * period
    spin = float(rng.uniform(0.16, 0.18)) * period / (1.3 * radius)
    flow = float(rng.uniform(0.11, 0.13)) * period
    sign = 1.0 if cls in ("move_right", "rotate_cw", "grow") else -1.0
    noise = rng.integers(0, 16, (num_frames, s, s, 1)).astype(np.float32)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    # All frames at once, [T,H,W]: each quantity moves linearly in t for its class only.
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    x = cx + sign * speed * t if cls.startswith("move") else np.full_like(t, cx)
    a = angle + sign * spin * t if cls.startswith("rotate") else np.full_like(t, angle)  # y down: clockwise
    ph = phase + sign * flow * t if cls in ("grow", "shrink") else np.full_like(t, phase)  # rings out / in
    dx = (xs - x + s / 2) % s - s / 2  # horizontal wrap-around: the shape never leaves the frame
    dy = ys - cy
    c, sn = np.cos(a), np.sin(a)
    u, v = c * dx + sn * dy, -sn * dx + c * dy  # scene coordinates rotated by -a
    nx, ny, d = (q[:, None, None, None] for q in (normals[:, 0], normals[:, 1], radius * dist))
    depth = np.min(d - nx * u - ny * v, 0)
    w = (depth + ph) % period  # rings: bright on [0, period/2), dark on [period/2, period)
    into_stripe = np.where(w < period / 2, np.minimum(w, period / 2 - w), -np.minimum(w - period / 2, period - w))
    # Sector stripes, as signed pixel distances to the nearest sector edge (anti-aliased like rings).
    sw = (np.arctan2(v, u) % (2 * math.pi)) * sectors / (2 * math.pi) % 2  # in [0, 2): even/odd sector
    into_sector = np.where(sw < 1, np.minimum(sw, 1 - sw), -np.minimum(sw - 1, 2 - sw))
    into_sector *= np.hypot(u, v) * (2 * math.pi / sectors)
    ring, sector = _ramp(into_stripe), _ramp(into_sector)
    checker = ring + sector - 2 * ring * sector  # soft XOR
    bright = np.maximum(checker, _ramp(border - depth))[..., None]
    colour = dark + bright * (fg - dark)
    frames = bg + _ramp(depth)[..., None] * (colour - bg) + noise
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames


_Job = tuple[Path, str, tuple[int, ...], int, int, int, str, bool]


def _render_one(job: _Job) -> None:
    path, cls, seed, num_frames, size, fps, codec, easy = job
    frames = render_clip(cls, np.random.default_rng(seed), num_frames=num_frames, size=size, easy=easy)
    write_video(path, frames, fps, codec)


def _render_all(jobs: list[_Job]) -> None:
    """Render and encode every video, on all CPUs."""
    # Threads, not processes: numpy and FFmpeg release the GIL for most of the work (23 s -> 16 s on
    # 2 cores for the demo), and a process pool would re-run an unguarded calling script.
    with ThreadPoolExecutor(min(os.cpu_count() or 1, 8)) as pool:
        list(pool.map(_render_one, jobs))


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
    easy: bool = False,
) -> DemoDataset:
    """Write videos/<split>/<class>_<i>.{mp4,avi}, train/val/test lists and classes.txt.

    Deterministic for a given seed; a second call with the same arguments finds the finished
    dataset (a stamp written last) and returns at once, so an interrupted run just regenerates.
    `easy` gives each class its own background colour (see `render_clip`).
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
    signature = f"v{GENERATOR_VERSION} {names} {counts} {num_frames} {size} {fps} {seed}" + (" easy" if easy else "")
    if stamp.is_file() and stamp.read_text() == signature:
        return ds
    root.mkdir(parents=True, exist_ok=True)
    jobs = []
    for split_index, (split, count) in enumerate(
        (("train", num_per_class_train), ("val", num_per_class_val), ("test", num_per_class_test))
    ):
        lines = []
        for i in range(count):
            for label, cls in enumerate(names):
                ext, codec = FORMATS[(i + label) % 2]
                rel = f"videos/{split}/{cls}_{i:03d}{ext}"
                # One seed per video: a split's videos do not depend on the other splits' sizes,
                # and the videos can be rendered in any order, in parallel.
                jobs.append((root / rel, cls, (seed, split_index, i, label), num_frames, size, fps, codec, easy))
                lines.append(f"{rel} {label}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    _render_all(jobs)
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


def make_timeline_video(
    path: str | Path,
    parts: Sequence[tuple[str, float]],
    *,
    size: int = 32,
    fps: int = 16,
    seed: int = 0,
    codec: str | None = None,
    easy: bool = False,
) -> list[float]:
    """One long video of several demo motions joined by hard cuts (a new scene each); returns the cut times (s).

    `parts` is (class, seconds) per shot; each shot is a fresh random scene, so a cut changes the
    whole picture at once, as an edit does. Cuts fall on whole frames: at round(seconds * fps).
    """
    rng = np.random.default_rng(seed)
    lengths = [max(2, round(seconds * fps)) for _, seconds in parts]
    frames = np.concatenate(
        [render_clip(cls, rng, num_frames=n, size=size, easy=easy) for (cls, _), n in zip(parts, lengths, strict=True)]
    )
    write_video(path, frames, fps, codec)
    return [float(x) / fps for x in np.cumsum(lengths)[:-1]]
