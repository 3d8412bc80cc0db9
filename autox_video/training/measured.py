"""A trained run's own speed (config `measure`): its best weights exported and timed on this process's device.

What a search trial on Kubernetes reports, which runs `autox-video train` rather than the local search's
worker: the figures (`latency_ms`, `videos_per_s`, `gflops`, `model_params`) go to work_dir/trial.json, the
worker's result file, and the exported model to work_dir/export/, where the operator reads and promotes them.
The measurement itself is the local search's (`autox_video.search.measure.measure_checkpoint`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from autox_video.config import Config

log = logging.getLogger("autox_video")


def _join(work_dir: str, name: str) -> str:
    return f"{work_dir.rstrip('/')}/{name}"


def measure_run(cfg: Config, best: Path | None, *, best_top1: float | None, epochs: int) -> dict[str, Any]:
    """Time the run's best.pth per `cfg.measure`; write trial.json (and export/) into cfg.work_dir; the result.

    A model that cannot be exported or timed is not an error of the run: trial.json says why
    (`measure_error`) and holds no figures, so the trial is never on the front."""
    from autox_video.search.ledger import FIGURES
    from autox_video.search.measure import measure_checkpoint
    from autox_video.search.worker import RESULT
    from autox_video.storage import objects

    assert cfg.measure is not None and cfg.work_dir is not None
    result: dict[str, Any] = {"state": "succeeded", "best_top1": best_top1, "epochs": epochs}
    with tempfile.TemporaryDirectory(prefix="autox-measure-") as tmp:
        export = Path(tmp) / "export"
        try:
            if best is None or not best.is_file():
                raise FileNotFoundError("no best.pth (the run had no validation)")
            figures = measure_checkpoint(best, cfg.measure, export)
        except Exception as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0][:300]
            log.warning("not measured: %s", reason)
            result["measure_error"] = reason
        else:
            result.update(
                {k: figures.get(k) for k in FIGURES}, measured={k: v for k, v in figures.items() if k not in FIGURES}
            )
            # model.json last: it is what says an export is whole (a cut upload reads as no export)
            files = sorted((p for p in export.rglob("*") if p.is_file()), key=lambda p: (p.name == "model.json", p))
            for path in files:
                objects.upload(path, _join(cfg.work_dir, f"export/{path.relative_to(export).as_posix()}"))
    objects.write_text(_join(cfg.work_dir, RESULT), json.dumps(result, indent=1))
    return result
