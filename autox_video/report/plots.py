"""PNG figures drawn with matplotlib's Agg canvas (no pyplot: no global state, no display needed)."""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np

from autox_video.storage import atomic

# Above this many classes the axes are labelled sparsely; the largest confusions are listed instead.
FULL_LABELS = 40


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas (size in inches)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write the figure as a PNG atomically (a reader never sees half an image)."""
    atomic.write_bytes(path, png_bytes(fig, dpi))


def tick_step(n: int, most: int = FULL_LABELS) -> int:
    """Label every k-th class so that at most `most` labels show on an axis."""
    return max(1, math.ceil(n / most))


def confusion_png(norm: np.ndarray, names: list[str]) -> bytes:
    """The row-normalised confusion matrix with class names (sparse labels for many classes)."""
    n = norm.shape[0]
    side = min(12.0, max(4.5, 2.5 + 0.22 * min(n, FULL_LABELS)))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    step = tick_step(n)
    ticks = list(range(0, n, step))
    short = [names[i] if len(names[i]) <= 24 else names[i][:23] + "…" for i in ticks]
    ax.set_xticks(ticks, short, rotation=90, fontsize=7 if n > 15 else 9)
    ax.set_yticks(ticks, short, fontsize=7 if n > 15 else 9)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    title = "confusion matrix (share of each true class)"
    ax.set_title(title if step == 1 else f"{title}; one class in {step} labelled", fontsize=10)
    if n <= 15:  # cells large enough to carry their value
        for i in range(n):
            for j in range(n):
                if norm[i, j] > 0:
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, shrink=0.8)
    return png_bytes(fig, dpi=100)
