"""The S3 features watchsync relies on, checked against the real SeaweedFS server.

Where SeaweedFS differs from AWS S3 the test asserts what SeaweedFS actually does and
says so, so that the difference is known rather than discovered in production.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from s3server import HOST, SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024


def list_keys(s3: S3Client, bucket: str, *, page_size: int = 1000) -> tuple[list[str], int]:
    """All keys in listing order and the number of pages it took."""
    keys: list[str] = []
    pages = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": page_size}):
        pages += 1
        keys += [obj["Key"] for obj in page.get("Contents", [])]
    return keys, pages


def test_server_listens_on_loopback_only(s3server: SeaweedServer) -> None:
    result = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip("ss is not available")
    mine = [
        line.split()[3] for line in result.stdout.splitlines() if f"pid={s3server.pid}," in line
    ]
    if not mine:
        pytest.skip("ss cannot show process ids here")
    assert all(address.startswith(f"{HOST}:") for address in mine), mine
    assert f"{HOST}:{s3server.port}" in mine


# Keys that code-point, UTF-8 byte and "natural" orders would tell apart. No key continues
# "dir" with a byte below '/', which SeaweedFS lists out of order (see the next test).
FLAT_KEYS = [
    "plain.txt",
    "with space.txt",
    "plus+sign.txt",
    "percent%20.txt",
    "percent%.txt",
    "UPPER.txt",
    "lower.txt",
    "tilde~.txt",
    "caf\u00e9.txt",
    "cafe\u0301.txt",  # the same word, decomposed: a different key
    "\u65e5\u672c\u8a9e.txt",
    "emoji-\U0001f600.txt",
    "bmp-high-\ufffd.txt",  # U+FFFF would be sent raw in DeleteObjects XML, where it is illegal
    "dir/inner.txt",
    "dir/sub/deep.txt",
    "z-last",
    "0-first",
    "#hash",
    "!bang",
    "a&b=c;d",
    "quote'and\"double",
    "x" * 200,
]


def test_list_objects_v2_paginates_in_utf8_byte_order(s3: S3Client, bucket: str) -> None:
    for key in FLAT_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    keys, pages = list_keys(s3, bucket, page_size=5)

    assert pages > 1
    assert keys == sorted(FLAT_KEYS, key=lambda k: k.encode("utf-8"))
    assert s3.get_object(Bucket=bucket, Key="percent%20.txt")["Body"].read() == b"percent%20.txt"


# S3 orders "d-x" < "d.x" < "d/x" ('-' 0x2d, '.' 0x2e, '/' 0x2f); SeaweedFS stores keys as a
# directory tree and lists it depth first, so everything under "d/" comes before siblings
# of "d" that sort below '/'. A consumer that merges listings must not trust server order.
NESTED_KEYS = ["d-x", "d.x", "d/x", "d/y-z", "d/y/z", "d0"]
S3_ORDER = ["d-x", "d.x", "d/x", "d/y-z", "d/y/z", "d0"]
SEAWEEDFS_ORDER = ["d/x", "d/y/z", "d/y-z", "d-x", "d.x", "d0"]


def test_list_order_around_slash_differs_from_s3(s3: S3Client, bucket: str) -> None:
    for key in NESTED_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")

    keys, pages = list_keys(s3, bucket, page_size=2)

    assert sorted(keys, key=str.encode) == S3_ORDER
    assert pages > 1
    if keys != S3_ORDER:
        print(f"SeaweedFS lists {keys}; AWS S3 would list {S3_ORDER}")
    assert keys == SEAWEEDFS_ORDER, "SeaweedFS listing order changed: update this test"


def test_put_get_keeps_metadata_and_content_type(s3: S3Client, bucket: str) -> None:
    body = os.urandom(1000)
    metadata = {"mtime": "1700000000.123456789", "sha256": hashlib.sha256(body).hexdigest()}
    s3.put_object(
        Bucket=bucket,
        Key="meta/f.json",
        Body=body,
        Metadata=metadata,
        ContentType="application/json; charset=utf-8",
    )

    head = s3.head_object(Bucket=bucket, Key="meta/f.json")
    got = s3.get_object(Bucket=bucket, Key="meta/f.json")

    assert head["Metadata"] == metadata
    assert head["ContentType"] == "application/json; charset=utf-8"
    assert head["ContentLength"] == len(body)
    assert head["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert got["Body"].read() == body
    assert got["Metadata"] == metadata


def test_multipart_upload_via_upload_file(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(8 * MiB + 123))
    config = TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=2
    )

    s3.upload_file(str(source), bucket, "big.bin", Config=config)

    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == source.stat().st_size
    assert head["ETag"].strip('"').endswith("-2")  # two parts: 8 MiB + the rest
    target = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(target), Config=config)
    assert (
        hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    )


def test_copy_object_keeps_or_replaces_metadata(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"payload", Metadata={"mtime": "1"})

    s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "src"})
    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src"},
        Metadata={"mtime": "2"},
        MetadataDirective="REPLACE",
    )

    kept = s3.get_object(Bucket=bucket, Key="kept")
    replaced = s3.get_object(Bucket=bucket, Key="replaced")
    assert kept["Body"].read() == b"payload"
    assert kept["Metadata"] == {"mtime": "1"}
    assert replaced["Body"].read() == b"payload"
    assert replaced["Metadata"] == {"mtime": "2"}


def test_delete_objects_batch(s3: S3Client, bucket: str) -> None:
    keys = [f"batch/{i:03d} file+%.txt" for i in range(25)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")

    response = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in [*keys, "batch/missing"]], "Quiet": False},
    )

    # Like S3, deleting a missing key counts as deleted, not as an error.
    assert sorted(d["Key"] for d in response.get("Deleted", [])) == sorted([*keys, "batch/missing"])
    assert response.get("Errors", []) == []
    assert list_keys(s3, bucket)[0] == ["keep"]


def precondition_status(s3: S3Client, bucket: str, key: str, **condition: str) -> str:
    """Put with a condition; "ok" or the error code the server answered with."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"second", **condition)  # type: ignore[arg-type]
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{exc.response['Error']['Code']} ({status})"
    return "ok"


def test_conditional_writes(s3: S3Client, bucket: str) -> None:
    """SeaweedFS (4.48) enforces If-None-Match: * and If-Match on PutObject, like S3 since 2024.

    watchsync can therefore use them to avoid overwriting a concurrent writer.
    """
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    wrong_etag = '"0123456789abcdef0123456789abcdef"'

    results = {
        "IfNoneMatch=* on existing key": precondition_status(s3, bucket, "k", IfNoneMatch="*"),
        "IfMatch=<wrong etag>": precondition_status(s3, bucket, "k", IfMatch=wrong_etag),
        "IfNoneMatch=* on new key": precondition_status(s3, bucket, "new", IfNoneMatch="*"),
    }
    print("conditional PutObject results:", results)

    assert results == {
        "IfNoneMatch=* on existing key": "PreconditionFailed (412)",
        "IfMatch=<wrong etag>": "PreconditionFailed (412)",
        "IfNoneMatch=* on new key": "ok",
    }
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"
    assert precondition_status(s3, bucket, "k", IfMatch=first["ETag"]) == "ok"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second"


def test_env_points_clients_at_the_server(
    s3server: SeaweedServer, aws_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """The aws CLI finds the server from AWS_ENDPOINT_URL alone (no --endpoint-url)."""
    assert aws_env["AWS_ENDPOINT_URL"] == s3server.endpoint
    (tmp_path / "f.txt").write_text("hello")
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("aws CLI not installed next to python")
    done = subprocess.run(
        [str(aws), "s3", "cp", str(tmp_path / "f.txt"), f"s3://{bucket}/f.txt"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    s3 = s3server.client()
    try:
        assert s3.get_object(Bucket=bucket, Key="f.txt")["Body"].read() == b"hello"
    finally:
        s3.close()
