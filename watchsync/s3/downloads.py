"""Downloads: an object into the local root through a temporary file, checked against its
CRC32C where S3 keeps one, given the mtime its metadata keeps (else LastModified), and
renamed into place without losing an edit that landed meanwhile.  Small objects come in one
``get_object``; large ones through s3transfer's ranged GETs.  Nothing here decides what to
download.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from watchsync.core.errors import Failure, FailureKind, FileError, PathBlocked
from watchsync.core.model import Condition, LocalEntry
from watchsync.core.plan import restored_mode, restored_mtime, same_file
from watchsync.fs.tempfiles import temp_name
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
    ) -> None:
        self.client = client
        self.where = where
        self.root = root
        self.settings = settings
        self._call = call
        self.limiter = limiter
        self.on_bytes = on_bytes  # the bytes of each body as they are read
        self.threshold = threshold
        self._config = config
        self._root_real = os.path.realpath(root)
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
    ) -> Downloaded:
        """Download the object at ``path`` to ``root/(dest or path)`` via a temporary file,
        then give it the mtime kept in the object's metadata (else LastModified), and its
        mode too under ``keep_mode``, and rename it into place; returns where it went and
        the mtime it was given.

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
                meta = self._call(
                    lambda: self._get_multipart(key, tmp, size), what=f"download {key}"
                )
            else:
                meta = self._call(lambda: self._get(key, tmp, etag), what=f"download {key}")
            mtime, mode = self._kept(mtime_ns, meta)
            if mode is not None:
                os.chmod(tmp, mode)
            os.utime(tmp, ns=(mtime, mtime))
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
        return Downloaded(target, mtime)

    def _kept(self, last_modified_ns: int, meta: Mapping[str, str]) -> tuple[int, int | None]:
        """The mtime and mode (None: as the umask makes it) a downloaded file is given,
        from what the object's metadata keeps (:func:`restored_mtime`)."""
        mode = restored_mode(stored_mode(meta), keep_mode=self.settings.keep_mode)
        return restored_mtime(last_modified_ns, stored_mtime(meta)), mode

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
            if replacing is not None and same_file(entry_of(shown, os.lstat(aside)), replacing):
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
