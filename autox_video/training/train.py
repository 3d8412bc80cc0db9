"""fit(): config -> checked data -> mmengine Runner (resumes by itself) -> best.pth + metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autox_video.config import Config
from autox_video.data.annotations import infer_num_class, read_class_names
from autox_video.data.samples import CheckedSplit, load_split, record_skipped, write_list
from autox_video.errors import ConfigError, DataError
from autox_video.storage import atomic
from autox_video.training import distributed

log = logging.getLogger("autox_video")


@dataclass
class TrainResult:
    """What a finished training run produced (read back from progress.json)."""

    work_dir: Path
    num_classes: int
    epochs: int
    best_top1: float | None
    best_epoch: int | None
    best_checkpoint: Path | None
    skipped: int


@dataclass
class DataPlan:
    """Checked splits and class info, computed on rank 0 and broadcast to every rank."""

    train: CheckedSplit
    val: CheckedSplit | None
    num_classes: int
    class_names: list[str] | None


def plan_data(
    cfg: Config, data_root: Path, ann_train: str, ann_val: str | None, class_file: str | None, work: Path
) -> DataPlan:
    """Read and check the lists; infer num_class; read class names."""
    names = read_class_names(class_file) if class_file else None
    num_class = cfg.num_class or (len(names) if names else None)
    skipped = work / "skipped.txt"
    train = load_split(
        "train",
        ann_train,
        data_root,
        num_class=num_class,
        require_labels=True,
        max_bad_fraction=cfg.max_bad_fraction,
        decoder=cfg.decoder,
        skipped=skipped,
    )
    if num_class is None:
        num_class = infer_num_class(train.samples)
        log.info("num_class not set: inferred %d from %s", num_class, train.source)
    if names is not None and len(names) != num_class:
        raise ConfigError(f"class_names {class_file} has {len(names)} names but num_class is {num_class}")
    val = None
    if ann_val is not None:
        val = load_split(
            "val",
            ann_val,
            data_root,
            num_class=num_class,
            require_labels=True,
            max_bad_fraction=cfg.max_bad_fraction,
            decoder=cfg.decoder,
            skipped=skipped,
        )
    if not train.samples:
        raise DataError(f"{train.source}: no readable training videos")
    return DataPlan(train, val, num_class, names)


def _warn_if_windows_pad(cfg: Config) -> None:
    from autox_video.training import recipe

    waste = recipe.window_padding(cfg.backbone, cfg.img_size)
    if waste > 1.2:  # measured: swin_mini at 64 px runs 2.8x slower per step than at 56 px
        log.warning(
            "img_size %d: Swin's 7x7 windows pad the token grids to %.1fx the real tokens (wasted compute); "
            "img_size %d tiles them exactly",
            cfg.img_size,
            waste,
            recipe.exact_window_size(cfg.backbone, cfg.img_size),
        )


def _write_run_files(cfg: Config, plan: DataPlan, work: Path, data_root: Path) -> None:
    from autox_video.data.decodecost import training_video_hints

    _warn_if_windows_pad(cfg)
    for hint in training_video_hints([data_root / s.path for s in plan.train.samples]):
        log.warning(hint)
    atomic.write_text(work / "config.yaml", cfg.model_copy(update={"num_class": plan.num_classes}).to_yaml())
    if plan.class_names:
        atomic.write_text(work / "classes.txt", "\n".join(plan.class_names) + "\n")
    n = record_skipped([s for s in (plan.train, plan.val) if s is not None], work)
    if n:
        log.warning("%d unreadable videos skipped; listed in %s", n, work / "skipped.txt")


def _result(work: Path, plan: DataPlan, skipped: int) -> TrainResult:
    progress = json.loads((work / "progress.json").read_text())
    best = work / "best.pth"
    return TrainResult(
        work,
        plan.num_classes,
        progress["epoch"],
        progress["best_top1"],
        progress["best_epoch"],
        best if best.is_file() else None,
        skipped,
    )


def build_runner(cfg: Config, plan: DataPlan, work: Path, *, resume_from: Path | None, cuda: bool) -> Any:
    """The mmengine Runner for this run, our hooks configured."""
    from mmengine.config import Config as MMConfig

    from autox_video.training import checkpoint_hook, curves, engine, hooks, loggers, recipe  # noqa: F401  (registers them)
    from autox_video.training.checkpoints import make_checkpoints_weights_only_safe

    make_checkpoints_weights_only_safe()

    lists = recipe.Lists(
        train=str(work / "lists" / "train.jsonl"),
        val=str(work / "lists" / "val.jsonl") if plan.val is not None and plan.val.samples else None,
        test=None,
        num_classes=plan.num_classes,
        class_names=plan.class_names,
    )
    mm = recipe.runner_cfg(
        cfg,
        lists,
        work_dir=str(work),
        cuda=cuda,
        launcher=distributed.launcher(),
        load_from=str(resume_from) if resume_from else None,
    )
    mm["resume"] = resume_from is not None
    runner = engine.AutoXRunner.from_cfg(MMConfig(mm))
    progress = next(h for h in runner.hooks if isinstance(h, hooks.ProgressHook))
    progress.checkpoint_meta = {
        "num_classes": plan.num_classes,
        "class_names": plan.class_names,
        "config": cfg.model_copy(update={"num_class": plan.num_classes}).model_dump(mode="json"),
    }
    return runner


def fit(cfg: Config, *, local_inputs: Any = None, publisher: Any = None) -> TrainResult:
    """Train (or resume) per `cfg`; only rank 0 writes run files. Returns the run's summary."""
    from autox_video.storage.lock import hold_work_dir
    from autox_video.training.inputs import check_lists, check_training_locations

    if cfg.export:  # before hours of training, not after them
        from autox_video.export.run import EXTRA_MODULES, require_extra

        require_extra("export: onnx", EXTRA_MODULES[:-1])
    cuda = distributed.setup()
    distributed.local_rank0_first(lambda: check_lists(cfg, "train"))  # a refused run touches nothing
    distributed.local_rank0_first(lambda: check_training_locations(cfg) and None)
    with contextlib.ExitStack() as held:

        def claim() -> None:
            # One live run per work dir: a second one would interleave checkpoints and metrics.
            work = check_training_locations(cfg)
            held.enter_context(hold_work_dir(work, command="autox-video train"))
            for folder in (work, work / "lists"):
                atomic.remove_stale_temps(folder)  # left by a killed writer; nobody else writes here now

        distributed.on_rank0_then_broadcast(claim)
        return _fit(cfg, cuda, local_inputs, publisher)


def _fit(cfg: Config, cuda: bool, local_inputs: Any, publisher: Any) -> TrainResult:
    from autox_video.training import checkpoints
    from autox_video.training.inputs import localize_training_inputs

    inputs = local_inputs or localize_training_inputs(cfg)
    work = inputs.work_dir
    if cfg.ann_file_train is None:
        raise ConfigError("ann_file_train is not set: add it to config.yaml or pass --ann-file-train")
    plan = distributed.on_rank0_then_broadcast(
        lambda: plan_data(cfg, inputs.data_root, inputs.ann_train, inputs.ann_val, inputs.class_names, work)
    )
    if distributed.is_local_rank0():
        work.mkdir(parents=True, exist_ok=True)
        write_list(plan.train, inputs.data_root, work / "lists" / "train.jsonl")
        if plan.val is not None:
            write_list(plan.val, inputs.data_root, work / "lists" / "val.jsonl")
    resume_from = _agree_on_resume(work, inputs.output_uri)
    cfg = settle_lr(cfg, resume_from, distributed.world_size())
    pretrained = _pretrained_info(cfg, inputs, resume_from)
    if resume_from is not None:
        _check_schedule_unchanged(cfg, resume_from)
        log.info("resuming from %s", resume_from)
    if distributed.rank() == 0:
        _write_run_files(cfg, plan, work, inputs.data_root)  # config.yaml holds the lr settled above
    distributed.barrier()
    runner = build_runner(cfg, plan, work, resume_from=resume_from, cuda=cuda)
    progress = next(h for h in runner.hooks if type(h).__name__ == "ProgressHook")
    progress.checkpoint_meta["pretrained"] = pretrained
    progress.publisher = publisher or inputs.publisher
    progress.output = inputs.output_uri
    if resume_from is None:
        weights = inputs.pretrained
        if weights is not None:
            # Runner.train() runs model.init_weights() (Swin's TruncNormal/Constant init, the head's
            # normal init) and would overwrite weights loaded before it. Initialising first marks the
            # modules as initialised, so that call becomes a no-op and the pretrained weights stay.
            model = runner.model.module if hasattr(runner.model, "module") else runner.model
            model.init_weights()
            checkpoints.load_pretrained(runner.model, weights)
    from autox_video.training.hooks import StopRequest

    try:
        with checkpoints.resumable_torch_load(), StopRequest.installed():
            runner.train()
    except BaseException as err:
        if distributed.rank() == 0 and (work / "progress.json").is_file():
            with contextlib.suppress(Exception):  # e.g. a full disk: the error itself is what to report
                _mark_failed(work, err)
            if progress.publisher is not None:
                progress.publisher(work, -1, True)
        raise
    skipped = sum(len(s.problems) for s in (plan.train, plan.val) if s is not None)
    # Only rank 0 wrote progress.json (other nodes may not share its disk): its summary goes to all.
    result = distributed.on_rank0_then_broadcast(lambda: _result(work, plan, skipped))
    if cfg.export and distributed.rank() == 0:
        # After the summary's broadcast: the other ranks exit instead of waiting (and timing out) here.
        from autox_video.export.after_training import export_trained

        export_trained(work, inputs.output_uri, list(cfg.export))
    return result


def settle_lr(cfg: Config, resume_from: Path | None, processes: int) -> Config:
    """The lr this run uses: as set; on resume the first run's; else the family's, scaled to this batch."""
    from autox_video import families
    from autox_video.training.checkpoints import read_meta

    batch = cfg.videos_per_gpu * processes
    if "lr" in cfg.explicit_keys():
        lr, why = cfg.lr, "set in the config"
    elif resume_from is not None and "lr" in (saved := (read_meta(resume_from).get("autox") or {}).get("config") or {}):
        lr, why = float(saved["lr"]), "the first run's (kept on resume)"
    else:
        lr, why = families.model(cfg.backbone).scaled_lr(cfg.lr, batch)
    if distributed.rank() == 0:
        log.info(
            "lr %g: %s (this run: %d processes x %d videos = %d per step)",
            lr,
            why,
            processes,
            cfg.videos_per_gpu,
            batch,
        )
    return cfg if lr == cfg.lr else cfg.model_copy(update={"lr": lr})


def _pretrained_info(cfg: Config, inputs: Any, resume_from: Path | None) -> dict[str, Any] | None:
    """Where the starting weights came from ({source, sha256, licence}); logged once, with what a licence limits."""
    from autox_video import families
    from autox_video.training.checkpoints import read_meta

    if resume_from is not None:  # the first run's record
        return (read_meta(resume_from).get("autox") or {}).get("pretrained")
    info = inputs.pretrained_info
    model = families.model(cfg.backbone)
    if distributed.rank() == 0:
        if cfg.pretrained.strip().lower() in ("none", "null", "") and not model.tiny:
            top1 = f" (its Kinetics-400 weights reach {model.kinetics400_top1} top-1)" if model.kinetics400_top1 else ""
            log.warning(
                "pretrained: none: %s starts from random weights%s; expect far lower accuracy and many more "
                "epochs and videos to converge; pretrained: auto uses its official weights",
                cfg.backbone,
                top1,
            )
        elif info is not None:
            log.info("pretrained: %s (sha256 %s, licence %s)", info["source"], info["sha256"][:12], info["licence"])
            if info.get("non_commercial"):
                log.warning("pretrained weights licence %s: non-commercial use only", info["licence"])
    return info


def _agree_on_resume(work: Path, output_uri: str | None) -> Path | None:
    """Rank 0's latest checkpoint, made present on every node: all ranks must resume the same epoch."""
    from autox_video import storage
    from autox_video.training import checkpoints

    def choose() -> str | None:
        latest = checkpoints.resumable_checkpoint(work)
        if latest is not None and output_uri is not None:
            remote = storage.join(output_uri, latest.name)
            if not storage.exists(remote):
                # Its upload was cut off (the pod died, or S3 was down past the retries) and this disk
                # survived the restart: publish it now, or the other nodes could never fetch it.
                storage.upload(latest, remote)
        return None if latest is None else latest.name

    name = distributed.on_rank0_then_broadcast(choose)
    if name is None:
        return None
    local = work / name

    def fetch() -> None:
        # Another node's disk holds only what it restored at start (or an older run): take rank 0's choice.
        if local.is_file():
            return
        if output_uri is None:
            raise ConfigError(
                f"{local}: this node cannot see rank 0's checkpoint; for several nodes use an "
                "s3:// work_dir or a work_dir on a shared filesystem"
            )
        storage.download(storage.join(output_uri, name), local)

    distributed.local_rank0_first(fetch)
    return local


# Resuming restores the optimizer and the learning-rate schedulers as they were saved: a change to
# any of these would be silently ignored (a longer `epoch` kept the old cosine, so the added epochs
# ran at a learning rate of ~0).
SCHEDULE_KEYS = ("epoch", "lr", "backbone_lr_mult", "weight_decay", "warmup_epochs", "videos_per_gpu")


def _check_schedule_unchanged(cfg: Config, checkpoint: Path) -> None:
    from autox_video.training.checkpoints import read_meta

    saved = (read_meta(checkpoint).get("autox") or {}).get("config") or {}
    changed = [k for k in SCHEDULE_KEYS if k in saved and saved[k] != getattr(cfg, k)]
    if changed:
        what = ", ".join(f"{k} {saved[k]} -> {getattr(cfg, k)}" for k in changed)
        raise ConfigError(
            f"{checkpoint.parent} was trained with other settings ({what}); resuming keeps the saved "
            "optimizer and learning-rate schedule, so they would not apply: set them back to resume, or "
            f"train in a new work_dir with pretrained: {checkpoint.parent / 'best.pth'}"
        )


def _mark_failed(work: Path, err: BaseException) -> None:
    path = work / "progress.json"
    data = json.loads(path.read_text())
    if isinstance(err, KeyboardInterrupt):  # Ctrl-C / SIGINT: nothing failed; the same command resumes
        data.update(phase="interrupted", message="interrupted; run the same command again to resume")
    else:
        data.update(phase="failed", message=(str(err).splitlines() or [type(err).__name__])[0][:500])
    atomic.write_json(path, data)


def in_torchrun() -> bool:
    """True when started by torchrun (or a PyTorchJob pod's environment)."""
    return "LOCAL_RANK" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ
