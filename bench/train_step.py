#!/usr/bin/env python
"""Train-step benchmark (GPU; CPU with --small): clips/s, model FLOP utilisation and peak memory.

One optimizer step = data preprocessing (uint8 -> normalised float on the device), forward, loss,
backward, AdamW step: what mmengine's train_step does, without the data loader (see bench/e2e
figures for that). Variants, each on a freshly built model:

  seed-fp32     the seed's recipe: fp32, torch AdamW (default foreach implementation)
  bf16          bf16 autocast + fused AdamW (our recipe's base)
  bf16+cl3d     + channels-last-3d memory format (patch-embedding Conv3d and input)
  bf16+compile  + torch.compile of the backbone (GPU by default; --compile on to force)
  bf16+ckpt     + gradient checkpointing (SwinTransformer3D with_cp=True): memory, not speed

Every backbone family (autox_video/families.py) is built as the trainer builds it; cl3d and ckpt are
Swin's only. --quick: the tiny variant of each family on CPU. Per model it also prints parameters and
forward GFLOPs per clip (FlopCounterMode; mmengine.analysis.get_model_complexity_info runs on CPU but
misses scaled_dot_product_attention, i.e. the ViTs' attention, and the head); --complexity prints
only those, at each backbone's own recipe clip (clip_len x img_size), with no timing.

FLOPs: counted with torch.utils.flop_counter.FlopCounterMode over one forward+backward of the
model without checkpointing (model FLOPs: recomputation is not counted, optimizer FLOPs are not
counted; matmul/conv/attention FLOPs = 2 x multiply-accumulates). MFU = counted FLOPs x steps/s /
the measured dense matmul throughput of this device (bf16 8192^3 on GPU, fp32 512^3 on CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import (  # noqa: E402
    SMALL,
    clip_shape,
    model_batch,
    model_for,
    peak_matmul_tflops,
    pick_device_and_shape,
    sync,
)
from record import machine, publish, table  # noqa: E402

from autox_video import families  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One training-step configuration."""

    name: str
    bf16: bool = False
    fused: bool = False
    channels_last: bool = False
    compile: bool = False
    checkpointing: bool = False


VARIANTS = [
    Variant("seed-fp32"),
    Variant("bf16", bf16=True, fused=True),
    Variant("bf16+cl3d", bf16=True, fused=True, channels_last=True),
    Variant("bf16+compile", bf16=True, fused=True, compile=True),
    Variant("bf16+ckpt", bf16=True, fused=True, checkpointing=True),
]


# --quick: the tiny variant of every family (swin_micro standing for Swin).
QUICK_MODELS = ["swin_micro", *(n for n in families.NAMES if families.MODELS[n].tiny and not n.startswith("swin"))]


def optimizer(model: Any, fused: bool) -> Any:
    """AdamW as in the recipe (lr/wd only matter for numerics, not speed); fused when asked and supported."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if fused:
        try:
            return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, fused=True)
        except (RuntimeError, ValueError):  # a device without a fused kernel
            pass
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05)


def make_step(model: Any, opt: Any, device: str, v: Variant) -> Any:
    """The training step as a closure over model and optimizer."""
    import torch

    dev_type = "cuda" if device.startswith("cuda") else "cpu"

    def step(data: dict[str, Any]) -> float:
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=v.bf16):
            prepared = model.data_preprocessor(data, training=True)
            losses = model(**prepared, mode="loss")
            loss = sum(val for key, val in losses.items() if "loss" in key)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def swin_only(v: Variant) -> bool:
    """Variants that touch SwinTransformer3D internals (with_cp, the patch-embedding Conv3d layout)."""
    return v.channels_last or v.checkpointing


def count_flops(backbone: str, data: dict[str, Any], device: str, frames: int, img: int) -> float:
    """FLOPs of one forward+backward (FlopCounterMode), model without checkpointing."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = model_for(backbone, frames, img).to(device).train()
    counter = FlopCounterMode(display=False)
    with counter:
        prepared = model.data_preprocessor(data, training=True)
        losses = model(**prepared, mode="loss")
        sum(val for key, val in losses.items() if "loss" in key).backward()
    del model, prepared, losses
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return float(counter.get_total_flops())


def complexity(backbone: str, frames: int, img: int, device: str) -> tuple[int, float]:
    """(parameters, forward FLOPs of one clip) of the 400-class recognizer; FLOPs = 2 x multiply-adds."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = model_for(backbone, frames, img).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        prepared = model.data_preprocessor(model_batch(backbone, 1, frames, img, device), training=False)
        model(**prepared, mode="predict")
    del model
    return params, float(counter.get_total_flops())


def run_variant(
    backbone: str, v: Variant, data: dict[str, Any], device: str, steps: int, warmup: int, frames: int, img: int
) -> dict[str, float]:
    """Build, warm up and time one variant; clips/s, seconds/step and peak memory (GiB, GPU only)."""
    import torch

    torch.manual_seed(0)
    model = model_for(backbone, frames, img, with_cp=v.checkpointing).to(device).train()
    if v.channels_last:
        # Only the patch-embedding Conv3d has a layout choice (model.to(memory_format) would also
        # try the data preprocessor's 4-D mean/std buffers and fail).
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        # The preprocessed input reaches the backbone as NCTHW float: give it the same layout.
        model.backbone.register_forward_pre_hook(
            lambda _m, args: (args[0].contiguous(memory_format=torch.channels_last_3d), *args[1:])
        )
    if v.compile:
        model.backbone = torch.compile(model.backbone)
    opt = optimizer(model, v.fused)
    step = make_step(model, opt, device, v)
    for _ in range(warmup):
        step(data)
    sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(data)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    if loss != loss:  # NaN: the variant is broken, not fast
        raise RuntimeError(f"{v.name}: loss is NaN")
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    del model, opt, step
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return dict(clips_per_s=len(data["inputs"]) / seconds, step_s=seconds, peak_gib=mem)


def print_complexity(models: list[str], device: str, record_it: bool) -> int:
    """The --complexity table: parameters and forward GFLOPs per clip at each model's recipe clip."""
    rows, heads = [], {}
    for backbone in models:
        frames, img = clip_shape(backbone)
        params, flops = complexity(backbone, frames, img, device)
        rows.append([backbone, f"{frames}x{img}x{img}", params / 1e6, flops / 1e9])
        heads[f"{backbone}_params_m"] = params / 1e6
        heads[f"{backbone}_gflops_fwd_per_clip"] = flops / 1e9
    text = (
        "400-class recognizers, one clip (TSM: segments x 1 frame), forward only; FLOPs by "
        "torch.utils.flop_counter.FlopCounterMode = 2 x multiply-adds (mmaction2's tables count multiply-adds)\n"
        + table(["model", "clip", "params M", "GFLOPs fwd"], rows)
    )
    publish(text, heads, title="Model complexity", record_it=record_it, device=device)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, time every model x variant, print the table and headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument(
        "--small", action="store_true", help=f"CPU-sized clips {SMALL['frames']}x{SMALL['img']}x{SMALL['img']}"
    )
    ap.add_argument(
        "--quick", action="store_true", help="CI smoke: each family's tiny variant, 8x32x32, 1 step, no compile"
    )
    ap.add_argument("--models", default="swin_t,swin_b", help=f"comma-separated: {families.describe()}")
    ap.add_argument(
        "--complexity",
        action="store_true",
        help="only parameters and forward GFLOPs per clip, at each model's recipe clip (no timing)",
    )
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default 8 on GPU, 2 small)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20, quick 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; compile needs them)")
    ap.add_argument(
        "--compile", choices=["auto", "on", "off"], default="auto", help="torch.compile variant (auto: on GPU)"
    )
    ap.add_argument(
        "--variants", default=None, help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS)
    )
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)

    import torch

    device, small, shape = pick_device_and_shape(args.device, args.small, args.quick)
    models = QUICK_MODELS if args.quick else [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in families.MODELS]
    if unknown:
        ap.error(f"--models: unknown {', '.join(unknown)}; choose from {families.describe()}")
    if args.complexity:
        return print_complexity(models, device, args.record)
    n = args.batch or (1 if args.quick else 2 if small else 8)
    steps = args.steps or (1 if args.quick else 20 if device.startswith("cuda") else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or not device.startswith("cuda") else 5)
    compile_on = args.compile == "on" or (args.compile == "auto" and device.startswith("cuda") and not args.quick)
    wanted = set(args.variants.split(",")) if args.variants else None
    variants = [v for v in VARIANTS if (wanted is None or v.name in wanted) and (compile_on or not v.compile)]
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    peak_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    peak = peak_matmul_tflops(device, peak_dtype, seconds=0.3 if args.quick else 2.0)

    rows, heads = [], {}
    frames, img = shape["frames"], shape["img"]
    for backbone in models:
        data = model_batch(backbone, n, frames, img, device)
        # One clip: FLOPs scale with the batch, and an fp32 batch of 8 Swin-B clips may not fit.
        flops_per_clip = count_flops(backbone, model_batch(backbone, 1, frames, img, device), device, frames, img)
        params, fwd_flops = complexity(backbone, frames, img, device)
        heads[f"{backbone}_params_m"] = params / 1e6
        heads[f"{backbone}_gflops_fwd_per_clip"] = fwd_flops / 1e9
        results: dict[str, dict[str, float]] = {}
        is_swin = families.model(backbone).family.name == "swin"
        for v in variants:
            if swin_only(v) and not is_swin:
                continue
            try:
                results[v.name] = run_variant(backbone, v, data, device, steps, warmup, frames, img)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                rows.append([backbone, v.name, "OOM", "", "", ""])
                continue
            r = results[v.name]
            mfu = flops_per_clip * r["clips_per_s"] / (peak * 1e12)
            r["mfu"] = mfu
            rows.append([backbone, v.name, r["clips_per_s"], r["step_s"] * 1e3, 100 * mfu, r["peak_gib"]])
        seed = results.get("seed-fp32")
        fast = {k: r for k, r in results.items() if k != "seed-fp32" and k != "bf16+ckpt"}
        best_name = max(fast, key=lambda k: fast[k]["clips_per_s"]) if fast else None
        if seed:
            heads[f"{backbone}_seed_fp32_clips_per_s"] = seed["clips_per_s"]
        if best_name:
            best = fast[best_name]
            heads[f"{backbone}_bf16_clips_per_s"] = best["clips_per_s"]
            heads[f"{backbone}_bf16_mfu_pct"] = 100 * best["mfu"]
            if seed:
                heads[f"{backbone}_speedup_vs_seed"] = best["clips_per_s"] / seed["clips_per_s"]
        heads[f"{backbone}_gflops_per_clip"] = flops_per_clip / 1e9
        print(
            f"# {backbone}: {flops_per_clip / 1e9:.1f} GFLOP per clip (fwd+bwd), best bf16 variant: {best_name}",
            file=sys.stderr,
        )

    header = ["model", "variant", "clips/s", "ms/step", "MFU %", "peak GiB"]
    text = (
        f"device {device} ({machine(device)}); {n} clips of {shape['frames']}x{shape['img']}x{shape['img']} per step; "
        f"{steps} timed steps after {warmup} warm-up; FLOPs by torch.utils.flop_counter.FlopCounterMode; "
        f"MFU vs measured {'bf16' if peak_dtype == torch.bfloat16 else 'fp32'} matmul peak {peak:.2f} TFLOP/s\n"
        + table(header, rows)
    )
    publish(text, heads, title="Train step" + (" (small)" if small else ""), record_it=args.record, device=device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
