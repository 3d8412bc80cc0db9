"""transform(): weights -> per-video class probabilities -> results.json (DESIGN §3)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autox_video import storage, terminal
from autox_video.config import Config
from autox_video.data.samples import CheckedSplit, load_split, write_list
from autox_video.errors import CheckpointError, ConfigError
from autox_video.inference.batching import autocast, tune_batch_size
from autox_video.storage import atomic
from autox_video.training import distributed

log = logging.getLogger("autox_video")


@dataclass
class Prediction:
    """Everything a prediction run produced."""

    results_path: str
    predictions: list[dict[str, Any]]
    metrics: dict[str, float] | None
    skipped: list[dict[str, str]] = field(default_factory=list)
    report_path: str | None = None  # report.html beside results.json (when the test list had labels)

    @property
    def probs(self) -> list[list[float]]:
        """Per-video class probabilities in list order (the seed's return value)."""
        return [p["probs"] for p in self.predictions]


def _model_setup(cfg: Config, ckpt: dict[str, Any], path: Path) -> tuple[Config, int, list[str] | None]:
    """The training config stored in the checkpoint (model shape), with this run's test-time keys."""
    meta = ckpt.get("meta", {}).get("autox")
    if meta:
        trained = Config(**meta["config"])
        test_keys = {
            "test_clips",
            "test_crops",
            "test_batch_size",
            "videos_per_gpu",
            "num_workers",
            "decoder",
            "precision",
            "granularity",
            "interval",
            "confidence_threshold",
            "max_predictions",
        }
        merged = trained.model_copy(update={k: getattr(cfg, k) for k in test_keys})
        return merged, int(meta["num_classes"]), meta.get("class_names")
    if cfg.num_class is None:
        raise CheckpointError(f"{path}: not an autox-video checkpoint; set num_class and backbone in the config")
    return cfg, cfg.num_class, None


def build_model(cfg: Config, num_classes: int, state_dict: dict[str, torch.Tensor], path: Path) -> torch.nn.Module:
    """Recognizer3D with the checkpoint's weights, strictly loaded, in eval mode."""
    from autox_video.training.recipe import build_recognizer

    model = build_recognizer(cfg, num_classes)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("relative_position_index")]
    if missing or result.unexpected_keys:
        bad = (missing or result.unexpected_keys)[0]
        raise CheckpointError(
            f"{path}: weights do not fit backbone {cfg.backbone} with {num_classes} classes (e.g. {bad})"
        )
    return model.eval()


def _class_names(names: list[str] | None, cfg: Config) -> list[str] | None:
    if names:
        return names
    if cfg.class_names and Path(cfg.class_names).is_file():
        from autox_video.data.annotations import read_class_names

        return read_class_names(cfg.class_names)
    return None


def _run_model(model: torch.nn.Module, cfg: Config, list_file: str, n: int) -> list[torch.Tensor]:
    """Class probabilities per sample, in list order, gathered from every rank."""
    from mmengine.dist import collect_results
    from mmengine.runner import Runner

    from autox_video.training import engine, recipe  # noqa: F401  (registers the dataset)

    pipeline = recipe.eval_pipeline(cfg, num_clips=cfg.test_clips, num_crops=cfg.test_crops)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", distributed.local_rank()) if cuda else torch.device("cpu")
    model.to(device)
    amp = recipe.amp_dtype(cfg, cuda)
    batch = _batch_size(model, cfg, device, amp, per_rank=-(-n // distributed.world_size()))
    workers = cfg.num_workers if cfg.num_workers is not None else recipe.default_num_workers(cuda=cuda)
    loader = Runner.build_dataloader(
        dict(
            batch_size=batch,
            num_workers=workers,
            pin_memory=cuda,
            sampler=dict(type="DefaultSampler", shuffle=False),
            dataset=dict(type="AutoXVideoDataset", ann_file=list_file, pipeline=pipeline, test_mode=True),
        )
    )
    scores: list[torch.Tensor] = []
    bar = terminal.bar(len(loader), "test", "batch")  # this rank's batches; drawn on rank 0 only
    with torch.inference_mode(), autocast(device, amp), bar:
        for data in loader:
            for sample in model.test_step(data):
                scores.append(sample.pred_scores.item.float().cpu())
            bar.update(1)
    # "gpu" mode gathers through all_gather_object (any backend); "cpu" mode goes through a temporary
    # directory that every rank must see, which pods on different nodes do not share.
    gathered = collect_results(scores, n, device="gpu")
    return gathered if gathered is not None else []


# Tuning tries powers of two up to this many videos per forward pass.
MAX_TUNED_BATCH = 64


def _batch_size(
    model: torch.nn.Module, cfg: Config, device: torch.device, amp: torch.dtype | None, per_rank: int
) -> int:
    """test_batch_size if set; on CPU videos_per_gpu; on GPU measured (largest that fits and pays)."""
    if cfg.test_batch_size is not None:
        size, how = cfg.test_batch_size, "test_batch_size"
    elif device.type != "cuda":
        # CPU throughput hardly depends on the batch: tuning would cost more than it saves.
        size, how = cfg.videos_per_gpu, "videos_per_gpu"
    else:
        limit = max(1, min(MAX_TUNED_BATCH, per_rank))
        size = tune_batch_size(
            model,
            views=cfg.test_clips * cfg.test_crops,
            frames=cfg.resolved_clip_len,
            img=cfg.img_size,
            device=device,
            amp=amp,
            limit=limit,
        )
        how = f"tuned on {device}, up to {limit}"
    precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp]
    log.info("prediction: %d videos per forward pass (%s), %s", size, how, precision)
    return size


def _metrics(labels: list[int | None], probs: torch.Tensor) -> dict[str, float] | None:
    if not labels or any(label is None for label in labels):
        return None
    target = torch.tensor(labels)
    k = min(5, probs.shape[1])
    topk = probs.topk(k, dim=1).indices
    return {
        "top1": float((topk[:, 0] == target).float().mean()),
        f"top{k}" if k != 5 else "top5": float((topk == target[:, None]).any(dim=1).float().mean()),
    }


def predict_split(
    cfg: Config, weights: Path, data_root: Path, ann_file: str | None, work: Path
) -> tuple[dict[str, Any], Prediction]:
    """Predict every readable video of a list (or of data_root); returns (results.json dict, Prediction)."""
    from autox_video.training.checkpoints import load_state, resumable_torch_load

    with resumable_torch_load():
        ckpt = load_state(weights)
    model_cfg, num_classes, names = _model_setup(cfg, ckpt, weights)
    model = build_model(model_cfg, num_classes, ckpt.get("state_dict", ckpt), weights)
    names = _class_names(names, cfg)

    def plan() -> CheckedSplit:
        return load_split(
            "test",
            ann_file,
            data_root,
            num_class=num_classes,
            require_labels=False,
            max_bad_fraction=cfg.max_bad_fraction,
            decoder=cfg.decoder,
            root_uri=cfg.data_root if cfg.data_root and storage.is_s3(cfg.data_root) else None,
        )

    split = distributed.on_rank0_then_broadcast(plan)
    if any(s.ranged and s.label is not None for s in split.samples) and "second" not in cfg.granularity:
        # A labelled timeline is evaluated second by second (report.json's per_second_accuracy).
        cfg = cfg.model_copy(update={"granularity": [*cfg.granularity, "second"]})
    if cfg.timeline or any(s.ranged for s in split.samples):
        return _predict_timeline(cfg, model_cfg, model, split, data_root, names, num_classes, ann_file, ckpt, weights)
    list_file = work / f"test_list.rank{distributed.rank()}.jsonl"
    write_list(split, data_root, list_file)
    scores = _run_model(model, model_cfg, str(list_file), len(split.samples)) if split.samples else []
    list_file.unlink(missing_ok=True)
    if distributed.rank() != 0:  # collect_results gathers on rank 0 only; the others have nothing to report
        return {}, Prediction("", [], None)
    probs = torch.stack(scores) if scores else torch.zeros(0, num_classes)
    preds = []
    for sample, p in zip(split.samples, probs, strict=True):
        k = min(5, num_classes)
        top = p.topk(k)
        label = int(top.indices[0])
        preds.append(
            {
                "video": sample.path,
                "label": label,
                "label_name": names[label] if names else None,
                "score": float(top.values[0]),
                "topk": [[int(i), float(v)] for i, v in zip(top.indices, top.values, strict=True)],
                "probs": [float(x) for x in p],
                **({"true_label": sample.label} if sample.label is not None else {}),
            }
        )
    metrics = _metrics([s.label for s in split.samples], probs)
    return _results(cfg, model_cfg, ckpt, weights, names, num_classes, preds, metrics, split)


def _predict_timeline(
    cfg: Config,
    model_cfg: Config,
    model: torch.nn.Module,
    split: CheckedSplit,
    data_root: Path,
    names: list[str] | None,
    num_classes: int,
    ann_file: str | None,
    ckpt: dict[str, Any],
    weights: Path,
) -> tuple[dict[str, Any], Prediction]:
    """Segments, shots and seconds of every list line; each rank takes every world_size-th video."""
    from mmengine.dist import collect_results

    from autox_video.inference.timeline_run import make_scorer, predict_timelines
    from autox_video.training import recipe

    cuda = torch.cuda.is_available()
    device = torch.device("cuda", distributed.local_rank()) if cuda else torch.device("cpu")
    model.to(device)
    amp = recipe.amp_dtype(model_cfg, cuda)
    batch = model_cfg.test_batch_size or (MAX_TUNED_BATCH if cuda else model_cfg.videos_per_gpu)
    rank, world = distributed.rank(), distributed.world_size()
    mine = split.samples[rank::world]
    entries = predict_timelines(
        mine,
        data_root,
        cfg,
        model_cfg,
        make_scorer(model, model_cfg, device, amp),
        names=names,
        batch=batch,
        list_name=str(ann_file or data_root),
    )
    gathered = collect_results(entries, len(split.samples), device="gpu") if world > 1 else entries
    if rank != 0:
        return {}, Prediction("", [], None)
    preds = list(gathered or [])
    probs = torch.tensor([p["probs"] for p in preds]) if preds else torch.zeros(0, num_classes)
    metrics = _metrics([s.label for s in split.samples], probs)
    return _results(cfg, model_cfg, ckpt, weights, names, num_classes, preds, metrics, split)


def _results(
    cfg: Config,
    model_cfg: Config,
    ckpt: dict[str, Any],
    weights: Path,
    names: list[str] | None,
    num_classes: int,
    preds: list[dict[str, Any]],
    metrics: dict[str, float] | None,
    split: CheckedSplit,
) -> tuple[dict[str, Any], Prediction]:
    skipped = [{"video": p.path, "reason": p.reason} for p in split.problems]
    meta = ckpt.get("meta") or {}
    results: dict[str, Any] = {
        "model": model_cfg.backbone,
        "checkpoint": str(weights),
        **({"checkpoint_epoch": meta["epoch"]} if isinstance(meta.get("epoch"), int) else {}),
        # The training config the weights came from (with this run's test-time keys): the report shows it.
        **({"config": model_cfg.model_dump(mode="json")} if (meta.get("autox") or {}).get("config") else {}),
        # Where the training started from ({source, sha256, licence}): a licence may limit the model's use.
        **({"pretrained": pre} if (pre := (meta.get("autox") or {}).get("pretrained")) else {}),
        "classes": names if names else list(range(num_classes)),
        **({"granularity": cfg.granularity} if cfg.timeline else {}),
        **({"metrics": metrics} if metrics else {}),
        "predictions": preds,
        **({"skipped": skipped} if skipped else {}),
    }
    instances = [s.instance for s in split.samples]
    if any(instances):  # Vertex AI input: its output echoes each instance
        for pred, inst in zip(preds, instances, strict=True):
            pred["instance"] = inst
    return results, Prediction("", preds, metrics, skipped)


def write_results(results: dict[str, Any], path: Path, fmt: str) -> None:
    """results.json in our format, or the seed's list of probability lists."""
    body: Any = [p["probs"] for p in results["predictions"]] if fmt == "seed" else results  # vertex: both files
    atomic.write_json(path, body)


def transform(cfg: Config, *, local_inputs: Any = None) -> Prediction:
    """Predict with cfg.checkpoint (else work_dir's best.pth / latest) and write results.json on rank 0."""
    from autox_video.training.inputs import check_lists, localize_prediction_inputs

    distributed.setup()
    distributed.local_rank0_first(lambda: check_lists(cfg, "test"))  # before results or lists are written
    inputs = local_inputs or localize_prediction_inputs(cfg)
    if inputs.weights is None:
        raise ConfigError("no checkpoint: pass --checkpoint or set work_dir to a training run")
    results, pred = predict_split(cfg, inputs.weights, inputs.data_root, inputs.ann_test, inputs.scratch)
    if distributed.rank() == 0:
        source = cfg.checkpoint or cfg.work_dir
        if storage.is_s3(source):
            results["checkpoint_source"] = source  # "checkpoint" is the local cached copy
        write_results(results, inputs.results_local, cfg.results_format)
        if inputs.publish_results is not None:
            inputs.publish_results(inputs.results_local)
        if cfg.results_format == "vertex":
            _write_vertex(results, inputs.results_local, inputs.results_uri)
        if pred.metrics:
            pred.report_path = _write_report(results, inputs.results_local, inputs.results_uri)
    pred.results_path = inputs.results_uri
    return pred


def _write_vertex(results: dict[str, Any], local: Path, uri: str) -> None:
    """Vertex AI's batch-prediction output (predictions.jsonl) beside results.json."""
    from autox_video.inference.vertex import write_vertex_output

    out = local.parent / "predictions.jsonl"
    write_vertex_output(results, out)
    if storage.is_s3(uri):
        storage.upload(out, uri.rsplit("/", 1)[0] + "/predictions.jsonl")


def _write_report(results: dict[str, Any], local: Path, uri: str) -> str | None:
    """report.html + report.json beside results.json (uploaded beside it when that is in S3)."""
    from autox_video.report import publish_report, write_report

    try:
        files = write_report(results, local.parent, source=uri)
    except Exception as err:  # the results are written and published: a failed report must not lose them
        log.warning("report not written: %s", (str(err).splitlines() or [type(err).__name__])[0])
        return None
    return publish_report(files, uri.rsplit("/", 1)[0]) if storage.is_s3(uri) else str(files.html)
