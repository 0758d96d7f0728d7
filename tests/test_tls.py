"""S3 over real TLS (SeaweedFS with a certificate from a CA made for the session): both
clients trust what boto3 trusts, and an untrusted server is one clear line, exit 2."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from awscrt import checksums
from s3server import SeaweedServer
from tlsca import TlsFiles

from watchsync.cli.main import main
from watchsync.s3 import native as crt
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.transfer import open_transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.skipif(not crt.available(), reason="awscrt is not importable here")


@pytest.fixture
def tls_env(
    s3tls: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Every AWS client pointed at the HTTPS endpoint; no CA configured yet."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    env = {
        **s3tls.env(),
        "AWS_ENDPOINT_URL": s3tls.https_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield env
    root.handlers[:], level = saved  # main() points the root logger at captured stderr
    root.setLevel(level)


@pytest.fixture
def tls_bucket(s3tls: SeaweedServer, test_ca: TlsFiles) -> Iterator[tuple[str, S3Client]]:
    """A fresh bucket on the TLS server and a boto3 client that trusts its CA."""
    client = boto3.session.Session(
        aws_access_key_id=s3tls.access_key,
        aws_secret_access_key=s3tls.secret_key,
        region_name=s3tls.region,
    ).client("s3", endpoint_url=s3tls.https_endpoint, verify=str(test_ca.ca_file))
    name = f"tls-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name, client
    client.delete_bucket(Bucket=name)  # SeaweedFS deletes non-empty buckets at once
    client.close()


def _crc(data: bytes) -> str:
    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("how", ["AWS_CA_BUNDLE", "profile ca_bundle"])
def test_native_client_trusts_botocores_ca_bundle(
    tls_env: dict[str, str],
    tls_bucket: tuple[str, S3Client],
    test_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    how: str,
) -> None:
    """A private CA only in AWS_CA_BUNDLE or in the profile: the native client uses it too,
    so uploads go through it (no TLS failure, no fallback to boto3)."""
    bucket, s3 = tls_bucket
    profile = None
    if how == "AWS_CA_BUNDLE":
        monkeypatch.setenv("AWS_CA_BUNDLE", str(test_ca.ca_file))
    else:
        Path(tls_env["AWS_CONFIG_FILE"]).write_text(
            f"[profile tls]\nca_bundle = {test_ca.ca_file}\n"
            f"aws_access_key_id = {tls_env['AWS_ACCESS_KEY_ID']}\n"
            f"aws_secret_access_key = {tls_env['AWS_SECRET_ACCESS_KEY']}\n"
        )
        profile = "tls"
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.txt").write_bytes(b"over tls")
    settings = S3Settings(profile=profile)
    with open_transfer(settings, S3Url.parse(f"s3://{bucket}/p"), root) as t:
        assert t.native.crt is not None
        t.upload("a.txt")
        assert t.native.crt is not None, "the native client failed and boto3 took over"
    head = s3.head_object(Bucket=bucket, Key="p/a.txt", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32C") == _crc(b"over tls")
    assert s3.get_object(Bucket=bucket, Key="p/a.txt")["Body"].read() == b"over tls"


def test_sync_over_tls_round_trips(
    tls_env: dict[str, str],
    tls_bucket: tuple[str, S3Client],
    test_ca: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(test_ca.ca_file))
    bucket, s3 = tls_bucket
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = {"a.txt": b"alpha", "d/b.bin": os.urandom(5000)}
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    assert main(["sync", str(src), f"s3://{bucket}"]) == 0
    assert main(["sync", f"s3://{bucket}", str(dst)]) == 0
    err = capsys.readouterr().err
    assert "native client fails" not in err, err
    assert {n: (dst / n).read_bytes() for n in files} == files
    for name, data in files.items():
        head = s3.head_object(Bucket=bucket, Key=name, ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC32C") == _crc(data)


def test_untrusted_server_is_one_line_and_exit_1(
    tls_env: dict[str, str],
    tls_bucket: tuple[str, S3Client],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket, _ = tls_bucket
    (tmp_path / "f").write_bytes(b"x")
    capsys.readouterr()
    code = main(["sync", str(tmp_path), f"s3://{bucket}"])
    out, err = capsys.readouterr()
    assert code == 1  # aws's code for a run S3 (here: its certificate) ended
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("fatal error: ") and "AWS_CA_BUNDLE" in lines[0], lines
