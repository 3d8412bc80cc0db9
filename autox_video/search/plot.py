"""work_dir/search.png: each trial's validation top-1 by epoch; pruned trials dashed, the best one bold.

When trials are measured (a speed objective or a limit) a second panel draws every trial in the
accuracy/latency plane (or accuracy/throughput), the Pareto front joined, the limit (if any) dashed and the
promoted trial marked.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from autox_video.search import front, ledger
from autox_video.spec.search import LatencyConfig
from autox_video.storage import atomic

log = logging.getLogger("autox_video")

SEARCH_PNG = "search.png"
OFFSET = "offset points"
STYLE = {  # state -> (line style, alpha)
    "succeeded": ("-", 0.9),
    "running": ("-", 0.6),
    "pruned": ("--", 0.55),
    "failed": (":", 0.5),
}


def draw_search(
    work: Path,
    rows: list[dict[str, Any]],
    speed_objective: str | None = None,
    chosen: int | None = None,
    latency: LatencyConfig | None = None,
) -> Path:
    """Write work/search.png from trials.jsonl rows and each trial's metrics.jsonl (`chosen`: the promoted trial)."""
    from matplotlib.ticker import MaxNLocator

    from autox_video.report import plots

    key = front.speed_key(speed_objective)
    plane = any(r.get(key) is not None for r in rows)
    fig = plots.new_figure(13.0 if plane else 7.5, 4.2)
    ax = fig.add_subplot(1, 2, 1) if plane else fig.add_subplot()
    done = [r for r in rows if r["state"] == "succeeded" and r.get("best_top1") is not None]
    best = max(done, key=lambda r: (r["best_top1"], -r["number"]))["number"] if done else None
    best = chosen if chosen is not None else best
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
    if plane:
        draw_plane(fig.add_subplot(1, 2, 2), rows, speed_objective, best, latency)
    out = work / SEARCH_PNG
    plots.save_png(fig, out, dpi=90)
    return out


def draw_plane(
    ax: Any,
    rows: list[dict[str, Any]],
    speed_objective: str | None,
    chosen: int | None,
    latency: LatencyConfig | None = None,
) -> None:
    """Every measured trial at (speed, top-1): pruned ones as x, the front joined, the limit dashed, the promoted
    one starred."""
    key = front.speed_key(speed_objective)
    for state, marker in (("succeeded", "o"), ("pruned", "x")):
        pts = [r for r in rows if r["state"] == state and r.get(key) is not None and r.get("best_top1") is not None]
        if not pts:
            continue
        ax.scatter([r[key] for r in pts], [r["best_top1"] for r in pts], marker=marker, s=30, alpha=0.7, label=state)
        for r in pts:
            ax.annotate(str(r["number"]), (r[key], r["best_top1"]), fontsize=7, xytext=(3, 3), textcoords=OFFSET)
    by = {r["number"]: r for r in rows}
    pareto = sorted((by[n] for n in front.pareto_front(rows, speed_objective)), key=lambda r: r[key])
    if pareto:
        ax.plot([r[key] for r in pareto], [r["best_top1"] for r in pareto], "-", color="black", linewidth=1.2,
                label="Pareto front")  # fmt: skip
    limit = front.limit_on_axis(latency, key) if latency is not None else None
    if limit is not None:  # the side of it the promoted trial must be on
        ax.axvline(limit, linestyle="--", color="grey", linewidth=1.0, label=front.describe_limit(latency))
    if chosen is not None and by.get(chosen, {}).get(key) is not None:
        ax.plot([by[chosen][key]], [by[chosen]["best_top1"]], "*", color="red", markersize=14,
                label=f"promoted (trial {chosen})")  # fmt: skip
    xlabel = "videos/s (higher is faster)" if key == "videos_per_s" else "latency ms per batch (lower is faster)"
    ax.set(title="accuracy vs speed, measured per trial", xlabel=xlabel, ylabel="top-1", ylim=(-0.02, 1.02))
    ax.title.set_fontsize(10)
    ax.legend(fontsize=7, loc="best")


def try_draw_search(
    work: Path,
    rows: list[dict[str, Any]],
    speed_objective: str | None = None,
    chosen: int | None = None,
    latency: LatencyConfig | None = None,
) -> None:
    """draw_search, but a plot failure only warns: it must never stop a search."""
    try:
        draw_search(work, rows, speed_objective, chosen, latency)
    except Exception as err:  # noqa: BLE001
        log.warning("%s not drawn: %s", work / SEARCH_PNG, err)
