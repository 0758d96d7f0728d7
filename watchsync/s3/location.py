"""Where objects are and how to reach them: ``s3://bucket/prefix`` parsed, and the S3
settings of every command.  Plain values: nothing here imports the SDK, so the config file
and the CLI can use them without loading boto3."""

from __future__ import annotations

import ipaddress
import mimetypes
import re
from dataclasses import dataclass

from watchsync.core.errors import UsageError

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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
    ``keep_mode``: each upload keeps the file's mode in the object's metadata (its mtime is
    always kept), and downloads restore it.  Credentials are never configured here: boto3's
    chain finds them (``profile``, environment, instance role).
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
    keep_mode: bool = False

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
