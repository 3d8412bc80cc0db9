"""Runtime triton serves output/export/: the InferenceService waits until the training's export is there.

A plain job's trainer writes output/export/ before it exits (the `export` config key), so its
Succeeded phase comes after the export; a search's trials each export under trials/NNNN/export/,
and the best trial's export is copied to output/export/ (server-side, model.json last).
"""

from __future__ import annotations

from autox_operator import constants as C
from autox_operator import s3
from autox_operator.prerequisites import Waiting
from autox_video.spec.serving import export_files
from autox_video.spec.trainer_config import normalise_prefix, trial_prefix

EXPORT_MISSING = "ExportMissing"


def _missing(source: str, checkpoint: str) -> Waiting:
    return Waiting(
        EXPORT_MISSING,
        f"no export at {source} (the training writes it after its last epoch when spec.serving.runtime is triton): "
        f"run `autox-video export --checkpoint {checkpoint} --out {source}`",
    )


def ensure_export(access: s3.S3Access, output: str, best_trial: int | None, checkpoint: str) -> str:
    """output/export/ holding a whole export (a search's best trial's copied there); Waiting while it is not."""
    target = f"{normalise_prefix(output)}{C.EXPORT_DIR}"
    try:
        if best_trial is None:
            if not s3.exists(access, f"{target}{C.MODEL_JSON}"):
                raise _missing(target, checkpoint)
            return target
        source = f"{trial_prefix(output, best_trial)}{C.EXPORT_DIR}"
        made = s3.read_json(access, f"{source}{C.MODEL_JSON}")
        if made is None:
            raise _missing(source, f"{trial_prefix(output, best_trial)}{C.BEST_FILE}")
        there = s3.read_json(access, f"{target}{C.MODEL_JSON}")
        if there is None or there.get("checkpoint_sha256") != made.get("checkpoint_sha256"):
            for rel in export_files():  # model.json last: a copy cut short reads as no export
                s3.copy(access, f"{source}{rel}", f"{target}{rel}")
        return target
    except s3.S3Error as err:
        raise Waiting("ExportUnreadable", f"cannot read the export under {target}: {err}") from None
