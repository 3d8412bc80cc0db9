"""Tell a user when their videos are slow to read for training, and what `autox-video prepare` buys.

A random training clip starts decoding at the keyframe before it, so a long keyframe interval
(x264's default is 250 frames) and large frames make every clip decode and throw away many
full-size frames. bench/RESULTS.md measured 720p H.264 at 2.6 clips per core-second as stored and
29 after `prepare` (short side 256, a keyframe every 16 frames).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

# Past these, `prepare` pays: its output is short side 256 with a keyframe every 16 frames.
SLOW_SHORT_SIDE = 512
SLOW_KEYFRAME_INTERVAL = 64


@dataclass(frozen=True)
class SourceShape:
    """What decides the cost and exactness of a random clip read: size, codec, container, keyframes."""

    name: str
    width: int
    height: int
    codec: str
    keyframe_interval: float  # mean frames from one keyframe to the next (the whole file if only one)
    b_frames: bool = False  # frames stored out of display order


def source_shape(path: str | Path, *, max_packets: int = 600) -> SourceShape:
    """Read the container's first packets (no decoding) to measure the keyframe spacing."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = keyframes = 0
        for packet in container.demux(stream):
            if packet.size:  # the demuxer's final flush packet is empty
                frames += 1
                keyframes += bool(packet.is_keyframe)
            if frames >= max_packets:  # enough to see the spacing; long files are not read to the end
                break
        ctx = stream.codec_context
        return SourceShape(
            Path(path).name,
            int(ctx.width),
            int(ctx.height),
            str(ctx.name),
            frames / max(keyframes, 1),
            bool(ctx.has_b_frames),
        )


def _sampled_shapes(paths: list[Path], sample: int) -> list[SourceShape]:
    """Shapes of up to `sample` videos spread over the list (unreadable ones left out)."""
    shapes = []
    for path in paths[:: max(1, len(paths) // sample)][:sample]:
        try:
            shapes.append(source_shape(path))
        except Exception:  # noqa: BLE001 - the preflight scan already reported unreadable files
            continue
    return shapes


def training_video_hints(paths: list[Path], *, sample: int = 8) -> list[str]:
    """The hints below for a training list, each sampled video opened once."""
    shapes = _sampled_shapes(paths, sample)
    return [hint for hint in (_slow(shapes), _inexact(shapes)) if hint]


def slow_decoding_hint(paths: list[Path], *, sample: int = 8) -> str | None:
    """One line advising `autox-video prepare` when sampled videos are large or sparse in keyframes."""
    return _slow(_sampled_shapes(paths, sample))


def inexact_seek_hint(paths: list[Path], *, sample: int = 8) -> str | None:
    """One line when sampled videos are H.264 with B-frames in AVI: AVI stores no presentation
    timestamps, and neither decoder returned the requested frames after seeking in such files."""
    return _inexact(_sampled_shapes(paths, sample))


def _slow(shapes: list[SourceShape]) -> str | None:
    if not shapes:
        return None
    short = statistics.median(min(s.width, s.height) for s in shapes)
    gop = statistics.median(s.keyframe_interval for s in shapes)
    if short <= SLOW_SHORT_SIDE and gop <= SLOW_KEYFRAME_INTERVAL:
        return None
    big = max(shapes, key=lambda s: s.width * s.height)
    return (
        f"training videos are slow to read (median of {len(shapes)} sampled: short side {short:.0f} px, "
        f"a keyframe every {gop:.0f} frames, e.g. {big.width}x{big.height} {big.codec}): each random clip "
        f"decodes about {gop / 2:.0f} frames it throws away; `autox-video prepare SRC DST --ann LIST` "
        "(short side 256, a keyframe every 16 frames) made clip reads about 10x faster in bench/RESULTS.md"
    )


def _inexact(shapes: list[SourceShape]) -> str | None:
    bad = [s.name for s in shapes if s.name.lower().endswith(".avi") and s.codec == "h264" and s.b_frames]
    if not bad:
        return None
    return (
        f"{len(bad)} of {len(shapes)} sampled training videos (e.g. {bad[0]}) are H.264 with B-frames in AVI, "
        "where no decoder returns the requested frames after seeking: clips may hold neighbouring frames; "
        "`autox-video prepare SRC DST --ann LIST` rewrites them as MP4, which decodes exactly"
    )
