"""S3 locations, the shared client, and streaming listings.  No decisions are made here."""

from __future__ import annotations

import ipaddress
import logging
import mimetypes
import re
import secrets
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import botocore.exceptions
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from .errors import (
    ConditionalWritesUnsupported,
    NotFound,
    PreconditionFailed,
    RemoteError,
    UsageError,
    WatchsyncError,
)
from .extsort import sorted_stream
from .filters import is_reserved
from .listpage import list_page
from .model import RemoteEntry, Skipped
from .poll import PresignedGet
from .retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # TAB, LF and CR excepted


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/prefix`` split; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Parse ``s3://bucket[/prefix]``; the one parser for every command and the config.

        The bucket must follow S3's naming rules (3-63 characters of a-z, 0-9, ``.`` and
        ``-``, not an IP address); the prefix may not hold empty, ``.`` or ``..`` segments.

        >>> S3Url.parse("s3://bucket/some/dir")
        S3Url(bucket='bucket', prefix='some/dir/')
        """
        if not url.startswith("s3://"):
            raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket[/prefix])")
        bucket, _, prefix = url[5:].partition("/")
        if not bucket:
            raise UsageError(f"no bucket in {url!r} (expected s3://bucket[/prefix])")
        if (
            not _BUCKET_RE.match(bucket)
            or ".." in bucket
            or ".-" in bucket
            or "-." in bucket
            or _is_ipv4(bucket)
        ):
            raise UsageError(
                f"invalid bucket name {bucket!r} in {url!r}: use 3-63 characters of a-z, 0-9, "
                "'.' and '-', starting and ending with a letter or digit"
            )
        prefix = prefix.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise UsageError(f"bad prefix {prefix!r} in {url!r}: empty, '.' or '..' segment")
        return cls(bucket, prefix + "/" if prefix else "")

    def key(self, path: str) -> str:
        """The object key of a relative path."""
        return self.prefix + path

    def url(self, path: str = "") -> str:
        """The ``s3://`` URL of a relative path, as aws prints it."""
        return f"s3://{self.bucket}/{self.prefix}{path}"


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach and write the bucket: the one settings type of every command.

    ``None`` means boto3's own default chain.  ``bwlimit`` is bytes per second (None:
    unlimited); ``sse`` is ``"AES256"`` or ``"aws:kms"``.  ``checksum``: every upload carries
    a full-object CRC32C that S3 checks before storing, and downloads verify it.
    Credentials are never configured here: boto3's chain finds them (``profile``,
    environment, instance role).
    """

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    max_concurrency: int = 16
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    bwlimit: int | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    checksum: bool = True

    def extra_args(self, path: str) -> dict[str, str]:
        """The boto3 ExtraArgs of one uploaded object (content type, encryption, class)."""
        extra: dict[str, str] = {}
        mime, _ = mimetypes.guess_type(path, strict=False)
        if mime:
            extra["ContentType"] = mime
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            extra["SSEKMSKeyId"] = self.sse_kms_key_id
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        return extra


def make_client(settings: S3Settings) -> S3Client:
    """One client shared by every thread, its connection pool sized to the concurrency.

    botocore's own retries are switched off: transient errors are retried once, by the
    caller's tenacity policy, so attempts do not multiply.
    """
    core = botocore.session.get_session()
    # Listings carry a LastModified per object; botocore's default parser (dateutil) was
    # over half the CPU of a no-op reconcile.
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    try:
        session = boto3.session.Session(
            botocore_session=core, profile_name=settings.profile, region_name=settings.region
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise UsageError(str(exc)) from exc
    config = Config(
        max_pool_connections=settings.max_concurrency + 4,
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
        tcp_keepalive=True,
        # TCP's 16-bit sum lets damaged bytes through and plain http has nothing else, so
        # bodies carry a CRC both ways unless turned off (``--no-checksum``).
        request_checksum_calculation="when_supported" if settings.checksum else "when_required",
        response_checksum_validation="when_supported" if settings.checksum else "when_required",
    )
    try:
        client: S3Client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except botocore.exceptions.InvalidRegionError as exc:
        raise UsageError(f"invalid region {session.region_name!r}: {exc}") from exc
    except ValueError as exc:  # botocore's "Invalid endpoint: ..."
        raise UsageError(
            f"invalid endpoint URL {settings.endpoint_url!r} (expected http(s)://host[:port])"
        ) from exc
    return client


def parse_timestamp(value: str) -> datetime:
    """A response's timestamp: ISO 8601 as listings send it (``2026-12-02T01:00:00.000Z``)
    at C speed, anything else (HTTP dates of HEAD answers, epoch seconds) as botocore does.

    >>> parse_timestamp("2026-12-02T01:00:00.000Z")
    datetime.datetime(2026, 12, 2, 1, 0, tzinfo=datetime.timezone.utc)
    """
    try:
        when = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        return botocore_parse_timestamp(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


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
    # TAB, CR and LF are legal in file names and real ones use them (macOS's ``Icon\r``);
    # a name the agent uploads must list back, or its own object would look deleted.
    if _CONTROL.search(path):
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
    client: S3Client,
    where: S3Url,
    *,
    for_download: bool = False,
    page_size: int = 1000,
    retry: RetryPolicy | None = None,
) -> Iterator[RemoteEntry | Skipped]:
    """Stream the objects under ``where`` in key order, as entries relative to its prefix.

    Directory markers (keys ending in ``/``) are left out.  With ``for_download``, keys that
    cannot be written safely under a local root come out as :class:`Skipped`.  Each page is
    one request under the retry policy.
    """
    policy = retry or RetryPolicy()

    def raw() -> Iterator[RemoteEntry | Skipped]:
        request: dict[str, Any] = {
            "Bucket": where.bucket,
            "Prefix": where.prefix,
            "MaxKeys": page_size,
        }
        cut = len(where.prefix)
        while True:
            try:
                got = policy.call(lambda: list_page(client, request), what=f"list {where.url()}")
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise RemoteError(f"cannot list {where.url()}: {describe(exc)}") from exc
            for obj in got.objects:
                key = obj.key
                path = key[cut:]
                # Directory markers (what S3 consoles create for a folder, the prefix's own
                # included) are nothing to sync, as for aws; nor is the reserved key space.
                if (key.endswith("/") and (path or obj.size == 0)) or is_reserved(path):
                    continue
                if for_download:
                    reason = unsafe_reason(path)
                    if reason is not None:
                        yield Skipped(path, reason)
                        continue
                when = obj.last_modified
                stamp = parse_timestamp(when) if isinstance(when, str) else when
                yield RemoteEntry(path, obj.size, mtime_ns(stamp), obj.etag)
            token = got.token
            if not got.truncated or not token:
                return
            request["ContinuationToken"] = token

    if keeps_key_order(client.meta.endpoint_url, where.bucket):
        return raw()  # already in S3 order: stream it, nothing held or spilled
    return sorted_stream(raw(), key=lambda e: e.path)


def keeps_key_order(endpoint_url: str, bucket: str) -> bool:
    """Whether the server lists in S3's UTF-8 key order: AWS S3 itself, except its directory
    buckets (S3 Express, ``NAME--x-s3``), which list in no order.  Any other server's
    listing is sorted here (SeaweedFS, for one, lists ``a/b`` before ``a-b``).

    >>> keeps_key_order("https://s3.eu-west-1.amazonaws.com", "photos")
    True
    """
    host = urllib.parse.urlsplit(endpoint_url).hostname or ""
    aws = host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
    return aws and not bucket.endswith("--x-s3")


def describe(exc: BaseException) -> str:
    """One line for an S3 or connection error, without request signatures."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        msg = err.get("Message") or ""
        return f"{code}: {msg}".rstrip(": ") if msg else str(code)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, botocore.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in text:
        text += " (a private CA: point AWS_CA_BUNDLE or the profile's ca_bundle at it)"
    return text


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means no answer came at all: refused, reset, timed out, DNS.

    >>> unreachable(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"))
    True
    """
    if isinstance(exc, botocore.exceptions.ClientError):
        return False
    if getattr(exc, "transient", False) and getattr(exc, "status", None) == 0:
        return True  # the native client's: no HTTP response
    return isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectTimeoutError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectionClosedError
        | ConnectionError
        | TimeoutError,
    )


def s3_answered(exc: BaseException) -> bool:
    """Whether ``exc`` is an answer from S3 (an error response), not a failure to get one."""
    return isinstance(exc, botocore.exceptions.ClientError)


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


_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "501"})


def s3_error(exc: BaseException, what: str) -> WatchsyncError | None:
    """The errors.py type of an S3 answer the callers act on, or None for any other error.

    >>> s3_error(ValueError("x"), "k") is None
    True
    """
    code = error_code(exc)
    if code in _PRECONDITION_CODES:
        return PreconditionFailed(what)
    if code in _NOT_FOUND_CODES:
        return NotFound(what)
    if code in _NOT_IMPLEMENTED_CODES:
        return ConditionalWritesUnsupported(what)
    return None


def probe_bucket(client: S3Client, where: S3Url) -> list[str]:
    """Exists, can be listed, can be written: in that order, as the agent needs them.

    HeadBucket comes first because some servers (SeaweedFS) create a missing bucket on the
    first PutObject, which would hide a typo in the bucket name.
    """
    errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
    try:
        client.head_bucket(Bucket=where.bucket)
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return [f"bucket {where.bucket} does not exist (NoSuchBucket)"]
        if code in ("403", "AccessDenied"):
            return [f"no access to bucket {where.bucket} (AccessDenied)"]
        return [f"cannot reach bucket {where.bucket}: {describe(exc)}"]
    except botocore.exceptions.BotoCoreError as exc:
        return [f"cannot reach bucket {where.bucket}: {describe(exc)}"]
    try:
        client.list_objects_v2(Bucket=where.bucket, Prefix=where.key(""), MaxKeys=1)
    except errors as exc:
        return [f"cannot list {where.url()}: {describe(exc)}"]
    probe = where.key(f".watchsync-probe-{secrets.token_hex(6)}")
    try:
        client.put_object(Bucket=where.bucket, Key=probe, Body=b"watchsync check")
        client.delete_object(Bucket=where.bucket, Key=probe)
    except errors as exc:
        return [f"cannot write {where.url()}: {describe(exc)}"]
    return []


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
    race raises :class:`~watchsync.errors.PreconditionFailed`).

    >>> obj = SmallObject(client, "bucket", "p/.watchsync/feed.json")  # doctest: +SKIP
    >>> obj.get(if_none_match=None).etag  # doctest: +SKIP
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
        except botocore.exceptions.ClientError as exc:
            code = error_code(exc)
            if code in ("304", "NotModified"):
                raise NotModified(self.key) from None
            if isinstance(s3_error(exc, self.key), NotFound):
                return None
            raise
        body = resp["Body"]
        try:
            data = body.read()
        finally:
            body.close()
        return Fetched(data, resp.get("ETag", "").strip('"'))

    def put(self, body: bytes, *, if_match: str | None) -> str:
        """Write the object if it is still the version read; returns the new ETag."""
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": body,
            "ContentType": "application/json",
        }
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        else:
            kwargs["IfNoneMatch"] = "*"
        try:
            resp = self.client.put_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            mapped = s3_error(exc, self.key)
            if mapped is not None:
                raise mapped from exc
            raise
        return resp.get("ETag", "").strip('"')
