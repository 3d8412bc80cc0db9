"""NonFiniteLossGuard: stop a run at the first NaN/inf training loss, with one line naming where.

A diverged run otherwise goes on for every remaining epoch with NaN weights (validation at chance,
checkpoints of garbage), and a search cannot tell it from a slow learner.
"""

from __future__ import annotations

import math
from typing import Any

from mmaction.registry import HOOKS
from mmengine.hooks import Hook

from autox_video.errors import TrainingDiverged


@HOOKS.register_module()
class NonFiniteLossGuard(Hook):
    """Raise TrainingDiverged after the first training iteration whose loss is not finite."""

    priority = "VERY_HIGH"  # before any hook that would log or save this iteration's state

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Check this iteration's loss (one host sync, which the progress hook pays anyway)."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else None
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if math.isfinite(value):
            return
        per_epoch = len(runner.train_dataloader) if hasattr(runner.train_dataloader, "__len__") else None
        of = f" of {per_epoch}" if per_epoch else ""
        lrs = runner.optim_wrapper.get_lr() if hasattr(runner.optim_wrapper, "get_lr") else {}
        lr = max((max(v) for v in lrs.values() if v), default=None) if isinstance(lrs, dict) else None
        at_lr = f" (learning rate {lr:.3g})" if lr is not None else ""
        raise TrainingDiverged(
            f"training loss is {value} at epoch {runner.epoch + 1}, iteration {batch_idx + 1}{of}{at_lr}: "
            "the run diverged: lower lr (or warm up longer)"
        )
