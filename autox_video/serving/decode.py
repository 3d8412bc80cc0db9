"""A video file -> the network's input tensor, through the checkpoint's own test pipeline."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from autox_video.config import Config
from autox_video.errors import AutoXError
from autox_video.export.contract import Contract
from autox_video.serving.errors import BadInput


class Decoder:
    """Checks and decodes videos as `autox-video test` would (one pipeline per decoding thread)."""

    def __init__(self, spec: Contract, max_seconds: float) -> None:
        self.spec = spec
        self.cfg: Config = spec.model_config()
        self.max_seconds = max_seconds
        self._local = threading.local()

    def _pipeline(self) -> Any:
        pipe = getattr(self._local, "pipeline", None)
        if pipe is None:
            from mmaction.utils import register_all_modules
            from mmengine.dataset import Compose

            from autox_video.data import fast_decode  # noqa: F401  (registers FastDecordInit/Decode)
            from autox_video.training.recipe import eval_pipeline

            register_all_modules(init_default_scope=True)
            steps = eval_pipeline(self.cfg, num_clips=self.spec.clips, num_crops=self.spec.crops)
            pipe = self._local.pipeline = Compose(steps)
        return pipe

    def check(self, path: Path, where: str) -> None:
        """BadInput when the file is not a readable video, is truncated, or is longer than --max-seconds."""
        from autox_video.data.sequential import probe
        from autox_video.data.videocheck import probe_file

        try:
            info = probe(path)
        except AutoXError:
            raise BadInput(
                f"{where}: not a video (no readable video stream); send an mp4/avi/webm file", "not_a_video"
            ) from None
        if info.frames <= 0:
            raise BadInput(f"{where}: not a video (no frames); send an mp4/avi/webm file", "not_a_video")
        if info.duration > self.max_seconds:
            raise BadInput(f"{where}: {info.duration:.1f} s long, over the server's --max-seconds {self.max_seconds:g}",
                           "too_long")  # fmt: skip
        reason = probe_file(str(path), self.cfg.decoder)
        if reason is not None:  # the container opened and promised frames that do not decode
            raise BadInput(f"{where}: truncated or damaged video ({reason}); send the whole file", "truncated")

    def decode(self, path: Path, where: str) -> np.ndarray:
        """One video's input tensor (float32 pixels 0-255, shape model.json's input_shape)."""
        self.check(path, where)
        try:
            out = self._pipeline()(dict(filename=str(path), label=-1, start_index=0, modality="RGB"))
        except Exception as err:  # decoder errors: the file is the client's to fix
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise BadInput(f"{where}: cannot decode ({first}); send a whole, playable video", "truncated") from None
        clips = out["inputs"].numpy().astype(np.float32)
        if list(clips.shape) != list(self.spec.input_shape):  # a contract bug, not the client's
            raise RuntimeError(f"decoded shape {list(clips.shape)} != model.json input_shape {self.spec.input_shape}")
        return clips
