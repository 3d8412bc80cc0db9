"""Fast training decode: frames come out of the decoder small, each read once, kept uint8.

mmaction2's default (DecordInit -> DecordDecode -> Resize) converts every decoded frame to
full-resolution RGB, copies it into numpy, then shrinks it with OpenCV. Here:

- decord (H.264 and other modern codecs) scales inside FFmpeg when the reduction is large
  (720p -> 256), so a 720p source costs a 256p conversion and copy;
- FFmpeg through PyAV (MPEG-4 Part 2 and other old codecs, where decord 0.6 is slow) decodes
  only reference frames and wanted frames and converts only the wanted ones;
- duplicate indices (looped short videos, overlapping test clips) are decoded once, in ascending
  order, and mapped back by one numpy gather.

Importing this module registers `FastDecordInit` and `FastDecordDecode` in mmaction2's TRANSFORMS.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from mmaction.registry import TRANSFORMS
from mmcv.transforms import BaseTransform

from autox_video.data.time_range import frame_range
from autox_video.errors import DataError

__all__ = ["FastDecordDecode", "FastDecordInit", "scaled_size", "test_pipeline", "train_pipeline"]


def _reason(err: BaseException) -> str:
    """`Type: first line` of an error; decord/FFmpeg messages carry a `[time] file:line:` prefix."""
    lines = [re.sub(r"^\[[0-9:]+\] \S+:\d+: ", "", x.strip()) for x in str(err).splitlines() if x.strip()]
    first = next((x for x in lines if not x.startswith("Stack trace")), "")
    return f"{type(err).__name__}: {first}"[:200] if first else type(err).__name__


def scaled_size(width: int, height: int, short_side: int | None, min_factor: float = 1.5) -> tuple[int, int]:
    """(width, height) for decord with the short side at `short_side`, aspect kept, even sizes.

    (-1, -1) means native size. FFmpeg's scaler (as decord configures it) costs more per output
    pixel than OpenCV's resize, so it pays only on large reductions: measured on one core, 720p ->
    256 was 23% cheaper than native decode + cv2.resize, 320p -> 256 40% dearer (MPEG-4). Sources
    whose short side is below `min_factor` x `short_side` are therefore decoded natively and
    resized once, after cropping, by the pipeline.
    """
    if short_side is None or min(width, height) < min_factor * short_side:
        return -1, -1
    scale = short_side / min(width, height)

    def even(x: float) -> int:
        # yuv420 scalers and some encoders want even sizes; keep the short side exact.
        return max(2, int(round(x / 2)) * 2)

    out = (short_side, even(height * scale)) if width <= height else (even(width * scale), short_side)
    return out if _decord_safe_width(out[0]) else (-1, -1)


def _decord_safe_width(width: int) -> bool:
    """Whether decord 0.6 reads frames of this width correctly.

    decord infers channels as linesize // width, and FFmpeg pads RGB rows to 32 pixels: narrow
    widths (e.g. 48, 72) then read as 4 channels and get_batch fails. Such tiny sizes only occur
    in tests and demos; they are decoded at native size and resized by the pipeline instead.
    """
    padded = -(-width // 32) * 32
    return (padded * 3) // width == 3


# Which decoder `auto` uses. FFmpeg's own decoder, driven through PyAV, seeks exactly and skips
# work: on one core a 32x2 clip from 720p MPEG-4 Part 2 (.avi, 300-frame GOP) took 0.14 s vs 0.34 s
# with decord, because only reference frames and wanted frames are decoded (skip_frame=NONREF for the
# rest) and only wanted frames are converted to RGB. decord keeps only what its seeks were checked
# for, frame by frame (tests/test_fast_decode.py): H.264 in MP4/MOV/MKV, where it measured the same
# as PyAV. Elsewhere decord 0.6 returned wrong frames after seeking, with no error:
# MPEG-4 Part 2 .avi with B-frames, MPEG-2 (.mp4: 276 of 320 frames wrong, .mpg: 319), HEVC with
# open GOPs (187), H.264 in .avi (310), WMV2 (121); PyAV read the .mp4, .wmv and B-frame-free .avi
# exactly.
DECORD_CODECS = frozenset({"h264"})
DECORD_CONTAINERS = frozenset({".mp4", ".m4v", ".mov", ".mkv"})
BACKENDS = ("auto", "decord", "pyav")


class _DecordReader:
    """decord.VideoReader, scaled inside FFmpeg when that pays (see `scaled_size`)."""

    def __init__(
        self, path: str, size: tuple[int, int], short_side: int | None, min_factor: float, threads: int
    ) -> None:
        import decord

        width, height = scaled_size(*size, short_side, min_factor)
        self._reader = decord.VideoReader(path, num_threads=threads, width=width, height=height)
        self.fps = float(self._reader.get_avg_fps())

    def __len__(self) -> int:
        return len(self._reader)

    def read(self, sorted_inds: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W,3] for ascending unique indices."""
        return self._reader.get_batch(sorted_inds).asnumpy()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._reader = None


class _PyAVReader:
    """FFmpeg via PyAV: seek to the keyframe, decode forward skipping unneeded non-reference frames."""

    def __init__(self, container: Any, short_side: int | None) -> None:
        self._container = container
        self._stream = container.streams.video[0]
        ctx = self._stream.codec_context
        ctx.thread_count = 1  # data-loader workers already use every core
        # Frame i is the i-th packet in presentation order: decord's (and mmaction2's) numbering.
        packets = [(p.pts, p.is_keyframe) for p in container.demux(self._stream) if p.pts is not None]
        self._pts = np.sort(np.array([pts for pts, _ in packets], np.int64))
        self._keys = np.sort(np.array([pts for pts, key in packets if key], np.int64))
        if len(np.unique(self._pts)) != len(self._pts):
            raise DataError("duplicate packet timestamps")
        width, height = scaled_size(ctx.width, ctx.height, short_side, 1.0)
        self._size = None if width < 0 else (width, height)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps = float(rate) if rate else 30.0

    def __len__(self) -> int:
        return len(self._pts)

    def read(self, sorted_inds: np.ndarray) -> np.ndarray:
        """uint8 [N,H,W,3] for ascending unique indices."""
        frames: list[np.ndarray | None] = [None] * len(sorted_inds)
        for segment in self._segments(self._pts[sorted_inds]):
            want = {int(self._pts[sorted_inds[k]]): k for k in segment}
            missing = self._decode(want, frames, seek=int(self._pts[sorted_inds[segment[0]]]))
            if missing:
                # A container whose index seeks past the keyframe: read again from the start.
                missing = self._decode(want, frames, seek=int(self._pts[0]))
            if missing:
                raise DataError(f"decoded {len(want) - missing} of {len(want)} requested frames")
        return np.stack(frames)  # type: ignore[arg-type]

    def _segments(self, wanted: np.ndarray) -> list[list[int]]:
        """Split ascending wanted timestamps where a keyframe lies between two of them.

        Seeking to that keyframe is cheaper than decoding every frame in between (test clips
        spread over a long video), so each segment starts with its own seek.
        """
        segments = [[0]]
        for k in range(1, len(wanted)):
            key = np.searchsorted(self._keys, wanted[k], side="right") - 1  # last keyframe <= wanted[k]
            if key >= 0 and self._keys[key] > wanted[k - 1]:
                segments.append([k])
            else:
                segments[-1].append(k)
        return segments

    def _decode(self, want: dict[int, int], frames: list[np.ndarray | None], seek: int) -> int:
        """Decode from the keyframe at or before `seek` until every wanted frame is in; return how many are missing."""
        container, ctx = self._container, self._stream.codec_context
        container.seek(seek, stream=self._stream, backward=True)
        missing = sum(frames[k] is None for k in want.values())
        kwargs: dict[str, Any] = {"format": "rgb24"}
        if self._size is not None:
            kwargs.update(width=self._size[0], height=self._size[1], interpolation="BILINEAR")
        for packet in container.demux(self._stream):
            # Unwanted non-reference frames are never decoded; reference frames must be.
            wanted = packet.pts is None or packet.pts in want or packet.is_keyframe
            ctx.skip_frame = "DEFAULT" if wanted else "NONREF"
            for frame in ctx.decode(packet):
                k = want.get(frame.pts) if frame.pts is not None else None
                if k is not None and frames[k] is None:
                    frames[k] = frame.to_ndarray(**kwargs)
                    missing -= 1
            if missing == 0:
                break
        ctx.skip_frame = "DEFAULT"
        return missing

    def close(self) -> None:
        self._container.close()


def _open(path: str, info: tuple[int, int, str] | None) -> tuple[Any, tuple[int, int, str]]:
    """Open with PyAV (the container header only); returns the container and (width, height, codec)."""
    import av

    container = av.open(path)
    if not container.streams.video:
        container.close()
        raise DataError(f"no video stream in {path!r}")
    ctx = container.streams.video[0].codec_context
    return container, info or (int(ctx.width), int(ctx.height), str(ctx.name))


def _restrict(results: dict[str, Any], path: str, frames: int, reader: Any) -> None:
    """Samplers draw from [start_index, start_index + total_frames): narrow that to the line's time range."""
    start, end = results["time_range"]
    if start is not None and start >= frames / reader.fps:
        reader.close()
        raise DataError(
            f"time range {start:g}-{'end' if end is None else f'{end:g}'} s starts past the end of {path!r} "
            f"({frames / reader.fps:.3f} s long); fix the range in the list"
        )
    lo, hi = frame_range(start, end, frames, reader.fps)
    results["start_index"] = lo
    results["total_frames"] = hi - lo


@TRANSFORMS.register_module(force=True)
class FastDecordInit(BaseTransform):
    """Open a video so that decoded frames come out with short side `short_side` (decord or PyAV).

    Required keys: filename. Added keys: video_reader, total_frames, avg_fps. With `time_range`
    ((start, end) seconds, None for an open end) total_frames and start_index cover only that range,
    so the samplers after it draw frames inside it.

    Args:
        short_side: short side of decoded frames (None: native size; never upscaled).
        num_threads: decord decode threads (1: data-loader workers already use every core).
        min_factor: decord scales inside the decoder only when the source short side is at least
            this many times `short_side` (see `scaled_size`).
        backend: "auto" (decord for DECORD_CODECS in DECORD_CONTAINERS, PyAV otherwise), "decord" or "pyav".
    """

    def __init__(
        self, short_side: int | None = 256, num_threads: int = 1, min_factor: float = 1.5, backend: str = "auto"
    ) -> None:
        if short_side is not None and short_side < 2:
            raise ValueError(f"short_side must be >= 2 or None, got {short_side!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.short_side = short_side
        self.num_threads = num_threads
        self.min_factor = min_factor
        self.backend = backend
        # filename -> (w, h, codec): persistent data-loader workers probe each file once per run.
        self._info: dict[str, tuple[int, int, str]] = {}

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        """Open `results['filename']`; raise DataError naming the file when it cannot be decoded."""
        path = str(results["filename"])
        if not Path(path).is_file():
            raise DataError(f"video file not found: {path!r}")
        reader: _DecordReader | _PyAVReader
        try:
            info = self._info.get(path)
            container = None
            if info is None or self._use_pyav(info[2], path):
                container, info = _open(path, info)
                self._info[path] = info
            if container is not None and self._use_pyav(info[2], path):
                try:
                    reader = _PyAVReader(container, self.short_side)
                except BaseException:
                    container.close()
                    raise
            else:
                if container is not None:
                    container.close()
                reader = _DecordReader(path, info[:2], self.short_side, self.min_factor, self.num_threads)
        except DataError as err:
            if path in str(err):
                raise
            raise DataError(f"cannot open video {path!r}: {err}") from err
        except Exception as err:  # decord raises DECORDError/RuntimeError, PyAV its own FFmpeg errors
            raise DataError(f"cannot open video {path!r}: {_reason(err)}") from err
        if len(reader) <= 0:
            reader.close()
            raise DataError(f"video {path!r} has no frames")
        results["video_reader"] = reader
        results["total_frames"] = len(reader)
        results["avg_fps"] = reader.fps
        if results.get("time_range") is not None:
            _restrict(results, path, len(reader), reader)
        return results

    def _use_pyav(self, codec: str, path: str) -> bool:
        if self.backend != "auto":
            return self.backend == "pyav"
        return codec not in DECORD_CODECS or Path(path).suffix.lower() not in DECORD_CONTAINERS

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(short_side={self.short_side}, num_threads={self.num_threads}, backend={self.backend!r})"


@TRANSFORMS.register_module(force=True)
class FastDecordDecode(BaseTransform):
    """Decode `frame_inds` (any order, repeats allowed) as uint8 frames, each distinct frame once.

    Required keys: video_reader (from FastDecordInit), frame_inds. Added keys: imgs (list of
    HxWx3 uint8 views of one array, in the requested order), original_shape, img_shape.
    """

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        """Read the frames; raise DataError naming the file and the frames when decoding fails."""
        reader = results["video_reader"]
        path = results.get("filename", "<unknown>")
        inds = np.asarray(results["frame_inds"]).reshape(-1).astype(np.int64, copy=False)
        if inds.size == 0:
            raise DataError(f"no frames requested from video {path!r}")
        total = len(reader)
        if inds.min() < 0 or inds.max() >= total:
            reader.close()
            raise DataError(
                f"frame indices {int(inds.min())}..{int(inds.max())} out of range "
                f"for video {path!r} with {total} frames"
            )
        # Ascending unique order: the decoder goes forward from each keyframe at most once.
        uniq, inverse = np.unique(inds, return_inverse=True)
        try:
            frames = reader.read(uniq)
        except Exception as err:
            raise DataError(
                f"cannot decode frames {int(uniq[0])}..{int(uniq[-1])} "
                f"of video {path!r} ({total} frames): {_reason(err)}"
            ) from err
        finally:
            reader.close()
        if len(uniq) != len(inds) or not np.array_equal(uniq, inds):
            frames = frames[inverse.reshape(-1)]  # one gather; repeated frames become independent copies
        results["video_reader"] = None
        results["frame_inds"] = inds
        results["imgs"] = list(frames)  # views, no copy; mmaction2 transforms expect a list
        results["original_shape"] = frames.shape[1:3]
        results["img_shape"] = frames.shape[1:3]
        return results


def train_pipeline(
    clip_len: int,
    frame_interval: int,
    img_size: int,
    short_side: int | None = None,
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    flip_ratio: float = 0.5,
) -> list[dict[str, Any]]:
    """Training pipeline: decode at short side S (default img_size*256/224), random resized crop, flip."""
    short = short_side if short_side is not None else round(img_size * 256 / 224)
    steps: list[dict[str, Any]] = [
        dict(type="FastDecordInit", short_side=short),
        dict(
            type="SampleFrames", clip_len=clip_len, frame_interval=frame_interval, num_clips=1, out_of_bound_opt="loop"
        ),
        dict(type="FastDecordDecode"),
        dict(type="RandomResizedCrop", area_range=tuple(area_range)),
        dict(type="Resize", scale=(img_size, img_size), keep_ratio=False),
    ]
    if flip_ratio > 0:
        steps.append(dict(type="Flip", flip_ratio=flip_ratio))
    steps += [dict(type="FormatShape", input_format="NCTHW"), dict(type="PackActionInputs")]
    return steps


def test_pipeline(
    clip_len: int,
    frame_interval: int,
    img_size: int,
    num_clips: int,
    num_crops: int,
    short_side: int | None = None,
) -> list[dict[str, Any]]:
    """Deterministic val/test pipeline: evenly spaced clips, decode at short side S (default img_size),
    center crop (num_crops=1) or three crops (num_crops=3)."""
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops!r}")
    short = short_side if short_side is not None else img_size
    crop = dict(type="ThreeCrop" if num_crops == 3 else "CenterCrop", crop_size=img_size)
    return [
        dict(type="FastDecordInit", short_side=short),
        dict(
            type="SampleFrames",
            clip_len=clip_len,
            frame_interval=frame_interval,
            num_clips=num_clips,
            test_mode=True,
            out_of_bound_opt="loop",
        ),
        dict(type="FastDecordDecode"),
        dict(type="Resize", scale=(-1, img_size)),  # no-op when decoded at img_size; upscales small sources
        crop,
        dict(type="FormatShape", input_format="NCTHW"),
        dict(type="PackActionInputs"),
    ]
