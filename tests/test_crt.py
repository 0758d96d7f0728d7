"""``watchsync.s3.native.CrtUploader`` against the real SeaweedFS server."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from s3server import SeaweedServer

from watchsync.core.errors import FailureKind
from watchsync.s3 import native as crt
from watchsync.s3.failures import classify

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.skipif(not crt.available(), reason="awscrt not usable here")

ODD_KEYS = [
    "plain.txt",
    "with space/and  two.txt",
    "ünïcødé/日本語.txt",
    "plus+sign.txt",
    "percent%20literal%.txt",
    "hash#frag.txt",
    "question?mark=1&amp.txt",
    "tilde~(parens)[brackets]{braces}!$',;:@.txt",
    "deep/er/still/x",
]


def _session(server: SeaweedServer, *, secret: str | None = None) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret or server.secret_key,
        region_name=server.region,
    )


@pytest.fixture
def uploader(s3server: SeaweedServer) -> Iterator[crt.CrtUploader]:
    with crt.CrtUploader(
        endpoint_url=s3server.endpoint,
        region=s3server.region,
        session=_session(s3server),
        max_concurrency=32,
    ) as up:
        yield up


def _file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("key", "size"), [(k, 4096) for k in ODD_KEYS] + [("empty", 0), ("one", 1)]
)
def test_put_odd_names_reads_back(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path, key: str, size: int
) -> None:
    data = (key.encode() * (size // max(1, len(key.encode())) + 1))[:size]
    path = _file(tmp_path, "f", data)
    etag = uploader.put_file(
        bucket, key, path, size=size, headers={"Content-Type": "text/x-watchsync"}
    )
    obj = s3.get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == data
    assert obj["ETag"].strip('"') == etag == hashlib.md5(data).hexdigest()
    assert obj["ContentType"] == "text/x-watchsync"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


def test_grown_file_uploads_announced_size(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"0123456789")
    uploader.put_file(bucket, "k", path, size=4, headers={})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"0123"


def test_shrunk_file_fails_without_object(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"0123")
    with pytest.raises(crt.CrtFileChanged) as info:
        uploader.put_file(bucket, "k", path, size=10, headers={})
    assert classify(info.value).kind is FailureKind.LOCAL
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_missing_file_is_file_error(uploader: crt.CrtUploader, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(crt.CrtFileChanged):
        uploader.put_file(bucket, "k", str(tmp_path / "nope"), size=3, headers={})


def test_conditional_writes(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    first = _file(tmp_path, "a", b"first")
    second = _file(tmp_path, "b", b"second")
    etag = uploader.put_file(bucket, "k", first, size=5, headers={"If-None-Match": "*"})

    with pytest.raises(crt.CrtError) as info:
        uploader.put_file(bucket, "k", second, size=6, headers={"If-None-Match": "*"})
    assert (info.value.status, info.value.code) == (412, "PreconditionFailed")
    assert classify(info.value).kind is FailureKind.PRECONDITION
    with pytest.raises(crt.CrtError) as info:
        uploader.put_file(bucket, "k", second, size=6, headers={"If-Match": '"' + "0" * 32 + '"'})
    assert classify(info.value).kind is FailureKind.PRECONDITION
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"

    new = uploader.put_file(bucket, "k", second, size=6, headers={"If-Match": f'"{etag}"'})
    assert new == hashlib.md5(b"second").hexdigest()
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_storage_class_header_passes(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"x")
    uploader.put_file(bucket, "k", path, size=1, headers={"x-amz-storage-class": "STANDARD"})
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 1


def test_wrong_secret_is_permanent(s3server: SeaweedServer, bucket: str, tmp_path: Path) -> None:
    path = _file(tmp_path, "f", b"x")
    with (
        crt.CrtUploader(
            endpoint_url=s3server.endpoint,
            region=s3server.region,
            session=_session(s3server, secret="wrong-secret"),
        ) as up,
        pytest.raises(crt.CrtError) as info,
    ):
        up.put_file(bucket, "k", path, size=1, headers={})
    assert info.value.status == 403
    assert info.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeyId")
    assert classify(info.value).kind is FailureKind.REFUSED


def test_connection_refused_is_transient_and_fast(s3server: SeaweedServer, tmp_path: Path) -> None:
    path = _file(tmp_path, "f", b"x")
    started = time.monotonic()
    with (
        crt.CrtUploader(
            endpoint_url=f"http://127.0.0.1:{_closed_port()}",
            region=s3server.region,
            session=_session(s3server),
        ) as up,
        pytest.raises(crt.CrtError) as info,
    ):
        up.put_file("b", "k", path, size=1, headers={})
    assert classify(info.value).kind is FailureKind.UNREACHABLE
    assert info.value.status == 0
    assert "CONNECTION_REFUSED" in info.value.code
    assert time.monotonic() - started < 5


def test_many_concurrent_puts(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    paths = {f"d/{i:03d}": _file(tmp_path, str(i), f"content {i}".encode()) for i in range(200)}
    with ThreadPoolExecutor(16) as pool:
        etags = dict(
            zip(
                paths,
                pool.map(
                    lambda kv: uploader.put_file(
                        bucket, kv[0], kv[1], size=Path(kv[1]).stat().st_size, headers={}
                    ),
                    paths.items(),
                ),
                strict=True,
            )
        )
    listed = {
        o["Key"]: o["ETag"].strip('"')
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    }
    assert listed == etags
    assert listed["d/007"] == hashlib.md5(b"content 7").hexdigest()


def test_submit_many_futures(
    uploader: crt.CrtUploader, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"same")
    futures = [uploader.submit(bucket, f"k{i}", path, size=4, headers={}) for i in range(200)]
    assert {f.result(timeout=60) for f in futures} == {hashlib.md5(b"same").hexdigest()}
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 200


def test_close_drains_and_refuses_new_work(
    s3server: SeaweedServer, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    path = _file(tmp_path, "f", b"x")
    up = crt.CrtUploader(
        endpoint_url=s3server.endpoint, region=s3server.region, session=_session(s3server)
    )
    futures = [up.submit(bucket, f"k{i}", path, size=1, headers={}) for i in range(20)]
    up.close()
    assert all(f.done() and f.exception() is None for f in futures)
    up.close()  # idempotent
    with pytest.raises(RuntimeError):
        up.submit(bucket, "late", path, size=1, headers={})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 20


def test_https_endpoint_builds_tls_client(s3server: SeaweedServer) -> None:
    with crt.CrtUploader(
        endpoint_url="https://127.0.0.1:1", region="us-east-1", session=_session(s3server)
    ):
        pass


def test_refreshable_credentials_are_asked_per_request(
    s3server: SeaweedServer, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    from datetime import datetime, timedelta

    import botocore.session
    from botocore.credentials import CredentialProvider, CredentialResolver, RefreshableCredentials

    calls: list[int] = []

    def fetch() -> dict[str, str]:
        calls.append(1)
        expiry = datetime.now(UTC) + timedelta(hours=1)
        return {
            "access_key": s3server.access_key,
            "secret_key": s3server.secret_key,
            "token": "",
            "expiry_time": expiry.isoformat(),
        }

    class Refreshing(CredentialProvider):
        METHOD = CANONICAL_NAME = "test-refreshable"

        def load(self) -> RefreshableCredentials:
            return RefreshableCredentials.create_from_metadata(fetch(), fetch, self.METHOD)

    # First in the session's own provider chain: the session then holds the refreshable
    # credentials itself (not a global), as it does with STS/SSO credentials.
    core = botocore.session.get_session()
    resolver: CredentialResolver = core.get_component("credential_provider")
    resolver.providers.insert(0, Refreshing())
    session = boto3.Session(botocore_session=core, region_name=s3server.region)
    path = _file(tmp_path, "f", b"abc")
    with crt.CrtUploader(
        endpoint_url=s3server.endpoint, region=s3server.region, session=session
    ) as up:
        assert up.put_file(bucket, "k", path, size=3, headers={}) == hashlib.md5(b"abc").hexdigest()
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"abc"
