"""Real encoded source videos for the benchmarks, generated once and cached.

The content is camera-like so the encoders spend realistic bits: a textured background that pans,
a few moving objects and a little sensor grain. The files are encoded the way datasets in the wild
usually are, not the way `autox-video prepare` writes them: H.264 in .mp4 with x264's default
keyframe interval (250 frames) and B-frames, and MPEG-4 Part 2 in .avi with Xvid's default keyframe
interval (300 frames), as UCF101/HMDB51 were made.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# name -> (width, height); 16:9 like most camera footage.
SIZES: dict[str, tuple[int, int]] = {"320p": (568, 320), "720p": (1280, 720)}
# extension -> (codec, keyframe interval, file-name tag)
FORMATS: dict[str, tuple[str, int, str]] = {".mp4": ("libx264", 250, "h264"), ".avi": ("mpeg4", 300, "mpeg4")}


@dataclass(frozen=True)
class SourceSpec:
    """What to generate: per size and format, `videos` files of `seconds` at `fps`."""

    seconds: float = 10.0
    fps: int = 30
    videos: int = 2
    seed: int = 0

    def key(self) -> str:
        """Stable cache key (changes when the spec or the generator version changes)."""
        blob = json.dumps({**asdict(self), "sizes": SIZES, "formats": FORMATS, "v": 3}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def default_cache_dir() -> Path:
    """Where generated sources are kept between runs."""
    return Path(tempfile.gettempdir()) / "autox-video-bench"


def _frames(width: int, height: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Panning textured background + moving discs + grain, uint8 [n,H,W,3]."""
    out = np.empty((n, height, width, 3), np.uint8)
    for t, frame in enumerate(frame_stream(width, height, n, rng)):
        out[t] = frame
    return out


def frame_stream(width: int, height: int, n: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The frames of `_frames` one at a time (a long video never sits in memory whole)."""
    import cv2

    # Smooth multi-scale texture, twice the frame size so the camera can pan across it.
    bw, bh = width * 2, height * 2
    bg = np.zeros((bh, bw, 3), np.float32)
    for cells, weight in ((8, 0.6), (32, 0.3), (128, 0.1)):
        small = rng.uniform(0, 255, (max(2, bh * cells // bw), cells, 3)).astype(np.float32)
        bg += weight * cv2.resize(small, (bw, bh), interpolation=cv2.INTER_CUBIC)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    grain = rng.integers(-6, 7, (8, height, width, 1), dtype=np.int16)
    discs = [
        (
            rng.uniform(0, width),
            rng.uniform(0, height),
            rng.uniform(-6, 6),
            rng.uniform(-4, 4),
            int(rng.uniform(0.05, 0.15) * height),
            tuple(int(c) for c in rng.integers(0, 256, 3)),
        )
        for _ in range(4)
    ]
    for t in range(n):
        # Slow elliptical pan: every frame differs, as with a hand-held camera.
        x0 = int((bw - width) * (0.5 + 0.4 * np.sin(t / 97)))
        y0 = int((bh - height) * (0.5 + 0.4 * np.cos(t / 131)))
        frame = bg[y0 : y0 + height, x0 : x0 + width].copy()
        for x, y, vx, vy, r, colour in discs:
            cx = int((x + vx * t) % width)
            cy = int((y + vy * t) % height)
            cv2.circle(frame, (cx, cy), r, colour, -1, lineType=cv2.LINE_AA)
        yield np.clip(frame.astype(np.int16) + grain[t % len(grain)], 0, 255).astype(np.uint8)


def encode(
    path: Path, frames: np.ndarray | Iterable[np.ndarray], *, fps: int, codec: str, gop: int,
    size: tuple[int, int] | None = None,
) -> None:  # fmt: skip
    """Encode uint8 RGB frames [T,H,W,3] (or an iterable of [H,W,3] with `size` (w, h)) with PyAV (FFmpeg);
    writes to a temp name, then renames."""
    import av

    tmp = path.with_name(path.stem + ".part" + path.suffix)
    width, height = size if size is not None else (frames.shape[2], frames.shape[1])  # type: ignore[union-attr]
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "23", "g": str(gop)}
        else:
            # Xvid-like quality: ~0.1 bit per pixel.
            stream.bit_rate = int(0.1 * width * height * fps)
            stream.options = {"g": str(gop), "bf": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    tmp.rename(path)


def ensure_sources(spec: SourceSpec, cache_dir: Path | None = None) -> dict[str, list[Path]]:
    """Generate (or reuse) the source videos; returns size name -> files (all formats)."""
    root = (cache_dir or default_cache_dir()) / f"sources-{spec.key()}"
    rng = np.random.default_rng(spec.seed)
    n = max(1, round(spec.seconds * spec.fps))
    out: dict[str, list[Path]] = {}
    for size, (width, height) in SIZES.items():
        files = []
        for i in range(spec.videos):
            for ext, (codec, gop, tag) in FORMATS.items():
                path = root / size / f"video_{i:02d}_{tag}{ext}"
                if not path.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    encode(path, _frames(width, height, n, rng), fps=spec.fps, codec=codec, gop=gop)
                files.append(path)
        out[size] = files
    return out
