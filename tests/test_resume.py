"""An interrupted multipart upload is finished, not restarted: parts already in S3 whose
bytes match the file are kept, the others sent again."""

from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agent_helpers import folder_config
from awscrt import checksums
from botocore.config import Config
from helpers import fails_with, wait_until
from netproxy import NetProxy
from s3server import SeaweedServer

from watchsync.agent.folder import STALE_UPLOAD_AGE, Folder
from watchsync.core.model import Condition
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.retry import RetryPolicy
from watchsync.s3.transfer import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PART = 8 * MiB
DAY = 24 * 3600.0


def _crc(data: bytes) -> str:
    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()


def _sent_parts(client: S3Client) -> list[int]:
    """The part numbers this client uploads from now on (an event hook, no mock)."""
    sent: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        sent.append(int(params["query_string"]["partNumber"]))

    client.meta.events.register("before-call.s3.UploadPart", record)
    return sent


@pytest.mark.parametrize("checksum", [True, False])
def test_interrupted_multipart_upload_is_resumed(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path, checksum: bool
) -> None:
    data = os.urandom(2 * PART + 3 * MiB)  # three parts
    (tmp_path / "big").write_bytes(data)
    create: dict[str, Any] = (
        {"ChecksumAlgorithm": "CRC32C", "ChecksumType": "FULL_OBJECT"} if checksum else {}
    )
    # What a killed run leaves behind: part 1 sent, part 2 with other bytes, no part 3.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="p/big", **create)["UploadId"]
    part: dict[str, Any] = {"ChecksumAlgorithm": "CRC32C"} if checksum else {}
    for number, body in ((1, data[:PART]), (2, os.urandom(PART))):
        s3.upload_part(
            Bucket=bucket, Key="p/big", UploadId=upload_id, PartNumber=number, Body=body, **part
        )
    sent = _sent_parts(s3)
    settings = S3Settings(checksum=checksum)
    with Transfer(s3, S3Url.parse(f"s3://{bucket}/p"), tmp_path, settings=settings) as t:
        up = t.upload("big")
    assert sorted(sent) == [2, 3]  # part 1 kept, the damaged part 2 sent again
    assert s3.get_object(Bucket=bucket, Key="p/big")["Body"].read() == data
    assert up.etag == s3.head_object(Bucket=bucket, Key="p/big")["ETag"].strip('"')
    if checksum:
        head = s3.head_object(Bucket=bucket, Key="p/big", ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC32C") == _crc(data)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_upload_without_a_pending_one_starts_afresh(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(PART + MiB)
    (tmp_path / "big").write_bytes(data)
    # Another key's pending upload is left alone.
    other = s3.create_multipart_upload(Bucket=bucket, Key="big-other")["UploadId"]
    with Transfer(s3, S3Url.parse(f"s3://{bucket}"), tmp_path) as t:
        t.upload("big")
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    pending = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [other]


def test_stale_uploads_under_the_prefix_are_aborted(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    ours = s3.create_multipart_upload(Bucket=bucket, Key="p/dead")["UploadId"]
    theirs = s3.create_multipart_upload(Bucket=bucket, Key="q/dead")["UploadId"]
    with Transfer(s3, S3Url.parse(f"s3://{bucket}/p"), tmp_path) as t:
        # Just started: maybe another writer's live upload, or one to resume. Left alone.
        assert t.abort_stale_uploads(older_than=DAY) == 0
        assert t.abort_stale_uploads(older_than=DAY, now=time.time() + 2 * DAY) == 1
    pending = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [theirs]  # another prefix: not ours
    assert ours not in [u["UploadId"] for u in pending]


def test_agent_aborts_stale_uploads_of_its_prefix_on_start(
    aws_env: dict[str, str], s3server: SeaweedServer, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    dead = s3.create_multipart_upload(Bucket=bucket, Key="p/dead")["UploadId"]
    other = s3.create_multipart_upload(Bucket=bucket, Key="q/other")["UploadId"]
    root = tmp_path / "root"
    root.mkdir()
    cfg = folder_config(root, f"s3://{bucket}/p", s3server.endpoint)
    # The agent's wall clock two days on: the upload made above is past the age limit.
    agent = Folder(cfg, state_dir=tmp_path / "state", wall=lambda: time.time() + 2 * DAY)
    with agent:
        wait_until(lambda: agent.reconciles >= 1, timeout=60, message="the first reconcile")
    assert STALE_UPLOAD_AGE <= DAY
    pending = [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert dead not in pending and other in pending


def test_an_upload_cut_off_is_left_to_resume_even_when_the_link_is_back_at_once(
    aws_env: dict[str, str], s3server: SeaweedServer, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """A reset mid-upload must not abort the multipart upload (s3transfer's cleanup would,
    as soon as the link answers again): the next attempt resumes it."""
    data = os.urandom(4 * PART)
    (tmp_path / "big").write_bytes(data)
    where = S3Url.parse(f"s3://{bucket}/p")
    failed: list[BaseException] = []
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        once_each = Config(retries={"total_max_attempts": 1})  # as the tool's own client
        client = s3server.client(endpoint_url=proxy.endpoint, config=once_each)
        proxy.delay(0.02)  # slow enough to be cut mid-upload, even on a loaded machine
        try:
            # Two parts at a time: parts 3 and 4 are on their way when 1 and 2 are in S3.
            once = RetryPolicy(attempts=1)
            with Transfer(client, where, tmp_path, retry=once, max_concurrency=2) as t:

                def upload() -> None:
                    try:
                        t.upload("big")
                    except Exception as exc:
                        failed.append(exc)

                thread = threading.Thread(target=upload)
                thread.start()

                def first_part() -> bool:
                    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
                    if not uploads:
                        return False
                    parts = s3.list_parts(
                        Bucket=bucket, Key="p/big", UploadId=uploads[0]["UploadId"]
                    ).get("Parts", [])
                    return any(p.get("PartNumber") == 1 for p in parts)

                wait_until(first_part, timeout=30, interval=0.05, message="part 1 in S3")
                proxy.cut()
                proxy.restore()  # back at once
                thread.join(30)
        finally:
            client.close()
    assert failed, "the upload was not cut"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # left for a resume
    sent = _sent_parts(s3)
    with Transfer(s3, where, tmp_path) as t:
        t.upload("big")
    assert len(sent) < 4
    assert s3.get_object(Bucket=bucket, Key="p/big")["Body"].read() == data


def test_conditional_upload_cut_off_resumes_and_keeps_its_condition(
    aws_env: dict[str, str], s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """The agent's uploads are conditional (If-None-Match / If-Match on the complete): one
    cut off mid-way is left pending and the next attempt sends only the missing parts; the
    condition still holds on completion."""
    import botocore.exceptions

    from watchsync.core.errors import FailureKind

    data = os.urandom(2 * PART + 3 * MiB)  # three parts
    (tmp_path / "big").write_bytes(data)
    cut = {"left": 1}

    def fail_part_3(params: dict[str, Any], **_: Any) -> None:
        if int(params["query_string"]["partNumber"]) == 3 and cut["left"]:
            cut["left"] -= 1
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="cut")

    s3.meta.events.register("before-call.s3.UploadPart", fail_part_3)
    where = S3Url.parse(f"s3://{bucket}/p")
    once = RetryPolicy(attempts=1)
    with Transfer(s3, where, tmp_path, retry=once) as t:
        with fails_with(FailureKind.UNREACHABLE):
            t.upload("big", condition=Condition.ABSENT)
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # left to resume
        sent = _sent_parts(s3)
        up = t.upload("big", condition=Condition.ABSENT)
        assert sent == [3]  # parts 1 and 2 were kept
        assert s3.get_object(Bucket=bucket, Key="p/big")["Body"].read() == data
        assert up.etag == s3.head_object(Bucket=bucket, Key="p/big")["ETag"].strip('"')
        with fails_with(FailureKind.PRECONDITION):  # now there is an object: create-only loses
            t.upload("big", condition=Condition.ABSENT)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
