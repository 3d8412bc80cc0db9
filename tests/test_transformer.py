"""`serve` as a KServe transformer: it takes the arguments KServe's controller appends (--model_name,
--predictor_host, --http_port, --workers), decodes the videos itself and runs the network on a v2 predictor.

Triton cannot run here: the predictor is a real v2 server on loopback (tests/v2predictor.py: KServe's model
server running the export's Triton model.onnx in ONNX Runtime, strict about config.pbtxt's tensor). The
transformer must answer exactly as a local `--runtime onnx` server does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exportutil import random_checkpoint
from netutil import free_port
from servutil import Server, metric, outputs, video_input
from tinyrun import make_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
NAMES = ["move_left", "move_right", "grow"]
ISVC = "ucf-serve"  # KServe's --model_name: the InferenceService's name


class Predictor:
    """tests/v2predictor.py on a fixed loopback port (so that it can be stopped and started again)."""

    def __init__(self, export: Path, port: int) -> None:
        self.export, self.port = export, port
        self.proc: subprocess.Popen[str] | None = None

    def start(self, name: str | None = None) -> Predictor:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        args = [sys.executable, str(REPO / "tests" / "v2predictor.py"), str(self.export), str(self.port)]
        self.proc = subprocess.Popen([*args, *([name] if name else [])], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the stand-in predictor exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the stand-in predictor did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None


class Setup:
    """An export, its videos, a local ONNX Runtime server of it, the predictor and the transformer."""

    def __init__(self, root: Path) -> None:
        from autox_video.export import export_checkpoint

        ds = make_tiny_dataset(root / "data", per_class=1, classes=tuple(NAMES))
        self.videos = sorted(p for p in (Path(ds.data_root) / "videos" / "test").iterdir() if p.is_file())
        ckpt = random_checkpoint(root / "run" / "best.pth", "swin_micro", NAMES)
        self.export = Path(export_checkpoint(str(ckpt)).out)
        self.predictor = Predictor(self.export, free_port())


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Export and videos; the stand-in predictor running; stopped at the end."""
    s = Setup(tmp_path_factory.mktemp("transformer"))
    s.predictor.start()
    try:
        yield s
    finally:
        s.predictor.stop()


@pytest.fixture(scope="module")
def local(setup: Setup) -> Iterator[Server]:
    """`serve --model EXPORT` (ONNX Runtime in-process): the answers the transformer must give."""
    srv = Server("--model", str(setup.export), "--batch-wait-ms", "20")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def transformer(setup: Setup) -> Iterator[Server]:
    """`serve --model EXPORT` with the arguments KServe's controller appends to a transformer's container."""
    host = f"127.0.0.1:{setup.predictor.port}"
    srv = Server("--model", str(setup.export), "--batch-wait-ms", "20",
                 "--model_name", ISVC, "--predictor_host", host, "--http_port", "{port}", "--workers", "1",
                 name=ISVC)  # fmt: skip
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def _same(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Two v2 answers agree: labels and names exactly, scores to float32 rounding, timelines alike."""
    a, b = outputs(got), outputs(want)
    assert set(a) == set(b)
    for key in ("label", "name", "topk_label"):
        assert a[key] == b[key], key
    for key in ("score", "topk_score"):
        assert np.allclose(a[key], b[key], atol=1e-5), key
    for x, y in zip(a.get("timeline", []), b.get("timeline", []), strict=True):
        tx, ty = json.loads(x), json.loads(y)
        assert [(s["start"], s["label_name"]) for s in tx["seconds"]] == [
            (s["start"], s["label_name"]) for s in ty["seconds"]
        ]


def test_the_transformer_answers_as_the_local_onnx_runtime_does(
    setup: Setup, local: Server, transformer: Server
) -> None:
    assert transformer.get(f"/v2/models/{ISVC}/ready")[1]["ready"] is True  # served under --model_name
    for video in setup.videos:
        want = local.infer([video_input(video.read_bytes())])
        got = transformer.infer([video_input(video.read_bytes())])
        assert got[0] == want[0] == 200, got
        _same(got[1], want[1])
    # Several videos in one request (one batch to the predictor), top_k, and a timeline.
    many = [video_input(v.read_bytes()) for v in setup.videos[:3]]
    for params in ({"top_k": 2}, {"granularity": "second,segment"}):
        want, got = local.infer(many, params), transformer.infer(many, params)
        assert got[0] == want[0] == 200, got
        _same(got[1], want[1])
    # Bad input stays a 400 with the same message; /metrics counts as before.
    junk = [video_input(b"\x00garbage" * 500)]
    assert transformer.infer(junk) == local.infer(junk) and transformer.infer(junk)[0] == 400
    text = transformer.get("/metrics")[1]
    assert metric(text, 'autox_serve_requests_total{outcome="ok"}') >= len(setup.videos) + 2
    assert metric(text, "autox_serve_batch_size_count") >= 1


def test_a_failed_predictor_is_a_503_or_502_with_one_line_and_the_transformer_recovers(
    setup: Setup, transformer: Server
) -> None:
    video = [video_input(setup.videos[0].read_bytes())]
    assert transformer.infer(video)[0] == 200
    setup.predictor.stop()
    try:
        status, body = transformer.infer(video)
        assert status == 503, body
        message = body["error"]
        assert f"predictor http://127.0.0.1:{setup.predictor.port}/v2/models/autox_video/infer unreachable" in message
        assert "\n" not in message
        assert transformer.get("/v2/health/ready")[0] == 200  # the transformer itself keeps serving

        # A predictor that answers, but an error (here: it serves no model of that name): 502, its message.
        setup.predictor.start(name="another_model")
        status, body = transformer.infer(video)
        assert status == 502 and "answered 404" in body["error"] and "\n" not in body["error"], body
        setup.predictor.stop()
        text = transformer.get("/metrics")[1]
        assert metric(text, 'autox_serve_errors_total{reason="predictor_unreachable"}') >= 1
        assert metric(text, 'autox_serve_errors_total{reason="predictor_error"}') >= 1
    finally:
        if setup.predictor.proc is None:
            setup.predictor.start()
    status, body = transformer.infer(video)  # the predictor is back: the next request succeeds
    assert status == 200, body
    assert outputs(body)["name"][0] in NAMES


def test_predictor_host_needs_an_export_folder(setup: Setup) -> None:
    from tinyrun import cli

    run = cli("serve", "--checkpoint", str(setup.export.parent / "best.pth"), "--predictor_host", "127.0.0.1:1")
    assert run.returncode != 0
    assert "--predictor_host: pass --model" in run.stderr and "Traceback" not in run.stderr


def test_a_transformer_reads_its_export_from_s3_as_in_a_pod(setup: Setup, local: Server, s3_server: Any) -> None:
    client = s3_server.client()
    bucket = f"transformer-{free_port()}"
    client.create_bucket(Bucket=bucket)
    for path in setup.export.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"runs/ucf/export/{path.relative_to(setup.export).as_posix()}")
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "AUTOX_S3_RETRY_SECONDS": "5",
    }  # fmt: skip
    if setup.predictor.proc is None:
        setup.predictor.start()
    srv = Server("--model", f"s3://{bucket}/runs/ucf/export/", "--predictor_host",
                 f"127.0.0.1:{setup.predictor.port}", "--model_name", ISVC, env=env, name=ISVC)  # fmt: skip
    try:
        srv.wait_ready()
        video = [video_input(setup.videos[1].read_bytes())]
        got, want = srv.infer(video), local.infer(video)
        assert got[0] == want[0] == 200, got
        _same(got[1], want[1])
    finally:
        srv.stop()
