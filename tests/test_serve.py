"""`autox-video serve` end to end: a real server process on 127.0.0.1, a real HTTP client, S3 = moto."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from exportutil import decoded, random_checkpoint
from netutil import free_port
from servutil import Server, metric, outputs, uri_input, video_input
from tinyrun import make_tiny_dataset

from autox_video.data.demo import make_timeline_video, write_truncated_video

# The moto server fixture's credentials (tests/conftest.py): `from conftest import` is ambiguous here.
S3_KEY = S3_SECRET = "testing"
S3_REGION = "us-east-1"
NAMES = ["move_left", "move_right", "grow"]
MAX_SECONDS = 2.0


class Setup:
    """The served model, its test videos and the answers torch eager gives for them."""

    def __init__(self, root: Path, bucket: str, env: dict[str, str]) -> None:
        from autox_video.export import export_checkpoint
        from autox_video.serving.runtimes import torch_runtime

        ds = make_tiny_dataset(root / "data", per_class=1, classes=tuple(NAMES))
        self.videos = sorted(p for p in (Path(ds.data_root) / "videos" / "test").iterdir() if p.is_file())
        self.ckpt = random_checkpoint(root / "run" / "best.pth", "swin_micro", NAMES)
        self.export = Path(export_checkpoint(str(self.ckpt)).out)
        runtime = torch_runtime(str(self.ckpt))
        self.expected = runtime.run(decoded(self.videos, runtime.contract))  # [videos, classes]
        self.bucket, self.env = bucket, env
        self.max_bytes = 20 * max(v.stat().st_size for v in self.videos)
        self.long = root / "long.mp4"
        make_timeline_video(self.long, [("grow", 1.5), ("move_left", 1.5)])  # 3 s > MAX_SECONDS
        assert self.long.stat().st_size < self.max_bytes

    def check(self, body: dict[str, Any], indices: list[int], top_k: int = 3) -> None:
        """The response answers videos `indices` as torch eager does."""
        out = outputs(body)
        for row, i in enumerate(indices):
            best = int(np.argmax(self.expected[i]))
            assert out["label"][row] == best and out["name"][row] == NAMES[best]
            assert abs(out["score"][row] - float(self.expected[i, best])) <= 1e-4
            order = list(np.argsort(-self.expected[i], kind="stable")[:top_k])
            assert out["topk_label"][row * top_k : (row + 1) * top_k] == [int(k) for k in order]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> Setup:
    """Model, export, videos (also uploaded to a moto bucket), expected answers."""
    root = tmp_path_factory.mktemp("serve")
    client = s3_server.client()
    bucket = f"serve-{free_port()}"
    client.create_bucket(Bucket=bucket)
    env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": S3_REGION, "AWS_EC2_METADATA_DISABLED": "true", "AUTOX_S3_RETRY_SECONDS": "5",
        "AUTOX_CACHE_DIR": str(root / "cache"),
    }  # fmt: skip
    setup = Setup(root, bucket, env)
    for v in setup.videos:
        client.upload_file(str(v), bucket, f"videos/{v.name}")
    client.upload_file(str(setup.ckpt), bucket, "runs/r1/best.pth")
    return setup


@pytest.fixture(scope="module")
def server(setup: Setup) -> Iterator[Server]:
    """An ONNX Runtime server of the export folder (local paths off, limits low enough to test)."""
    srv = Server("--model", str(setup.export), "--max-seconds", str(MAX_SECONDS),
                 "--max-bytes", str(setup.max_bytes), "--batch-wait-ms", "20", env=setup.env)  # fmt: skip
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_health_and_metadata_routes(server: Server) -> None:
    assert server.get("/v2/health/live")[0] == 200
    assert server.get("/v2/health/ready") == (200, {"ready": True})
    assert server.get("/v2/models/autox-video/ready")[1]["ready"] is True
    status, meta = server.get("/v2/models/autox-video")
    assert status == 200 and {i["name"] for i in meta["inputs"]} == {"video", "uri"}
    assert {"label", "name", "score", "topk_label", "topk_score"} <= {o["name"] for o in meta["outputs"]}
    assert server.get("/v2/models/no-such-model")[0] == 404


def test_video_bytes_are_classified_as_torch_does(server: Server, setup: Setup) -> None:
    for i, video in enumerate(setup.videos):
        status, body = server.infer([video_input(video.read_bytes())])
        assert status == 200, body
        setup.check(body, [i])
    status, body = server.infer([video_input(setup.videos[0].read_bytes())], {"top_k": 2})
    assert status == 200 and len(outputs(body)["topk_score"]) == 2


def test_s3_and_http_uris_and_several_videos_per_request(server: Server, setup: Setup) -> None:
    uris = [f"s3://{setup.bucket}/videos/{v.name}" for v in setup.videos[:2]]
    status, body = server.infer([uri_input(*uris)])
    assert status == 200, body
    setup.check(body, [0, 1])
    folder = setup.videos[0].parent

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        status, body = server.infer([uri_input(f"http://127.0.0.1:{httpd.server_port}/{setup.videos[2].name}")])
        assert status == 200, body
        setup.check(body, [2])
    finally:
        httpd.shutdown()


def test_concurrent_requests_are_all_answered_correctly(server: Server, setup: Setup) -> None:
    before = metric(server.get("/metrics")[1], "autox_serve_batch_size_count")
    jobs = [i % len(setup.videos) for i in range(16)]

    def ask(i: int) -> tuple[int, Any]:
        if i % 2:
            return server.infer([uri_input(f"s3://{setup.bucket}/videos/{setup.videos[i].name}")])
        return server.infer([video_input(setup.videos[i].read_bytes())])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    for i, (status, body) in zip(jobs, answers, strict=True):
        assert status == 200, body
        setup.check(body, [i])
    passes = metric(server.get("/metrics")[1], "autox_serve_batch_size_count") - before
    assert 1 <= passes <= len(jobs)  # forward passes: one per video at most (fewer when batched)


def _bad_inputs(setup: Setup) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any] | None, str, str]]:
    """name -> (inputs, parameters, errors-counter reason, words the message must have)."""
    whole = setup.long.parent / "whole.avi"  # long enough that its first 30% still opens (1.8 s, 64 px)
    make_timeline_video(whole, [("grow", 0.9), ("move_left", 0.9)], size=64)
    truncated = setup.long.parent / "truncated.avi"
    write_truncated_video(truncated, whole)
    junk = {"name": "video", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}
    unknown = {"name": "frames", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    return {
        "not a video": ([video_input(b"\x00garbage" * 500)], None, "not_a_video", "not a video"),
        "truncated": ([video_input(truncated.read_bytes())], None, "truncated", "truncated"),
        "too long": ([video_input(setup.long.read_bytes())], None, "too_long", "--max-seconds"),
        "too large": ([video_input(b"\x00" * (setup.max_bytes + 1))], None, "too_large", "--max-bytes"),
        "unknown scheme": ([uri_input("ftp://example.com/v.mp4")], None, "unknown_scheme", "ftp://"),
        "local path": ([uri_input(str(setup.videos[0]))], None, "unknown_scheme", "--allow-local"),
        "missing s3 object": ([uri_input(f"s3://{setup.bucket}/videos/nope.mp4")], None, "unreadable_uri", "nope.mp4"),
        "unreachable http": ([uri_input(f"http://127.0.0.1:{free_port()}/v")], None, "unreadable_uri", "cannot read"),
        "not base64": ([junk], None, "bad_input", "base64"),
        "bad top_k": ([video_input(setup.videos[0].read_bytes())], {"top_k": 99}, "bad_parameter", "top_k"),
        "unknown input": ([unknown], None, "bad_input", "frames"),
    }  # fmt: skip


def test_each_bad_input_is_a_400_with_one_line_and_the_server_keeps_serving(server: Server, setup: Setup) -> None:
    good = video_input(setup.videos[1].read_bytes())
    for name, (inputs, params, reason, words) in _bad_inputs(setup).items():
        text = server.get("/metrics")[1]
        errors_before = metric(text, f'autox_serve_errors_total{{reason="{reason}"}}')
        bad_before = metric(text, 'autox_serve_requests_total{outcome="bad_input"}')
        status, body = server.infer(inputs, params)
        assert status == 400, (name, status, body)
        message = body["error"]
        assert words in message and "\n" not in message, (name, message)
        status, body = server.infer([good])  # the server still answers, and correctly
        assert status == 200, (name, body)
        setup.check(body, [1])
        text = server.get("/metrics")[1]
        assert metric(text, f'autox_serve_errors_total{{reason="{reason}"}}') == errors_before + 1, name
        assert metric(text, 'autox_serve_requests_total{outcome="bad_input"}') == bad_before + 1, name


def test_metrics_count_requests_latency_and_kserve_own(server: Server, setup: Setup) -> None:
    text = server.get("/metrics")[1]
    ok, seconds = (
        metric(text, 'autox_serve_requests_total{outcome="ok"}'),
        metric(text, "autox_serve_request_seconds_count"),
    )
    videos = metric(text, "autox_serve_videos_total")
    status, _ = server.infer([uri_input(*(f"s3://{setup.bucket}/videos/{v.name}" for v in setup.videos[:3]))])
    assert status == 200
    text = server.get("/metrics")[1]
    assert metric(text, 'autox_serve_requests_total{outcome="ok"}') == ok + 1
    assert metric(text, "autox_serve_request_seconds_count") == seconds + 1
    assert metric(text, "autox_serve_videos_total") == videos + 3
    assert "request_predict_seconds_count" in text  # KServe's own histograms on the same route


def test_granularity_second_returns_a_timeline(server: Server, setup: Setup) -> None:
    status, body = server.infer([video_input(setup.long.read_bytes())], {"granularity": "second"})
    assert status == 400  # 3 s: over --max-seconds, the timeline too
    status, body = server.infer([video_input(setup.videos[0].read_bytes())], {"granularity": "second,segment"})
    assert status == 200, body
    import json

    timeline = json.loads(outputs(body)["timeline"][0])
    assert [s["start"] for s in timeline["seconds"]] == [0.0] and timeline["seconds"][0]["label_name"] in NAMES
    assert len(timeline["segments"]) == 1
    setup.check(body, [0])


def test_torch_runtime_serves_a_checkpoint_from_s3_as_kserve_pods_do(setup: Setup) -> None:
    srv = Server("--checkpoint", f"s3://{setup.bucket}/runs/r1/best.pth", env=setup.env)
    try:
        srv.wait_ready()
        status, body = srv.infer([uri_input(f"s3://{setup.bucket}/videos/{setup.videos[3].name}")])
        assert status == 200, body
        setup.check(body, [3])
    finally:
        srv.stop()
