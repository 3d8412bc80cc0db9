"""`pretrained:` -> a local file and its provenance: auto (./checkpoints, cache, mirror, release), none, path, URL."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video import families, storage
from autox_video.errors import CheckpointError, StorageError
from autox_video.families import Weights
from autox_video.weights.download import Offline, check_hash, download, file_lock, hash_prefix_of, sha256_of

log = logging.getLogger("autox_video")

MIRROR_ENV = "AUTOX_WEIGHTS_MIRROR"
NONE_VALUES = ("none", "null", "")


@dataclass(frozen=True)
class Resolved:
    """The local weights file to load (None: random init) and what it is."""

    path: str | None
    provenance: dict[str, Any] | None = None


def weights_dir() -> Path:
    """Where downloaded weights are kept: AUTOX_CACHE_DIR/weights/."""
    return storage.cache_root() / "weights"


def mirror() -> str | None:
    """AUTOX_WEIGHTS_MIRROR (an s3:// or https:// prefix), if set."""
    return (os.environ.get(MIRROR_ENV) or "").strip().rstrip("/") or None


def registry_entry(file_name: str) -> Weights | None:
    """The registry's weights with this file name, if any."""
    return next((m.weights for m in families.MODELS.values() if m.weights and m.weights.file_name == file_name), None)


def provenance(source: str, sha256: str, name: str) -> dict[str, Any]:
    """{source, sha256, licence} of a weights file (licence from the registry when it is a known release)."""
    entry = registry_entry(name)
    return {
        "source": source,
        "sha256": sha256,
        "licence": entry.licence if entry else "unknown",
        "non_commercial": bool(entry and entry.non_commercial),
    }


def is_auto(value: str | None) -> bool:
    """Whether `pretrained:` asks for the backbone's official weights (auto, or not set)."""
    return value is None or value.strip().lower() == "auto"


def resolve(value: str | None, backbone: str, checkpoints_dir: Path = Path("checkpoints")) -> Resolved:
    """The local file `pretrained:` names for this backbone, fetched and checked; Resolved(None) = random init."""
    if is_auto(value):
        entry = families.model(backbone).weights
        return Resolved(None) if entry is None else official(backbone, entry, checkpoints_dir)
    assert value is not None
    if value.strip().lower() in NONE_VALUES:
        return Resolved(None)
    name = value.rsplit("/", 1)[-1]
    if value.startswith(("http://", "https://")):
        dest = weights_dir() / name
        digest = download(value, dest, sha256_prefix=hash_prefix_of(name))
        return Resolved(str(dest), provenance(value, digest, name))
    if storage.is_s3(value):
        local = storage.localize(value)
        return Resolved(str(local), provenance(value, check_hash(local, hash_prefix_of(name), value), name))
    if not Path(value).is_file():
        raise CheckpointError(f"pretrained: {value}: no such file (a path, s3://, https://, auto or none)")
    return Resolved(value, provenance(value, sha256_of(Path(value)), name))


def _from_mirror(prefix: str, entry: Weights, dest: Path) -> str | None:
    """Fetch the file from the mirror into `dest`; its sha256, or None when the mirror lacks it."""
    uri = f"{prefix}/{entry.file_name}"
    try:
        if storage.is_s3(prefix):
            with file_lock(dest.with_name(f".{dest.name}.lock")):
                part = dest.with_name(dest.name + ".s3part")
                storage.download(uri, part)
                digest = check_hash(part, entry.sha256_prefix, uri)
                os.replace(part, dest)
                return digest
        return download(uri, dest, sha256_prefix=entry.sha256_prefix)
    except (StorageError, CheckpointError) as err:
        if "sha256 mismatch" in str(err):
            raise
        log.warning("weights mirror: %s; trying %s", str(err).splitlines()[0], entry.url)
        return None


def fetch_official(backbone: str, entry: Weights) -> tuple[Path, str, str]:
    """(cached file, sha256, where it came from): the cache, else AUTOX_WEIGHTS_MIRROR, else the release URL."""
    dest = weights_dir() / entry.file_name
    if dest.is_file():
        try:
            return dest, check_hash(dest, entry.sha256_prefix, str(dest)), entry.url
        except CheckpointError as err:  # damaged in the cache: removed, fetched again
            log.warning("%s", err)
    prefix = mirror()
    if prefix is not None and (digest := _from_mirror(prefix, entry, dest)) is not None:
        return dest, digest, f"{prefix}/{entry.file_name}"
    try:
        return dest, download(entry.url, dest, sha256_prefix=entry.sha256_prefix), entry.url
    except Offline as err:
        where = (
            f"./checkpoints/ or under {MIRROR_ENV} ({prefix})" if prefix else f"./checkpoints/ or under {MIRROR_ENV}"
        )
        raise CheckpointError(
            f"{err}: the {backbone} weights cannot be downloaded; without internet put {entry.file_name} in "
            f"{where}, or set pretrained: none to train from scratch on purpose"
        ) from None


def official(backbone: str, entry: Weights, checkpoints_dir: Path) -> Resolved:
    """`pretrained: auto` for a full-size backbone: ./checkpoints/<file name>, the seed's first *.pth, else fetched."""
    local = checkpoints_dir / entry.file_name
    if local.is_file():
        digest = check_hash(local, entry.sha256_prefix, str(local), remove=False)
        return Resolved(str(local), _official_provenance(str(local), digest, entry))
    found = sorted(checkpoints_dir.glob("*.pth")) if checkpoints_dir.is_dir() else []
    legacy = [p for p in found if registry_entry(p.name) is None]  # another backbone's release never fits
    if legacy:  # the seed's convention: whatever *.pth sits in ./checkpoints/ (strictly checked on load)
        log.info("pretrained: auto: using %s (the first *.pth in %s)", legacy[0], checkpoints_dir)
        return Resolved(str(legacy[0]), provenance(str(legacy[0]), sha256_of(legacy[0]), legacy[0].name))
    path, digest, source = fetch_official(backbone, entry)
    return Resolved(str(path), _official_provenance(source, digest, entry))


def _official_provenance(source: str, digest: str, entry: Weights) -> dict[str, Any]:
    return {"source": source, "sha256": digest, "licence": entry.licence, "non_commercial": entry.non_commercial}
