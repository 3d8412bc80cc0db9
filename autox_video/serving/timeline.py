"""Request parameter `granularity`: segments, shots and seconds of one video, through inference/timeline_run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from autox_video.data.annotations import Sample
from autox_video.serving.runtimes import Runtime

# The results.json keys each granularity adds (inference/timeline.py aggregate()).
KEYS = {"segment": "segments", "shot": "shots", "second": "seconds"}


def _scorer(runtime: Runtime) -> Any:
    """Timeline clips (uint8 [T,H,W,3], one view) -> probabilities, each clip repeated to fill the input's views."""
    spec = runtime.contract
    views_axis = spec.input_shape[0]

    def score(clips: list[np.ndarray]) -> np.ndarray:
        batch = []
        for clip in clips:
            x = clip.astype(np.float32).transpose(3, 0, 1, 2)  # 3,T,H,W
            x = x[None] if spec.input_layout == "NCTHW" else x.transpose(1, 0, 2, 3)  # 1,3,T,H,W or T,3,H,W
            batch.append(np.concatenate([x] * (views_axis // x.shape[0]), axis=0))
        return runtime.run(np.stack(batch))

    return score


def predict(path: Path, runtime: Runtime, granularity: tuple[str, ...], batch: int) -> dict[str, Any]:
    """{segments|shots|seconds: [...]} of the whole video (as `autox-video test --granularity`)."""
    from autox_video.inference.timeline_run import predict_timelines

    model_cfg = runtime.contract.model_config()
    cfg = model_cfg.model_copy(update={"granularity": list(granularity)})
    entry = predict_timelines(
        [Sample(path=path.name, label=None, line=1)],
        path.parent,
        cfg,
        model_cfg,
        _scorer(runtime),
        names=runtime.contract.class_names,
        batch=batch,
        list_name="request",
    )[0]
    return {KEYS[g]: entry[KEYS[g]] for g in granularity if KEYS[g] in entry}
