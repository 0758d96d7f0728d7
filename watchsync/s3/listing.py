"""Streaming listings: the objects under a prefix, in S3's key order, as entries relative to it
(sorted here for servers that do not keep that order), and which keys cannot become files."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from watchsync.core.errors import Failure, FailureKind
from watchsync.core.filters import is_reserved
from watchsync.core.model import RemoteEntry, SkipKind, Skipped
from watchsync.s3.client import mtime_ns, parse_timestamp
from watchsync.s3.extsort import sorted_stream
from watchsync.s3.failures import classify
from watchsync.s3.listpage import list_page
from watchsync.s3.location import S3Url
from watchsync.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # TAB, LF and CR excepted


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
    page_size: int | None = None,
    retry: RetryPolicy | None = None,
    request_extra: Mapping[str, str] | None = None,
) -> Iterator[RemoteEntry | Skipped]:
    """Stream the objects under ``where`` in key order, as entries relative to its prefix.

    Directory markers (keys ending in ``/``) are left out.  With ``for_download``, keys that
    cannot be written safely under a local root come out as :class:`Skipped`.  Each page is
    one request under the retry policy; one that fails raises a
    :class:`~watchsync.core.errors.Failure` that says ``cannot list URL: ...``.
    """
    policy = retry or RetryPolicy()

    def raw() -> Iterator[RemoteEntry | Skipped]:
        request: dict[str, Any] = {
            "Bucket": where.bucket,
            "Prefix": where.prefix,
            **({"MaxKeys": page_size} if page_size else {}),  # else S3's own: 1000
            **(request_extra or {}),
        }
        cut = len(where.prefix)
        while True:
            try:
                got = policy.call(lambda: list_page(client, request), what=f"list {where.url()}")
            except Exception as exc:
                failed = classify(exc)
                if failed.kind is FailureKind.LOCAL:
                    raise
                message = f"cannot list {where.url()}: {failed.text}"
                raise Failure(failed.kind, failed.code, failed.text, message=message) from exc
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
                        kind = SkipKind.PARENT if ".." in path.split("/") else SkipKind.OTHER
                        yield Skipped(path, reason, kind)
                        continue
                when = obj.last_modified
                stamp = parse_timestamp(when) if isinstance(when, str) else when
                yield RemoteEntry(
                    path, obj.size, mtime_ns(stamp), obj.etag, storage_class=obj.storage_class
                )
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
