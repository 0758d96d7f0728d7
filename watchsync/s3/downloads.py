"""Downloads: an object into the local root through a temporary file, checked against its
CRC32C where S3 keeps one, given the mtime its metadata keeps (else LastModified), and
renamed into place without losing an edit that landed meanwhile.  Small objects come in one
``get_object``; large ones through s3transfer's ranged GETs.  Nothing here decides what to
download.

A finished download whose rename into place fails is not thrown away: its temporary file
is kept, and the next attempt at the same version only renames it, after a backoff that
grows to an hour (parked) while it keeps failing; the bytes are never fetched twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from watchsync.core.errors import Deferred, Failure, FailureKind, FileError, PathBlocked
from watchsync.core.model import Condition, LocalEntry
from watchsync.core.plan import restored_mode, restored_mtime, same_file
from watchsync.fs.tempfiles import temp_name
from watchsync.fs.volume import NO_LINK_ERRNOS, FolderVolume
from watchsync.fs.walk import entry_of
from watchsync.s3.bandwidth import RateLimiter
from watchsync.s3.conditions import condition_args
from watchsync.s3.file_metadata import stored_mode, stored_mtime
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.multipart import crc32c_file

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
# A finished download that could not be renamed into place is renamed again after these
# many seconds, doubling; after _PARK_AFTER failures it waits the longest (parked).
_FINISH_BACKOFF = (2.0, 3600.0)
_PARK_AFTER = 5


@dataclass
class _Finished:
    """A download complete in its temporary file whose rename into place failed."""

    tmp: Path
    etag: str
    size: int
    mtime_ns: int  # as the volume keeps it
    failures: int = 0
    retry_at: float = 0.0


@dataclass(frozen=True)
class Downloaded:
    """Where a download went, and the mtime it gave the file (the kept one, or
    LastModified): what the file looks like as the download left it."""

    path: Path
    mtime_ns: int


class ChecksumMismatch(Failure):
    """The bytes received do not match the CRC32C that S3 stored with the object: damaged
    in flight, so :attr:`FailureKind.TRANSIENT` (fetching again is right)."""

    def __init__(self, key: str, detail: str) -> None:
        text = f"checksum mismatch on {key}: {detail}"
        super().__init__(FailureKind.TRANSIENT, "ChecksumMismatch", text)
        self.key = key
        self.detail = detail


class Downloads:
    """Objects of one bucket/prefix into one local root (:class:`~.transfer.Transfer`'s
    download side), each request under the caller's retry policy (``call``, which also
    turns S3's and the connection's errors into :class:`Failure`).

    The transfer builds one over its client; ``download(path, size=, mtime_ns=)`` writes
    ``root/path`` through a temporary name and sets its mtime to the object's.
    """

    def __init__(
        self,
        client: S3Client,
        where: S3Url,
        root: Path,
        *,
        settings: S3Settings,
        call: Callable[..., Any],
        limiter: RateLimiter | None,
        threshold: int,
        config: TransferConfig,
        on_bytes: Callable[[int], None] = lambda _n: None,
        volume: FolderVolume | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.volume = volume or FolderVolume(root)
        self.clock = clock
        self._finished: dict[str, _Finished] = {}  # by target path: renames to try again
        self.where = where
        self.root = root
        self.settings = settings
        self._call = call
        self.limiter = limiter
        self.on_bytes = on_bytes  # the bytes of each body as they are read
        self.threshold = threshold
        self._config = config
        self._transfers: TransferManager | None = None
        self._lock = threading.Lock()

    def _manager(self) -> TransferManager:
        with self._lock:
            if self._transfers is None:
                self._transfers = TransferManager(self.client, config=self._config)
            return self._transfers

    def close(self) -> None:
        """Shut down s3transfer's machinery, where started."""
        with self._lock:
            if self._transfers is not None:
                self._transfers.shutdown()
                self._transfers = None

    def local_target(self, path: str) -> Path:
        """The file a relative path maps to, refusing anything that resolves outside root."""
        target = self.root / path
        parent = os.path.realpath(target.parent)
        # The root as it resolves now: a root that is a symlink may have been repointed (a
        # new folder then, met as such by the agent; written to, never outside it).
        root_real = os.path.realpath(self.root)
        if parent != root_real and not parent.startswith(root_real + os.sep):
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
    ) -> Downloaded:
        """Download the object at ``path`` to ``root/(dest or path)`` via a temporary file,
        then give it the mtime kept in the object's metadata (else LastModified), and its
        mode too under ``keep_mode``, and rename it into place; returns where it went and
        the mtime it was given.

        With ``keep_as``, the file being replaced must be ``replacing`` (None: no file):
        the file there is hard-linked aside just before the rename and compared after it,
        so an edit that landed after the caller's check (or is still being written through
        an open handle) is kept at ``root/keep_as`` instead of being lost.  Where the
        volume has no hard links (FAT, exFAT) the file itself is renamed aside instead.

        A failed rename into place keeps the temporary file for the next attempt at this
        version (:class:`~watchsync.core.errors.Deferred` until its backoff is over)."""
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
        done = self._finished_before(target_rel, etag, size)
        tmp = done.tmp if done else target.with_name(temp_name(target.name, secrets.token_hex(4)))
        try:
            if done is None:
                if size >= self.threshold:
                    meta = self._call(
                        lambda: self._get_multipart(key, tmp, size), what=f"download {key}"
                    )
                else:
                    meta = self._call(lambda: self._get(key, tmp, etag), what=f"download {key}")
                mtime, mode = self._kept(mtime_ns, meta)
                if mode is not None:
                    os.chmod(tmp, mode)
                os.utime(tmp, ns=(mtime, mtime))
                # As the volume keeps it: FAT rounds to two seconds, exFAT to one.
                done = _Finished(tmp, etag, size, os.stat(tmp).st_mtime_ns)
            try:
                self._into_place(done, target, replacing, keep_as, shown=target_rel)
            except IsADirectoryError:
                raise
            except OSError as exc:
                raise self._failed_finish(target_rel, done, exc) from exc
        except IsADirectoryError as exc:  # made meanwhile (a download below it, or the user)
            raise PathBlocked(target_rel, "a directory is in the way") from exc
        except OSError as exc:
            raise FileError(target_rel, exc.strerror or str(exc)) from exc
        finally:
            if self._finished.get(target_rel) is not done or done is None:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        self._finished.pop(target_rel, None)
        return Downloaded(target, done.mtime_ns)

    def _finished_before(self, target_rel: str, etag: str, size: int) -> _Finished | None:
        """This version's download kept from a failed rename, when there is one; raises
        :class:`Deferred` while its backoff lasts.  Another version's is dropped."""
        done = self._finished.get(target_rel)
        if done is None:
            return None
        try:
            kept = os.stat(done.tmp).st_size == done.size
        except OSError:
            kept = False
        if not kept or (done.etag, done.size) != (etag, size) or not etag:
            del self._finished[target_rel]
            with contextlib.suppress(OSError):
                done.tmp.unlink()
            return None
        wait = done.retry_at - self.clock()
        if wait > 0:
            raise Deferred(target_rel, f"renaming the finished download tried again in {wait:.0f}s")
        return done

    def _failed_finish(self, target_rel: str, done: _Finished, exc: OSError) -> FileError:
        """Keep ``done`` for another rename later (the bytes are not fetched again); the
        error to report."""
        done.failures += 1
        first, cap = _FINISH_BACKOFF
        parked = done.failures >= _PARK_AFTER
        wait = cap if parked else min(cap, first * 2 ** (done.failures - 1))
        done.retry_at = self.clock() + wait
        self._finished[target_rel] = done
        why = exc.strerror or str(exc)
        if parked:
            return FileError(
                target_rel, f"cannot be renamed into place ({why}); parked, trying again in 1h"
            )
        return FileError(
            target_rel,
            f"cannot be renamed into place ({why}); the download is kept, "
            f"renaming again in {wait:.0f}s",
        )

    def _into_place(
        self,
        done: _Finished,
        target: Path,
        replacing: LocalEntry | None,
        keep_as: str | None,
        *,
        shown: str,
    ) -> None:
        """Rename the finished download over ``target``; with ``keep_as``, keep the file it
        replaces when it is not ``replacing``."""
        aside: Path | None = None
        moved = False
        before: LocalEntry | None = None
        if keep_as is not None:
            with contextlib.suppress(FileNotFoundError):
                before = entry_of(shown, os.lstat(target))
            aside, moved = self._aside(target, self.local_target(keep_as))
        # The second name as our link or rename left it (fusefat's rename sets the mtime).
        baseline = entry_of(shown, os.lstat(aside)) if aside is not None else None
        try:
            os.replace(done.tmp, target)
        except OSError:
            if aside is not None and moved:
                os.replace(aside, target)  # the user's file back where it was
            elif aside is not None:
                aside.unlink()
            raise
        with contextlib.suppress(OSError):
            if os.stat(target).st_mtime_ns != done.mtime_ns:
                # A rename that set the time to now (fusefat does): the kept one again.
                os.utime(target, ns=(done.mtime_ns, done.mtime_ns))
        if aside is not None and keep_as is not None:
            unchanged = same_file(before, replacing) and replacing is not None
            self._keep_if_changed(aside, unchanged, baseline, keep_as, moved=moved, shown=shown)

    def _kept(self, last_modified_ns: int, meta: Mapping[str, str]) -> tuple[int, int | None]:
        """The mtime and mode (None: as the umask makes it) a downloaded file is given,
        from what the object's metadata keeps (:func:`restored_mtime`)."""
        mode = restored_mode(stored_mode(meta), keep_mode=self.settings.keep_mode)
        return restored_mtime(last_modified_ns, stored_mtime(meta)), mode

    def _aside(self, target: Path, keep: Path) -> tuple[Path | None, bool]:
        """A second name for the file about to be replaced (None when there is none): a
        hard link, or where the volume has none the file itself renamed to ``keep`` (its
        conflict name: should the process die before it is compared, it is still there),
        and then True: it must be put back should the download not take its place."""
        aside = target.with_name(temp_name(target.name, "old-" + secrets.token_hex(4)))
        try:
            self.volume.link(target, aside)
        except FileNotFoundError:
            return None, False
        except OSError as exc:
            # A directory made there meanwhile (a download below it): linking it says EPERM.
            if os.path.isdir(target) and not os.path.islink(target):
                raise IsADirectoryError(exc.errno, "a directory is in the way") from exc
            if exc.errno not in NO_LINK_ERRNOS:
                raise
            if self.volume.once("download-no-links"):
                logger.info(
                    "download: no hard links under %s (%s); a file being replaced is "
                    "renamed aside and compared instead",
                    self.root,
                    exc.strerror,
                )
            try:
                os.rename(target, keep)
            except FileNotFoundError:
                return None, False
            return keep, True
        return aside, False

    def _keep_if_changed(
        self,
        aside: Path,
        unchanged: bool,
        baseline: LocalEntry | None,
        keep_as: str,
        *,
        moved: bool,
        shown: str,
    ) -> None:
        """Drop the replaced file if it is the one expected (``unchanged``: it was so right
        before our link or rename, and it is still as that left it, ``baseline``); else
        move it to ``keep_as`` (``moved``: it is there already)."""
        try:
            now = entry_of(shown, os.lstat(aside))
            if unchanged and same_file(now, baseline, by_ctime=False):
                aside.unlink()
                return
            logger.warning(
                "download: %s changed while it was replaced; the local version is kept as %s",
                shown,
                keep_as,
            )
            if not moved:
                os.replace(aside, self.local_target(keep_as))
        finally:
            if not moved:  # a link: the file itself is elsewhere (renamed aside: it is kept)
                with contextlib.suppress(FileNotFoundError):
                    aside.unlink()

    def _get(self, key: str, tmp: Path, etag: str) -> Mapping[str, str]:
        """One GET into ``tmp``; returns the object's user metadata."""
        kwargs: dict[str, Any] = {"Bucket": self.where.bucket, "Key": key}
        kwargs.update(self.settings.read_args())
        if etag:
            kwargs.update(condition_args(Condition(etag)))
        if self.settings.checksum:
            kwargs["ChecksumMode"] = "ENABLED"  # botocore checks the body against it
        # A 412 (the object changed since it was listed) leaves as a PRECONDITION failure.
        resp = self.client.get_object(**kwargs)
        body = resp["Body"]
        try:
            with open(tmp, "wb") as out:
                while chunk := body.read(_CHUNK):
                    if self.limiter:
                        self.limiter.take(len(chunk))
                    self.on_bytes(len(chunk))
                    out.write(chunk)
        except botocore.exceptions.FlexibleChecksumError as exc:
            raise ChecksumMismatch(key, str(exc)) from exc
        finally:
            body.close()
        return resp.get("Metadata", {})

    def _get_multipart(self, key: str, tmp: Path, size: int) -> Mapping[str, str]:
        """Ranged GETs into ``tmp`` (s3transfer), then one HEAD for what they do not carry:
        the whole object's checksum and its user metadata."""
        subscribers: list[BaseSubscriber] = [_ProvideSize(size), _Told(self.on_bytes)]
        if self.limiter is not None:
            subscribers.append(_Paced(self.limiter))
        future = self._manager().download(
            self.where.bucket,
            key,
            str(tmp),
            extra_args=self.settings.read_args(),
            subscribers=subscribers,
        )
        future.result()
        checksum: dict[str, Any] = {"ChecksumMode": "ENABLED"} if self.settings.checksum else {}
        head = self.client.head_object(
            Bucket=self.where.bucket, Key=key, **checksum, **self.settings.read_args()
        )
        if self.settings.checksum:
            self._verify_download(key, tmp, head)
        return head.get("Metadata", {})

    def _verify_download(self, key: str, tmp: Path, head: Mapping[str, Any] | None = None) -> None:
        """Ranged GETs carry no whole-object checksum: compare the file with the object's
        full-object CRC32C, where it has one (composite per-part sums are left alone);
        ``head``: the object's HEAD with its checksum, when already asked for."""
        if head is None:
            head = self.client.head_object(
                Bucket=self.where.bucket,
                Key=key,
                ChecksumMode="ENABLED",
                **self.settings.read_args(),
            )
        expected = head.get("ChecksumCRC32C", "")
        if not expected or "-" in expected or head.get("ChecksumType") == "COMPOSITE":
            return
        with open(tmp, "rb") as f:
            actual = crc32c_file(f, str(tmp))
        if actual != expected:
            raise ChecksumMismatch(key, f"S3 has CRC32C {expected}, the file {actual}")


class _ProvideSize(BaseSubscriber):
    """Hands s3transfer the size from the listing, so it sends no HEAD request."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)


class _Paced(BaseSubscriber):
    """Paces s3transfer's ranged GETs by the shared ``--bwlimit`` budget: its progress
    callbacks run in the thread reading each body, as the bytes arrive, so taking them from
    the limiter there slows the reading (and TCP the sender) to the cap.  A retried range
    reports its bytes back as a negative amount, which costs nothing."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self._limiter.take(bytes_transferred)


class _Told(BaseSubscriber):
    """Tells ``on_bytes`` of the bytes s3transfer's ranged GETs read (a retried range's
    rewind, a negative amount, is not passed on)."""

    def __init__(self, on_bytes: Callable[[int], None]) -> None:
        self._on_bytes = on_bytes

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        if bytes_transferred > 0:
            self._on_bytes(bytes_transferred)
