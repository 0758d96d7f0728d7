"""S3 locations, the shared client, and streaming listings.  No decisions are made here."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
from botocore.config import Config

from .errors import RemoteError, UsageError
from .extsort import sorted_stream
from .model import RemoteEntry, Skipped

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/prefix`` split; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Parse an S3 URL the way ``aws s3 sync`` reads it.

        >>> S3Url.parse("s3://bucket/some/dir")
        S3Url(bucket='bucket', prefix='some/dir/')
        """
        if not url.startswith("s3://"):
            raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket[/prefix])")
        bucket, _, prefix = url[5:].partition("/")
        if not _BUCKET_RE.match(bucket):
            raise UsageError(f"invalid bucket name in {url!r}")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(bucket, prefix)

    def key(self, path: str) -> str:
        """The object key of a relative path."""
        return self.prefix + path

    def url(self, path: str = "") -> str:
        """The ``s3://`` URL of a relative path, as aws prints it."""
        return f"s3://{self.bucket}/{self.prefix}{path}"


@dataclass(frozen=True)
class ClientSettings:
    """How to reach S3; ``None`` means boto3's own default chain."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    max_concurrency: int = 16
    connect_timeout: float = 10.0
    read_timeout: float = 60.0


def make_client(settings: ClientSettings) -> S3Client:
    """One client shared by every thread, its connection pool sized to the concurrency.

    botocore's own retries are switched off: transient errors are retried once, by the
    caller's tenacity policy, so attempts do not multiply.
    """
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise UsageError(str(exc)) from exc
    config = Config(
        max_pool_connections=settings.max_concurrency + 4,
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        tcp_keepalive=True,
        # Checksums only where S3 demands them: the default CRC of every PUT body costs more
        # CPU than the rest of a small upload's signing; TCP and TLS already protect the body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    client: S3Client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    return client


def mtime_ns(when: datetime) -> int:
    """LastModified as integer nanoseconds since the epoch (no float rounding)."""
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def unsafe_reason(path: str) -> str | None:
    """Why a key cannot become a file under the download root, or None when it can.

    >>> unsafe_reason("../etc/passwd")
    "key escapes the destination ('..' segment)"
    """
    if not path:
        return "key maps onto the destination root"
    if path.startswith("/"):
        return "key is an absolute path"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "key contains NUL or control characters"
    parts = path.split("/")
    if ".." in parts:
        return "key escapes the destination ('..' segment)"
    if "." in parts or "" in parts:
        return "key has an empty or '.' segment"
    if any(len(p.encode()) > 255 for p in parts):
        return "key has a path segment longer than 255 bytes"
    return None


def list_entries(
    client: S3Client, where: S3Url, *, for_download: bool = False, page_size: int = 1000
) -> Iterator[RemoteEntry | Skipped]:
    """Stream the objects under ``where`` in key order, as entries relative to its prefix.

    Directory markers (keys ending in ``/``) are left out.  With ``for_download``, keys that
    cannot be written safely under a local root come out as :class:`Skipped`.
    """

    def raw() -> Iterator[RemoteEntry | Skipped]:
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=where.bucket, Prefix=where.prefix, PaginationConfig={"PageSize": page_size}
        )
        cut = len(where.prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    path = key[cut:]
                    if key.endswith("/") and path:
                        continue
                    if for_download:
                        reason = unsafe_reason(path)
                        if reason is not None:
                            yield Skipped(path, reason)
                            continue
                    etag = obj.get("ETag", "").strip('"')
                    yield RemoteEntry(path, obj["Size"], mtime_ns(obj["LastModified"]), etag)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise RemoteError(f"cannot list {where.url()}: {describe(exc)}") from exc

    return sorted_stream(raw(), key=lambda e: e.path)


def describe(exc: BaseException) -> str:
    """One line for an S3 or connection error, without request signatures."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        msg = err.get("Message") or ""
        return f"{code}: {msg}".rstrip(": ") if msg else str(code)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError (its HTTP status when the body had none, as for
    HEAD requests), else the native client's code, else the exception's class name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if code:
            return str(code)
        return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    code = getattr(exc, "code", None)  # the native client's errors carry S3's code too
    if isinstance(code, str) and code:
        return code
    return type(exc).__name__
