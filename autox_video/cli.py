"""`autox-video train | test | tune | run | check | demo | prepare | report | weights | export | serve`.

Also `python -m autox_video`.

Config precedence: command-line flags > --config file (default ./config.yaml) > defaults.
Every config key is also a flag: `--epoch 3`, `--data-root DIR`, `--pretrained none`.
Exit codes: 0 ok, 1 runtime failure, 2 usage/config error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from autox_video import terminal, warning_filters
from autox_video.config import Config, load_config
from autox_video.errors import AutoXError, ConfigError

log = logging.getLogger("autox_video")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="config.yaml (default: ./config.yaml if it exists)")
    keys = p.add_argument_group("config keys (override the file)")
    for name, field in Config.model_fields.items():
        keys.add_argument("--" + name.replace("_", "-"), dest="cfg_" + name, metavar="V", help=field.description)


def _add_launch_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=None, help="processes (GPUs) on this machine; relaunches via torchrun")


def _add_verbose_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also show mmengine's own log lines (environment, config, every log_interval iterations)",
    )


def _takes_text(name: str) -> bool:
    """Whether a config key holds text (a path, a name, a choice), so that a flag's value is kept as typed."""
    annotation = Config.model_fields[name].annotation
    return str in (annotation, *typing.get_args(annotation)) or typing.get_origin(annotation) is typing.Literal


def _flag_value(name: str, raw: str) -> Any:
    if raw.strip().lower() in ("none", "null", "~"):
        return "none" if name == "pretrained" else None  # pretrained: none = no weights at all
    if _takes_text(name):
        return raw  # as typed: YAML would cut "/data/clips #2" at the '#' and turn "2024" into a number
    return yaml.safe_load(raw)  # "3" -> 3, "1e-3" -> 0.001, "true" -> True


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys given as flags (only those typed)."""
    return {
        key[4:]: _flag_value(key[4:], raw)
        for key, raw in vars(args).items()
        if key.startswith("cfg_") and raw is not None
    }


def _config(args: argparse.Namespace, *, required: bool) -> Config:
    path = args.config
    if path is None and Path("config.yaml").is_file():
        path = "config.yaml"
    if path is None and required and not any(k.startswith("cfg_") and v is not None for k, v in vars(args).items()):
        raise ConfigError("no ./config.yaml here: pass --config PATH (or the keys as flags, e.g. --data-root)")
    return load_config(path, _overrides(args), explicit_none=True)


def _relaunch_under_torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run this very command under torchrun with `nproc` processes on this machine."""
    import subprocess

    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        rest.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "autox_video",
        *rest,
    ]
    return subprocess.call(cmd)


def cmd_train(args: argparse.Namespace) -> int:
    """Train (resuming if the work dir holds a checkpoint)."""
    from autox_video.training.train import fit

    cfg = _config(args, required=True)
    result = fit(cfg)
    if _rank() == 0:
        best = (
            f"{result.best_top1:.4f} (epoch {result.best_epoch})"
            if result.best_top1 is not None
            else "n/a (no validation)"
        )
        print(f"done: {result.epochs} epochs, best val top-1 {best}, work dir {result.work_dir}")
    if _rank() == 0 and cfg.measure is not None:  # a search trial's speed, timed where it trained
        from autox_video.training.measured import measure_run

        figures = measure_run(cfg, result.best_checkpoint, best_top1=result.best_top1, epochs=result.epochs)
        if figures.get("latency_ms") is not None:
            print(f"measured: {figures['latency_ms']:.2f} ms per batch, {figures['videos_per_s']:.1f} videos/s")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """Predict with the best weights and write results.json."""
    from autox_video.inference.predict import transform

    cfg = _config(args, required=False)
    pred = transform(cfg)
    if _rank() == 0:
        if pred.metrics:
            print("  ".join(f"{k}: {v:.4f}" for k, v in pred.metrics.items()))
        if pred.skipped:
            print(f"{len(pred.skipped)} unreadable videos skipped (listed under 'skipped' in results)")
        print(f"results: {pred.results_path} ({len(pred.predictions)} videos)")
        if pred.report_path:
            print(f"report: {pred.report_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write report.html and report.json beside a results.json (or into --out)."""
    from autox_video.report import report_results

    print(f"report: {report_results(args.results, args.out)} (its numbers in report.json beside it)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Search the config's `search:` space (or auto); resumes a search found in work_dir."""
    from autox_video.search.tune import pick, tune

    cfg = _config(args, required=True)
    if args.pick is not None:  # no training: promote (and export) that trial of the search in work_dir
        pick(cfg, args.pick)
        return 0
    tune(cfg, trials=args.trials, parallel=args.parallel, nproc=args.trial_nproc)
    return 0


def _set_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs as config keys (values parsed as the key's flag would be)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set epoch=2")
        if key not in Config.model_fields:
            raise ConfigError(f"--set {pair!r}: {key!r} is not a config key (see `autox-video train --help`)")
        out[key] = _flag_value(key, raw)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """Run a VideoTrainingJob / VideoInferenceJob manifest on this machine (no cluster)."""
    from autox_video.runlocal import run_manifest

    return run_manifest(args.manifest, nproc=args.run_nproc, overrides=_set_overrides(args.set), dry_run=args.dry_run)


def cmd_check(args: argparse.Namespace) -> int:
    """Scan the config's lists and report unreadable videos without training."""
    from autox_video.data.samples import load_split
    from autox_video.training.inputs import localize_training_inputs

    cfg = _config(args, required=True)
    inputs = localize_training_inputs(cfg)
    bad = 0
    for name, ann in (("train", inputs.ann_train), ("val", inputs.ann_val), ("test", cfg.ann_file_test)):
        if ann is None:
            continue
        split = load_split(
            name,
            ann,
            inputs.data_root,
            num_class=cfg.num_class,
            require_labels=name != "test",
            max_bad_fraction=1.0,
            decoder=cfg.decoder,
        )
        for p in split.problems:
            print(f"{ann}: {p.path}: {p.reason}")
        bad += len(split.problems)
        print(f"{name}: {len(split.samples)} readable, {len(split.problems)} unreadable ({split.source})")
    return 1 if bad else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthetic dataset -> train a small Swin on CPU -> predict; prints val top-1 and results path."""
    from autox_video.demo_run import run_demo

    run_demo(Path(args.out), epochs=args.epochs)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Transcode a dataset once into a random-access-friendly form."""
    from autox_video.data.prepare import prepare_dataset

    report = prepare_dataset(
        args.src,
        args.dst,
        short_side=args.short_side,
        gop=args.gop,
        crf=args.crf,
        workers=args.workers,
        ann_files=tuple(args.ann),
    )
    print(report.summary())
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_weights(args: argparse.Namespace) -> int:
    """List the backbones' pretrained weights, or fetch them (into the cache, optionally a mirror)."""
    from autox_video.weights import catalogue

    if args.weights_command == "list":
        print(catalogue.table())
        return 0
    for path in catalogue.pull(args.backbones, args.to):
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint as ONNX + model.json + a Triton model repository, verified in ONNX Runtime."""
    from autox_video.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, fmt=args.format, fp16=args.fp16, name=args.name)
    spec = result.contract
    print(
        f"exported {spec.backbone} ({spec.num_classes} classes, {spec.precision}, opset {spec.opset}) to {result.out}"
    )
    print(f"ONNX Runtime vs torch: max abs diff {result.max_abs_diff:.2g} on random clips")
    for rel in result.files:
        print(f"  {rel}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a checkpoint or an export folder over Open Inference Protocol v2 (KServe model server)."""
    from autox_video.serving.server import ServeOptions, serve

    if (args.checkpoint is None) == (args.model is None):
        raise ConfigError("serve: pass exactly one of --checkpoint (best.pth, run folder, s3://) or --model DIR")
    return serve(
        ServeOptions(
            checkpoint=args.checkpoint,
            model_dir=args.model,
            runtime=args.runtime,
            port=args.port,
            host=args.host,
            name=args.name,
            max_bytes=args.max_bytes,
            max_seconds=args.max_seconds,
            allow_local=args.allow_local,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            decode_workers=args.decode_workers,
            predictor_host=args.predictor_host,
        )
    )


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `autox-video`."""
    parser = argparse.ArgumentParser(prog="autox-video", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train or resume a Video Swin classifier")
    _add_config_flags(p)
    _add_launch_flags(p)
    _add_verbose_flag(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("test", help="predict with the best weights; writes results.json")
    _add_config_flags(p)
    p.add_argument("--format", dest="cfg_results_format", choices=["default", "seed", "vertex"],
                   metavar="{default,seed,vertex}", help="results.json layout (same as --results-format)")  # fmt: skip
    _add_launch_flags(p)
    _add_verbose_flag(p)
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("tune", help="search config keys (search: in config.yaml, or auto); resumable")
    _add_config_flags(p)
    p.add_argument("--trials", type=int, default=None, help="most trials (overrides search.trials)")
    p.add_argument("--parallel", type=int, default=None, help="trials at once (overrides search.parallel)")
    p.add_argument("--nproc", dest="trial_nproc", type=int, default=None, help="processes (GPUs) per trial")
    p.add_argument(
        "--pick", type=int, default=None, metavar="N", help="promote trial N of the search in work_dir (and export it)"
    )
    _add_verbose_flag(p)
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser("run", help="run a VideoTrainingJob/VideoInferenceJob manifest here, no cluster; resumable")
    p.add_argument("manifest", help="the YAML you would `kubectl apply`")
    p.add_argument("--nproc", dest="run_nproc", type=int, default=None,
                   help="processes (default: GPUs per replica, capped to the GPUs here; CPU: 1)")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a config.yaml key over the manifest's, e.g. --set epoch=1 (repeatable)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the trainer's config.yaml and stop")
    _add_verbose_flag(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("report", help="evaluation report (report.html, report.json) of a labelled results.json")
    p.add_argument("results", help="results.json written by `autox-video test` (path or s3:// URI)")
    p.add_argument("--out", default=None, help="folder or s3:// prefix for the report (default: beside results.json)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("check", help="list unreadable videos in the config's annotation lists")
    _add_config_flags(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("demo", help="synthetic dataset, CPU training and prediction end to end")
    p.add_argument("--out", default="demo_run", help="folder for the dataset and the run")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    _add_verbose_flag(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser(
        "prepare", help="transcode a dataset once (short side, frequent keyframes) for fast training; resumable"
    )
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--short-side", type=int, default=256, help="short side of the output videos")
    p.add_argument("--gop", type=int, default=16, help="keyframe interval (frames): small = cheap random access")
    p.add_argument("--crf", type=int, default=20, help="H.264 quality (lower = better, bigger)")
    p.add_argument("--workers", type=int, default=None, help="parallel transcodes (default: CPUs)")
    p.add_argument("--ann", action="append", default=[], help="annotation list to copy (paths renamed .avi->.mp4)")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("weights", help="the backbones' pretrained weights: list them, or pull them for offline use")
    ws = p.add_subparsers(dest="weights_command", required=True)
    ws.add_parser("list", help="each backbone's weights: size, cached here or not, licence, source")
    pull = ws.add_parser("pull", help="download (and verify) weights into AUTOX_CACHE_DIR/weights, or a mirror")
    pull.add_argument("backbones", nargs="+", metavar="BACKBONE")
    pull.add_argument("--to", default=None, help="also copy them under this s3:// prefix or folder (a mirror)")
    p.set_defaults(func=cmd_weights)
    p = sub.add_parser("export", help="export a checkpoint: ONNX, model.json (preprocessing), Triton repository")
    p.add_argument("--checkpoint", required=True, help="best.pth, a training work_dir, or their s3:// URIs")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--out", default=None, help="folder or s3:// prefix (default: export/ beside the checkpoint)")
    p.add_argument("--fp16", action="store_true", help="half-precision weights, input and output (default fp32)")
    p.add_argument("--name", default="autox_video", help="model name in the Triton repository")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("serve", help="online endpoint: Open Inference Protocol v2 over HTTP (KServe model server)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="best.pth, a training work_dir, or their s3:// URIs")
    src.add_argument("--model", default=None, help="a folder written by `autox-video export`")
    p.add_argument("--runtime", default=None, choices=["onnx", "torch"],
                   help="onnx (default with --model) or torch (default with --checkpoint)")  # fmt: skip
    # KServe's controller appends --model_name, --predictor_host, --http_port (and --workers) to a transformer.
    p.add_argument("--port", "--http_port", dest="port", type=int, default=8080, help="HTTP port")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (127.0.0.1: this machine only)")
    p.add_argument("--name", "--model_name", dest="name", default="autox-video",
                   help="model name in the v2 routes (/v2/models/NAME/infer)")  # fmt: skip
    p.add_argument("--predictor_host", "--predictor-host", dest="predictor_host", default=None,
                   help="a KServe transformer: decode here, run the network on this v2 predictor (Triton) "
                   "with --model the export folder")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="accepted from KServe; one process serves (add replicas)")
    p.add_argument("--max-bytes", type=int, default=200 * 1024 * 1024, help="largest video accepted, in bytes")
    p.add_argument("--max-seconds", type=float, default=600.0, help="longest video accepted, in seconds")
    p.add_argument(
        "--allow-local", action="store_true", help="accept local paths as `uri` (off: a client could read files)"
    )
    p.add_argument("--max-batch", type=int, default=8, help="videos per forward pass when requests arrive together")
    p.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a request waits for others to batch with")
    p.add_argument("--decode-workers", type=int, default=None, help="decoding threads (default: CPUs, at most 8)")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, run, map errors to one line and an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    warning_filters.install()  # before any command imports mmaction2, mmcv or torch
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        terminal.set_verbose(True)  # an environment variable: torchrun workers and trials inherit it
    handler = terminal.BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if _rank() == 0 else logging.WARNING, handlers=[handler])
    nproc = getattr(args, "nproc", None)
    if nproc and nproc > 1 and "LOCAL_RANK" not in os.environ:
        return _relaunch_under_torchrun(nproc, argv)
    try:
        code = int(args.func(args))
        if code == 0 and "torch.distributed" in sys.modules:  # only commands that ran the model import it
            from autox_video.training.distributed import teardown

            teardown()
        return code
    except AutoXError as err:
        if args.debug:
            raise
        print(f"autox-video: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("autox-video: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
