"""Checksums in transit: what is sent, what is verified, and the opt-out's precedence."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from awscrt import checksums
from botocore.awsrequest import AWSResponse, HTTPHeaders
from urllib3.response import HTTPResponse

from watchsync.agent.config import load_config
from watchsync.core.errors import FileError
from watchsync.s3.client import make_client
from watchsync.s3.downloads import ChecksumMismatch
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.transfer import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024


def _crc(data: bytes) -> str:
    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()


def _answer_get(body: bytes, crc: str) -> Any:
    """A before-send hook answering every GET with ``body`` and the stored CRC ``crc``."""

    def hook(request: Any, **_: Any) -> AWSResponse | None:
        if request.method != "GET":
            return None
        raw = HTTPResponse(body=io.BytesIO(body), preload_content=False, status=200)
        headers = HTTPHeaders()
        for name, value in {
            "Content-Length": str(len(body)),
            "ETag": '"x"',
            "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT",
            "x-amz-checksum-crc32c": crc,
        }.items():
            headers[name] = value
        return AWSResponse(request.url, 200, headers, raw)

    return hook


@pytest.mark.parametrize(("checksum", "fails"), [(True, True), (False, False)])
def test_damaged_download_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checksum: bool, fails: bool
) -> None:
    """Bytes that do not match the object's CRC32C never become the file (no network: the
    answer is made up in botocore's before-send hook)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")):
        monkeypatch.setenv(name, value)
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1", checksum=checksum)
    client = make_client(settings)
    client.meta.events.register(
        "before-send.s3.GetObject", _answer_get(b"damaged", _crc(b"good!!!"))
    )
    with Transfer(client, S3Url.parse("s3://bkt"), tmp_path, settings=settings) as t:
        if fails:
            with pytest.raises(ChecksumMismatch):
                t.download("f", size=7, mtime_ns=0)
            assert list(tmp_path.iterdir()) == []
        else:
            t.download("f", size=7, mtime_ns=0)
            assert (tmp_path / "f").read_bytes() == b"damaged"
    client.close()


def test_multipart_download_is_checked_against_the_full_object_crc(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(9 * MiB)
    (tmp_path / "big").write_bytes(data)
    with Transfer(s3, S3Url.parse(f"s3://{bucket}"), tmp_path) as t:
        t.upload("big")
        head = s3.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC32C") == _crc(data)
        t.downloads._verify_download("big", tmp_path / "big")
        other = tmp_path / "other"
        other.write_bytes(data[:-1] + b"\0")
        with pytest.raises(ChecksumMismatch):
            t.downloads._verify_download("big", other)


def test_crc_of_an_unreadable_file_is_a_file_error(tmp_path: Path) -> None:
    from watchsync.s3.multipart import crc32c_file as _crc32c_file

    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError(5, "Input/output error")

    with pytest.raises(FileError):
        _crc32c_file(Broken(), "x")


@pytest.mark.parametrize(
    ("in_file", "in_env", "in_flag", "expected"),
    [
        (None, None, None, True),
        ("false", None, None, False),
        ("false", "1", None, True),
        ("true", "0", None, False),
        ("true", None, False, False),
    ],
)
def test_checksum_key_precedence(
    tmp_path: Path, in_file: str | None, in_env: str | None, in_flag: object, expected: bool
) -> None:
    text = f"checksum = {in_file}\n" if in_file is not None else ""
    text += '[[folder]]\npath = "/srv/a"\nurl = "s3://bkt/a"\n'
    (tmp_path / "c.toml").write_text(text)
    env = {} if in_env is None else {"WATCHSYNC_CHECKSUM": in_env}
    cfg = load_config(tmp_path / "c.toml", flags={"checksum": in_flag}, env=env)
    assert cfg.folders[0].s3.checksum is expected
