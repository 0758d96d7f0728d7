"""A listing's pages as rows in S3's key order, whoever fetched them: the directory markers
and the reserved key space left out, the keys that cannot become files found, the pages
sorted for servers that do not keep that order.  No SDK is loaded here, so that a listing
fetched without botocore (a no-op ``sync``'s quick look) is read by the same code."""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from watchsync.core.filters import RESERVED_DIR, is_reserved
from watchsync.core.model import RemoteEntry, SkipKind, Skipped
from watchsync.s3.extsort import sorted_batches
from watchsync.s3.listpage import Page
from watchsync.s3.location import S3Url
from watchsync.s3.timestamps import mtime_ns, parse_timestamp

# One ListObjectsV2 request (boto3's parameter names) answered with its page.
Fetch = Callable[[dict[str, Any]], Page]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # TAB, LF and CR excepted
# What :func:`unsafe_reason` could object to, looked for in a page's paths joined by newlines
# (a key's own newline only costs a closer look): empty, absolute, '.' and '..' segments, and
# (with _CONTROL and _LONG_SEGMENT) control characters and segments that may pass 255 bytes.
_SUSPECT = (
    "\n\n",
    "\n/",
    "//",
    "/\n",
    "/./",
    "/../",
    "/.\n",
    "/..\n",
    "\n./",
    "\n../",
    "\n.\n",
    "\n..\n",
)
_LONG_SEGMENT = re.compile(r"[^/\n]{64,}")


def _suspect(paths: list[str]) -> bool:
    """Whether any of a page's paths may be unsafe (see :func:`unsafe_reason`): a few
    substring searches over the whole page instead of a look at each path."""
    joined = "\n" + "\n".join(paths) + "\n"
    if any(s in joined for s in _SUSPECT) or _CONTROL.search(joined) is not None:
        return True
    return max(map(len, paths), default=0) > 63 and _LONG_SEGMENT.search(joined) is not None


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


def listed_pages(
    fetch: Fetch,
    where: S3Url,
    *,
    endpoint_url: str,
    page_size: int | None = None,
    request_extra: Mapping[str, str] | None = None,
    classes: bool,
    on_read: Callable[[int], None] | None = None,
) -> tuple[Iterator[list[Any]], dict[str, str]]:
    """The rows of a listing in key order, a list at a time (with each object's storage
    class last when ``classes``), and the unsafe paths met, filled in as pages are read.
    ``fetch`` answers one ListObjectsV2 request (its parameters as boto3 names them) with
    its page, or raises; ``endpoint_url`` says whose order the keys come in.

    Each page is handled as whole columns: rows are zipped at C speed, and a page is
    searched once for anything that needs a look per key (directory markers, the reserved
    key space, names that cannot be files)."""
    stamps = _Stamps()
    unsafe: dict[str, str] = {}  # path -> why it cannot be a file

    def raw() -> Iterator[list[tuple[Any, ...]]]:
        request: dict[str, Any] = {
            "Bucket": where.bucket,
            "Prefix": where.prefix,
            **({"MaxKeys": page_size} if page_size else {}),  # else the server's: S3's 1000
            **(request_extra or {}),
        }
        cut = len(where.prefix)
        while True:
            got = fetch(request)
            keys = got.keys
            paths = [k[cut:] for k in keys] if cut else keys
            columns: list[list[Any]] = [paths, got.sizes, stamps.column(got.times), got.etags]
            if classes:
                columns.append(got.classes)
            rows = list(zip(*columns, strict=True))
            joined = "\n".join(paths)
            if "/\n" in joined or joined.endswith("/") or RESERVED_DIR in joined:
                # Directory markers (what S3 consoles create for a folder, the prefix's own
                # included) are nothing to sync, as for aws; nor is the reserved key space.
                rows = [
                    r
                    for k, r in zip(keys, rows, strict=True)
                    if not ((k[-1:] == "/" and (r[0] or r[1] == 0)) or is_reserved(r[0]))
                ]
            if _suspect(paths):
                for r in rows:
                    reason = unsafe_reason(r[0])
                    if reason is not None:
                        unsafe[r[0]] = reason
            if on_read is not None:
                on_read(len(rows))
            yield rows
            token = got.token
            if not got.truncated or not token:
                return
            request["ContinuationToken"] = token

    pages: Iterator[list[tuple[Any, ...]]] = raw()
    if not keeps_key_order(endpoint_url, where.bucket):
        # Rows sort as their paths do (a path is never listed twice): no key function.
        pages = sorted_batches(pages)
    return pages, unsafe


def entries(
    pages: Iterator[list[Any]], unsafe: dict[str, str], *, for_download: bool
) -> Iterator[RemoteEntry | Skipped]:
    """The rows of :func:`listed_pages` (storage classes included) as entries; with
    ``for_download``, the keys that cannot be files as :class:`Skipped`."""
    rows = itertools.chain.from_iterable(pages)
    for row in checked(rows, unsafe) if for_download else rows:
        if isinstance(row, Skipped):
            yield row
        else:
            path, size, when, etag, storage_class = row
            yield RemoteEntry(path, size, when, etag, storage_class=storage_class)


def checked(rows: Iterator[Any], unsafe: dict[str, str]) -> Iterator[Any]:
    """The keys that cannot be files (found page by page, before their rows come out) as
    :class:`Skipped`."""
    for row in rows:
        if unsafe and row[0] in unsafe:
            path = row[0]
            kind = SkipKind.PARENT if ".." in path.split("/") else SkipKind.OTHER
            yield Skipped(path, unsafe[path], kind)
        else:
            yield row


def checked_pages(pages: Iterator[list[Any]], unsafe: dict[str, str]) -> Iterator[list[Any]]:
    """:func:`checked` a list at a time: a list is looked at row by row only when the
    listing met a key that cannot be a file."""
    for page in pages:
        yield list(checked(iter(page), unsafe)) if unsafe else page


class _Stamps:
    """LastModified as integer nanoseconds, ISO text read without a datetime per object:
    each text once per page, each second once per listing (up to a bound)."""

    def __init__(self) -> None:
        self._seconds: dict[str, int] = {}

    def column(self, times: list[str] | list[datetime]) -> list[int]:
        # Each distinct text read once; the column mapped at C speed.
        distinct: set[str | datetime] = set(times)
        seen = {t: self(t) for t in distinct}
        return list(map(seen.__getitem__, times))

    def __call__(self, when: str | datetime) -> int:
        if not isinstance(when, str):
            return mtime_ns(when)
        # 2026-12-02T04:16:18Z or 2026-12-02T04:16:18.198Z (UTC, as S3 writes it)
        if len(when) < 20 or when[-1] != "Z" or when[10] != "T":
            return mtime_ns(parse_timestamp(when))
        second = when[:19]
        base = self._seconds.get(second)
        if base is None:
            if len(self._seconds) > 10_000:
                self._seconds.clear()
            base = self._seconds[second] = mtime_ns(parse_timestamp(second + "Z"))
        if len(when) == 20:
            return base
        fraction = when[20:-1]
        if when[19] != "." or not fraction.isdigit():
            return mtime_ns(parse_timestamp(when))
        # Microseconds, as a datetime keeps them (mtime_ns truncates the same way).
        return base + int(fraction[:6].ljust(6, "0")) * 1000


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
