"""A trial's own speed, measured where it trained: export its best weights, time batches, count FLOPs.

The figures (`latency_ms` per batch of `search.latency.batch_size`, `videos_per_s`, `model_params`,
forward `gflops` per video) are what the Pareto front is drawn from: measured on the trial's device, not
estimated. ONNX (the default runtime) times the exported model.onnx, the file `serve` loads; the export
is autox_video.export's own (`export_checkpoint`, verified against torch), into the trial's export/.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autox_video.spec.search import LatencyConfig

log = logging.getLogger("autox_video")


def wanted(objectives: list[str] | tuple[str, ...], latency: LatencyConfig) -> bool:
    """Whether trials are measured: a speed objective or a limit in search.latency."""
    return len(objectives) > 1 or latency.max_ms is not None or latency.min_videos_per_s is not None


def time_batches(run: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None] = lambda: None) -> float:
    """Median seconds of `repeats` timed calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _threads() -> int:
    import torch

    return max(1, torch.get_num_threads())


def _onnx_runner(path: Path, clips: Any, cuda: bool) -> tuple[Callable[[], Any], str]:
    """ONNX Runtime on the trial's device (CUDA provider on a GPU), as many threads as the trial has."""
    import onnxruntime as ort

    from autox_video.export.contract import INPUT_NAME

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = _threads()  # the trial's share of the CPUs, not the machine's
    providers = ["CPUExecutionProvider"]
    if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    sess = ort.InferenceSession(str(path), options, providers=providers)
    feed = {INPUT_NAME: clips.cpu().numpy()}
    return (lambda: sess.run(None, feed)), sess.get_providers()[0]


def count_gflops(net: Any, one: Any) -> float:
    """Forward GFLOPs of one video (torch.utils.flop_counter; matmul/conv = 2 x multiply-accumulates)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(one)
    return float(counter.get_total_flops()) / 1e9


def measure_checkpoint(checkpoint: Path, latency: LatencyConfig, export_dir: Path | None = None) -> dict[str, Any]:
    """Figures of a best.pth: export (onnx runtime) into `export_dir` (default export/ beside it), then time it.

    The device is the process's: its GPU when it has one (ONNX Runtime's CUDA provider, else torch on the
    GPU, said in `runtime`), else its CPUs. fp16 is timed on a GPU only (fp32 on CPU, said in `precision`).
    """
    import torch

    from autox_video.export import checkpoint as ckpt
    from autox_video.export.contract import input_shape
    from autox_video.export.run import build_net, example_input, export_checkpoint

    cuda = torch.cuda.is_available()
    precision = latency.precision if cuda else "fp32"
    runtime = latency.runtime
    out = export_dir or checkpoint.parent / "export"
    if runtime == "onnx":
        export_checkpoint(str(checkpoint), str(out), fp16=precision == "fp16")
    loaded = ckpt.load(str(checkpoint))
    net = build_net(loaded)
    shape = input_shape(loaded.cfg)
    figures: dict[str, Any] = {
        "model_params": int(sum(p.numel() for p in loaded.model.parameters())),
        "gflops": round(count_gflops(net, example_input(shape, batch=1)), 4),
    }
    clips = example_input(shape, batch=latency.batch_size)
    device = torch.device("cuda" if cuda else "cpu")
    if precision == "fp16":
        net, clips = net.half(), clips.half()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    run: Callable[[], Any] | None = None
    if runtime == "onnx":
        run, provider = _onnx_runner(out / "model.onnx", clips, cuda)
        if cuda and provider != "CUDAExecutionProvider":
            run, runtime = None, "torch (onnxruntime has no CUDA provider here)"
    if run is None:
        net, clips = net.to(device), clips.to(device)

        def run() -> Any:
            with torch.no_grad():
                return net(clips)

    seconds = time_batches(run, latency.warmup, latency.repeats, sync)
    figures.update(
        latency_ms=round(seconds * 1000, 4),
        videos_per_s=round(latency.batch_size / seconds, 4),
        device=torch.cuda.get_device_name() if cuda else f"cpu x{_threads()} threads",
        runtime=runtime,
        precision=precision,
        batch_size=latency.batch_size,
        clip_shape=shape,
    )
    log.info("measured %s: %.2f ms per batch of %d (%s)", checkpoint, seconds * 1000, latency.batch_size, runtime)
    return figures
