"""Shot boundaries with PySceneDetect's ContentDetector, fed frame by frame from our own decoding pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ContentDetector's defaults (threshold 27 on the HSV change score); shots shorter than
# MIN_SHOT_SECONDS are merged into their neighbour, as PySceneDetect's min_scene_len does.
THRESHOLD = 27.0
MIN_SHOT_SECONDS = 0.5
# Frames are scored at this short side: the score is a mean over pixels, so a small frame keeps it
# and costs little (PySceneDetect itself downscales to about 256 px wide).
SHOT_SHORT_SIDE = 64


class ShotDetector:
    """Feed every frame in order (BGR uint8); `cuts` lists the first frame of each new shot."""

    def __init__(self, fps: float, threshold: float = THRESHOLD, min_shot_seconds: float = MIN_SHOT_SECONDS) -> None:
        from scenedetect import ContentDetector

        self.fps = fps
        self._detector = ContentDetector(threshold=threshold, min_scene_len=max(1, round(min_shot_seconds * fps)))
        self.cuts: list[int] = []
        self._last = -1

    def _timecode(self, index: int):  # type: ignore[no-untyped-def]
        from scenedetect import FrameTimecode

        return FrameTimecode(index, fps=self.fps)

    def feed(self, index: int, frame_bgr: np.ndarray) -> None:
        """Score one frame against the previous one."""
        self._last = index
        for tc in self._detector.process_frame(self._timecode(index), frame_bgr):
            self._add(tc.frame_num)

    def finish(self) -> list[int]:
        """Flush the detector after the last frame; returns the cuts."""
        if self._last >= 0:
            for tc in self._detector.post_process(self._timecode(self._last)):
                self._add(tc.frame_num)
        return self.cuts

    def _add(self, frame: int) -> None:
        if 0 < frame and (not self.cuts or frame > self.cuts[-1]):
            self.cuts.append(frame)


def shots_from_cuts(cuts: list[int], frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of the shots a video with these cuts and this many frames has."""
    edges = [0, *[c for c in cuts if 0 < c < frames], frames]
    return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def detect_shots(path: str | Path) -> list[tuple[int, int]]:
    """Shots of a whole video as [start, end) frame ranges (one decoding pass)."""
    from autox_video.data.sequential import iter_frames, probe, short_side_size

    info = probe(path)
    small = short_side_size(info.width, info.height, min(SHOT_SHORT_SIDE, info.width, info.height))
    detector = ShotDetector(info.fps)
    count = 0
    for index, _, bgr in iter_frames(path, lambda i: False, small, small=small):
        detector.feed(index, bgr)  # type: ignore[arg-type]
        count = index + 1
    return shots_from_cuts(detector.finish(), count)
