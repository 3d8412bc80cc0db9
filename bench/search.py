#!/usr/bin/env python
"""Search at equal budget: the default config alone, random search, TPE, TPE + ASHA (CPU, demo videos).

Every strategy runs `autox_video.search.tune` on the same generated dataset (real encoded videos from
`autox_video.data.demo`) with the same space and seed, in a work dir of its own. The default is one
ordinary training run of the base config (it is trial 0 of every search, so the searches start from it);
random search and TPE get `--budget` trial-epochs and no pruning (budget / epoch trials); TPE + ASHA gets
the same budget and up to three times as many trials, since the pruned ones give their epochs back.

asha_epoch_fraction = epochs TPE + ASHA trained / epochs its trials would have trained unpruned.
Targets (issue 11): tpe_asha_top1 >= random_top1 >= default_top1 and asha_epoch_fraction <= 0.6.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import headlines, record, table  # noqa: E402
from sources import default_cache_dir  # noqa: E402

# The base config: the demo's tiny model and clip at CPU size, with the library's defaults for the
# searched keys (what a user who sets nothing gets).
BASE: dict[str, Any] = dict(
    backbone="swin_mini",  # at 56 px it learns these classes in ~8 epochs; swin_micro at 32 px stays at chance
    pretrained="none",
    clip_len=8,
    frame_interval=2,
    img_size=56,
    videos_per_gpu=8,
    evaluation=1,
    backbone_lr_mult=1.0,
    flip=False,
    test_clips=1,
    num_workers=0,
    log_interval=50,
)
SPACE: dict[str, Any] = {
    "lr": {"low": 3e-4, "high": 3e-2, "log": True},
    "weight_decay": {"low": 1e-3, "high": 0.2, "log": True},
    "warmup_epochs": {"low": 0.0, "high": 3.0},
    "drop_path_rate": {"low": 0.0, "high": 0.3},
    "min_crop_area": {"low": 0.08, "high": 1.0},
}


STRATEGIES = ("default", "random", "tpe", "tpe_asha")


def run_search(name: str, cfg_dict: dict[str, Any], search: dict[str, Any], root: Path) -> dict[str, Any]:
    """One strategy in its own work dir (output kept in a log); its best top-1, trials and epochs."""
    from autox_video.config import build_config
    from autox_video.search.tune import tune

    work = root / name
    shutil.rmtree(work, ignore_errors=True)
    cfg = build_config(dict(cfg_dict, work_dir=str(work), search=search))
    start = time.time()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = tune(cfg)
    (root / f"{name}.log").write_text(out.getvalue())
    trained = sum(int(r["epochs"]) for r in result.rows)
    return {
        "name": name,
        "top1": result.best_top1 or 0.0,
        "trials": len(result.rows),
        "pruned": sum(r["state"] == "pruned" for r in result.rows),
        "epochs": trained,
        "minutes": (time.time() - start) / 60,
    }


def main(argv: list[str] | None = None) -> int:
    """Generate the data, run the four strategies, print the table and the headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny data, 2 epochs, budget of 4 trial-epochs")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 12; quick 2)")
    ap.add_argument("--budget", type=int, default=None, help="trial-epochs per search (default 4 x epochs)")
    ap.add_argument("--per-class", type=int, default=None, help="training videos per class (default 64; quick 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--min-epochs", type=int, default=None, help="ASHA's first rung (default 3: before it this model is at chance)"
    )
    ap.add_argument("--reduction-factor", type=int, default=2, help="ASHA keeps the top 1/factor at each rung")
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument(
        "--only", nargs="+", choices=STRATEGIES, default=None, help="run these strategies only (e.g. tpe_asha)"
    )
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)
    from autox_video.data.demo import make_demo_dataset

    # 12 epochs: ASHA rungs at 3 and 6 (grace 3, factor 2) both come before the last epoch.
    epochs = args.epochs or (2 if args.quick else 12)
    budget = args.budget or (2 if args.quick else 4) * epochs
    per_class = args.per_class or (4 if args.quick else 64)
    size = 32 if args.quick else 56
    val = 2 if args.quick else 16
    classes = ["move_left", "move_right", "grow"]
    root = args.cache_dir / f"search-{per_class}-{val}-{size}"
    ds = make_demo_dataset(
        root / "data",
        num_per_class_train=per_class,
        num_per_class_val=val,
        num_per_class_test=1,
        num_frames=16,
        size=size,
        classes=classes,
        seed=args.seed,
    )
    cfg = dict(
        BASE,
        **(dict(backbone="swin_micro", img_size=32) if args.quick else {}),
        data_root=str(ds.data_root),
        ann_file_train=str(ds.train_list),
        ann_file_val=str(ds.val_list),
        class_names=str(ds.classes_file),
        epoch=epochs,
        seed=args.seed,
    )
    n = budget // epochs
    # A grace period before the first rung (Ray Tune's grace_period): a model trained from scratch is at
    # chance for its first epochs, and ranking trials there prunes on noise.
    min_epochs = args.min_epochs or (1 if args.quick else 3)
    asha_cfg = dict(min_epochs=min_epochs, reduction_factor=args.reduction_factor)
    common = dict(space=SPACE, seed=args.seed, budget={"trial_epochs": budget})
    searches = {
        "default": dict(common, trials=1, pruner="none"),
        "random": dict(common, trials=n, sampler="random", pruner="none"),
        "tpe": dict(common, trials=n, sampler="tpe", pruner="none"),
        "tpe_asha": dict(common, trials=3 * n, sampler="tpe", pruner="asha", **asha_cfg),
    }
    runs = [run_search(name, cfg, searches[name], root) for name in args.only or STRATEGIES]
    heads = {f"{r['name']}_top1": r["top1"] for r in runs}
    asha = next((r for r in runs if r["name"] == "tpe_asha"), None)
    if asha is not None:
        heads["asha_epoch_fraction"] = asha["epochs"] / (asha["trials"] * epochs)
    text = (
        f"{len(classes)} demo classes, {per_class} train / {val} val videos each ({size}x{size}), {cfg['backbone']}, "
        f"{epochs} epochs per trial, budget {budget} trial-epochs, seed {args.seed}; space: {', '.join(SPACE)}; "
        f"ASHA first rung {min_epochs} epochs, reduction factor {args.reduction_factor}\n"
        + table(
            ["strategy", "trials", "pruned", "epochs", "best val top-1", "minutes"],
            [[r["name"], r["trials"], r["pruned"], r["epochs"], r["top1"], r["minutes"]] for r in runs],
        )
    )
    print(text)
    print(headlines(heads))
    if args.record:
        path = record(
            "cpu", "Search at equal budget" + (" (quick)" if args.quick else ""), text + "\n" + headlines(heads)
        )
        print(f"recorded in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
