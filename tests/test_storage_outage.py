"""S3 goes down during training and comes back on the same port: transfers in flight or
issued meanwhile succeed; an outage longer than AUTOX_S3_RETRY_SECONDS fails with one line
and leaves the last complete checkpoint (and its pointer) intact."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autox_video import storage
from autox_video.errors import StorageError

MB = 1024 * 1024


def outage_mid_transfer(server: Any, seconds: float) -> tuple[Callable[[int], None], list[threading.Thread]]:
    """A progress callback that, on its first call, takes the server down for `seconds` and
    holds the transfer until the server is really down, so the outage hits it in flight."""
    outages: list[threading.Thread] = []
    lock = threading.Lock()

    def progress(_: int) -> None:
        with lock:
            if not outages:
                outages.append(server.outage(seconds))  # returns once the port is closed

    return progress, outages


@pytest.fixture()
def retries_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="botocore.retries")
    caplog.set_level(logging.WARNING, logger="autox_video")
    return caplog


def _retried(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether botocore or our outer loop retried something (proof the outage was felt)."""
    return any("Retry needed" in r.getMessage() or "retrying for up to" in r.getMessage() for r in caplog.records)


def test_multipart_upload_in_flight_survives_a_restart(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: Any, retries_logged: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AUTOX_S3_MULTIPART_MB", "5")
    data = os.urandom(12 * MB)
    (tmp_path / "epoch_4.pth").write_bytes(data)
    progress, outages = outage_mid_transfer(s3_env, 2.0)
    storage.upload(tmp_path / "epoch_4.pth", f"s3://{bucket}/run/epoch_4.pth", progress=progress)
    assert outages and _retried(retries_logged)
    outages[0].join()
    assert s3_env.client().get_object(Bucket=bucket, Key="run/epoch_4.pth")["Body"].read() == data


def test_download_in_flight_survives_a_restart(
    bucket: str, tmp_path: Path, s3_env: Any, retries_logged: pytest.LogCaptureFixture
) -> None:
    # One GET much larger than the socket buffers: cutting the connection cuts the body short.
    data = os.urandom(24 * MB)
    s3_env.client().put_object(Bucket=bucket, Key="videos/long.mp4", Body=data)
    progress, outages = outage_mid_transfer(s3_env, 2.0)
    path = storage.download(f"s3://{bucket}/videos/long.mp4", tmp_path / "long.mp4", progress=progress)
    assert outages and _retried(retries_logged)
    outages[0].join()
    assert path.read_bytes() == data
    assert not list(tmp_path.glob(".*.part"))  # the cut attempt left no partial file behind


def test_requests_issued_during_an_outage_wait_for_the_server(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: Any, retries_logged: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries: only the outer time budget helps
    for i in range(20):
        storage.write_bytes(f"s3://{bucket}/videos/v{i}.mp4", b"v%d" % i)
    down = time.monotonic()
    back = s3_env.outage(3.0)
    storage.write_text(f"s3://{bucket}/run/progress.json", '{"epoch": 5}')
    assert time.monotonic() - down >= 2.5
    paths = storage.download_many(f"s3://{bucket}/videos", [f"v{i}.mp4" for i in range(20)], tmp_path)
    back.join()
    assert storage.read_text(f"s3://{bucket}/run/progress.json") == '{"epoch": 5}'
    assert [p.read_bytes() for p in paths] == [b"v%d" % i for i in range(20)]
    assert any("retrying for up to 30 s" in r.getMessage() for r in retries_logged.records)


def test_an_outage_longer_than_the_budget_fails_clearly_and_keeps_the_last_checkpoint(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: Any
) -> None:
    run = f"s3://{bucket}/run"
    (tmp_path / "epoch_1.pth").write_bytes(b"one")
    storage.upload(tmp_path / "epoch_1.pth", f"{run}/epoch_1.pth")
    storage.write_text(f"{run}/last_checkpoint", "epoch_1.pth")  # the pointer, written last

    monkeypatch.setenv("AUTOX_S3_RETRY_SECONDS", "2")
    (tmp_path / "epoch_2.pth").write_bytes(b"two")
    s3_env.stop()
    try:
        start = time.monotonic()
        with pytest.raises(StorageError) as err:
            storage.upload(tmp_path / "epoch_2.pth", f"{run}/epoch_2.pth")  # the pointer is never reached
        elapsed = time.monotonic() - start
    finally:
        s3_env.start()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{run}/epoch_2.pth: cannot reach S3 at {s3_env.endpoint_url} (")
    assert message.endswith("gave up on upload after 2 s of retries (raise AUTOX_S3_RETRY_SECONDS to wait longer)")
    assert 2 <= elapsed < 30
    assert storage.read_text(f"{run}/last_checkpoint") == "epoch_1.pth"
    assert storage.read_bytes(f"{run}/epoch_1.pth") == b"one"
