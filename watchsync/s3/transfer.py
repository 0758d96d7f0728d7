"""Moving bytes: uploads, downloads, copies and deletes through one shared boto3 client.

Small files go up in one PUT (through the native client where it serves, else
``put_object``); large ones through the multipart uploader (multipart.py), which bounds
memory and parallelises parts.  Downloads are :class:`~.downloads.Downloads`'.  Every call
runs under the one retry policy, counted by the reachability watch (reachability.py).
Nothing here decides what to transfer.

Errors leave as :class:`~watchsync.core.errors.Failure` (classified in failures.py: a lost
condition, a missing object, a server without conditional requests, no answer, ...) or, for
the local file, :class:`~watchsync.core.errors.FileError`; never as the SDK's exceptions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from boto3.s3.transfer import TransferConfig

from watchsync.core.errors import Failure, FailureKind, FileError
from watchsync.core.model import Condition, LocalEntry, RemoteEntry, RemoteRow, Skipped
from watchsync.fs.volume import FolderVolume
from watchsync.s3 import native as native
from watchsync.s3.bandwidth import RateLimiter, UploadBody, shared_limiter
from watchsync.s3.client import make_client, mtime_ns
from watchsync.s3.conditions import condition_args, delete_object, source_args
from watchsync.s3.downloads import Downloaded, Downloads
from watchsync.s3.failures import answer, classify
from watchsync.s3.file_metadata import keep_file_metadata, stored_mtime
from watchsync.s3.listing import ASKED_PAGE, list_entries, list_pages
from watchsync.s3.listpage import Page
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.multipart import Multipart, crc32c_file
from watchsync.s3.native_route import NativeRoute, native_uploader
from watchsync.s3.reachability import Reachability, UntilAnswered
from watchsync.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

T = TypeVar("T")

MULTIPART_THRESHOLD = 8 * 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    """What an upload put in S3: the file as it was opened, and the new object's ETag."""

    size: int
    mtime_ns: int
    etag: str
    ino: int = 0  # the file's st_ino, 0 when unknown
    ctime_ns: int = 0  # the file's st_ctime_ns, 0 when unknown


class Started(Protocol):
    """An upload under way, from :meth:`Objects.start_upload`."""

    path: str

    def result(self) -> Uploaded: ...


class Objects(Protocol):
    """What the executor and the agent's rooms need of S3 and the local root: the surface of
    :class:`Transfer`, so tests can pass a small fake."""

    root: Path
    where: S3Url

    def upload(
        self, path: str, *, key: str | None = None, condition: Condition | None = None
    ) -> Uploaded: ...

    def start_upload(self, path: str, *, condition: Condition | None = None) -> Started | None: ...

    def download(
        self,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        etag: str = "",
        dest: str | None = None,
        replacing: LocalEntry | None = None,
        keep_as: str | None = None,
    ) -> Downloaded: ...

    def copy(self, src_path: str, dst_path: str, *, condition: Condition | None = None) -> str: ...

    def head(self, path: str) -> RemoteEntry | None: ...

    def listing(
        self, *, for_download: bool, on_read: Callable[[int], None] | None = None
    ) -> Iterator[RemoteEntry | Skipped]: ...

    def listing_pages(
        self, on_read: Callable[[int], None] | None = None
    ) -> Iterator[list[RemoteRow | Skipped]]: ...

    def delete_remote(
        self, paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None
    ) -> list[tuple[str, Failure]]: ...

    def delete_local(self, path: str) -> None: ...


class Sending:
    """A native PUT under way (:meth:`Transfer.start_upload`); :meth:`result` waits for it."""

    def __init__(
        self,
        watch: Reachability,
        path: str,
        future: native.Upload,
        sent: Uploaded,
        timeout: float,
    ) -> None:
        self._watch = watch  # counts each answer, or its absence
        self.path = path
        self._future = future
        self._sent = sent  # the file as it was stat'ed before the PUT
        self._timeout = timeout

    def result(self) -> Uploaded:
        """The upload as stored; raises as :meth:`Transfer.upload` would on a first attempt."""
        watch = self._watch
        try:
            etag = native.wait(self._future, self._timeout)
        except native.CrtFileChanged as exc:
            raise FileError(self.path, "changed or unreadable while uploading") from exc
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is FailureKind.PRECONDITION:
                watch.ok()
            else:
                watch.failed(failure)
            if failure.kind is FailureKind.LOCAL:
                raise
            raise failure from exc
        watch.ok()
        sent = self._sent
        return Uploaded(sent.size, sent.mtime_ns, etag, sent.ino, sent.ctime_ns)


class Transfer:
    """S3 object operations for one bucket/prefix and one local root.

    Both commands get theirs from :func:`open_transfer`; ``upload("a.txt")`` then sends
    ``/data/a.txt`` to ``s3://bucket/p/a.txt`` for a transfer of ``s3://bucket/p`` and
    ``/data``.
    """

    def __init__(
        self,
        client: S3Client,
        where: S3Url,
        root: Path,
        *,
        settings: S3Settings | None = None,
        retry: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        max_concurrency: int = 16,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        crt: native.CrtUploader | Callable[[], native.CrtUploader | None] | None = None,
        owns_client: bool = False,
        give_up_after: int | None = None,
        on_bytes: Callable[[int], None] | None = None,
        give_up_min_seconds: float = 10.0,
        volume: FolderVolume | None = None,
    ) -> None:
        self.client = client
        # The local root's file system (what it keeps of times, whether it links, ...).
        self.volume = volume or FolderVolume(root)
        self.reachability = Reachability(
            give_up_after, what=client.meta.endpoint_url, min_seconds=give_up_min_seconds
        )
        self._owns_client = owns_client
        self._close_lock = threading.Lock()
        self.where = where
        self.root = root
        self.settings = settings or S3Settings()
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        # Told of the bytes of each upload and download as they go (a progress display):
        # a small upload's when it is stored, a large one's part by part, downloads as read.
        self.on_bytes = on_bytes or _nothing
        self.threshold = multipart_threshold
        self._config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 8 * 1024 * 1024),
            max_concurrency=max(2, min(max_concurrency, 10)),
            # Not s3transfer's own limiter: the shared one paces its downloads (Downloads).
            use_threads=True,
        )
        # Small uploads go through the native client when there is one.
        self.native = NativeRoute(
            crt,
            where=where,
            root=root,
            settings=self.settings,
            limiter=limiter,
            call=self._call,
            reachability=self.reachability,
        )
        self.downloads = Downloads(
            client,
            where,
            root,
            settings=self.settings,
            call=self._call,
            limiter=limiter,
            threshold=multipart_threshold,
            config=self._config,
            on_bytes=self.on_bytes,
            volume=self.volume,
        )
        self._parts = Multipart(
            client,
            where,
            settings=self.settings,
            call=self._call,
            limiter=limiter,
            part_size=self._config.multipart_chunksize,
            concurrency=self._config.max_request_concurrency,
            on_bytes=self.on_bytes,
        )

    def _call(self, fn: Callable[[], T], *, what: str) -> T:
        """``fn`` under the retry policy, each attempt counted by the reachability watch.
        S3's and the connection's errors leave each attempt as :class:`Failure`; our own
        side's (a file, a bug) as they are, for the caller to wrap at the file boundary."""
        watch = self.reachability

        def attempt() -> T:
            watch.check()
            try:
                result = fn()
            except Exception as exc:
                failure = classify(exc)
                watch.failed(failure)
                if failure is exc or failure.kind is FailureKind.LOCAL:
                    raise
                raise failure from exc
            watch.ok()
            return result

        return self.retry.call(attempt, what=what)

    def probe(self) -> None:
        """One cheap request (a one-key listing of the prefix), not retried and not held
        back by the reachability watch: raises when nothing answered.  An answer that is an
        S3 error (access denied, no such bucket) still means the endpoint is there: only an
        ``UNREACHABLE`` :class:`Failure` (or our own side's error) is raised."""
        try:
            self.client.list_objects_v2(
                Bucket=self.where.bucket, Prefix=self.where.key(""), MaxKeys=1
            )
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is FailureKind.LOCAL:
                raise
            if failure.kind is FailureKind.UNREACHABLE:
                raise failure from exc

    def close(self) -> None:
        """Shut down the multipart machinery and the native client, where started."""
        self.downloads.close()
        with self._close_lock:
            self.native.close()
            if self._owns_client:
                self._owns_client = False
                self.client.close()

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- uploads -------------------------------------------------------------------------

    def upload(
        self, path: str, *, key: str | None = None, condition: Condition | None = None
    ) -> Uploaded:
        """Upload ``root/path`` to its key; a write whose ``condition`` does not hold raises
        a ``PRECONDITION`` :class:`Failure`, one the server rejects an ``UNSUPPORTED`` one.
        Local read errors become :class:`FileError`."""
        key = key if key is not None else self.where.key(path)
        extra: dict[str, Any] = self.settings.extra_args(path)
        try:
            f = open(os.path.join(self.root, path), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc
        with f:
            st = os.fstat(f.fileno())
            self._keep_file_metadata(extra, st)
            etag: str | None
            if st.st_size >= self.threshold:
                if self.settings.checksum:
                    # Given up front, s3transfer makes it a FULL_OBJECT checksum that S3
                    # checks on completion, besides each part's own CRC.
                    extra["ChecksumCRC32C"] = crc32c_file(f, path, st.st_size)
                etag = self._parts.upload(f, key, st.st_size, extra, condition_args(condition))
            else:
                extra.update(condition_args(condition))
                etag = None
                if self.native.takes(st.st_size, extra):
                    etag = self.native.put(path, key, st.st_size, extra)
                if etag is None:
                    if self.settings.checksum and self.limiter is not None:
                        # Summed here, so the paced send is the SDK's only read of the body.
                        extra["ChecksumCRC32C"] = crc32c_file(f, path, st.st_size)
                    elif self.settings.checksum:
                        extra["ChecksumAlgorithm"] = "CRC32C"
                    etag = self._put(f, key, st.st_size, extra)
                    self.native.boto3_got_through()
                self.on_bytes(st.st_size)
        return Uploaded(st.st_size, st.st_mtime_ns, etag, st.st_ino, st.st_ctime_ns)

    def _put(self, f: Any, key: str, size: int, extra: dict[str, Any]) -> str:
        def once() -> str:
            f.seek(0)
            # A fresh reader per attempt: a retry sends (and is charged for) the bytes again.
            # The size stat'ed, not the file's: it may grow while it is sent.
            body: Any = UploadBody(f, self.limiter, size=size)
            resp = self.client.put_object(Bucket=self.where.bucket, Key=key, Body=body, **extra)
            return resp.get("ETag", "").strip('"')

        return self._call(once, what=f"upload {key}")

    def _keep_file_metadata(self, extra: dict[str, Any], st: os.stat_result) -> None:
        """The file's mtime (and mode, under ``keep_mode``) into an upload's metadata."""
        mode = st.st_mode if self.settings.keep_mode else None
        keep_file_metadata(extra, mtime_ns=st.st_mtime_ns, mode=mode)

    def start_upload(self, path: str, *, condition: Condition | None = None) -> Sending | None:
        """Start a native PUT of a small file and return at once, so that many go out
        side by side from one thread; None when it must take :meth:`upload` (no native
        client, a large file, or the native client failed before).  The first attempt
        only: the caller takes :meth:`upload` again for anything but success."""
        if not self.native.usable:
            return None
        try:
            st = os.stat(os.path.join(self.root, path))
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc
        if st.st_size >= self.threshold:
            return None
        extra: dict[str, Any] = self.settings.extra_args(path) | condition_args(condition)
        self._keep_file_metadata(extra, st)
        if not self.native.takes(st.st_size, extra):
            return None  # a setting only boto3 carries: this file goes through upload()
        self.reachability.check()
        key = self.where.key(path)
        future, timeout = self.native.submit(path, key, st.st_size, extra)
        sent = Uploaded(st.st_size, st.st_mtime_ns, "", st.st_ino, st.st_ctime_ns)
        return Sending(self.reachability, path, future, sent, timeout)

    def abort_stale_uploads(self, *, older_than: float, now: float | None = None) -> int:
        """Abort this prefix's multipart uploads older than ``older_than`` seconds (see
        :meth:`Multipart.abort_stale`); returns how many were aborted."""
        return self._parts.abort_stale(older_than=older_than, now=now)

    # -- downloads -----------------------------------------------------------------------

    def local_target(self, path: str) -> Path:
        """The file a relative path maps to, refusing anything that resolves outside root."""
        return self.downloads.local_target(path)

    def download(
        self,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        etag: str = "",
        dest: str | None = None,
        replacing: LocalEntry | None = None,
        keep_as: str | None = None,
    ) -> Downloaded:
        """See :meth:`Downloads.download`."""
        return self.downloads.download(
            path,
            size=size,
            mtime_ns=mtime_ns,
            etag=etag,
            dest=dest,
            replacing=replacing,
            keep_as=keep_as,
        )

    # -- metadata, copies and deletes ------------------------------------------------------

    def listing(
        self,
        *,
        for_download: bool,
        on_read: Callable[[int], None] | None = None,
        replay: Mapping[str | None, Page] | None = None,
    ) -> Iterator[RemoteEntry | Skipped]:
        """The objects under the prefix in key order (see :func:`remote.list_entries`);
        ``on_read`` hears each page's count as it is read; ``replay`` holds pages already
        read, by continuation token.  Under a give-up limit (``sync``), a first request that
        finds no connection at all is not retried: nothing has ever answered there."""
        return list_entries(
            self.client, self.where, for_download=for_download, retry=self._list_retry(),
            page_size=self.settings.page_size, request_extra=self.settings.payer_args(),
            on_read=on_read, replay=replay,
        )  # fmt: skip

    def listing_pages(
        self, on_read: Callable[[int], None] | None = None
    ) -> Iterator[list[RemoteRow | Skipped]]:
        """:meth:`listing` for a download, as plain rows a list at a time; ``on_read``
        hears each page's count as it is read (see :func:`listing.list_pages`)."""
        return list_pages(
            self.client,
            self.where,
            for_download=True,
            retry=self._list_retry(),
            page_size=self.settings.page_size or ASKED_PAGE,
            request_extra=self.settings.payer_args(),
            on_read=on_read,
        )

    def _list_retry(self) -> RetryPolicy:
        retry = self.retry
        if self.reachability.give_up_after is not None:
            retry = UntilAnswered(retry.attempts, retry.initial, retry.max_wait, self.reachability)
        return retry

    def head(self, path: str) -> RemoteEntry | None:
        """The object at ``path`` as a listing would show it, with the mtime its metadata
        keeps (which a listing does not carry), or None when there is none."""
        key = self.where.key(path)

        def once() -> RemoteEntry | None:
            try:
                resp = self.client.head_object(
                    Bucket=self.where.bucket, Key=key, **self.settings.read_args()
                )
            except Exception as exc:
                if classify(exc).kind is FailureKind.NOT_FOUND:
                    return None
                raise
            etag = resp.get("ETag", "").strip('"')
            kept = stored_mtime(resp.get("Metadata"))
            when = mtime_ns(resp["LastModified"])
            return RemoteEntry(path, resp["ContentLength"], when, etag, stored_mtime_ns=kept)

        return self._call(once, what=f"head {key}")

    def copy(self, src_path: str, dst_path: str, *, condition: Condition | None = None) -> str:
        """Server-side copy of one object under the prefix; returns the new ETag.  A source
        that is gone raises a ``NOT_FOUND`` :class:`Failure`; one other than ``condition``
        names a ``PRECONDITION`` one (``UNSUPPORTED`` where the server rejects the
        condition)."""
        src = {"Bucket": self.where.bucket, "Key": self.where.key(src_path)}
        dst = self.where.key(dst_path)
        extra: dict[str, Any] = self.settings.extra_args(dst_path) | source_args(condition)
        if "SSECustomerKey" in extra:  # the source is encrypted with the same key
            extra["CopySourceSSECustomerAlgorithm"] = extra["SSECustomerAlgorithm"]
            extra["CopySourceSSECustomerKey"] = extra["SSECustomerKey"]
        # Settings given for new objects replace what the source carried.
        replace = not _REPLACED.isdisjoint(extra)
        if replace:
            # New metadata replaces the source's: the copy keeps the time of the file it
            # stands for (a rename's), where that file is here.
            with contextlib.suppress(OSError):
                self._keep_file_metadata(extra, os.stat(os.path.join(self.root, dst_path)))

        def once() -> str:
            resp = self.client.copy_object(
                Bucket=self.where.bucket,
                Key=dst,
                CopySource=src,  # type: ignore[arg-type]
                MetadataDirective="REPLACE" if replace else "COPY",
                **extra,
            )
            return resp.get("CopyObjectResult", {}).get("ETag", "").strip('"')

        return self._call(once, what=f"copy {dst}")

    def delete_remote(
        self, paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None
    ) -> list[tuple[str, Failure]]:
        """Delete objects in batches of 1000; returns (path, failure) for each that failed.
        A path in ``conditions`` is deleted only if its object is still the version named
        (DeleteObjects' per-object ETag); one that lost fails with a ``PRECONDITION``
        failure, one already gone with ``NOT_FOUND``.  A server that rejects the condition
        raises an ``UNSUPPORTED`` :class:`Failure`."""
        failed: list[tuple[str, Failure]] = []
        batch: list[str] = []
        for path in paths:
            batch.append(path)
            if len(batch) == 1000:
                failed += self._delete_batch(batch, conditions or {})
                batch = []
        if batch:
            failed += self._delete_batch(batch, conditions or {})
        return failed

    def _delete_batch(
        self, paths: list[str], conditions: Mapping[str, Condition]
    ) -> list[tuple[str, Failure]]:
        by_key = {self.where.key(p): p for p in paths}
        objects: list[Any] = [delete_object(k, conditions.get(p)) for k, p in by_key.items()]

        def once() -> list[tuple[str, Failure]]:
            resp = self.client.delete_objects(
                Bucket=self.where.bucket,
                Delete={"Objects": objects, "Quiet": True},
                **self.settings.payer_args(),  # type: ignore[arg-type]
            )
            return [
                (
                    by_key.get(e.get("Key", ""), e.get("Key", "")),
                    answer(e.get("Code", "error"), e.get("Message", "")),
                )
                for e in resp.get("Errors", [])
            ]

        return self._call(once, what=f"delete {len(paths)} objects")

    def delete_local(self, path: str) -> None:
        """Remove one file under the root (never a directory tree, never through a
        symlinked directory: the file there is another path's, which may be kept)."""
        target = self.local_target(path)
        head = os.path.dirname(path)
        root_real = os.path.realpath(self.root)  # as it resolves now (see local_target)
        lexical = os.path.join(root_real, head) if head else root_real
        if os.path.realpath(target.parent) != os.path.normpath(lexical):
            raise FileError(path, "refusing to delete through a symlinked directory")
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError as exc:
            raise FileError(path, "is a directory") from exc
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc


# What a copy replaces rather than copies from its source (MetadataDirective REPLACE).
_REPLACED = frozenset(
    {
        "ContentType",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "Expires",
        "WebsiteRedirectLocation",
        "Metadata",
    }
)


def _nothing(_nbytes: int) -> None:
    """No one is told of the bytes moved."""


def open_transfer(
    settings: S3Settings,
    where: S3Url,
    root: Path,
    *,
    client: S3Client | None = None,
    native_ok: bool = True,
    retry: RetryPolicy | None = None,
    give_up_after: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
    give_up_min_seconds: float = 10.0,
    volume: FolderVolume | None = None,
) -> Transfer:
    """The one way both commands get a :class:`Transfer`, with the one native-client rule.

    The native uploader is used only when this call makes the client (an injected client is
    the whole S3 connection: tests, proxies), the caller allows it (not for a dry run) and
    the bucket and connection settings are ones it handles (not an access point, unsigned
    requests or unverified certificates); a file with a setting it cannot send goes through
    boto3 alone.  A bandwidth cap paces it like boto3 (each request waits for its bytes).
    The caller closes the transfer (it is a context manager), which closes the client it
    made.  ``on_bytes`` is told of the bytes moved (see :class:`Transfer`).
    """
    owns = client is None
    s3 = client if client is not None else make_client(settings)
    # The native client signs every request, checks every certificate and knows plain
    # buckets only: access points and unsigned or unverified connections are boto3's.
    native_ok = (
        native_ok
        and owns
        and not where.access_point
        and settings.sign_requests
        and settings.verify_ssl
    )
    # Made at the first small upload (a no-op run never pays for it).
    uploader = (lambda: native_uploader(settings, s3)) if native_ok else None
    return Transfer(
        s3,
        where,
        root,
        settings=settings,
        retry=retry,
        limiter=shared_limiter(settings.bwlimit) if settings.bwlimit else None,
        max_concurrency=settings.max_concurrency,
        crt=uploader,
        owns_client=owns,
        give_up_after=give_up_after,
        on_bytes=on_bytes,
        give_up_min_seconds=give_up_min_seconds,
        volume=volume,
    )
