"""The feed's cheap conditional GET (a presigned URL through the client's own session),
against the real server: what it answers, and that anything unexpected goes to boto3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from watchsync.core.model import Condition
from watchsync.s3.poll import PresignedGet
from watchsync.s3.small_object import NotModified, SmallObject

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY = "p/.watchsync/feed.json"


def test_answers_200_304_and_404(s3: S3Client, bucket: str) -> None:
    get = PresignedGet(s3, bucket, KEY)
    missing = get(if_none_match=None)
    assert missing is not None and missing.status == 404
    etag = s3.put_object(Bucket=bucket, Key=KEY, Body=b'{"v": 1}')["ETag"].strip('"')
    fresh = get(if_none_match=None)
    assert fresh is not None and (fresh.status, fresh.body, fresh.etag) == (200, b'{"v": 1}', etag)
    same = get(if_none_match=etag)
    assert same is not None and same.status == 304
    changed = get(if_none_match="0" * 32)
    assert changed is not None and changed.status == 200


def test_a_rejected_url_falls_back_to_boto3_which_explains(
    s3server: Any, s3: S3Client, bucket: str
) -> None:
    """Wrong credentials: the presigned GET is refused (403), so the object asks boto3,
    whose error names the problem."""
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"{}")
    wrong = boto3.session.Session(
        aws_access_key_id=s3server.access_key,
        aws_secret_access_key="not-the-secret",
        region_name=s3server.region,
    ).client("s3", endpoint_url=s3server.endpoint, config=Config(retries={"max_attempts": 1}))
    assert PresignedGet(wrong, bucket, KEY)(if_none_match=None) is None
    with pytest.raises(Exception, match=r"SignatureDoesNotMatch|AccessDenied|403"):
        SmallObject(wrong, bucket, KEY).get(if_none_match=None)


def test_small_object_polls_through_it(s3: S3Client, bucket: str) -> None:
    obj = SmallObject(s3, bucket, KEY)
    assert obj.get(if_none_match=None) is None
    etag = obj.put(b'{"v": 2}', condition=Condition.ABSENT)
    got = obj.get(if_none_match=None)
    assert got is not None and (got.body, got.etag) == (b'{"v": 2}', etag)
    with pytest.raises(NotModified):
        obj.get(if_none_match=etag)
