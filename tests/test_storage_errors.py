"""What a user sees when S3 is misconfigured: one line naming the URI and what to fix."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from autox_video import storage
from autox_video.errors import AutoXError, StorageError


def one_line(err: pytest.ExceptionInfo[StorageError]) -> str:
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, AutoXError) and err.value.exit_code == 1
    return message


def test_missing_bucket(s3_env: Any, tmp_path: Path) -> None:
    uri = "s3://no-such-bucket-autox/runs/x/last_checkpoint"
    for action in (
        lambda: storage.read_text(uri),
        lambda: storage.exists(uri),
        lambda: storage.download(uri, tmp_path / "x"),
        lambda: storage.write_text(uri, "x"),
        lambda: storage.list_keys("s3://no-such-bucket-autox/runs"),
    ):
        with pytest.raises(StorageError) as err:
            action()
        assert "bucket 'no-such-bucket-autox' does not exist" in one_line(err)
        assert "s3://no-such-bucket-autox/" in str(err.value)


def test_missing_key(bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/lists/train.txt"
    assert not storage.exists(uri)
    for action in (
        lambda: storage.read_text(uri),
        lambda: storage.download(uri, tmp_path / "t"),
        lambda: storage.localize(uri),
    ):
        with pytest.raises(StorageError) as err:
            action()
        assert one_line(err) == f"no object at {uri}"


def test_missing_local_file_to_upload(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as err:
        storage.upload(tmp_path / "epoch_3.pth", f"s3://{bucket}/run/epoch_3.pth")
    assert one_line(err) == f"{tmp_path / 'epoch_3.pth'}: no such file to upload to s3://{bucket}/run/epoch_3.pth"


def test_no_credentials(bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    # No shared files or profiles to fall back on (AWS_EC2_METADATA_DISABLED is set by s3_env).
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(StorageError) as err:
        storage.read_text(f"s3://{bucket}/a.txt")
    fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile or role)"
    assert one_line(err) == f"s3://{bucket}/a.txt: no S3 credentials found: {fix}"


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("unknown-key", "does not know the access key: check AWS_ACCESS_KEY_ID"),
        ("wrong-secret", "rejected the signature: check AWS_SECRET_ACCESS_KEY"),
        ("no-permission", "access denied by S3"),
    ],
)
def test_bad_credentials(
    bucket: str, iam_key: dict[str, str], monkeypatch: pytest.MonkeyPatch, s3_env: Any, which: str, expected: str
) -> None:
    key_id = "AKIAUNKNOWNUNKNOWN00" if which == "unknown-key" else iam_key["id"]
    secret = "wrong" if which == "wrong-secret" else iam_key["secret"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with pytest.raises(StorageError) as err:
        storage.read_text(f"s3://{bucket}/a.txt")
    message = one_line(err)
    assert message.startswith(f"s3://{bucket}/a.txt: ") and expected in message and s3_env.endpoint_url in message


def test_unreachable_endpoint_is_named(s3_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from netutil import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AUTOX_S3_RETRY_SECONDS", "1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    start = time.monotonic()
    with pytest.raises(StorageError) as err:
        storage.read_text("s3://data/train.txt")
    message = one_line(err)
    assert message.startswith(f"s3://data/train.txt: cannot reach S3 at {endpoint} (")
    assert "gave up on read after 1 s of retries (raise AUTOX_S3_RETRY_SECONDS to wait longer)" in message
    assert time.monotonic() - start < 10
