"""The `export` config key: a finished training run exports its best checkpoint into <work_dir>/export/.

Runs on rank 0 once training returned (best.pth is final). Idempotent: an export whose model.json
names the same checkpoint sha256 is kept; anything else (none, a torn one, another checkpoint's) is
written again, so a run killed while exporting exports on resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from autox_video import storage
from autox_video.export.checkpoint import sha256
from autox_video.spec.serving import EXPORT_DIR, MODEL_JSON

log = logging.getLogger("autox_video")


def export_target(work: Path, output_uri: str | None) -> str:
    """Where the run's export goes: export/ under the S3 output, else under the work dir."""
    return storage.join(output_uri or work, EXPORT_DIR)


def exported_sha256(target: str) -> str | None:
    """checkpoint_sha256 of the export at `target` (None: no complete export there)."""
    uri = storage.join(target, MODEL_JSON)
    try:
        if not storage.exists(uri):
            return None
        data = json.loads(storage.read_text(uri))
    except ValueError:
        return None
    value = data.get("checkpoint_sha256") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def export_trained(work: Path, output_uri: str | None, formats: list[str]) -> str | None:
    """Export the run's best.pth (else its latest checkpoint) unless that export is there already; the target."""
    from autox_video.export.run import export_checkpoint
    from autox_video.training.checkpoints import best_or_latest

    if not formats:
        return None
    checkpoint = best_or_latest(work)
    target = export_target(work, output_uri)
    digest = sha256(checkpoint)
    if exported_sha256(target) == digest:
        log.info("export: %s already holds %s (sha256 %s); kept", target, checkpoint.name, digest[:12])
        return target
    for fmt in formats:
        export_checkpoint(str(checkpoint), target, fmt=fmt)
    return target
