"""The storage layer on local paths and on a real S3 server (moto over HTTP): round trips,
multipart, parallel downloads and the ETag cache that spares a restarted pod the downloads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autox_video import storage
from autox_video.errors import StorageError


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b/runs", ("x.pth",), "s3://b/runs/x.pth"),
        ("s3://b/runs/", ("logs", "a.log"), "s3://b/runs/logs/a.log"),
        ("s3://b", ("/k/",), "s3://b/k"),
        ("s3://b/p", (), "s3://b/p"),
        ("/tmp/w", ("x.pth",), "/tmp/w/x.pth"),
        ("w", ("a", "b"), "w/a/b"),
    ],
)
def test_join_works_for_uris_and_paths(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert storage.join(base, *parts) == expected


def test_is_s3_and_split() -> None:
    assert storage.is_s3("s3://b/k") and not storage.is_s3("/data/s3://x") and not storage.is_s3(Path("s3:/b"))
    assert storage.split_uri("s3://bucket/a/b.mp4") == ("bucket", "a/b.mp4")
    with pytest.raises(StorageError, match="not an S3 URI"):
        storage.split_uri("s3:///key")


def test_local_paths_use_the_same_api(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    storage.write_text(storage.join(out, "progress.json"), "{}")
    src = tmp_path / "epoch_1.pth"
    src.write_bytes(b"weights")
    storage.upload(src, storage.join(out, "epoch_1.pth"))
    assert storage.exists(storage.join(out, "epoch_1.pth"))
    assert storage.list_keys(out) == ["epoch_1.pth", "progress.json"]
    assert storage.download(storage.join(out, "epoch_1.pth"), tmp_path / "copy.pth").read_bytes() == b"weights"
    assert storage.localize(src) == src
    assert storage.download_many(str(tmp_path), ["epoch_1.pth"], tmp_path / "unused") == [tmp_path / "epoch_1.pth"]
    storage.delete(storage.join(out, "progress.json"))
    storage.delete(storage.join(out, "progress.json"))  # already gone: fine
    assert storage.list_keys(out) == ["epoch_1.pth"]
    with pytest.raises(StorageError, match=r"nope\.txt"):
        storage.read_text(str(tmp_path / "nope.txt"))


def test_s3_round_trip(bucket: str, tmp_path: Path) -> None:
    run = f"s3://{bucket}/runs/exp1"
    storage.write_text(storage.join(run, "last_checkpoint"), "epoch_2.pth")
    assert storage.read_text(storage.join(run, "last_checkpoint")) == "epoch_2.pth"
    (tmp_path / "m.jsonl").write_text('{"epoch": 1}\n')
    storage.upload(tmp_path / "m.jsonl", storage.join(run, "metrics.jsonl"))
    storage.write_bytes(storage.join(run, "logs", "train.log"), b"log")
    storage.write_bytes(f"s3://{bucket}/runs/exp10/other", b"not in exp1")
    assert storage.list_keys(run) == ["last_checkpoint", "logs/train.log", "metrics.jsonl"]
    assert storage.exists(storage.join(run, "metrics.jsonl"))
    storage.delete(storage.join(run, "metrics.jsonl"))
    assert not storage.exists(storage.join(run, "metrics.jsonl"))
    assert storage.list_keys(f"s3://{bucket}/nothing/here") == []


def test_large_files_go_multipart_and_come_back_whole(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOX_S3_MULTIPART_MB", "5")
    data = os.urandom(11 * 1024 * 1024)
    (tmp_path / "big.pth").write_bytes(data)
    uri = f"s3://{bucket}/ckpt/big.pth"
    storage.upload(tmp_path / "big.pth", uri)
    info = storage.stat(uri)
    assert info is not None and info.size == len(data)
    assert info.etag.strip('"').endswith("-3")  # S3's ETag of a 3-part upload
    assert storage.download(uri, tmp_path / "back.pth").read_bytes() == data  # ranged GETs


def test_download_is_cached_until_the_object_or_the_file_changes(bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/lists/train.txt"
    storage.write_text(uri, "a.mp4 0\n")
    local = storage.download(uri, tmp_path / "train.txt")
    first = local.stat()
    assert storage.download(uri, local).stat().st_mtime_ns == first.st_mtime_ns  # not fetched again
    storage.write_text(uri, "a.mp4 1\n")  # same size, new ETag
    assert storage.download(uri, local).read_text() == "a.mp4 1\n"
    local.write_text("edited!\n")
    assert storage.download(uri, local).read_text() == "a.mp4 1\n"  # a local edit is undone


def test_uploaded_file_is_not_downloaded_back(bucket: str, tmp_path: Path) -> None:
    ckpt = tmp_path / "epoch_1.pth"
    ckpt.write_bytes(b"x" * 100)
    storage.upload(ckpt, f"s3://{bucket}/run/epoch_1.pth")
    before = ckpt.stat().st_mtime_ns
    storage.download(f"s3://{bucket}/run/epoch_1.pth", ckpt)
    assert ckpt.stat().st_mtime_ns == before


def test_localize_puts_objects_in_the_cache(bucket: str) -> None:
    storage.write_bytes(f"s3://{bucket}/weights/swin.pth", b"w")
    path = storage.localize(f"s3://{bucket}/weights/swin.pth")
    assert path == storage.cache_path(f"s3://{bucket}/weights/swin.pth")  # other ranks know it without S3
    assert path == storage.cache_root() / "s3" / bucket / "weights" / "swin.pth"
    assert path.read_bytes() == b"w"


@pytest.mark.parametrize("count", [5, 40])  # one HEAD per key / one listing for many keys
def test_download_many_fetches_in_parallel_in_order(bucket: str, tmp_path: Path, count: int) -> None:
    keys = [f"class{i % 3}/video_{i:03d}.mp4" for i in range(count)]
    for key in keys:
        storage.write_bytes(f"s3://{bucket}/videos/{key}", key.encode())
    paths = storage.download_many(f"s3://{bucket}/videos", list(reversed(keys)), tmp_path / "videos", workers=8)
    assert paths == [tmp_path / "videos" / k for k in reversed(keys)]
    assert all(p.read_bytes() == k.encode() for p, k in zip(paths, reversed(keys), strict=True))


@pytest.mark.parametrize("count", [2, 40])
def test_download_many_names_the_missing_video(bucket: str, tmp_path: Path, count: int) -> None:
    keys = [f"v{i}.mp4" for i in range(count)]
    for key in keys[1:]:
        storage.write_bytes(f"s3://{bucket}/videos/{key}", b"v")
    with pytest.raises(StorageError, match=f"^no object at s3://{bucket}/videos/v0.mp4"):
        storage.download_many(f"s3://{bucket}/videos", keys, tmp_path)


def test_download_many_refuses_paths_outside_the_root(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"'\.\./etc/passwd' is not a file path"):
        storage.download_many(f"s3://{bucket}/videos", ["../etc/passwd"], tmp_path)


def test_sync_down_mirrors_a_prefix(bucket: str, tmp_path: Path) -> None:
    for key in ("a/1.mp4", "b/2.MP4", "notes.txt"):
        storage.write_bytes(f"s3://{bucket}/ds/{key}", b"v")
    root = storage.sync_down(f"s3://{bucket}/ds", tmp_path / "ds", suffixes=[".mp4"])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == ["a/1.mp4", "b/2.MP4"]
    assert storage.sync_down(f"s3://{bucket}/ds") == storage.cache_root() / "s3" / bucket / "ds"


_NEW_POD = textwrap.dedent(
    """
    import sys
    from autox_video import storage
    from autox_video.storage import settings
    gets = []
    settings.client().meta.events.register("before-send.s3.GetObject", lambda **kw: gets.append(1))
    storage.download_many(sys.argv[1], sys.argv[2].split(","), sys.argv[3])
    print(len(gets))
    """
)


def test_a_restarted_process_downloads_only_what_changed(bucket: str, tmp_path: Path) -> None:
    keys = [f"v{i}.mp4" for i in range(6)]
    for key in keys:
        storage.write_bytes(f"s3://{bucket}/videos/{key}", key.encode())

    def new_pod() -> int:
        args = [f"s3://{bucket}/videos", ",".join(keys), str(tmp_path / "data")]
        done = subprocess.run(
            [sys.executable, "-c", _NEW_POD, *args], check=False, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    assert new_pod() == 6
    assert new_pod() == 0  # same cache dir (AUTOX_CACHE_DIR), nothing changed
    storage.write_bytes(f"s3://{bucket}/videos/v3.mp4", b"re-encoded")
    assert new_pod() == 1
    assert (tmp_path / "data" / "v3.mp4").read_bytes() == b"re-encoded"


def test_configure_overrides_the_environment(bucket: str, monkeypatch: pytest.MonkeyPatch, s3_env) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # wrong on purpose
    storage.configure(endpoint_url=s3_env.endpoint_url, region="us-east-1")
    storage.write_text(f"s3://{bucket}/x", "ok")
    assert storage.endpoint_url() == s3_env.endpoint_url
    storage.configure()
    assert storage.endpoint_url() == "http://127.0.0.1:9"


def test_importing_storage_pulls_in_neither_torch_nor_boto3() -> None:
    code = "import sys, autox_video.storage; print(sorted(m for m in ('torch', 'boto3') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
