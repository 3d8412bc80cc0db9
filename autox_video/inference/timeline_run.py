"""Run the timeline: per video one decoding pass, clips batched across windows, scored, aggregated."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autox_video.config import Config
from autox_video.data.annotations import Sample
from autox_video.data.sequential import VideoInfo, iter_frames, probe, short_side_size
from autox_video.errors import AnnotationError
from autox_video.inference.timeline import ClipAssembler, Window, aggregate, line_span, plan_windows, timeline_item

log = logging.getLogger("autox_video")

Scorer = Callable[[list[np.ndarray]], np.ndarray]


@dataclass
class TimelineStats:
    """What the timeline held and did: `peak_frames` (frames in memory at once, held plus batched)."""

    peak_frames: int = 0
    frames_decoded: int = 0
    clips: int = 0


def make_scorer(model: torch.nn.Module, cfg: Config, device: torch.device, amp: torch.dtype | None) -> Scorer:
    """Clips uint8 [T,H,W,3] -> class probabilities [N, classes] through the model's test_step."""
    from mmaction.structures import ActionDataSample

    from autox_video import families
    from autox_video.inference.batching import autocast

    layout = families.model(cfg.backbone).family.input_format

    def score(clips: list[np.ndarray]) -> np.ndarray:
        inputs = []
        for clip in clips:
            t = torch.from_numpy(clip).permute(3, 0, 1, 2)  # 3,T,H,W
            t = t.unsqueeze(0) if layout == "NCTHW" else t.permute(1, 0, 2, 3)  # one view
            inputs.append(t.to(device))
        with torch.inference_mode(), autocast(device, amp):
            out = model.test_step(dict(inputs=inputs, data_samples=[ActionDataSample() for _ in clips]))
        return np.stack([s.pred_scores.item.float().cpu().numpy() for s in out])

    return score


def _crop(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return frame[top : top + size, left : left + size]


def _check_range(sample: Sample, info: VideoInfo, where: str) -> None:
    duration = info.duration
    if sample.start is not None and sample.start >= duration:
        raise AnnotationError(
            f"{where}: start {sample.start:g} s is past the end of {sample.path!r} ({duration:.3f} s long); "
            "give a range inside the video"
        )
    if sample.end is not None and sample.end > duration + 1.0 / info.fps:
        raise AnnotationError(
            f"{where}: end {sample.end:g} s is past the end of {sample.path!r} ({duration:.3f} s long); "
            "give a range inside the video (or Infinity / inf for its end)"
        )


def predict_timelines(
    samples: list[Sample],
    data_root: Path,
    cfg: Config,
    model_cfg: Config,
    score: Scorer,
    *,
    names: list[str] | None,
    batch: int,
    list_name: str,
    stats: TimelineStats | None = None,
) -> list[dict[str, Any]]:
    """One results.json entry per sample (list order), with the asked-for `segments`/`shots`/`seconds`."""
    from autox_video import families

    stats = stats if stats is not None else TimelineStats()
    sampling = families.model(model_cfg.backbone).family.sampling
    by_video: dict[str, list[int]] = {}
    for k, s in enumerate(samples):
        by_video.setdefault(s.path, []).append(k)
    entries: list[dict[str, Any] | None] = [None] * len(samples)
    for path, members in by_video.items():
        lines = [samples[k] for k in members]
        info = probe(data_root / path)
        for line in lines:
            if line.ranged:  # before decoding anything: a bad range is the user's to fix
                _check_range(line, info, f"{list_name}:{line.line}")
        for k, entry in zip(members, _one_video(data_root / path, lines, cfg, model_cfg, sampling, score, names,
                                                batch, stats), strict=True):  # fmt: skip
            entries[k] = entry
    return [e for e in entries if e is not None]


def _one_video(
    file: Path,
    lines: list[Sample],
    cfg: Config,
    model_cfg: Config,
    sampling: str,
    score: Scorer,
    names: list[str] | None,
    batch: int,
    stats: TimelineStats,
) -> list[dict[str, Any]]:
    """Every list line of one video, from one decoding pass."""
    from autox_video.data.shots import SHOT_SHORT_SIDE, ShotDetector, shots_from_cuts

    info = probe(file)
    grid = "second" in cfg.granularity or "shot" in cfg.granularity
    spans = [line_span(s.start, s.end, info.frames, info.fps) for s in lines]
    windows: list[Window] = []
    for owner, span in enumerate(spans):
        windows += plan_windows(
            owner,
            span,
            info.fps,
            interval=cfg.interval,
            grid=grid,
            segment_clips=model_cfg.test_clips,
            clip_len=model_cfg.resolved_clip_len,
            frame_interval=model_cfg.resolved_frame_interval,
            sampling=sampling,
        )
    img = model_cfg.img_size
    size = short_side_size(info.width, info.height, img)
    detector = ShotDetector(info.fps) if "shot" in cfg.granularity else None
    small = (
        short_side_size(info.width, info.height, min(SHOT_SHORT_SIDE, info.width, info.height)) if detector else None
    )
    assembler = ClipAssembler(windows)
    scores: list[dict[tuple[str, int], np.ndarray]] = [{} for _ in lines]
    ready: list[tuple[Window, np.ndarray]] = []

    def flush() -> None:
        if ready:
            probs = score([clip for _, clip in ready])
            for (w, _), p in zip(ready, probs, strict=True):
                scores[w.owner][(w.kind, w.index)] = p
            stats.clips += len(ready)
            ready.clear()

    def take(done: Any) -> None:
        for w, clip in done:
            ready.append((w, clip))
            held = assembler.peak_frames_held + sum(len(c) for _, c in ready)
            stats.peak_frames = max(stats.peak_frames, held)
            if len(ready) >= batch:
                flush()

    decoded = 0
    for index, rgb, bgr in iter_frames(file, assembler.wants, size, small=small):
        if detector is not None:
            detector.feed(index, bgr)  # type: ignore[arg-type]
        take(assembler.feed(index, _crop(rgb, img) if rgb is not None else None))
        decoded = index + 1
    take(assembler.finish())
    flush()
    stats.frames_decoded += decoded
    shots = shots_from_cuts(detector.finish(), decoded or info.frames) if detector else None
    out = []
    for owner, (line, span) in enumerate(zip(lines, spans, strict=True)):
        mine = [w for w in windows if w.owner == owner]
        probs, parts = aggregate(
            span,
            info.fps,
            scores[owner],
            mine,
            granularity=cfg.granularity,
            interval=cfg.interval,
            shots=shots,
            names=names,
            threshold=cfg.confidence_threshold,
            max_predictions=cfg.max_predictions,
        )
        top = timeline_item(span.start, span.end, probs, names, threshold=0.0, max_predictions=min(5, len(probs)))
        out.append(
            {
                "video": line.path,
                "label": top["label"],
                "label_name": top["label_name"],
                "score": top["score"],
                "topk": top["topk"],
                "probs": [float(x) for x in probs],
                **({"true_label": line.label} if line.label is not None else {}),
                **({"start": span.start, "end": span.end} if line.ranged else {}),
                **parts,
            }
        )
    return out
