"""What a training run shows while it runs: a bar per epoch on a terminal, else plain lines.

Bar (stderr is a terminal): `epoch 2/10  45%|####  | 9/20 [00:04<00:05, 2.1it/s, loss=1.03, val_top1=0.625]`.
Plain (pods, CI, pipes): one line every `log_interval` iterations and at an epoch's last one, and one
per validation, on stdout:
    epoch 2/10 iter 10/20 loss 1.0312 eta 0:01:40
    epoch 2/10 validation top-1 0.6250 top-5 1.0000 (best 0.6250, epoch 2)
ProgressHook calls it on rank 0 only.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from autox_video import terminal


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=max(0, round(seconds))))


class TrainDisplay:
    """Shows one run's progress: epoch x/N, iterations, ETA, loss and the last validation top-1."""

    def __init__(self, total_epochs: int, log_interval: int, *, bars: bool | None = None) -> None:
        self.total_epochs = total_epochs
        self.log_interval = max(1, log_interval)
        self.bars = terminal.draw_bars() if bars is None else bars
        self.last_top1: float | None = None
        self._bar: Any = None
        self._epoch = 0
        self._iters: int | None = None
        self._started: float | None = None  # first iteration of this process: the ETA's clock
        self._done = 0  # iterations since then
        self._loss: float | None = None

    def _label(self) -> str:
        return f"epoch {self._epoch}/{self.total_epochs}"

    def resumed(self, epochs_done: int) -> None:
        """The run resumed from the checkpoint of epoch `epochs_done` (one line, bars or not)."""
        terminal.say(f"resumed epoch {epochs_done} of {self.total_epochs}: training from epoch {epochs_done + 1}")

    def start_epoch(self, epoch: int, iters: int | None) -> None:
        """Epoch `epoch` (1-based) of `iters` iterations (None when unknown) begins."""
        self.close()
        self._epoch, self._iters = epoch, iters
        if self.bars:
            self._bar = terminal.bar(iters, self._label(), "it")
            self._bar.set_postfix(self._postfix())  # the last epoch's val top-1 from the start

    def _postfix(self) -> dict[str, str]:
        out = {"loss": f"{self._loss:.4f}"} if self._loss is not None else {}
        if self.last_top1 is not None:
            out["val_top1"] = f"{self.last_top1:.4f}"
        return out

    def iteration(self, done: int, loss: float | None) -> None:
        """`done` iterations of the epoch are finished; `loss` is the epoch's mean so far."""
        now = time.time()
        if self._started is None:
            self._started = now
        else:
            self._done += 1
        self._loss = loss
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(), refresh=False)
            self._bar.update(1)
            return
        if done % self.log_interval and done != self._iters:
            return
        parts = [self._label(), f"iter {done}/{self._iters if self._iters is not None else '?'}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        eta = self._eta(done)
        if eta is not None:
            parts.append(f"eta {_clock(eta)}")
        terminal.say(" ".join(parts))

    def _eta(self, done: int) -> float | None:
        """Seconds left in the run at this process's mean time per iteration (validation time included)."""
        if self._iters is None or self._started is None or self._done == 0:
            return None
        per_iter = (time.time() - self._started) / self._done
        left = (self._iters - done) + (self.total_epochs - self._epoch) * self._iters
        return per_iter * left

    def validating(self) -> None:
        """Validation of the current epoch begins (a bar says so; plain output waits for the result)."""
        if self._bar is not None:
            self._bar.set_description(f"{self._label()} validating")

    def validated(self, top1: float, top5: float | None, best_top1: float | None, best_epoch: int | None) -> None:
        """The current epoch's validation result."""
        self.last_top1 = top1
        if self._bar is not None:
            self._bar.set_description(self._label(), refresh=False)
            self._bar.set_postfix(self._postfix())
            return
        line = f"{self._label()} validation top-1 {top1:.4f}"
        if top5 is not None:
            line += f" top-5 {top5:.4f}"
        if best_top1 is not None:
            line += f" (best {best_top1:.4f}, epoch {best_epoch})"
        terminal.say(line)

    def close(self) -> None:
        """Finish the current epoch's bar (it stays on screen)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
