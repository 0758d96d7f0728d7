"""The native (awscrt) small-file path inside Transfer: used when it can serve, boto3 else."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from s3server import SeaweedServer

from watchsync import crt
from watchsync.remote import S3Settings, S3Url, make_client
from watchsync.transfer import Transfer, native_uploader

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.skipif(not crt.available(), reason="awscrt is not importable here")


def _session(server: SeaweedServer) -> boto3.Session:
    return boto3.session.Session(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name=server.region,
    )


def test_native_uploader_follows_the_clients_endpoint(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """AWS_ENDPOINT_URL (no flag) reaches the native client through boto3's own client."""
    client = make_client(S3Settings())
    uploader = native_uploader(S3Settings(), client)
    assert uploader is not None
    (tmp_path / "a b+c.txt").write_bytes(b"native")
    with Transfer(client, S3Url.parse(f"s3://{bucket}/p"), tmp_path, crt=uploader) as t:
        calls: list[str] = []
        put = uploader.put_file

        def spy(*args: object, **kwargs: object) -> str:
            calls.append(str(args[1]))
            return put(*args, **kwargs)  # type: ignore[arg-type]

        uploader.put_file = spy  # type: ignore[method-assign]
        up = t.upload("a b+c.txt")
    assert calls == ["p/a b+c.txt"]
    body = s3.get_object(Bucket=bucket, Key="p/a b+c.txt")["Body"].read()
    assert body == b"native" and up.etag == hashlib.md5(body).hexdigest()
    client.close()


def test_native_disabled_by_environment(
    aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHSYNC_NATIVE", "0")
    client = make_client(S3Settings())
    assert native_uploader(S3Settings(), client) is None
    client.close()


def test_unusable_native_client_falls_back_to_boto3(
    s3server: SeaweedServer, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """TLS spoken to a plain-HTTP server fails below S3: the upload goes through boto3, and
    so do the following ones."""
    https = s3server.endpoint.replace("http://", "https://")
    uploader = crt.CrtUploader(
        endpoint_url=https, region=s3server.region, session=_session(s3server)
    )
    (tmp_path / "x").write_bytes(b"one")
    (tmp_path / "y").write_bytes(b"two")
    with Transfer(s3, S3Url.parse(f"s3://{bucket}"), tmp_path, crt=uploader) as t:
        t.upload("x")
        assert t.crt is None
        t.upload("y")
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="y")["Body"].read() == b"two"
