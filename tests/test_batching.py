"""Prediction batch size tuning and the autocast dtype chosen for prediction."""

from __future__ import annotations

import pytest
import torch

from autox_video.config import build_config
from autox_video.inference.batching import pick_batch_size, tune_batch_size
from autox_video.training.recipe import amp_dtype


def _measured(rates: dict[int, float | None]):  # type: ignore[no-untyped-def]
    tried: list[int] = []

    def videos_per_s(size: int) -> float | None:
        tried.append(size)
        return rates[size]

    return videos_per_s, tried


def test_batch_grows_while_throughput_grows_by_five_percent() -> None:
    measure, tried = _measured({1: 10.0, 2: 18.0, 4: 30.0, 8: 31.0, 16: 60.0})
    assert pick_batch_size(measure, limit=64) == 4  # 8 gains 3%: not worth the memory; 16 never tried
    assert tried == [1, 2, 4, 8]


def test_batch_stops_below_the_size_that_runs_out_of_memory() -> None:
    measure, tried = _measured({1: 10.0, 2: 19.0, 4: None})
    assert pick_batch_size(measure, limit=64) == 2 and tried == [1, 2, 4]


def test_batch_never_exceeds_the_limit() -> None:
    measure, tried = _measured({1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0})
    assert pick_batch_size(measure, limit=6) == 4 and tried == [1, 2, 4]
    with pytest.raises(ValueError, match="limit"):
        pick_batch_size(measure, limit=0)


def test_tuning_runs_the_real_model() -> None:
    from autox_video.training.recipe import build_recognizer

    model = build_recognizer(build_config(dict(backbone="swin_micro", pretrained="none", img_size=32)), 3).eval()
    size = tune_batch_size(model, views=1, frames=4, img=32, device="cpu", amp=None, limit=2)
    assert size in (1, 2)


def test_prediction_precision_follows_the_config_on_gpu_and_is_fp32_on_cpu() -> None:
    assert amp_dtype(build_config(dict(precision="bf16")), cuda=False) is None
    assert amp_dtype(build_config(dict(precision="bf16")), cuda=True) is torch.bfloat16
    assert amp_dtype(build_config(dict(precision="fp16")), cuda=True) is torch.float16
    assert amp_dtype(build_config(dict(precision="fp32")), cuda=True) is None


def test_bf16_autocast_train_loss_and_prediction_run_with_float32_scores() -> None:
    """The GPU paths' mixed precision, run on the CPU: mmaction2's loss takes scores to numpy (no bf16)."""
    from autox_video.inference.batching import autocast, synthetic_batch
    from autox_video.training.recipe import build_recognizer

    model = build_recognizer(build_config(dict(backbone="swin_micro", pretrained="none", img_size=32)), 3)
    batch = synthetic_batch(2, 1, 4, 32, "cpu", num_classes=3)
    with autocast(torch.device("cpu"), torch.bfloat16):
        losses = model(**model.data_preprocessor(batch, training=True), mode="loss")
        assert torch.isfinite(losses["loss_cls"])
        model.eval()
        with torch.inference_mode():
            samples = model.test_step(synthetic_batch(2, 2, 4, 32, "cpu"))
    scores = torch.stack([s.pred_scores.item for s in samples])
    assert scores.dtype == torch.float32 and torch.allclose(scores.sum(1), torch.ones(2), atol=1e-3)
