"""Vertex AI video-classification batch-prediction output (JSONL), written from results.json and read back."""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

from autox_video.storage import atomic

# results.json list -> Vertex AI prediction type.
TYPES = {
    "segments": "segment-classification",
    "shots": "shot-classification",
    "seconds": "one-sec-interval-classification",
}


def seconds_text(value: float) -> str:
    """Seconds as Vertex writes them: '1.5s'."""
    return f"{float(value):g}s"


def _instance(pred: dict[str, Any]) -> dict[str, Any]:
    """The input instance a prediction came from (rebuilt from the list line when it was not JSONL)."""
    if pred.get("instance"):
        return pred["instance"]  # type: ignore[no-any-return]
    inst = {"content": pred["video"], "mimeType": mimetypes.guess_type(pred["video"])[0] or "video/mp4"}
    inst["timeSegmentStart"] = seconds_text(pred.get("start", 0.0))
    inst["timeSegmentEnd"] = seconds_text(pred["end"]) if "end" in pred else "Infinity"
    return inst


def vertex_lines(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One {"instance", "prediction"} object per predicted list line; one prediction per kept label and time."""
    classes = results.get("classes") or []
    rows = []
    for pred in results["predictions"]:
        out = []
        for key, kind in TYPES.items():
            for item in pred.get(key, []):
                for label, conf in item["topk"]:
                    out.append(
                        {
                            "id": str(label),
                            "displayName": str(classes[label]) if label < len(classes) else str(label),
                            "type": kind,
                            "timeSegmentStart": seconds_text(item["start"]),
                            "timeSegmentEnd": seconds_text(item["end"]),
                            "confidence": conf,
                        }
                    )
        rows.append({"instance": _instance(pred), "prediction": out})
    return rows


def write_vertex_output(results: dict[str, Any], path: Path) -> None:
    """predictions.jsonl in Vertex AI's batch-prediction output format."""
    atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in vertex_lines(results)))


def read_vertex_output(path: Path) -> list[dict[str, Any]]:
    """Parse a predictions.jsonl (ours or Vertex AI's) into its {"instance", "prediction"} objects."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
