"""One small object read and written whole with conditional requests (the agents' change feed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watchsync.core.errors import FailureKind
from watchsync.core.model import Condition
from watchsync.s3.conditions import condition_args
from watchsync.s3.failures import classify, reraise
from watchsync.s3.poll import PresignedGet

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


class NotModified(Exception):
    """A conditional GET was answered 304: the object still has the ETag the caller holds."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A small object's body and ETag."""

    body: bytes
    etag: str


class SmallObject:
    """One small object read and written whole, with conditional requests (the agents'
    change feed): a GET ``If-None-Match`` the ETag held (304 raises :class:`NotModified`),
    a PUT ``If-Match`` the ETag read or ``If-None-Match: *`` when there was none (a lost
    race raises a :class:`~watchsync.core.errors.Failure` of kind ``PRECONDITION``; any
    other error leaves as a Failure too).  The change feed's object is
    ``SmallObject(client, bucket, "PREFIX/.watchsync/feed.json")``.
    """

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self._poll = PresignedGet(client, bucket, key)

    def get(self, *, if_none_match: str | None) -> Fetched | None:
        """The object, or None when there is none."""
        quick = self._poll(if_none_match=if_none_match)
        if quick is not None:
            if quick.status == 304:
                raise NotModified(self.key)
            return None if quick.status == 404 else Fetched(quick.body, quick.etag)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if if_none_match:
            kwargs["IfNoneMatch"] = f'"{if_none_match}"'
        try:
            resp = self.client.get_object(**kwargs)
            body = resp["Body"]
            try:
                data = body.read()
            finally:
                body.close()
        except Exception as exc:
            failure = classify(exc)
            if failure.code in ("304", "NotModified"):
                raise NotModified(self.key) from None
            if failure.kind is FailureKind.NOT_FOUND:
                return None
            reraise(exc)
        return Fetched(data, resp.get("ETag", "").strip('"'))

    def put(self, body: bytes, *, condition: Condition) -> str:
        """Write the object if it is still the version read (or still absent); returns the
        new ETag."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": body,
            "ContentType": "application/json",
            **condition_args(condition),
        }
        try:
            resp = self.client.put_object(**kwargs)
        except Exception as exc:
            reraise(exc)
        return resp.get("ETag", "").strip('"')
