"""work_dir/search.png: each trial's validation top-1 by epoch; pruned trials dashed, the best one bold."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autox_video.search import ledger
from autox_video.storage import atomic

log = logging.getLogger("autox_video")

SEARCH_PNG = "search.png"
STYLE = {  # state -> (line style, alpha)
    "succeeded": ("-", 0.9),
    "running": ("-", 0.6),
    "pruned": ("--", 0.55),
    "failed": (":", 0.5),
}


def draw_search(work: Path, rows: list[dict[str, Any]]) -> Path:
    """Write work/search.png from trials.jsonl rows and each trial's metrics.jsonl."""
    from matplotlib.ticker import MaxNLocator

    from autox_video.report import plots

    fig = plots.new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    done = [r for r in rows if r["state"] == "succeeded" and r.get("best_top1") is not None]
    best = max(done, key=lambda r: (r["best_top1"], -r["number"]))["number"] if done else None
    drawn = 0
    for r in sorted(rows, key=lambda r: r["number"]):
        curve = [
            m for m in atomic.read_jsonl(work / ledger.trial_dir_name(r["number"]) / "metrics.jsonl") if "top1" in m
        ]
        if not curve:
            continue
        style, alpha = STYLE.get(r["state"], ("-", 0.6))
        is_best = r["number"] == best
        label = f"trial {r['number']} ({r['state']}{', best' if is_best else ''})"
        (line,) = ax.plot([m["epoch"] for m in curve], [m["top1"] for m in curve], style, marker="o",
                          markersize=3, alpha=1.0 if is_best else alpha, linewidth=2.5 if is_best else 1.2,
                          label=label)  # fmt: skip
        if r["state"] == "pruned":  # where the pruner stopped it
            ax.plot([curve[-1]["epoch"]], [curve[-1]["top1"]], "x", color=line.get_color(), markersize=9)
        drawn += 1
    ax.set(title="search: validation top-1 per trial (pruned: dashed, x where stopped)", xlabel="epoch",
           ylabel="top-1", ylim=(-0.02, 1.02))  # fmt: skip
    ax.title.set_fontsize(10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if drawn:
        ax.legend(fontsize=7, ncol=2 if drawn > 8 else 1, loc="best")
    out = work / SEARCH_PNG
    plots.save_png(fig, out, dpi=90)
    return out


def try_draw_search(work: Path, rows: list[dict[str, Any]]) -> None:
    """draw_search, but a plot failure only warns: it must never stop a search."""
    try:
        draw_search(work, rows)
    except Exception as err:  # noqa: BLE001
        log.warning("%s not drawn: %s", work / SEARCH_PNG, err)
