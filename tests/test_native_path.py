"""The native (awscrt) small-file path inside Transfer: used when it can serve, boto3 else."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from helpers import fails_with
from s3server import SeaweedServer

from watchsync.core.errors import FailureKind
from watchsync.core.model import Condition
from watchsync.s3 import native as crt
from watchsync.s3.client import make_client
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.native_route import native_uploader
from watchsync.s3.transfer import Transfer, open_transfer

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
        assert t.native.crt is None
        t.upload("y")
    assert s3.get_object(Bucket=bucket, Key="x")["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="y")["Body"].read() == b"two"


@pytest.fixture
def aws_only_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake static credentials and no config files: clients are built, nothing is sent."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


VPCE = "https://bucket.vpce-1a2b3c4d-5e6f.s3.eu-west-1.vpce.amazonaws.com"


@pytest.mark.parametrize(
    ("env", "endpoint_url", "native"),
    [
        ({}, None, True),
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, None, False),
        ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, None, False),
        ({}, VPCE, False),
        ({}, "https://s3-fips.eu-west-1.amazonaws.com", False),
        ({}, "http://127.0.0.1:9", True),
    ],
    ids=["plain", "fips", "dualstack", "vpc-endpoint", "fips-url", "custom-server"],
)
def test_native_path_only_where_it_goes_where_boto3_goes(
    aws_only_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    endpoint_url: str | None,
    native: bool,
) -> None:
    """On AWS the native client knows only the plain regional endpoint: wherever botocore
    resolved another one (FIPS, dualstack, a VPC endpoint), uploads stay on boto3."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = S3Settings(endpoint_url=endpoint_url, region="eu-west-1")
    with open_transfer(settings, S3Url.parse("s3://bkt"), tmp_path) as t:
        assert (t.native.crt is not None) is native


def test_uploads_started_together_from_one_thread(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """start_upload sends small files side by side and answers as upload() would: each
    object stored with its CRC32C, "only if absent" refused where an object is, and large
    files left to upload()."""
    client = make_client(S3Settings())
    uploader = native_uploader(S3Settings(), client)
    assert uploader is not None
    names = [f"d/f{i}.txt" for i in range(20)]
    (tmp_path / "d").mkdir()
    for name in names:
        (tmp_path / name).write_bytes(name.encode() * 5)
    s3.put_object(Bucket=bucket, Key="p/taken.txt", Body=b"someone else's")
    (tmp_path / "taken.txt").write_bytes(b"mine")
    (tmp_path / "big.bin").write_bytes(b"x" * 64)
    with Transfer(
        client, S3Url.parse(f"s3://{bucket}/p"), tmp_path, crt=uploader, multipart_threshold=64
    ) as t:
        started = [t.start_upload(name, condition=Condition.ABSENT) for name in names]
        taken = t.start_upload("taken.txt", condition=Condition.ABSENT)
        assert t.start_upload("big.bin") is None  # at the threshold: upload() sends it
        results = [s.result() for s in started if s is not None]
        assert taken is not None
        with fails_with(FailureKind.PRECONDITION):
            taken.result()
    assert len(results) == len(names)
    for name, up in zip(names, results, strict=True):
        head = s3.head_object(Bucket=bucket, Key=f"p/{name}", ChecksumMode="ENABLED")
        assert head["ETag"].strip('"') == up.etag == hashlib.md5(name.encode() * 5).hexdigest()
        assert head.get("ChecksumCRC32C")
        assert (up.size, up.mtime_ns) == (len(name) * 5, (tmp_path / name).stat().st_mtime_ns)
    assert s3.get_object(Bucket=bucket, Key="p/taken.txt")["Body"].read() == b"someone else's"
    client.close()
