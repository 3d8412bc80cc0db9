"""work_dir/curves.png: training loss and learning rate per iteration, validation top-1/top-5 per epoch.

CurvesHook records the loss and learning rate of every iteration in the message hub, which rides in
each checkpoint, so a resumed run draws its whole history. It draws after the epoch checkpoint and
before ProgressHook publishes the epoch's files, so curves.png goes to S3 with them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator
from mmaction.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from autox_video.report import plots
from autox_video.storage import atomic

log = logging.getLogger("autox_video")

CURVES = "curves.png"
HISTORY_KEY = "autox_curves"
# Points kept per series: beyond it neighbouring points are averaged, so a checkpoint stays small.
MAX_POINTS = 2000


def new_history() -> dict[str, Any]:
    """An empty loss/lr history: each point is the mean over `stride` iterations."""
    return {"stride": 1, "iter": [], "loss": [], "lr": []}


def compact(history: dict[str, Any]) -> None:
    """Halve the resolution: average neighbouring points (in place)."""
    n = len(history["iter"]) // 2 * 2
    loss = np.asarray(history["loss"][:n], dtype=float).reshape(-1, 2).mean(axis=1)
    history["loss"] = [float(x) for x in loss] + history["loss"][n:]
    history["iter"] = history["iter"][1:n:2] + history["iter"][n:]  # the later iteration of each pair
    history["lr"] = history["lr"][1:n:2] + history["lr"][n:]
    history["stride"] *= 2


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing): no lag towards 0 at the start."""
    out = np.empty_like(values, dtype=float)
    acc = 0.0
    for i, v in enumerate(values):
        acc = weight * acc + (1 - weight) * float(v)
        out[i] = acc / (1 - weight ** (i + 1))
    return out


def draw_curves(path: str | os.PathLike[str], history: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Write curves.png: loss (raw faint, smoothed), validation accuracy with the best epoch marked, lr."""
    fig = plots.new_figure(12.0, 3.2)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    it = np.asarray(history.get("iter", []), dtype=float)
    loss = np.asarray(history.get("loss", []), dtype=float)
    if len(it):
        ax_loss.plot(it, loss, color="#4c78a8", alpha=0.3, linewidth=0.8, label="loss")
        ax_loss.plot(it, smooth(loss) if len(loss) > 10 else loss, color="#4c78a8", label="smoothed")
        ax_loss.legend(fontsize=8)
    ax_loss.set(title="training loss", xlabel="iteration")
    rows = sorted((r for r in rows if r.get("top1") is not None), key=lambda r: r["epoch"])
    if rows:
        epochs = [r["epoch"] for r in rows]
        ax_acc.plot(epochs, [r["top1"] for r in rows], "o-", color="#e45756", label="top-1")
        if any(r.get("top5") is not None for r in rows):
            top5 = [r.get("top5") if r.get("top5") is not None else np.nan for r in rows]
            ax_acc.plot(epochs, top5, "s--", color="#72b7b2", label="top-5")
        best = max(rows, key=lambda r: (r["top1"], -r["epoch"]))  # the first of equal ones, as best.pth
        ax_acc.axvline(best["epoch"], color="#999", linestyle=":", linewidth=1)
        ax_acc.plot([best["epoch"]], [best["top1"]], "*", color="#f58518", markersize=14,
                    label=f"best: epoch {best['epoch']}, {best['top1']:.3f}")  # fmt: skip
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.legend(fontsize=8, loc="lower right")
    ax_acc.set(title="validation accuracy", xlabel="epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(it):
        ax_lr.plot(it, history["lr"], color="#54a24b")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.set(title="learning rate", xlabel="iteration")
    plots.save_png(fig, path, dpi=80)


@HOOKS.register_module()
class CurvesHook(Hook):
    """Records loss and lr per iteration; draws curves.png after each validated epoch (rank 0)."""

    # After CheckpointHook (VERY_LOW, registered earlier), before ProgressHook (LOWEST) publishes.
    priority = "VERY_LOW"

    def __init__(self) -> None:
        self.history = new_history()
        self._sum, self._n = 0.0, 0
        self._failed = False

    def before_train(self, runner: Any) -> None:
        """Continue the history a resumed checkpoint carries."""
        saved = runner.message_hub.get_info(HISTORY_KEY)
        self.history = saved if saved else new_history()
        runner.message_hub.update_info(HISTORY_KEY, self.history)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Add this iteration's loss (averaged over `stride` iterations) and learning rate."""
        if not is_main_process() or not outputs or "loss" not in outputs:
            return
        loss = outputs["loss"]
        self._sum += float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        self._n += 1
        h = self.history
        if self._n < h["stride"]:
            return
        lrs = runner.optim_wrapper.get_lr().get("lr") or [0.0]
        h["iter"].append(runner.iter + 1)
        h["loss"].append(self._sum / self._n)
        h["lr"].append(float(max(lrs)))  # the head's rate: the backbone's is a fixed multiple of it
        self._sum, self._n = 0.0, 0
        if len(h["iter"]) > MAX_POINTS:
            compact(h)

    def after_train_epoch(self, runner: Any) -> None:
        """Draw after an epoch that was validated (and after the last one)."""
        if not is_main_process():
            return
        epoch = runner.epoch + 1
        from autox_video.training.hooks import PENDING_KEY

        pending = runner.message_hub.get_info(PENDING_KEY) or {}
        if pending.get("epoch") != epoch and epoch != runner.max_epochs:
            return
        work = Path(runner.work_dir)
        rows = [r for r in atomic.read_jsonl(work / "metrics.jsonl") if r.get("epoch") != epoch]
        if pending.get("epoch") == epoch and pending.get("metrics"):
            rows.append(pending["metrics"])  # ProgressHook appends it to metrics.jsonl right after us
        try:
            draw_curves(work / CURVES, self.history, rows)
        except Exception as err:  # a plot must never stop a training run
            if not self._failed:
                log.warning("%s not drawn: %s", work / CURVES, err)
            self._failed = True
