"""One S3 layer: the trainer's storage and the operator build their clients, and word their
failures, through the same core (`autox_video.storage.s3core`), against the moto server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from autox_operator import s3 as operator_s3
from netutil import free_port

from autox_video import storage
from autox_video.errors import S3Error
from autox_video.storage import s3client, settings
from autox_video.storage.s3errors import Kind

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*(ROOT / "autox_video").rglob("*.py"), *(ROOT / "operator" / "autox_operator").rglob("*.py")]


def test_only_the_core_makes_clients_and_reads_botocore_errors() -> None:
    makers = sorted(
        p.name for p in SOURCES if '.client(\n        "s3"' in p.read_text() or 'client("s3"' in p.read_text()
    )
    assert makers == ["s3client.py"]
    readers = sorted(p.name for p in SOURCES if "botocore.exceptions" in p.read_text())
    assert readers == ["s3core.py", "s3errors.py"]


def test_both_sides_get_their_client_from_the_core(s3_env: Any) -> None:
    trainer = settings.policy()
    assert settings.client() is s3client.client(trainer.access, trainer.requests)
    access = s3client.S3Access(s3_env.endpoint_url, "us-east-1", "testing", "testing")
    assert operator_s3.policy(access).client() is s3client.client(access, operator_s3.REQUESTS)
    # The same endpoint and credentials, different patience: the operator's timeouts are short.
    assert operator_s3.REQUESTS.connect_timeout < trainer.requests.connect_timeout


def _without_hint(message: str, hints: Mapping[Kind, str]) -> str:
    for hint in hints.values():
        message = message.removesuffix(f": {hint}")
    return message


def _both(
    monkeypatch: pytest.MonkeyPatch, uri: str, endpoint: str, key: str | None, secret: str | None
) -> tuple[S3Error, S3Error]:
    """The error the trainer's write and the operator's write of `uri` raise, with the same S3 and credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name, value in (("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTOX_S3_RETRY_SECONDS", "0")  # the operator's outage policy, to compare messages
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(S3Error) as trainer:
        storage.write_text(uri, "x")
    with pytest.raises(S3Error) as operator:
        operator_s3.put_text(operator_s3.S3Access(endpoint, "us-east-1", key, secret), uri, "x")
    return trainer.value, operator.value


# (server, a no-permission IAM key (switches authentication on), bucket) -> (uri, endpoint, key, secret)
Case = Callable[[Any, Callable[[], dict[str, str]], str], tuple[str, str, str | None, str | None]]
CASES: dict[str, tuple[Case, str]] = {
    "missing bucket": (
        lambda env, iam, b: ("s3://no-such-bucket-autox/x.json", env.endpoint_url, "testing", "testing"),
        "BucketNotFound",
    ),
    "unknown access key": (
        lambda env, iam, b: (f"s3://{b}/x.json", env.endpoint_url, "AKIAUNKNOWNUNKNOWN00", iam()["secret"]),
        "StorageAccessDenied",
    ),
    "wrong secret": (
        lambda env, iam, b: (f"s3://{b}/x.json", env.endpoint_url, iam()["id"], "wrong"),
        "StorageAccessDenied",
    ),
    "no permission": (
        lambda env, iam, b: (f"s3://{b}/x.json", env.endpoint_url, iam()["id"], iam()["secret"]),
        "StorageAccessDenied",
    ),
    "unreachable endpoint": (
        lambda env, iam, b: (f"s3://{b}/x.json", f"http://127.0.0.1:{free_port()}", "testing", "testing"),
        "StorageUnreachable",
    ),
    "invalid endpoint": (
        lambda env, iam, b: (f"s3://{b}/x.json", "minio minio:9000", "testing", "testing"),
        "InvalidEndpoint",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failure_reads_the_same_on_both_sides(
    case: str, bucket: str, s3_env: Any, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    make, reason = CASES[case]
    uri, endpoint, key, secret = make(s3_env, lambda: request.getfixturevalue("iam_key"), bucket)
    trainer, operator = _both(monkeypatch, uri, endpoint, key, secret)
    assert trainer.reason == operator.reason == reason
    assert "\n" not in str(trainer) and "\n" not in str(operator)
    # The same words, each side with its own fix (environment variables vs spec fields).
    same = _without_hint(str(trainer), settings.HINTS)
    assert same == _without_hint(str(operator), operator_s3.HINTS) and same.startswith(f"{uri}: ")


def test_no_credentials_reads_the_same_on_both_sides(
    bucket: str, s3_env: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    trainer, operator = _both(monkeypatch, f"s3://{bucket}/x.json", s3_env.endpoint_url, None, None)
    assert trainer.reason == operator.reason == "StorageNoCredentials"
    assert str(trainer).endswith(settings.HINTS[Kind.NO_CREDENTIALS])
    assert str(operator) == f"s3://{bucket}/x.json: no S3 credentials found: set spec.storage.secretRef"
