"""results.json (labelled) -> the report's numbers (report.json) -> report.html beside it."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autox_video.errors import ConfigError
from autox_video.report import metrics, timeline_metrics
from autox_video.storage import atomic

# How many rows the lists of the report keep (report.json keeps the same).
TOP_CONFUSIONS = 20
CONFUSED_PAIRS = 10
MISCLASSIFIED = 50
LEAST_CONFIDENT = 20


@dataclass
class ReportFiles:
    """Where write_report put its two files."""

    html: Path
    json: Path


def _labelled(results: Any, source: str) -> list[dict[str, Any]]:
    if isinstance(results, list):
        raise ConfigError(
            f"{source}: seed-format results (probabilities only) have no labels: run `autox-video test` "
            "with the default --format to get a report"
        )
    if not isinstance(results, dict) or not isinstance(results.get("predictions"), list):
        raise ConfigError(f"{source}: not an autox-video results.json (no 'predictions' list)")
    rows = [p for p in results["predictions"] if p.get("true_label") is not None]
    if not rows:
        raise ConfigError(
            f"{source}: no prediction has a true label: a report needs a labelled test list (ann_file_test "
            "with 'path label' lines)"
        )
    return rows


def _names(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    classes = results.get("classes") or []
    n = max(len(classes), len(rows[0].get("probs") or []), 1 + max(int(r["true_label"]) for r in rows))
    return [str(classes[i]) if i < len(classes) else str(i) for i in range(n)]


def _probs(rows: list[dict[str, Any]], n: int) -> np.ndarray:
    """Class probabilities per video; from its top-k list where results carry no full vector."""
    out = np.zeros((len(rows), n))
    for i, r in enumerate(rows):
        if r.get("probs"):
            out[i, : len(r["probs"])] = r["probs"]
        else:
            for label, score in r.get("topk") or [[r["label"], r.get("score", 1.0)]]:
                out[i, int(label)] = score
    return out


def _video(r: dict[str, Any], names: list[str]) -> dict[str, Any]:
    true, pred = int(r["true_label"]), int(r["label"])
    return {
        "video": r.get("video"),
        "true": true,
        "true_name": names[true],
        "predicted": pred,
        "predicted_name": names[pred],
        "score": float(r.get("score", 0.0)),
        "topk": [[int(c), float(s)] for c, s in (r.get("topk") or [])],
    }


def build_report(results: Any, source: str = "results.json") -> dict[str, Any]:
    """The report's numbers (what report.json holds) from a results.json dict with true labels."""
    rows = _labelled(results, source)
    names = _names(results, rows)
    n = len(names)
    y_true = np.array([int(r["true_label"]) for r in rows])
    y_pred = np.array([int(r["label"]) for r in rows])
    probs = _probs(rows, n)
    cm = metrics.confusion_matrix(y_true, y_pred, n)
    stats = metrics.class_stats(cm)
    videos = [_video(r, names) for r in rows]
    wrong = sorted((v for v in videos if v["true"] != v["predicted"]), key=lambda v: -v["score"])
    unsure = sorted(videos, key=lambda v: v["score"])
    k5 = min(5, n)

    def named(d: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {**d, **{f"{k}_name": names[d[k]] for k in keys}}

    total = len(rows)
    timeline = timeline_metrics.timeline_metrics(rows, n)
    return {
        "source": {
            "results": source,
            "model": results.get("model"),
            "checkpoint": results.get("checkpoint"),
            "checkpoint_source": results.get("checkpoint_source"),
            "checkpoint_epoch": results.get("checkpoint_epoch"),
            "config": results.get("config"),
            "pretrained": results.get("pretrained"),
        },
        "summary": {
            "videos": total,
            "unlabelled": len(results["predictions"]) - total,
            "skipped": len(results.get("skipped") or []),
            "classes": n,
            "top1": float((y_true == y_pred).mean()),
            f"top{k5}" if k5 != 5 else "top5": metrics.topk_accuracy(y_true, probs, k5),
            "mean_class_accuracy": metrics.mean_class_accuracy(cm),
        },
        "classes": names,
        "per_class": [
            {
                "class": i,
                "name": names[i],
                "precision": stats.precision[i],
                "recall": stats.recall[i],
                "f1": stats.f1[i],
                "support": stats.support[i],
                "predicted": stats.predicted[i],
            }
            for i in range(n)
        ],
        "confusion_matrix": cm.tolist(),
        "top_confusions": [named(c, "true", "predicted") for c in metrics.top_confusions(cm, TOP_CONFUSIONS)],
        "confused_pairs": [named(c, "a", "b") for c in metrics.confused_pairs(cm, CONFUSED_PAIRS)],
        "misclassified": {"count": len(wrong), "most_confident": wrong[:MISCLASSIFIED]},
        "least_confident": unsure[:LEAST_CONFIDENT],
        # A labelled timeline (ranged `path start end label` lines, tested with seconds): scored per second.
        **({"per_second_accuracy": timeline["per_second_accuracy"], "timeline": timeline} if timeline else {}),
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(results: Any, out_dir: str | os.PathLike[str], *, source: str = "results.json") -> ReportFiles:
    """Write report.json and a self-contained report.html (inline PNG, no network) into `out_dir`."""
    from autox_video.report import page, plots

    data = build_report(results, source)
    cm = np.array(data["confusion_matrix"])
    image = base64.b64encode(plots.confusion_png(metrics.normalise_rows(cm), data["classes"])).decode()
    out = Path(out_dir)
    files = ReportFiles(out / "report.html", out / "report.json")
    atomic.write_text(files.json, json.dumps(data, indent=1) + "\n")
    atomic.write_text(files.html, page.render(data, confusion_png_b64=image))
    return files


def read_results(path: str | os.PathLike[str]) -> Any:
    """A results.json file's JSON (one-line errors for a missing or broken file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such results file (run `autox-video test` first)")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{p}:{err.lineno}: not valid JSON ({err.msg})") from None


def publish_report(files: ReportFiles, base_uri: str) -> str:
    """Upload report.json, then report.html, under an s3:// prefix; returns the page's URI."""
    from autox_video import storage

    base = base_uri.rstrip("/")
    for f in (files.json, files.html):  # the page last: once it is there, so are its numbers
        storage.upload(f, f"{base}/{f.name}")
    return f"{base}/{files.html.name}"


def report_results(results: str, out: str | None = None) -> str:
    """The report of a results.json (path or s3:// URI) beside it (or in `out`); returns report.html's place."""
    from autox_video import storage

    if not storage.is_s3(results):
        files = write_report(read_results(results), out or Path(results).parent, source=results)
        return str(files.html)
    local = storage.download(results, storage.cache_root() / "results" / results.removeprefix("s3://"))
    beside = results.rsplit("/", 1)[0]
    if out is not None and not storage.is_s3(out):
        return str(write_report(read_results(local), out, source=results).html)
    files = write_report(read_results(local), local.parent, source=results)
    return publish_report(files, out or beside)
