"""Pretrained weights without internet: a loopback HTTP server (Range support written here) serves a real
tiny checkpoint named with its sha256 prefix; the moto S3 server is the mirror."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from autox_video import families
from autox_video.config import build_config
from autox_video.errors import CheckpointError
from autox_video.families import Weights
from autox_video.weights import catalogue, resolve
from autox_video.weights.download import download, hash_prefix_of


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `files` by path with Range support; paths in `cut_once` are cut half way on their first GET."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The http:// URL of a served path."""
        return f"http://127.0.0.1:{self.server_address[1]}/{path.lstrip('/')}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        rng = self.headers.get("Range")
        self.server.requests.append((self.path, rng))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        data = body[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(data)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        if self.path in self.server.cut_once:  # a dropped connection: half the promised bytes, then close
            self.server.cut_once.discard(self.path)
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)


@pytest.fixture()
def server() -> Iterator[FileServer]:
    srv = FileServer()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def real_checkpoint() -> tuple[bytes, str]:
    """A swin_micro state dict in the mmaction2 layout (backbone./cls_head.), and its sha256."""
    from autox_video.training.recipe import build_recognizer

    torch.manual_seed(0)
    model = build_recognizer(build_config(dict(backbone="swin_micro", img_size=32, drop_path_rate=0.0)), 3)
    model.init_weights()
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict()}, buf)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AUTOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOX_WEIGHTS_MIRROR", raising=False)
    return tmp_path / "cache"


def _register(monkeypatch: pytest.MonkeyPatch, url: str, sha: str, **kw: Any) -> Weights:
    """Give swin_micro an official-weights entry at `url` (the registry as data, pointed at the test server)."""
    entry = Weights(url, sha[:8], 1, kw.get("licence", "Apache-2.0"), "test", kw.get("non_commercial", False))
    micro = dataclasses.replace(families.MODELS["swin_micro"], weights=entry)
    monkeypatch.setitem(families.MODELS, "swin_micro", micro)
    return entry


def _serve(server: FileServer, data: bytes, name: str) -> str:
    server.files["/w/" + name] = data
    return server.url("/w/" + name)


@pytest.fixture()
def served_micro(server: FileServer, real_checkpoint: tuple[bytes, str]) -> tuple[bytes, str, str, str]:
    """The real checkpoint on the loopback server under its hash-named file: (bytes, sha256, file name, URL)."""
    data, sha = real_checkpoint
    name = f"micro-{sha[:8]}.pth"
    return data, sha, name, _serve(server, data, name)


def test_registry_holds_every_full_size_backbone_with_its_hash_prefix() -> None:
    for name in families.NAMES:
        m = families.model(name)
        if m.tiny:
            assert m.weights is None and m.recipe_batch is None
            continue
        assert m.weights is not None and m.weights.url.startswith("https://")
        assert hash_prefix_of(m.weights.file_name) == m.weights.sha256_prefix  # the file name carries it
        assert m.recipe_batch in (64, 128, 256)
    assert families.model("videomae_b").weights.non_commercial  # type: ignore[union-attr]
    assert families.model("swin_b").weights.licence == "Apache-2.0"  # type: ignore[union-attr]


def test_auto_downloads_verifies_loads_and_then_hits_the_cache(
    server: FileServer, cache: Path, real_checkpoint: tuple[bytes, str], tmp_path: Path
) -> None:
    from autox_video.training.checkpoints import load_pretrained
    from autox_video.training.recipe import build_recognizer

    data, sha = real_checkpoint
    monkeypatch = pytest.MonkeyPatch()
    try:
        entry = _register(monkeypatch, _serve(server, data, f"micro-{sha[:8]}.pth"), sha)
        first = resolve.resolve("auto", "swin_micro", tmp_path / "no-checkpoints")
        assert first.path == str(cache / "weights" / entry.file_name)
        assert first.provenance == {
            "source": entry.url,
            "sha256": sha,
            "licence": "Apache-2.0",
            "non_commercial": False,
        }
        assert len(server.requests) == 1 and server.requests[0][1] is None
        second = resolve.resolve(None, "swin_micro", tmp_path / "no-checkpoints")  # not set = auto
        assert second.path == first.path and len(server.requests) == 1  # cache hit: no second request
        assert not list((cache / "weights").glob("*.part"))
        model = build_recognizer(build_config(dict(backbone="swin_micro", img_size=32)), 3)
        assert "and the classifier head" in load_pretrained(model, first.path)  # the layout the loader reads
    finally:
        monkeypatch.undo()


def test_auto_looks_in_checkpoints_first_and_tiny_or_none_mean_random_init(
    server: FileServer, cache: Path, monkeypatch: pytest.MonkeyPatch, real_checkpoint: tuple[bytes, str], tmp_path: Path
) -> None:
    data, sha = real_checkpoint
    entry = _register(monkeypatch, _serve(server, data, f"micro-{sha[:8]}.pth"), sha)
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / entry.file_name).write_bytes(data)
    got = resolve.resolve("auto", "swin_micro", ckpts)
    assert got.path == str(ckpts / entry.file_name) and got.provenance["sha256"] == sha  # type: ignore[index]
    assert server.requests == []
    assert resolve.resolve("none", "swin_b", ckpts).path is None
    assert resolve.resolve("auto", "swin_mini", ckpts).path is None  # tiny: ours, random init


def test_a_cut_connection_resumes_with_a_range_request(
    server: FileServer, cache: Path, served_micro: tuple[bytes, str, str, str]
) -> None:
    data, sha, name, url = served_micro
    server.cut_once.add("/w/" + name)
    dest = cache / "weights" / name
    assert download(url, dest, sha256_prefix=hash_prefix_of(name)) == sha
    assert dest.read_bytes() == data and not dest.with_name(name + ".part").exists()
    (first, r1), (second, r2) = server.requests
    assert r1 is None and r2 == f"bytes={(len(data)) // 2}-"  # the second attempt asks for the rest only


def test_a_killed_download_continues_from_its_part_file(
    server: FileServer, cache: Path, real_checkpoint: tuple[bytes, str]
) -> None:
    data, sha = real_checkpoint
    name = f"micro-{sha[:8]}.pth"
    dest = cache / "weights" / name
    dest.parent.mkdir(parents=True)
    dest.with_name(name + ".part").write_bytes(data[:1000])  # what a killed process left
    assert download(_serve(server, data, name), dest, sha256_prefix=sha[:8]) == sha
    assert server.requests == [("/w/" + name, "bytes=1000-")] and dest.read_bytes() == data


def test_a_wrong_hash_is_one_line_and_the_file_is_not_kept(
    server: FileServer, cache: Path, real_checkpoint: tuple[bytes, str]
) -> None:
    data, sha = real_checkpoint
    name = "micro-0000000000.pth"  # the name promises another file
    url = _serve(server, data, name)
    with pytest.raises(CheckpointError) as err:
        resolve.resolve(url, "swin_micro")
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "expected prefix 0000000000" in msg and f"found {sha[:10]}" in msg
    assert not list((cache / "weights").glob("micro-*"))  # neither the file nor its .part


def test_an_http_file_without_a_hash_in_its_name_is_taken_and_recorded(
    server: FileServer, cache: Path, real_checkpoint: tuple[bytes, str]
) -> None:
    data, sha = real_checkpoint
    url = _serve(server, data, "plain.pth")
    got = resolve.resolve(url, "swin_micro")
    assert got.provenance == {"source": url, "sha256": sha, "licence": "unknown", "non_commercial": False}


def test_404_is_one_line_naming_the_url(server: FileServer, cache: Path) -> None:
    url = server.url("/w/missing-12345678.pth")
    with pytest.raises(CheckpointError) as err:
        resolve.resolve(url, "swin_micro")
    assert str(err.value) == f"{url}: HTTP 404 Not Found; check the URL (or its mirror)"


def _dead_url(name: str) -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on: connection refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/w/{name}"


def test_offline_without_a_mirror_says_where_to_put_the_file(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = _register(monkeypatch, _dead_url("micro-12345678.pth"), "12345678")
    with pytest.raises(CheckpointError) as err:
        resolve.resolve("auto", "swin_micro", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(entry.url)
    assert f"put {entry.file_name} in ./checkpoints/ or under AUTOX_WEIGHTS_MIRROR" in msg
    assert "pretrained: none to train from scratch on purpose" in msg


def test_the_s3_mirror_is_tried_first_and_pull_fills_it(
    bucket: str, monkeypatch: pytest.MonkeyPatch, real_checkpoint: tuple[bytes, str], tmp_path: Path
) -> None:
    import boto3  # noqa: F401  (the s3_env fixture's client)

    from autox_video import storage

    data, sha = real_checkpoint
    entry = _register(monkeypatch, _dead_url(f"micro-{sha[:8]}.pth"), sha)  # the release is unreachable
    storage.write_bytes(f"s3://{bucket}/mirror/{entry.file_name}", data)
    monkeypatch.setenv("AUTOX_WEIGHTS_MIRROR", f"s3://{bucket}/mirror/")
    got = resolve.resolve("auto", "swin_micro", tmp_path)
    assert got.provenance["source"] == f"s3://{bucket}/mirror/{entry.file_name}"  # type: ignore[index]
    assert got.provenance["sha256"] == sha  # type: ignore[index]
    # `weights pull --to` copies what the cache holds under another prefix; `weights list` shows it cached.
    assert catalogue.pull(["swin_micro"], to=f"s3://{bucket}/other") == [f"s3://{bucket}/other/{entry.file_name}"]
    assert storage.read_bytes(f"s3://{bucket}/other/{entry.file_name}") == data
    row = next(r for r in catalogue.rows(tmp_path) if r.backbone == "swin_micro")
    assert row.cached == got.path


def test_weights_list_names_every_full_size_backbone(cache: Path) -> None:
    from autox_video.cli import main

    table = catalogue.table()
    for name in families.NAMES:
        assert (name in table) != families.model(name).tiny or name in table.splitlines()[-1]
    assert "CC-BY-NC-4.0" in table and "Apache-2.0" in table
    assert main(["weights", "pull", "nope"]) == 2


@pytest.mark.parametrize(("processes", "expected"), [(1, 1e-3 * 8 / 64), (2, 1e-3 * 16 / 64), (8, 1e-3)])
def test_lr_follows_the_batch_from_the_recipe(processes: int, expected: float) -> None:
    from autox_video.training.train import settle_lr

    cfg = build_config(dict(backbone="swin_b", videos_per_gpu=8))
    assert settle_lr(cfg, None, processes).lr == pytest.approx(expected)
    tsm = build_config(dict(backbone="tsm_r50", videos_per_gpu=8))  # 0.1 for 8 x 16 = 128
    assert settle_lr(tsm, None, processes).lr == pytest.approx(0.1 * 8 * processes / 128)
    set_by_user = build_config(dict(backbone="swin_b", videos_per_gpu=8, lr=3e-4))
    assert settle_lr(set_by_user, None, processes).lr == 3e-4
    tiny = build_config(dict(backbone="swin_micro", videos_per_gpu=8))
    assert settle_lr(tiny, None, processes).lr == tiny.lr  # ours: unscaled


def test_resume_keeps_the_first_runs_lr(tmp_path: Path) -> None:
    from autox_video.training.train import settle_lr

    ckpt = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {}, "meta": {"autox": {"config": {"lr": 2.5e-4}}}}, ckpt)
    cfg = build_config(dict(backbone="swin_b", videos_per_gpu=8))
    assert settle_lr(cfg, ckpt, 8).lr == 2.5e-4  # 8 processes now, 2 in the first run: the first run's lr


def test_pretrained_none_on_a_full_size_backbone_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    from autox_video.training.train import _pretrained_info

    class Inputs:
        pretrained_info = None

    with caplog.at_level(logging.WARNING, logger="autox_video"):
        _pretrained_info(build_config(dict(backbone="swin_b", pretrained="none")), Inputs(), None)
        _pretrained_info(build_config(dict(backbone="swin_micro", pretrained="none")), Inputs(), None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "swin_b starts from random weights" in warnings[0] and "80.57" in warnings[0]


def test_config_default_is_auto() -> None:
    assert build_config({}).pretrained == "auto"
    assert build_config({"pretrained": None}).pretrained == "auto"  # null: not set


def test_report_names_a_non_commercial_licence() -> None:
    from autox_video.report.page import _source

    html = _source({"pretrained": {"source": "https://x/y.pth", "sha256": "ab" * 32, "licence": "CC-BY-NC-4.0",
                                   "non_commercial": True}})  # fmt: skip
    assert "CC-BY-NC-4.0 (non-commercial use only)" in html and "https://x/y.pth" in html


def test_training_records_where_its_weights_came_from(
    server: FileServer, real_checkpoint: tuple[bytes, str], tmp_path: Path
) -> None:
    """One real (tiny) run from an http:// checkpoint: provenance in best.pth, results.json and report.json."""
    from tinyrun import cli, make_tiny_dataset, write_config

    from autox_video.training.checkpoints import read_meta

    data, sha = real_checkpoint
    url = _serve(server, data, f"micro-{sha[:8]}.pth")
    ds = make_tiny_dataset(tmp_path / "data")
    work = tmp_path / "work"
    config = write_config(tmp_path / "config.yaml", ds, work, epoch=1, pretrained=url)
    env = {"AUTOX_CACHE_DIR": str(tmp_path / "cache")}
    train = cli("train", "--config", str(config), env=env)
    assert train.returncode == 0, train.stderr[-2000:]
    assert f"pretrained: {url} (sha256 {sha[:12]}, licence unknown)" in train.stderr
    assert "lr 0.002: set in the config (this run: 1 processes x 4 videos = 4 per step)" in train.stderr
    expected = {"source": url, "sha256": sha, "licence": "unknown", "non_commercial": False}
    assert read_meta(work / "best.pth")["autox"]["pretrained"] == expected
    test = cli("test", "--config", str(config), env=env)
    assert test.returncode == 0, test.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["pretrained"] == expected
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["source"]["pretrained"] == expected
    assert sha in (tmp_path / "report.html").read_text()


def test_ranks_starting_together_download_once(
    server: FileServer, cache: Path, served_micro: tuple[bytes, str, str, str]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data, sha, name, url = served_micro
    with ThreadPoolExecutor(4) as pool:  # each call opens its own lock file description, as processes do
        digests = list(pool.map(lambda _: download(url, cache / "weights" / name, sha256_prefix=sha[:8]), range(4)))
    assert digests == [sha] * 4 and len(server.requests) == 1


def test_a_download_draws_a_bar_on_a_terminal_and_none_in_a_pipe(
    server: FileServer, real_checkpoint: tuple[bytes, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import os
    import select
    import sys

    from autox_video.weights.download import download

    data, sha = real_checkpoint
    url = _serve(server, data, f"micro-{sha[:8]}.pth")
    master, slave = os.openpty()
    with open(slave, "w", closefd=True) as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        download(url, tmp_path / "a.pth", sha256_prefix=sha[:8])
        tty.flush()
    drawn = ""
    while select.select([master], [], [], 1.0)[0]:  # the pty hands over what was written in pieces
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the writing side is closed and everything has been read
            break
        if not chunk:
            break
        drawn += chunk.decode(errors="replace")
    os.close(master)
    assert "a.pth" in drawn and "B/s" in drawn and "100%" in drawn  # tqdm's byte bar, finished
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    download(url, tmp_path / "b.pth", sha256_prefix=sha[:8])
    assert pipe.getvalue() == ""  # logs and pods get no bar
