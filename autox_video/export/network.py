"""The exported network: a batch of clips (raw 0-255 RGB pixels) -> class probabilities.

Normalisation (mean/std) and the views' probability averaging live inside the graph, so a client
only has to decode, sample, resize and crop as model.json says.
"""

from __future__ import annotations

import torch
from torch import nn


class ProbabilityNet(nn.Module):
    """A recognizer's test path as one tensor function: [N, views..., C, ...] pixels -> [N, classes]."""

    def __init__(self, recognizer: nn.Module, mean: list[float], std: list[float], layout: str) -> None:
        super().__init__()
        self.recognizer = recognizer
        # One view axis after the batch, then the layout's own axes (C first in both layouts).
        shape = (1, 1, 3, 1, 1, 1) if layout == "NCTHW" else (1, 1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Probabilities averaged over each video's views (mmaction2's average_clips='prob')."""
        n = clips.shape[0]
        x = (clips - self.mean.to(clips.dtype)) / self.std.to(clips.dtype)
        feats, kwargs = self.recognizer.extract_feat(x, test_mode=True)
        scores = self.recognizer.cls_head(feats, **kwargs)
        scores = scores.reshape(n, -1, scores.shape[-1])
        return torch.softmax(scores.float(), dim=2).mean(dim=1).to(clips.dtype)
