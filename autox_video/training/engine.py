"""Our pieces registered into mmengine/mmaction2: dataset, param groups, train loop, runner.

Importing this module registers them (the recipe names them by type).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch.nn as nn
from mmaction.datasets import BaseActionDataset
from mmaction.models.heads import I3DHead
from mmaction.registry import DATASETS, LOG_PROCESSORS, LOOPS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.runner import EpochBasedTrainLoop, LogProcessor, Runner

from autox_video import terminal
from autox_video.data import fast_decode  # noqa: F401  (registers FastDecordInit/FastDecordDecode)
from autox_video.errors import DataError
from autox_video.warning_filters import quiet_mmengine_logger

log = logging.getLogger("autox_video")


@DATASETS.register_module()
class AutoXVideoDataset(BaseActionDataset):
    """Videos from a checked jsonl list ({"filename": abs path, "label": int, "video": rel path} per line,
    plus "start"/"end" seconds for a line with a time range).

    Unlike mmaction2's VideoDataset, paths may contain spaces: the list was parsed and validated
    by autox_video.data.annotations, with unreadable videos already removed.
    """

    def load_data_list(self) -> list[dict[str, Any]]:
        """Read the jsonl list written by autox_video.data.samples."""
        with open(self.ann_file, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        return [
            dict(
                filename=r["filename"],
                label=r["label"] if r["label"] is not None else -1,
                # A labelled time range of a longer video: FastDecordInit keeps sampling inside it.
                **({"time_range": (r.get("start"), r.get("end"))} if "start" in r or "end" in r else {}),
            )
            for r in rows
        ]

    def prepare_data(self, idx: int) -> Any:
        """Decode one sample; a video that fails mid-run is skipped in training (mmengine refetches)."""
        try:
            return super().prepare_data(idx)
        except Exception as err:  # decoders raise anything from RuntimeError to DECORDError
            name = self.get_data_info(idx)["filename"]
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            if self.test_mode:
                raise DataError(f"{name}: cannot decode ({reason})") from None
            log.warning("skipping %s this time: cannot decode (%s)", name, reason)
            return None


@MODELS.register_module()
class Float32I3DHead(I3DHead):
    """I3DHead whose scores leave in float32: under bf16 autocast mmaction2's loss calls .numpy()
    on them for top-k accuracy, and numpy has no bfloat16. Same parameters, same checkpoint keys."""

    def forward(self, x: Any, **kwargs: Any) -> Any:
        """Class scores of the pooled features, in float32."""
        return super().forward(x, **kwargs).float()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SwinParamGroupsConstructor(DefaultOptimWrapperConstructor):
    """AdamW param groups: backbone at lr x backbone_lr_mult; no weight decay on norms, biases, tables.

    Four groups at most (not one per tensor as mmaction2's Swin constructor builds), which keeps
    fused/foreach optimizer kernels effective.
    """

    def add_params(self, params: list[dict[str, Any]], module: nn.Module, prefix: str = "", **kwargs: Any) -> None:
        """Fill `params` with the (backbone|head) x (decay|no-decay) groups."""
        mult = float(self.paramwise_cfg.get("backbone_lr_mult", 1.0))
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            no_decay = param.ndim <= 1 or "relative_position_bias_table" in name or "absolute_pos_embed" in name
            groups.setdefault((name.startswith("backbone."), no_decay), []).append(param)
        for (is_backbone, no_decay), tensors in sorted(groups.items()):
            params.append(
                dict(
                    params=tensors,
                    lr=self.base_lr * (mult if is_backbone else 1.0),
                    weight_decay=0.0 if no_decay else self.base_wd,
                )
            )


@LOOPS.register_module()
class ValidateThenSaveLoop(EpochBasedTrainLoop):
    """Epoch loop that validates *before* the epoch's after_train_epoch hooks.

    mmengine saves the epoch checkpoint in after_train_epoch and validates afterwards, so a kill
    during validation resumes past an epoch that was never validated (a gap in metrics.jsonl).
    Here the checkpoint of epoch N already holds N's validation result and best-model state.
    """

    def run(self) -> nn.Module:
        """Train all epochs; validate every `val_interval` epochs and after the last."""
        self.runner.call_hook("before_train")
        while self._epoch < self._max_epochs and not self.stop_training:
            self.runner.call_hook("before_train_epoch")
            self.runner.model.train()
            for idx, data_batch in enumerate(self.dataloader):
                self.run_iter(idx, data_batch)
            done = self._epoch + 1
            if self.runner.val_loop is not None and (done % self.val_interval == 0 or done == self._max_epochs):
                self.runner.val_loop.run()
            self.runner.call_hook("after_train_epoch")
            self._epoch += 1
        self.runner.call_hook("after_train")
        return self.runner.model


@LOG_PROCESSORS.register_module()
class EpochLogProcessor(LogProcessor):
    """Log lines name the epoch being validated: ValidateThenSaveLoop validates before mmengine's
    epoch counter moves on, so the stock processor would print "Epoch(val) [N-1]" after epoch N."""

    def _get_epoch(self, runner: Any, mode: str) -> int:
        epoch = super()._get_epoch(runner, mode)
        return epoch + 1 if mode == "val" and isinstance(runner._train_loop, ValidateThenSaveLoop) else epoch


class AutoXRunner(Runner):
    """mmengine's Runner whose console shows only warnings and errors unless --verbose.

    Our ProgressHook draws the bar or prints the plain progress lines instead; the log file that
    mmengine keeps in the work dir still gets every INFO line.
    """

    def build_logger(self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs: Any) -> Any:
        """mmengine's logger, quieted on the console before the Runner logs its environment and config."""
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        quiet_mmengine_logger(logger, verbose=terminal.verbose())
        return logger
