#!/usr/bin/env python
"""Serving benchmark: requests/s and latency of `autox-video serve`, ONNX Runtime vs torch eager, over HTTP.

One run starts a real server per runtime on 127.0.0.1 (one at a time, so they do not share the CPUs),
then a load generator sends a bounded number of v2 `infer` requests (each a real encoded video,
base64 in JSON) at concurrency 1, 4 and 16: requests/s, p50 and p95 latency per level. Both
servers serve the same random-init model: the ONNX export of a checkpoint, and that checkpoint.

`--quick` is a CI smoke run (swin_micro, 8x32x32 clips, few requests).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from record import machine, publish, table  # noqa: E402

LEVELS = (1, 4, 16)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_model(root: Path, backbone: str, frames: int, img: int) -> tuple[Path, Path, list[Path]]:
    """(best.pth with random weights, its export folder, real test videos)."""
    import torch

    from autox_video.config import Config
    from autox_video.data.demo import make_demo_dataset
    from autox_video.export import export_checkpoint
    from autox_video.training.recipe import build_recognizer

    names = ["move_left", "move_right", "grow"]
    ds = make_demo_dataset(root / "data", num_per_class_train=1, num_per_class_val=1, num_per_class_test=4,
                           num_frames=max(32, 2 * frames), size=img, classes=names)  # fmt: skip
    videos = sorted(p for p in (Path(ds.data_root) / "videos" / "test").iterdir() if p.is_file())
    cfg = Config(backbone=backbone, pretrained="none", clip_len=frames, frame_interval=2, img_size=img, test_clips=1)
    torch.manual_seed(0)
    model = build_recognizer(cfg, len(names))
    ckpt = root / "run" / "best.pth"
    ckpt.parent.mkdir(parents=True)
    meta = {"config": cfg.model_dump(mode="json"), "num_classes": len(names), "class_names": names}
    torch.save({"state_dict": model.state_dict(), "meta": {"autox": meta}}, ckpt)
    out = Path(export_checkpoint(str(ckpt)).out)
    return ckpt, out, videos


class Server:
    """`python -m autox_video serve ARGS` on 127.0.0.1."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autox_video", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve {' '.join(args)} exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise SystemExit("server not ready in 300 s")

    def infer(self, body: bytes) -> float:
        """One request's latency in seconds (raises on anything but 200)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v2/models/autox-video/infer",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        return time.perf_counter() - start

    def stop(self) -> None:
        """SIGTERM and wait."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def load(server: Server, bodies: list[bytes], concurrency: int, requests: int) -> dict[str, float]:
    """Send `requests` requests, `concurrency` at a time: requests/s, p50 and p95 latency (ms)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(lambda i: server.infer(bodies[i % len(bodies)]), range(requests)))
    wall = time.perf_counter() - start
    return {
        "rps": requests / wall,
        "p50_ms": 1000 * percentile(latencies, 50),
        "p95_ms": 1000 * percentile(latencies, 95),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the headlines; --record adds them to RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: swin_micro, 8x32x32, 8 requests per level")
    ap.add_argument("--model", default=None, help="backbone (default swin_mini; quick: swin_micro)")
    ap.add_argument("--requests", type=int, default=None, help="requests per concurrency level (default 64)")
    ap.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = ap.parse_args(argv)
    backbone = args.model or ("swin_micro" if args.quick else "swin_mini")
    frames, img = (8, 32) if args.quick else (16, 64)
    requests = args.requests or (8 if args.quick else 64)
    with tempfile.TemporaryDirectory(prefix="autox-bench-serve-") as tmp:
        ckpt, export_dir, videos = make_model(Path(tmp), backbone, frames, img)
        bodies = [
            json.dumps({"inputs": [{"name": "video", "shape": [1], "datatype": "BYTES",
                                    "data": [base64.b64encode(v.read_bytes()).decode()]}]}).encode()
            for v in videos
        ]  # fmt: skip
        results: dict[str, dict[int, dict[str, float]]] = {}
        for runtime, server_args in (("onnx", ["--model", str(export_dir)]), ("torch", ["--checkpoint", str(ckpt)])):
            server = Server(*server_args, "--runtime", runtime)
            try:
                for body in bodies[:2]:
                    server.infer(body)  # warm-up: first decodes and forward passes
                results[runtime] = {c: load(server, bodies, c, max(requests, c)) for c in LEVELS}
            finally:
                server.stop()
    rows: list[list[Any]] = []
    for runtime, levels in results.items():
        for c, r in levels.items():
            rows.append([runtime, c, max(requests, c), r["rps"], r["p50_ms"], r["p95_ms"]])
    header = ["runtime", "concurrency", "requests", "requests/s", "p50 ms", "p95 ms"]
    text = (
        f"{backbone}, {frames}x{img}x{img} clips, 1 clip x 1 crop per video, {len(videos)} real videos "
        f"(H.264 + MPEG-4) sent as base64 over HTTP on 127.0.0.1 ({machine()})\n" + table(header, rows)
    )
    heads: dict[str, float] = {}
    for runtime, levels in results.items():
        for c in (LEVELS[0], LEVELS[-1]):
            heads[f"{runtime}_rps_c{c}"] = levels[c]["rps"]
            heads[f"{runtime}_p95_ms_c{c}"] = levels[c]["p95_ms"]
    top = LEVELS[-1]
    heads["onnx_vs_torch_rps"] = results["onnx"][top]["rps"] / results["torch"][top]["rps"]
    publish(text, heads, title="Serving" + (" (quick)" if args.quick else ""), record_it=args.record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
