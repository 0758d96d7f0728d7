"""Streaming listings through the shared client: the objects under a prefix, in S3's key order,
as entries relative to it, each page one request under the caller's retry policy (the rows
themselves are read in :mod:`watchsync.s3.listing_rows`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from watchsync.core.errors import Failure, FailureKind
from watchsync.core.model import RemoteEntry, RemoteRow, Skipped
from watchsync.s3.failures import classify
from watchsync.s3.listing_rows import Fetch, checked_pages, entries, listed_pages
from watchsync.s3.listing_rows import keeps_key_order as keeps_key_order
from watchsync.s3.listing_rows import unsafe_reason as unsafe_reason
from watchsync.s3.listpage import Page, list_page
from watchsync.s3.location import S3Url
from watchsync.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any


# Keys a listing pass asks for per page unless the user sets a page size.  S3 answers at
# most 1,000 whatever is asked ("never more"), as MinIO, Ceph and most others do; SeaweedFS
# gives what is asked, and each request costs about 4 ms of CPU in botocore whatever its
# size, so a large listing there is read in a tenth of the requests.  ``sync`` asks as aws
# does (no MaxKeys), so that its requests and the URLs its errors name are aws's.
ASKED_PAGE = 10_000


def list_entries(
    client: S3Client,
    where: S3Url,
    *,
    for_download: bool = False,
    page_size: int | None = None,
    retry: RetryPolicy | None = None,
    request_extra: Mapping[str, str] | None = None,
    on_read: Callable[[int], None] | None = None,
    replay: Mapping[str | None, Page] | None = None,
) -> Iterator[RemoteEntry | Skipped]:
    """Stream the objects under ``where`` in key order, as entries relative to its prefix;
    ``on_read`` hears how many objects each page brought as it is read.

    Directory markers (keys ending in ``/``) are left out.  With ``for_download``, keys that
    cannot be written safely under a local root come out as :class:`Skipped`.  Each page is
    one request under the retry policy; one that fails raises a
    :class:`~watchsync.core.errors.Failure` that says ``cannot list URL: ...``.  ``replay``
    holds pages read already (a ``sync``'s quick look), by the continuation token that
    asked for them (None: the first): they are not asked for again.
    """
    pages, unsafe = listed_pages(
        _fetch(client, where, retry, replay),
        where,
        endpoint_url=client.meta.endpoint_url,
        page_size=page_size,
        request_extra=request_extra,
        classes=True,
        on_read=on_read,
    )
    return entries(pages, unsafe, for_download=for_download)


def list_pages(
    client: S3Client,
    where: S3Url,
    *,
    for_download: bool = False,
    page_size: int | None = None,
    retry: RetryPolicy | None = None,
    request_extra: Mapping[str, str] | None = None,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[list[RemoteRow | Skipped]]:
    """:func:`list_entries` as plain rows, ``(path, size, LastModified ns, etag)``, a list
    at a time (a page, or up to 1,000 rows once sorted): what a listing pass compares with
    the state in bulk, before any entry is made, without a Python step per row until then.
    ``on_read`` hears how many objects each page brought as it is read (a sorted listing
    gives its first row only once every page is in)."""
    pages, unsafe = listed_pages(
        _fetch(client, where, retry),
        where,
        endpoint_url=client.meta.endpoint_url,
        page_size=page_size,
        request_extra=request_extra,
        classes=False,
        on_read=on_read,
    )
    return checked_pages(pages, unsafe) if for_download else pages


def _fetch(
    client: S3Client,
    where: S3Url,
    retry: RetryPolicy | None,
    replay: Mapping[str | None, Page] | None = None,
) -> Fetch:
    """One page through the client under the retry policy, unless ``replay`` has it; a
    page that cannot be had raises a :class:`Failure` that says ``cannot list URL: ...``."""
    policy = retry or RetryPolicy()
    kept = dict(replay or {})

    def fetch(request: dict[str, Any]) -> Page:
        page = kept.pop(request.get("ContinuationToken"), None)
        if page is not None:
            return page
        try:
            return policy.call(lambda: list_page(client, request), what=f"list {where.url()}")
        except Exception as exc:
            failed = classify(exc)
            if failed.kind is FailureKind.LOCAL:
                raise
            message = f"cannot list {where.url()}: {failed.text}"
            raise Failure(failed.kind, failed.code, failed.text, message=message) from exc

    return fetch
