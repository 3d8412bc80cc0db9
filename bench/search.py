#!/usr/bin/env python
"""Search at equal budget: the default config alone, random search, TPE, TPE + ASHA (CPU, demo videos).

Every strategy runs `autox_video.search.tune` on the same generated dataset (real encoded videos from
`autox_video.data.demo`) with the same space and seed, in a work dir of its own. The default is one
ordinary training run of the base config (it is trial 0 of every search, so the searches start from it);
random search and TPE get `--budget` trial-epochs and no pruning (budget / epoch trials); TPE + ASHA gets
the same budget and up to three times as many trials, since the pruned ones give their epochs back.

asha_epoch_fraction = epochs TPE + ASHA trained / epochs its trials would have trained unpruned.
Targets (issue 11): tpe_asha_top1 >= random_top1 >= default_top1 and asha_epoch_fraction <= 0.6.

`--objectives top1,latency` (or top1,throughput; issue 27) compares instead, at an equal number of trials
over a space of tiny families (Swin micro and mini, X3D) and input sizes: the default config (swin_mini at
64 px, the slowest) alone (measured: its latency sets the
limit, default latency x 0.5, or twice its videos/s), a top-1-only TPE search (its trials measured
afterwards, the same way), and the multi-objective TPE search with that limit. Headlines: pareto_points
(the multi-objective search's front), constrained_top1 (its promoted trial's top-1, 0 when that trial
misses the limit) against top1_only_constrained_top1 (the top-1-only search's best trial that meets it).
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
# The accuracy/latency comparison: three tiny families/sizes and three input sizes; the default (swin_mini
# at 64 px) the most accurate and the slowest of them, so a limit at half its latency has a price.
PARETO_SPACE: dict[str, Any] = {
    "backbone": ["swin_micro", "swin_mini", "x3d_tiny"],
    "img_size": [32, 48, 64],
    "lr": {"low": 1e-3, "high": 1e-2, "log": True},
}


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
        "rows": result.rows,
        "best_trial": result.best_trial,
        "top1": result.best_top1 or 0.0,
        "trials": len(result.rows),
        "pruned": sum(r["state"] == "pruned" for r in result.rows),
        "epochs": trained,
        "minutes": (time.time() - start) / 60,
    }


def measured(work: Path, rows: list[dict[str, Any]], latency: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a search whose trials were not measured, with their figures measured now (as a trial would)."""
    from autox_video.search import ledger
    from autox_video.search.measure import measure_checkpoint
    from autox_video.spec.search import LatencyConfig

    out = []
    for r in rows:
        best = work / ledger.trial_dir_name(r["number"]) / "best.pth"
        if r["state"] == "succeeded" and r.get("latency_ms") is None and best.is_file():
            with contextlib.redirect_stdout(io.StringIO()):
                r = {**r, **measure_checkpoint(best, LatencyConfig(**latency))}
        out.append(r)
    return out


CLASSES = ["move_left", "move_right", "grow"]


def classes(args: argparse.Namespace) -> list[str]:
    """The demo classes a run uses: the first --classes of the generator's six (three: CLASSES)."""
    from autox_video.data.demo import DEFAULT_CLASSES

    return CLASSES if args.classes == 3 else list(DEFAULT_CLASSES[: args.classes])


def demo_config(
    args: argparse.Namespace, name: str, per_class: int, val: int, size: int, epochs: int
) -> tuple[dict[str, Any], Path]:
    """The demo dataset (cached under args.cache_dir/name, -cN for other than 3 classes) and the base config."""
    from autox_video.data.demo import make_demo_dataset

    root = args.cache_dir / (name + (f"-c{args.classes}" if args.classes != 3 else ""))
    ds = make_demo_dataset(
        root / "data",
        num_per_class_train=per_class,
        num_per_class_val=val,
        num_per_class_test=1,
        num_frames=16,
        size=size,
        classes=classes(args),
        seed=args.seed,
    )
    cfg = dict(
        BASE,
        data_root=str(ds.data_root),
        ann_file_train=str(ds.train_list),
        ann_file_val=str(ds.val_list),
        class_names=str(ds.classes_file),
        epoch=epochs,
        seed=args.seed,
    )
    return cfg, root


def pareto_bench(args: argparse.Namespace, objectives: list[str]) -> int:
    """Default alone, top-1-only TPE, multi-objective TPE under the limit; the table and the headlines."""
    from autox_video.search import front
    from autox_video.spec.search import SearchConfig

    # 48 videos per class and 12 epochs: where swin_mini learns these classes (0.73 at 32 px to 0.94 at 64).
    epochs = args.epochs or (4 if args.quick else 12)
    per_class = args.per_class or (6 if args.quick else 48)
    trials = args.trials or (6 if args.quick else 16)
    val, size = args.val or (8 if args.quick else 16), 64
    base, root = demo_config(args, f"search-pareto-{per_class}-{val}-{size}", per_class, val, size, epochs)
    cfg = dict(base, backbone="swin_mini", img_size=64, lr=1e-3)  # lr: the tiny families' default
    speed = objectives[1]
    # More repeats than the default 10: the median of 30 steadies the figure on shared cores.
    latency: dict[str, Any] = {"batch_size": 1, "runtime": "onnx", "warmup": 5, "repeats": 30}
    common = dict(space=PARETO_SPACE, seed=args.seed, pruner="none", latency=latency)
    default = run_search("default", cfg, dict(common, trials=1, objectives=objectives), root)
    base = default["rows"][0]
    if speed == "latency":
        limit = {"max_ms": round(base["latency_ms"] * 0.5, 3)}
    else:
        limit = {"min_videos_per_s": round(base["videos_per_s"] * 2, 3)}
    limited = dict(latency, **limit)
    plain = run_search("top1_only", cfg, dict(common, trials=trials), root)
    plain_rows = measured(root / "top1_only", plain["rows"], latency)
    pareto = run_search("pareto", cfg, dict(common, trials=trials, objectives=objectives, latency=limited), root)
    search = SearchConfig(objectives=objectives, latency=limited)
    numbers = front.pareto_front(pareto["rows"], speed)
    promoted = next((r for r in pareto["rows"] if r["number"] == pareto["best_trial"]), None)
    ok = [r for r in plain_rows if r["state"] == "succeeded" and front.meets(r, search.latency)]
    key = front.speed_key(speed)
    heads = {
        "pareto_points": float(len(numbers)),
        "constrained_top1": promoted["best_top1"] if promoted and front.meets(promoted, search.latency) else 0.0,
        "top1_only_constrained_top1": max((r["best_top1"] for r in ok), default=0.0),
        # Where each search spent its budget: trials whose model meets the limit.
        "pareto_trials_within_limit": float(
            sum(r["state"] == "succeeded" and front.meets(r, search.latency) for r in pareto["rows"])
        ),
        "top1_only_trials_within_limit": float(len(ok)),
        "top1_only_best_top1": plain["top1"],
        "pareto_best_top1": max((r["best_top1"] or 0.0 for r in pareto["rows"]), default=0.0),
        f"default_{key}": base[key],
        "limit": next(iter(limit.values())),
    }
    body = []
    for name, rows in (("default", default["rows"]), ("top1_only", plain_rows), ("pareto", pareto["rows"])):
        for r in rows:
            over = r.get("overrides") or {}
            mark = "front" if name == "pareto" and r["number"] in numbers else ""
            if name == "pareto" and r["number"] == pareto["best_trial"]:
                mark += " promoted"
            body.append(
                [f"{name} {r['number']}", r["state"], over.get("backbone", cfg["backbone"]),
                 over.get("img_size", cfg["img_size"]), float(over.get("lr", cfg["lr"])), r.get("best_top1") or 0.0,
                 r.get(key) if r.get(key) is not None else float("nan"), mark.strip()]
            )  # fmt: skip
    words = front.describe_limit(search.latency)
    text = (
        f"{len(classes(args))} demo classes, {per_class} train / {val} val videos each ({size}x{size}), "
        f"{epochs} epochs per trial, {trials} trials per search (no pruning), seed {args.seed}; space: backbone "
        f"{'/'.join(PARETO_SPACE['backbone'])}, img_size {'/'.join(map(str, PARETO_SPACE['img_size']))}, lr; "
        f"default {cfg['backbone']} {cfg['img_size']} px; objectives {','.join(objectives)}; limit {words} "
        f"(the default's x "
        f"{'0.5' if speed == 'latency' else '2'}); {latency['runtime']} batch {latency['batch_size']}, median of "
        f"{latency['repeats']}; minutes: default {default['minutes']:.1f}, top1_only {plain['minutes']:.1f}, "
        f"pareto {pareto['minutes']:.1f}\n"
        + table(["trial", "state", "backbone", "img", "lr", "val top-1", key, "front"], body)
    )
    print(text)
    print(headlines(heads))
    if args.record:
        note = (
            "2 CPU cores shared with other people's jobs while it ran: latencies are noisy (each trial measured "
            "once, top-1-only trials measured after their search)"
            if args.shared
            else ""
        )
        title = f"Search, accuracy against {speed}" + (" (quick)" if args.quick else "")
        path = record("cpu", title, text + "\n" + headlines(heads), note=note)
        print(f"recorded in {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Generate the data, run the four strategies, print the table and the headlines."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny data, 2 epochs, budget of 4 trial-epochs")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (default 12; quick 2)")
    ap.add_argument("--budget", type=int, default=None, help="trial-epochs per search (default 4 x epochs)")
    ap.add_argument("--per-class", type=int, default=None, help="training videos per class (default 64; quick 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=3, choices=range(2, 7), help="demo classes (of the six)")
    ap.add_argument("--val", type=int, default=None, help="validation videos per class (--objectives; default 16)")
    ap.add_argument(
        "--min-epochs", type=int, default=None, help="ASHA's first rung (default 3: before it this model is at chance)"
    )
    ap.add_argument("--reduction-factor", type=int, default=2, help="ASHA keeps the top 1/factor at each rung")
    ap.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    ap.add_argument(
        "--only", nargs="+", choices=STRATEGIES, default=None, help="run these strategies only (e.g. tpe_asha)"
    )
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    ap.add_argument(
        "--objectives", default="top1", help="top1 (the strategies above), or top1,latency / top1,throughput"
    )
    ap.add_argument("--trials", type=int, default=None, help="trials per search with --objectives (quick 6, else 16)")
    ap.add_argument("--shared", action="store_true", help="note in RESULTS.md that the cores were shared")
    args = ap.parse_args(argv)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if objectives not in (["top1"], ["top1", "latency"], ["top1", "throughput"]):
        ap.error(f"--objectives {args.objectives}: top1, top1,latency or top1,throughput")
    if len(objectives) > 1:
        return pareto_bench(args, objectives)

    # 12 epochs: ASHA rungs at 3 and 6 (grace 3, factor 2) both come before the last epoch.
    epochs = args.epochs or (2 if args.quick else 12)
    budget = args.budget or (2 if args.quick else 4) * epochs
    per_class = args.per_class or (4 if args.quick else 64)
    size = 32 if args.quick else 56
    val = 2 if args.quick else 16
    base, root = demo_config(args, f"search-{per_class}-{val}-{size}", per_class, val, size, epochs)
    cfg = dict(base, **(dict(backbone="swin_micro", img_size=32) if args.quick else {}))
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
        f"{len(classes(args))} demo classes, {per_class} train / {val} val videos each ({size}x{size}), "
        f"{cfg['backbone']}, "
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
