"""Moving bytes: uploads, downloads, copies and deletes through one shared boto3 client.

Small files go in one ``put_object``/``get_object`` (the cheapest path per file); large ones
through s3transfer's multipart machinery, which bounds memory and parallelises parts.  Every
call runs under the one retry policy.  Nothing here decides what to transfer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from . import crt as native
from .errors import (
    ConditionalWritesUnsupported,
    FileError,
    NotFound,
    PathBlocked,
    PreconditionFailed,
    RemoteError,
)
from .local import temp_name
from .model import LocalEntry, RemoteEntry, Skipped
from .multipart import Multipart, crc32c_file
from .ratelimit import RateLimiter, ThrottledReader, shared_limiter
from .remote import (
    S3Settings,
    S3Url,
    describe,
    list_entries,
    make_client,
    mtime_ns,
    s3_error,
    unreachable,
)
from .retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

T = TypeVar("T")

MULTIPART_THRESHOLD = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    """What an upload put in S3: the file as it was opened, and the new object's ETag."""

    size: int
    mtime_ns: int
    etag: str
    ino: int = 0  # the file's st_ino, 0 when unknown


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
        self,
        path: str,
        *,
        key: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> Uploaded: ...

    def start_upload(
        self, path: str, *, if_match: str | None = None, if_none_match: bool = False
    ) -> Started | None: ...

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
    ) -> Path: ...

    def copy(self, src_path: str, dst_path: str, *, if_match: str | None = None) -> str: ...

    def head(self, path: str) -> RemoteEntry | None: ...

    def listing(self, *, for_download: bool) -> Iterator[RemoteEntry | Skipped]: ...

    def delete_remote(
        self, paths: Iterable[str], *, etags: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]: ...

    def delete_local(self, path: str) -> None: ...


class EndpointGone(RemoteError):
    """The S3 endpoint stopped answering: many attempts in a row found no connection."""


class Reachability:
    """Counts consecutive attempts that found no connection, across every thread of a run.

    With ``give_up_after`` set, that many in a row over at least ``min_seconds`` (so a
    burst of parallel attempts during a short blip does not count) mean the endpoint is
    plainly gone: the failing attempt and every later one raise :class:`EndpointGone` (not
    retried), so a ``sync`` stops within one round of retries instead of failing file after
    file.  None (the agent): only counted; the agent pauses and probes by itself.

    >>> r = Reachability(2, what="http://x", min_seconds=0)
    >>> r.failed(ConnectionRefusedError()); r.gone is None
    True
    """

    def __init__(
        self,
        give_up_after: int | None,
        *,
        what: str,
        min_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.give_up_after = give_up_after
        self.what = what
        self.min_seconds = min_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._since = 0.0
        self.gone: EndpointGone | None = None
        self.answered = False  # any answer at all, even an S3 error

    def check(self) -> None:
        """Raise at once once the endpoint was declared gone."""
        if self.gone is not None:
            raise self.gone

    def ok(self) -> None:
        """An attempt got an answer."""
        with self._lock:
            self._in_a_row = 0
            self.answered = True

    def failed(self, exc: BaseException) -> None:
        """Count ``exc`` when it is a connection failure; raise once there were too many."""
        if isinstance(exc, EndpointGone) or not unreachable(exc):
            if isinstance(exc, botocore.exceptions.ClientError):
                self.answered = True
            return
        with self._lock:
            now = self.clock()
            if self._in_a_row == 0:
                self._since = now
            self._in_a_row += 1
            if (
                self.give_up_after is None
                or self._in_a_row < self.give_up_after
                or now - self._since < self.min_seconds
            ):
                return
            if self.gone is None:
                self.gone = EndpointGone(
                    f"S3 endpoint {self.what} stopped answering ({self._in_a_row} attempts "
                    f"in a row failed: {describe(exc)}); stopping the run"
                )
            gone = self.gone
        raise gone from exc

    def hold(self, why: str) -> None:
        """Declare the endpoint gone now (the agent's pause): attempts in flight or queued
        fail at once instead of each retrying on its own, until :meth:`reset`."""
        with self._lock:
            if self.gone is None:
                self.gone = EndpointGone(why)

    def reset(self) -> None:
        """The endpoint answers again: count afresh and let attempts through."""
        with self._lock:
            self.gone = None
            self._in_a_row = 0
            self.answered = True


@dataclass(frozen=True)
class _UntilAnswered(RetryPolicy):
    """The retry policy, except for connection failures while the endpoint never answered."""

    watch: Reachability | None = None

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        """``fn`` once while nothing has answered yet; then the usual retries."""
        if self.watch is None or self.watch.answered:
            return super().call(fn, what=what)
        try:
            result = fn()
        except Exception as exc:
            if unreachable(exc):
                raise
            return super().call(fn, what=what)
        self.watch.ok()
        return result


class _ProvideSize(BaseSubscriber):
    """Hands s3transfer the size from the listing, so it sends no HEAD request."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)


class Sending:
    """A native PUT under way (:meth:`Transfer.start_upload`); :meth:`result` waits for it."""

    def __init__(
        self,
        watch: Reachability,
        path: str,
        key: str,
        future: native.Upload,
        sent: Uploaded,
        timeout: float,
    ) -> None:
        self._watch = watch  # counts each answer, or its absence
        self.path = path
        self._key = key
        self._future = future
        self._sent = sent  # the file as it was stat'ed before the PUT
        self._timeout = timeout

    def result(self) -> Uploaded:
        """The upload as stored; raises as :meth:`Transfer.upload` would on a first attempt."""
        watch = self._watch
        try:
            etag = native.wait(self._future, self._timeout)
        except native.CrtPreconditionFailed as exc:
            watch.ok()
            raise PreconditionFailed(self._key) from exc
        except native.CrtFileChanged as exc:
            raise FileError(self.path, "changed or unreadable while uploading") from exc
        except Exception as exc:
            watch.failed(exc)
            raise
        watch.ok()
        sent = self._sent
        return Uploaded(sent.size, sent.mtime_ns, etag, sent.ino)


class Transfer:
    """S3 object operations for one bucket/prefix and one local root.

    >>> t = Transfer(client, S3Url.parse("s3://bucket/p"), Path("/data"))  # doctest: +SKIP
    >>> t.upload("a.txt")  # doctest: +SKIP
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
        crt: native.CrtUploader | None = None,
        owns_client: bool = False,
        give_up_after: int | None = None,
    ) -> None:
        self.client = client
        self.reachability = Reachability(give_up_after, what=client.meta.endpoint_url)
        self._owns_client = owns_client
        # Small uploads go through the native client when there is one and no bandwidth cap
        # applies (the cap is enforced on Python reads, which the native client bypasses).
        self.crt = crt if limiter is None else None
        self._owned_crt = crt
        self._native_failure: Exception | None = None
        self.where = where
        self.root = root
        self.settings = settings or S3Settings()
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self.threshold = multipart_threshold
        self._config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, 8 * 1024 * 1024),
            max_concurrency=max(2, min(max_concurrency, 10)),
            max_bandwidth=int(limiter.rate) if limiter else None,
            use_threads=True,
        )
        self._manager: TransferManager | None = None
        self._manager_lock = threading.Lock()
        self._root_real = os.path.realpath(root)
        self._parts = Multipart(
            client,
            where,
            settings=self.settings,
            call=self._call,
            limiter=limiter,
            part_size=self._config.multipart_chunksize,
            concurrency=self._config.max_request_concurrency,
        )

    def _call(self, fn: Callable[[], T], *, what: str) -> T:
        """``fn`` under the retry policy, each attempt counted by the reachability watch."""
        watch = self.reachability

        def attempt() -> T:
            watch.check()
            try:
                result = fn()
            except Exception as exc:
                watch.failed(exc)
                raise
            watch.ok()
            return result

        return self.retry.call(attempt, what=what)

    def probe(self) -> None:
        """One cheap request (a one-key listing of the prefix), not retried and not held
        back by the reachability watch: raises when nothing answered.  An answer that is an
        S3 error (access denied, no such bucket) still means the endpoint is there."""
        try:
            self.client.list_objects_v2(
                Bucket=self.where.bucket, Prefix=self.where.key(""), MaxKeys=1
            )
        except botocore.exceptions.ClientError:
            return

    def close(self) -> None:
        """Shut down the multipart machinery and the native client, where started."""
        with self._manager_lock:
            if self._manager is not None:
                self._manager.shutdown()
                self._manager = None
            if self._owned_crt is not None:
                self._owned_crt.close()
                self._owned_crt = self.crt = None
            if self._owns_client:
                self._owns_client = False
                self.client.close()

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _multipart(self) -> TransferManager:
        with self._manager_lock:
            if self._manager is None:
                self._manager = TransferManager(self.client, config=self._config)
            return self._manager

    # -- uploads -------------------------------------------------------------------------

    def upload(
        self,
        path: str,
        *,
        key: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> Uploaded:
        """Upload ``root/path`` to its key; a conditional write that loses raises
        :class:`PreconditionFailed`.  Local read errors become :class:`FileError`."""
        key = key if key is not None else self.where.key(path)
        extra: dict[str, Any] = self.settings.extra_args(path)
        try:
            f = open(os.path.join(self.root, path), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc
        with f:
            st = os.fstat(f.fileno())
            etag: str | None
            if st.st_size >= self.threshold:
                if self.settings.checksum:
                    # Given up front, s3transfer makes it a FULL_OBJECT checksum that S3
                    # checks on completion, besides each part's own CRC.
                    extra["ChecksumCRC32C"] = crc32c_file(f, path, st.st_size)
                conditions = {"IfMatch": f'"{if_match}"'} if if_match else {}
                if if_none_match and not if_match:
                    conditions = {"IfNoneMatch": "*"}
                etag = self._parts.upload(f, key, st.st_size, extra, conditions)
            else:
                if if_match:
                    extra["IfMatch"] = f'"{if_match}"'
                elif if_none_match:
                    extra["IfNoneMatch"] = "*"
                etag = self._put_native(path, key, st.st_size, extra) if self.crt else None
                if etag is None:
                    if self.settings.checksum:
                        extra["ChecksumAlgorithm"] = "CRC32C"
                    etag = self._put(f, key, extra)
                    self._native_unusable()
        return Uploaded(st.st_size, st.st_mtime_ns, etag, st.st_ino)

    def _put(self, f: Any, key: str, extra: dict[str, Any]) -> str:
        body: Any = ThrottledReader(f, self.limiter) if self.limiter else f

        def once() -> str:
            f.seek(0)
            try:
                resp = self.client.put_object(Bucket=self.where.bucket, Key=key, Body=body, **extra)
            except Exception as exc:
                raise (s3_error(exc, key) or exc) from exc
            return resp.get("ETag", "").strip('"')

        return self._call(once, what=f"upload {key}")

    def _put_native(self, path: str, key: str, size: int, extra: dict[str, Any]) -> str | None:
        """One PUT through the native client.  None when it failed below S3 (TLS, proxies,
        redirects it does not follow): the caller then tries boto3, and if boto3 gets
        through, every later upload skips the native client."""
        crt = self.crt
        assert crt is not None
        headers, filename, timeout = self._native_request(path, size, extra)

        def once() -> str:
            try:
                return crt.put_file(
                    self.where.bucket, key, filename, size=size, headers=headers, timeout=timeout
                )
            except native.CrtPreconditionFailed as exc:
                raise PreconditionFailed(key) from exc
            except native.CrtFileChanged as exc:
                raise FileError(path, "changed or unreadable while uploading") from exc

        try:
            return self._call(once, what=f"upload {key}")
        except native.CrtError as exc:
            if exc.status >= 400 and exc.code not in _REDIRECTS:
                raise  # S3 itself said no: boto3 would hear the same
            self._native_failure = exc
            return None

    def _native_request(
        self, path: str, size: int, extra: Mapping[str, Any]
    ) -> tuple[dict[str, str], str, float]:
        """Headers, file name and timeout of a native PUT of ``path``."""
        headers = {_HEADERS[name]: str(value) for name, value in extra.items() if name in _HEADERS}
        # boto3's read timeout, plus the time to send the file at a slow 64 KiB/s
        return headers, os.path.join(self.root, path), self.settings.read_timeout + size / 65536

    def start_upload(
        self, path: str, *, if_match: str | None = None, if_none_match: bool = False
    ) -> Sending | None:
        """Start a native PUT of a small file and return at once, so that many go out
        side by side from one thread; None when it must take :meth:`upload` (no native
        client, a large file, or the native client failed before).  The first attempt
        only: the caller takes :meth:`upload` again for anything but success."""
        crt = self.crt
        if crt is None or self._native_failure is not None:
            return None
        try:
            st = os.stat(os.path.join(self.root, path))
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc
        if st.st_size >= self.threshold:
            return None
        extra: dict[str, Any] = self.settings.extra_args(path)
        if if_match:
            extra["IfMatch"] = f'"{if_match}"'
        elif if_none_match:
            extra["IfNoneMatch"] = "*"
        headers, filename, timeout = self._native_request(path, st.st_size, extra)
        self.reachability.check()
        key = self.where.key(path)
        try:
            future = crt.submit(self.where.bucket, key, filename, size=st.st_size, headers=headers)
        except Exception as exc:
            self.reachability.failed(exc)
            raise
        sent = Uploaded(st.st_size, st.st_mtime_ns, "", st.st_ino)
        return Sending(self.reachability, path, key, future, sent, timeout)

    def _native_unusable(self) -> None:
        """boto3 succeeded where the native client had failed: stop using it."""
        if self._native_failure is not None and self.crt is not None:
            logger.warning(
                "upload: native client fails here (%s); using boto3", self._native_failure
            )
            self.crt = None

    def abort_stale_uploads(self, *, older_than: float, now: float | None = None) -> int:
        """Abort this prefix's multipart uploads older than ``older_than`` seconds (see
        :meth:`Multipart.abort_stale`); returns how many were aborted."""
        return self._parts.abort_stale(older_than=older_than, now=now)

    # -- downloads -----------------------------------------------------------------------

    def local_target(self, path: str) -> Path:
        """The file a relative path maps to, refusing anything that resolves outside root."""
        target = self.root / path
        parent = os.path.realpath(target.parent)
        if parent != self._root_real and not parent.startswith(self._root_real + os.sep):
            raise FileError(path, "refusing to write outside the destination")
        return target

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
    ) -> Path:
        """Download the object at ``path`` to ``root/(dest or path)`` via a temporary file,
        then set its mtime and atime to LastModified and rename it into place.

        With ``keep_as``, the file being replaced must be ``replacing`` (None: no file):
        the file there is hard-linked aside just before the rename and compared after it,
        so an edit that landed after the caller's check (or is still being written through
        an open handle) is kept at ``root/keep_as`` instead of being lost."""
        key = self.where.key(path)
        target_rel = dest if dest is not None else path
        # Checked before mkdir too: a symlinked directory must not get subdirectories made
        # outside the destination; checked again after, as mkdir may race with a new link.
        target = self.local_target(target_rel)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise PathBlocked(target_rel, "a file is in the way of its directory") from exc
        except OSError as exc:
            raise FileError(target_rel, exc.strerror or str(exc)) from exc
        target = self.local_target(target_rel)
        if target.is_dir() and not target.is_symlink():
            raise PathBlocked(target_rel, "a directory is in the way")
        tmp = target.with_name(temp_name(target.name, secrets.token_hex(4)))
        try:
            if size >= self.threshold:
                self._call(lambda: self._get_multipart(key, tmp, size), what=f"download {key}")
            else:
                self._call(lambda: self._get(key, tmp, etag), what=f"download {key}")
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
            aside = self._link_aside(target) if keep_as is not None else None
            os.replace(tmp, target)
            if aside is not None and keep_as is not None:
                self._keep_if_changed(aside, replacing, keep_as, shown=target_rel)
        except IsADirectoryError as exc:  # made meanwhile (a download below it, or the user)
            raise PathBlocked(target_rel, "a directory is in the way") from exc
        except OSError as exc:
            raise FileError(target_rel, exc.strerror or str(exc)) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return target

    def _link_aside(self, target: Path) -> Path | None:
        """A second name for the file about to be replaced (None when there is none)."""
        aside = target.with_name(temp_name(target.name, "old-" + secrets.token_hex(4)))
        try:
            os.link(target, aside, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            # A directory made there meanwhile (a download below it): linking it says EPERM.
            if os.path.isdir(target) and not os.path.islink(target):
                raise IsADirectoryError(exc.errno, "a directory is in the way") from exc
            raise
        return aside

    def _keep_if_changed(
        self, aside: Path, replacing: LocalEntry | None, keep_as: str, *, shown: str
    ) -> None:
        """Drop the replaced file if it is the one expected; else move it to ``keep_as``."""
        try:
            st = os.lstat(aside)
            if replacing is not None and (st.st_size, st.st_mtime_ns) == (
                replacing.size,
                replacing.mtime_ns,
            ):
                aside.unlink()
                return
            logger.warning(
                "download: %s changed while it was replaced; the local version is kept as %s",
                shown,
                keep_as,
            )
            os.replace(aside, self.local_target(keep_as))
        finally:
            with contextlib.suppress(FileNotFoundError):
                aside.unlink()

    def _get(self, key: str, tmp: Path, etag: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.where.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        if self.settings.checksum:
            kwargs["ChecksumMode"] = "ENABLED"  # botocore checks the body against it
        try:
            resp = self.client.get_object(**kwargs)
        except Exception as exc:
            # 412: the object changed since it was listed; the caller looks again.
            raise (s3_error(exc, key) or exc) from exc
        body = resp["Body"]
        try:
            with open(tmp, "wb") as out:
                while chunk := body.read(_CHUNK):
                    if self.limiter:
                        self.limiter.take(len(chunk))
                    out.write(chunk)
        except botocore.exceptions.FlexibleChecksumError as exc:
            raise ChecksumMismatch(key, str(exc)) from exc
        finally:
            body.close()

    def _get_multipart(self, key: str, tmp: Path, size: int) -> None:
        future = self._multipart().download(
            self.where.bucket, key, str(tmp), subscribers=[_ProvideSize(size)]
        )
        future.result()
        if self.settings.checksum:
            self._verify_download(key, tmp)

    def _verify_download(self, key: str, tmp: Path) -> None:
        """Ranged GETs carry no whole-object checksum: compare the file with the object's
        full-object CRC32C, where it has one (composite per-part sums are left alone)."""
        head = self.client.head_object(Bucket=self.where.bucket, Key=key, ChecksumMode="ENABLED")
        expected = head.get("ChecksumCRC32C", "")
        if not expected or "-" in expected or head.get("ChecksumType") == "COMPOSITE":
            return
        with open(tmp, "rb") as f:
            actual = crc32c_file(f, str(tmp))
        if actual != expected:
            raise ChecksumMismatch(key, f"S3 has CRC32C {expected}, the file {actual}")

    # -- metadata, copies and deletes ------------------------------------------------------

    def listing(self, *, for_download: bool) -> Iterator[RemoteEntry | Skipped]:
        """The objects under the prefix in key order (see :func:`remote.list_entries`).

        Under a give-up limit (``sync``), a first request that finds no connection at all
        is not retried: nothing has ever answered there, so the run ends at once."""
        retry = self.retry
        if self.reachability.give_up_after is not None:
            retry = _UntilAnswered(retry.attempts, retry.initial, retry.max_wait, self.reachability)
        return list_entries(self.client, self.where, for_download=for_download, retry=retry)

    def head(self, path: str) -> RemoteEntry | None:
        """The object at ``path`` as a listing would show it, or None when there is none."""
        key = self.where.key(path)

        def once() -> RemoteEntry | None:
            try:
                resp = self.client.head_object(Bucket=self.where.bucket, Key=key)
            except Exception as exc:
                if isinstance(s3_error(exc, key), NotFound):
                    return None
                raise
            etag = resp.get("ETag", "").strip('"')
            return RemoteEntry(path, resp["ContentLength"], mtime_ns(resp["LastModified"]), etag)

        return self._call(once, what=f"head {key}")

    def copy(self, src_path: str, dst_path: str, *, if_match: str | None = None) -> str:
        """Server-side copy of one object under the prefix; returns the new ETag.  A source
        that is gone raises :class:`NotFound`; with ``if_match``, a source with another ETag
        raises :class:`PreconditionFailed`."""
        src = {"Bucket": self.where.bucket, "Key": self.where.key(src_path)}
        dst = self.where.key(dst_path)
        extra: dict[str, Any] = self.settings.extra_args(dst_path)
        if if_match:
            extra["CopySourceIfMatch"] = f'"{if_match}"'

        def once() -> str:
            try:
                resp = self.client.copy_object(
                    Bucket=self.where.bucket,
                    Key=dst,
                    CopySource=src,  # type: ignore[arg-type]
                    MetadataDirective="REPLACE" if "ContentType" in extra else "COPY",
                    **extra,
                )
            except Exception as exc:
                raise (s3_error(exc, src["Key"]) or exc) from exc
            return resp.get("CopyObjectResult", {}).get("ETag", "").strip('"')

        return self._call(once, what=f"copy {dst}")

    def delete_remote(
        self, paths: Iterable[str], *, etags: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        """Delete objects in batches of 1000; returns (path, error code) for each that
        failed.  A path in ``etags`` is deleted only if its object still has that ETag
        (DeleteObjects' per-object condition); one that lost fails with
        ``PreconditionFailed``.  A server that rejects the condition raises
        :class:`ConditionalWritesUnsupported`."""
        failed: list[tuple[str, str]] = []
        batch: list[str] = []
        for path in paths:
            batch.append(path)
            if len(batch) == 1000:
                failed += self._delete_batch(batch, etags or {})
                batch = []
        if batch:
            failed += self._delete_batch(batch, etags or {})
        return failed

    def _delete_batch(self, paths: list[str], etags: Mapping[str, str]) -> list[tuple[str, str]]:
        by_key = {self.where.key(p): p for p in paths}
        objects: list[Any] = [
            {"Key": k, "ETag": f'"{etags[p]}"'} if etags.get(p) else {"Key": k}
            for k, p in by_key.items()
        ]

        def once() -> list[tuple[str, str]]:
            try:
                resp = self.client.delete_objects(
                    Bucket=self.where.bucket, Delete={"Objects": objects, "Quiet": True}
                )
            except Exception as exc:
                mapped = s3_error(exc, self.where.url())
                if isinstance(mapped, ConditionalWritesUnsupported):
                    raise mapped from exc
                raise
            return [
                (by_key.get(e.get("Key", ""), e.get("Key", "")), e.get("Code", "error"))
                for e in resp.get("Errors", [])
            ]

        return self._call(once, what=f"delete {len(paths)} objects")

    def delete_local(self, path: str) -> None:
        """Remove one file under the root (never a directory tree, never through a
        symlinked directory: the file there is another path's, which may be kept)."""
        target = self.local_target(path)
        head = os.path.dirname(path)
        lexical = os.path.join(self._root_real, head) if head else self._root_real
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


class ChecksumMismatch(Exception):
    """The bytes received do not match the CRC32C that S3 stored with the object."""

    transient = True  # damaged in flight: fetching again is right

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(key, detail)
        self.key = key
        self.detail = detail

    def __str__(self) -> str:
        return f"checksum mismatch on {self.key}: {self.detail}"


# Answers meaning "ask elsewhere" (another region): boto3 follows them, the native client
# does not, so they send the upload (and the rest) back to boto3.
_REDIRECTS = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed"})

# boto3 ExtraArgs -> the HTTP headers the native client sends.
_HEADERS = {
    "ContentType": "Content-Type",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "StorageClass": "x-amz-storage-class",
    "IfMatch": "If-Match",
    "IfNoneMatch": "If-None-Match",
}


def open_transfer(
    settings: S3Settings,
    where: S3Url,
    root: Path,
    *,
    client: S3Client | None = None,
    native_ok: bool = True,
    retry: RetryPolicy | None = None,
    give_up_after: int | None = None,
) -> Transfer:
    """The one way both commands get a :class:`Transfer`, with the one native-client rule.

    The native uploader is used only when this call makes the client (an injected client is
    the whole S3 connection: tests, proxies), no bandwidth cap applies (it is enforced on
    Python reads) and the caller allows it (not for a dry run).

    >>> t = open_transfer(S3Settings(), S3Url.parse("s3://b"), Path("."))  # doctest: +SKIP
    """
    owns = client is None
    s3 = client if client is not None else make_client(settings)
    uploader = (
        native_uploader(settings, s3) if owns and native_ok and not settings.bwlimit else None
    )
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
    )


def native_uploader(settings: S3Settings, client: S3Client) -> native.CrtUploader | None:
    """The native small-file uploader, aimed where ``client`` goes (its endpoint and region,
    so ``AWS_ENDPOINT_URL`` and profiles count the same), or None where it is unavailable
    (``WATCHSYNC_NATIVE=0``, no awscrt, no credentials): boto3 then does every upload."""
    if os.environ.get("WATCHSYNC_NATIVE", "1") == "0" or not native.available():
        return None
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        if session.get_credentials() is None:
            return None
        region = client.meta.region_name or "us-east-1"
        endpoint, why_not = native_endpoint(client, region)
        if why_not:
            logger.debug("upload: native client not used: %s", why_not)
            return None
        return native.CrtUploader(
            endpoint_url=endpoint,
            region=region,
            session=session,
            max_concurrency=max(64, settings.max_concurrency * 2),
            checksum=settings.checksum,
            # botocore's resolution of AWS_CA_BUNDLE and the profile's ca_bundle
            ca_file=session._session.get_config_variable("ca_bundle"),
        )
    except Exception as exc:  # any trouble here only costs speed
        logger.debug("upload: native client unavailable: %s", exc)
        return None


def native_endpoint(client: S3Client, region: str) -> tuple[str | None, str]:
    """Where the native client may go: ``(endpoint_url, "")``, with None meaning AWS's plain
    regional endpoint (its own virtual-hosted addressing), or ``(None, why_not)``.

    The native client only knows the plain ``{bucket}.s3.{region}.amazonaws.com``: where
    botocore resolved anything else on AWS (FIPS, dualstack, accelerate, a VPC endpoint or
    access point URL) it would bypass that choice, so boto3 keeps every upload there.

    >>> native_endpoint(boto3.client("s3", region_name="eu-west-1"), "eu-west-1")  # doctest: +SKIP
    (None, '')
    """
    endpoint = client.meta.endpoint_url
    host = (urllib.parse.urlsplit(endpoint).hostname or "").lower()
    if not host.endswith(".amazonaws.com"):
        return endpoint, ""  # an S3-compatible server: path-style to exactly this URL
    config: Any = client.meta.config  # the stubs lack the resolved endpoint options
    s3_options = config.s3 or {}
    if config.use_fips_endpoint or "fips" in host:
        return None, "FIPS endpoint"
    if config.use_dualstack_endpoint or s3_options.get("use_dualstack_endpoint"):
        return None, "dualstack endpoint"
    if s3_options.get("use_accelerate_endpoint"):
        return None, "accelerate endpoint"
    if host not in (f"s3.{region}.amazonaws.com", "s3.amazonaws.com"):
        return None, f"endpoint {host} is not the plain regional one"
    return None, ""
