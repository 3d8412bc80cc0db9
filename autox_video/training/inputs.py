"""Where a run's inputs and outputs live on this machine: local paths as given, s3:// mirrored locally.

Downloads happen on local rank 0 of each node (each node has its own disk); the other ranks wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video import storage
from autox_video.config import Config
from autox_video.config_keys import LOCATION_KEYS
from autox_video.data.annotations import VIDEO_EXTENSIONS, read_annotations
from autox_video.errors import AnnotationError, ConfigError
from autox_video.storage.locations import check_file_target, check_folder
from autox_video.training import distributed


@dataclass
class TrainingInputs:
    """Local paths of everything training reads, the local work dir, and the uploader (S3 output)."""

    data_root: Path
    ann_train: str | None
    ann_val: str | None
    class_names: str | None
    pretrained: str | None
    work_dir: Path
    pretrained_info: dict[str, Any] | None = None  # provenance: {source, sha256, licence}
    output_uri: str | None = None
    publisher: Callable[[Path, int, bool], None] | None = None


@dataclass
class PredictionInputs:
    """Local paths for a prediction run and where results.json goes."""

    weights: Path | None
    data_root: Path
    ann_test: str | None
    scratch: Path
    results_local: Path
    results_uri: str
    publish_results: Callable[[Path], None] | None = None


def _localize(value: str | None) -> str | None:
    return None if value is None else str(storage.localize(value))


def _fetch_listed_videos(data_root: str, lists: list[str]) -> Path:
    """Download the videos the (local copies of the) lists name, into the cache; return the local root."""
    local_root = storage.cache_path(data_root)
    paths: list[str] = []
    for ann in lists:
        paths += [
            s.path
            for s in read_annotations(ann, local_root, require_labels=False, check_exists=False, root_uri=data_root)
        ]
    storage.download_many(data_root, sorted(set(paths)), local_root)
    return local_root


def _uses_s3(cfg: Config) -> bool:
    return any(storage.is_s3(getattr(cfg, key) or "") for key in LOCATION_KEYS)


def local_work_dir(cfg: Config) -> Path:
    """The local folder training writes: work_dir itself, or the local mirror of an s3:// work_dir."""
    from autox_video.training.remote import mirror_dir

    return mirror_dir(cfg.work_dir) if storage.is_s3(cfg.work_dir) else Path(cfg.work_dir)


def check_training_locations(cfg: Config) -> Path:
    """Check the local folders training will write (before any video is read); return the local work dir."""
    if _uses_s3(cfg):
        check_folder("AUTOX_CACHE_DIR (the S3 cache)", storage.cache_root())
    return check_folder(
        "work_dir" if not storage.is_s3(cfg.work_dir) else "work_dir's local mirror", local_work_dir(cfg)
    )


def _local(value: str | None) -> str | None:
    return value if value is not None and not storage.is_s3(value) else None


def check_lists(cfg: Config, command: str) -> None:
    """Parse the local lists `command` reads (no video opened), so a bad one is refused before anything is written.

    Lists in S3 are checked where they are read, after download.
    """
    from autox_video.data.annotations import read_class_names

    root = _local(cfg.data_root) or "."
    uri = cfg.data_root if cfg.data_root and storage.is_s3(cfg.data_root) else None  # JSONL s3:// contents
    if command == "test":
        if ann := _local(cfg.ann_file_test):
            if not read_annotations(ann, root, require_labels=False, check_exists=False, root_uri=uri):
                raise AnnotationError(f"{ann}: lists no videos; give one 'relative/path.mp4 [LABEL]' per line")
        return
    names = _local(cfg.class_names)
    num_class = cfg.num_class or (len(read_class_names(names)) if names else None)
    if ann := _local(cfg.ann_file_train):
        if not read_annotations(ann, root, num_class=num_class, check_exists=False, root_uri=uri):
            raise AnnotationError(f"{ann}: lists no videos; give one 'relative/path.mp4 LABEL' per line")
    if ann := _local(cfg.ann_file_val):
        read_annotations(ann, root, num_class=num_class, check_exists=False, root_uri=uri)


def check_prediction_locations(cfg: Config) -> None:
    """Check where prediction writes results.json (and the S3 cache) before any video is read."""
    if _uses_s3(cfg):
        check_folder("AUTOX_CACHE_DIR (the S3 cache)", storage.cache_root())
    if not storage.is_s3(cfg.test_results_path):
        check_file_target("test_results_path", cfg.test_results_path)


def localize_training_inputs(cfg: Config) -> TrainingInputs:
    """Resolve the config's locations to local paths (S3 inputs downloaded, S3 output mirrored)."""
    from autox_video.training.remote import RunPublisher, restore_run

    if cfg.data_root is None:
        raise ConfigError("data_root is not set: add it to config.yaml or pass --data-root")
    storage.configure(cfg.s3_endpoint_url, cfg.s3_region)
    out_uri = cfg.work_dir if storage.is_s3(cfg.work_dir) else None
    work = local_work_dir(cfg)
    holder: dict[str, object] = {}

    def fetch() -> None:
        from autox_video.training.checkpoints import latest_checkpoint, resumable_checkpoint, unreadable_reason
        from autox_video.weights.resolve import resolve

        holder["ann"] = [_localize(cfg.ann_file_train), _localize(cfg.ann_file_val), _localize(cfg.class_names)]
        if storage.is_s3(cfg.data_root):
            lists = [a for a in holder["ann"][:2] if a]  # type: ignore[index]
            holder["root"] = _fetch_listed_videos(cfg.data_root, lists)  # type: ignore[arg-type]
        if out_uri and resumable_checkpoint(work) is None:  # a fresh disk (or only damaged files): continue from S3
            restore_run(out_uri, work)
        # A resumed run has all its weights in the checkpoint: nothing to fetch (offline resumes work).
        # Read-only check: every local rank runs this, only rank 0 moves damaged checkpoints aside later.
        latest = latest_checkpoint(work)
        resumes = latest is not None and unreadable_reason(latest) is None
        resolved = None if resumes else resolve(cfg.pretrained, cfg.backbone)
        holder["pretrained"] = resolved.path if resolved else None
        holder["info"] = resolved.provenance if resolved else None

    distributed.local_rank0_first(fetch)
    ann = holder["ann"]
    return TrainingInputs(
        data_root=Path(holder.get("root", cfg.data_root)),  # type: ignore[arg-type]
        ann_train=ann[0],  # type: ignore[index]
        ann_val=ann[1],  # type: ignore[index]
        class_names=ann[2],  # type: ignore[index]
        pretrained=holder["pretrained"],  # type: ignore[arg-type]
        work_dir=work,
        pretrained_info=holder["info"],  # type: ignore[arg-type]
        output_uri=out_uri,
        publisher=RunPublisher(out_uri, cfg.keep_checkpoints) if out_uri else None,
    )


def _weights_from_uri(uri: str) -> Path:
    """A .pth URI as is; a training output prefix -> its best.pth, else its latest complete checkpoint."""
    from autox_video.training.remote import POINTER

    if uri.endswith(".pth"):
        return storage.localize(uri)
    best = storage.join(uri, "best.pth")
    if storage.exists(best):
        return storage.localize(best)
    pointer = storage.join(uri, POINTER)
    if storage.exists(pointer):
        return storage.localize(storage.join(uri, storage.read_text(pointer).strip()))
    raise ConfigError(f"{uri}: no best.pth or {POINTER} there; pass a checkpoint URI ending in .pth")


def localize_prediction_inputs(cfg: Config) -> PredictionInputs:
    """Resolve weights (checkpoint, else the work dir's best/latest), data and the results location."""
    from autox_video.training.checkpoints import best_or_latest

    storage.configure(cfg.s3_endpoint_url, cfg.s3_region)
    if cfg.data_root is None and cfg.ann_file_test is None:
        raise ConfigError("nothing to predict: set data_root (every video under it) or ann_file_test")
    distributed.local_rank0_first(lambda: check_prediction_locations(cfg))
    holder: dict[str, object] = {}

    def fetch() -> None:
        source = cfg.checkpoint or cfg.work_dir
        if storage.is_s3(source) or source.endswith(".pth") or cfg.checkpoint:
            holder["weights"] = _weights_from_uri(source) if storage.is_s3(source) else Path(source)
        else:
            holder["weights"] = best_or_latest(Path(source))
        holder["ann"] = _localize(cfg.ann_file_test)
        if cfg.data_root is not None and storage.is_s3(cfg.data_root):
            if holder["ann"]:
                holder["root"] = _fetch_listed_videos(cfg.data_root, [holder["ann"]])  # type: ignore[list-item]
            else:
                holder["root"] = storage.sync_down(cfg.data_root, suffixes=VIDEO_EXTENSIONS)

    distributed.local_rank0_first(fetch)
    ann = holder["ann"]
    if cfg.data_root is None:
        data_root = Path(str(ann)).resolve().parent  # paths in a list are relative to it when no data_root
    else:
        data_root = Path(holder.get("root", cfg.data_root))  # type: ignore[arg-type]
    results_uri = cfg.test_results_path
    if storage.is_s3(results_uri):
        local = storage.cache_root() / "results" / results_uri.removeprefix("s3://")
        publish: Callable[[Path], None] | None = lambda p: storage.upload(p, results_uri)  # noqa: E731
    else:
        local, publish = Path(results_uri), None
    return PredictionInputs(holder["weights"], data_root, ann, local.parent, local, results_uri, publish)  # type: ignore[arg-type]
