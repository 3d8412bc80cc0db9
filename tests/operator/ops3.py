"""The operator tests' S3 helper (a module of its own: two conftest.py files share one import name)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3

S3_KEY, S3_SECRET = "testing", "testing"


@dataclass
class S3:
    endpoint_url: str

    @property
    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
        )

    def new_bucket(self) -> str:
        name = f"autox-e2e-{uuid.uuid4().hex[:10]}"
        self.client.create_bucket(Bucket=name)
        return name

    def put_json(self, uri: str, data: Any) -> None:
        import json

        bucket, _, key = uri[len("s3://") :].partition("/")
        self.client.put_object(Bucket=bucket, Key=key, Body=json.dumps(data).encode())

    def put_text(self, uri: str, text: str) -> None:
        bucket, _, key = uri[len("s3://") :].partition("/")
        self.client.put_object(Bucket=bucket, Key=key, Body=text.encode())
