"""export_checkpoint(): checkpoint -> model.onnx (verified in ONNX Runtime) + model.json + triton/."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from autox_video import families, storage
from autox_video.errors import ConfigError, ExportError
from autox_video.export import checkpoint, contract, onnx_export, triton
from autox_video.export.network import ProbabilityNet
from autox_video.spec.serving import MODEL_JSON, TRITON_MODEL

log = logging.getLogger("autox_video")

FORMATS = ("onnx",)
# What the `serve` extra installs (pyproject.toml); export needs all but kserve.
EXTRA_MODULES = ("onnx", "onnxscript", "onnxruntime", "tritonclient", "kserve")
DEFAULT_NAME = TRITON_MODEL


@dataclass
class ExportResult:
    """Where the export went and how close ONNX Runtime came to torch."""

    out: str  # folder or s3:// prefix
    files: list[str]  # relative to `out`
    max_abs_diff: float
    contract: contract.Contract


def require_extra(command: str, modules: tuple[str, ...] = EXTRA_MODULES) -> None:
    """ConfigError naming the missing packages when the `serve` extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{command} needs {', '.join(missing)}: pip install 'autox-video[serve]'")


def default_out(source: str) -> str:
    """`export/` beside the checkpoint file (or inside a run folder / prefix)."""
    if storage.is_s3(source):
        return storage.join(source.rsplit("/", 1)[0] if source.endswith(".pth") else source, "export")
    path = Path(source)
    return str((path.parent if path.suffix == ".pth" else path) / "export")


def build_net(loaded: checkpoint.Loaded) -> ProbabilityNet:
    """The loaded recognizer wrapped as clips -> probabilities (fp32, eval mode)."""
    fam = families.model(loaded.cfg.backbone).family
    return ProbabilityNet(loaded.model, list(fam.mean), list(fam.std), fam.input_format).eval()


def example_input(shape: list[int], batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Random pixels of a batch of videos (export tracing and the verification run)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *shape), generator=gen) * 255


def export_checkpoint(
    source: str,
    out: str | None = None,
    *,
    fmt: str = "onnx",
    fp16: bool = False,
    name: str = DEFAULT_NAME,
    opset: int = onnx_export.OPSET,
) -> ExportResult:
    """Export a checkpoint (best.pth, a run folder, or their s3:// URIs) into `out` (default: export/ beside it)."""
    require_extra("autox-video export", EXTRA_MODULES[:-1])
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: not supported; use one of {', '.join(FORMATS)}")
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"--name {name!r}: letters, digits, '-' and '_' only (a Triton model name)")
    loaded = checkpoint.load(source)
    target = out or default_out(loaded.source)
    names = loaded.class_names or [str(i) for i in range(loaded.num_classes)]
    precision = "fp16" if fp16 else "fp32"
    net = build_net(loaded)
    example = example_input(contract.input_shape(loaded.cfg))
    if fp16:
        net, example = net.half(), example.half()
    with tempfile.TemporaryDirectory(prefix="autox-export-") as tmp:
        stage = Path(tmp) if storage.is_s3(target) else Path(target)
        stage.mkdir(parents=True, exist_ok=True)
        onnx_file = stage / "model.onnx"
        onnx_export.export(net, example, onnx_file, backbone=loaded.cfg.backbone, opset=opset)
        diff = onnx_export.max_abs_diff(net, onnx_file, example)
        tol = onnx_export.TOLERANCE[precision]
        if not diff <= tol:
            raise ExportError(
                f"{loaded.cfg.backbone}: ONNX Runtime differs from torch by {diff:.3g} (> {tol:g}); "
                "serve this checkpoint with `autox-video serve --runtime torch`"
            )
        spec = contract.build(
            loaded.cfg,
            names,
            checkpoint=loaded.source,
            sha256=loaded.sha256,
            precision=precision,
            opset=opset,
            exporter=onnx_export.exporter_version(),
        )
        spec.verified = {"max_abs_diff": diff, "tolerance": tol, "input": "random pixels, batch 2"}
        config = triton.write_repository(stage / "triton", name, onnx_file, spec)
        triton.parse(config)  # Triton's own parser: a repository it would refuse is not written out
        # model.json last, locally and in S3: its presence means the whole export is there (a kill
        # before it leaves an export that readers, and the next training run, treat as missing).
        spec.write(stage / MODEL_JSON)
        files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
        if storage.is_s3(target):
            for rel in sorted(files, key=lambda r: r == MODEL_JSON):
                storage.upload(stage / rel, storage.join(target, rel))
    log.info("export: %s (ONNX Runtime vs torch: max abs diff %.2g)", target, diff)
    return ExportResult(target, files, diff, spec)
