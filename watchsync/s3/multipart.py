"""Large objects in parts, for :class:`~watchsync.s3.transfer.Transfer`: uploads that send
their own parts (a failed one is left pending, so the next attempt resumes it instead of
starting from byte 0), conditional completes (If-Match / If-None-Match ride on
CompleteMultipartUpload, which S3 checks atomically), the resume itself, and the clean-up of
uploads too old to be anyone's.  An adapter like transfer.py: it speaks to boto3, decides
nothing about what to sync.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from watchsync.core.errors import Failure, FailureKind, FileError
from watchsync.fs.platform import read_at
from watchsync.s3.bandwidth import RateLimiter, UploadBody
from watchsync.s3.failures import classify
from watchsync.s3.location import S3Settings, S3Url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

T = TypeVar("T")
_CHUNK = 1024 * 1024


class Call(Protocol):
    """Runs one request under the transfer's retry policy and reachability watch; S3's and
    the connection's errors leave it as :class:`Failure`."""

    def __call__(self, fn: Callable[[], T], *, what: str) -> T: ...


class Multipart:
    """Multipart operations on one bucket/prefix; ``call`` runs one request under the
    transfer's retry policy and reachability watch.  The transfer builds one for the
    files at or above its multipart threshold.
    """

    def __init__(
        self,
        client: S3Client,
        where: S3Url,
        *,
        settings: S3Settings,
        call: Call,
        limiter: RateLimiter | None,
        part_size: int,
        concurrency: int,
        on_bytes: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.client = client
        self.where = where
        self.settings = settings
        self._call = call
        self.limiter = limiter
        self.part_size = part_size
        self.concurrency = concurrency
        self.on_bytes = on_bytes  # each part sent, as it is stored

    def upload(
        self, f: Any, key: str, size: int, extra: dict[str, Any], conditions: dict[str, str]
    ) -> str:
        """Upload an open file in parts; ``conditions`` (If-Match / If-None-Match) ride on
        CompleteMultipartUpload, which S3 checks atomically (s3transfer would drop them).
        Not through s3transfer either way: on failure it aborts the upload, and when the link
        is back by then everything sent so far is lost.  Left pending, the next attempt (or
        the next run, conditional or not) resumes it."""
        full = extra.get("ChecksumCRC32C")
        create_extra = {k: v for k, v in extra.items() if k != "ChecksumCRC32C"}
        if full is not None:
            create_extra.update(ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT")

        def once() -> str:
            resumed = self._resume(f, key, size, conditions)
            if resumed is not None:
                return resumed
            resp = self.client.create_multipart_upload(
                Bucket=self.where.bucket, Key=key, **create_extra
            )
            upload_id = resp["UploadId"]
            return self._finish(f, key, upload_id, size, self.part_size, {}, full, conditions)

        return self._call(once, what=f"upload {key}")

    def _resume(self, f: Any, key: str, size: int, conditions: dict[str, str]) -> str | None:
        """Finish an interrupted multipart upload of ``key`` (kill -9, an outage) instead of
        starting again from byte 0; returns the ETag, or None when there is none to finish.

        Parts already in S3 are kept only when their size and MD5 (the part's ETag) match
        the file's bytes at that place; the others are sent again.  Nothing is kept in a
        journal: S3's own list of pending uploads is the record, so ``sync`` resumes too.
        """
        bucket = self.where.bucket
        try:
            pending = self.client.list_multipart_uploads(
                Bucket=bucket,
                Prefix=key,
                **self.settings.payer_args(),  # type: ignore[arg-type]
            )
        except Exception as exc:
            if not _answered(classify(exc)):
                raise
            return None  # not offered by this server: upload afresh
        uploads = sorted(
            (u for u in pending.get("Uploads", []) if u.get("Key") == key),
            key=lambda u: u.get("Initiated") or 0,
            reverse=True,
        )
        for upload in uploads:
            upload_id = upload.get("UploadId", "")
            kept = self._verified_parts(f, key, upload_id, size)
            if kept is None:
                continue
            part_size, parts = kept
            try:
                return self._finish(f, key, upload_id, size, part_size, parts, None, conditions)
            except Exception as exc:
                failure = classify(exc)
                if failure.kind is not FailureKind.REFUSED:
                    raise  # worth another attempt, or a lost condition: not this upload's
                logger.warning("upload: cannot resume %s (%s); starting again", key, failure.text)
                with contextlib.suppress(Exception):
                    self._abort(key, upload_id)
                return None
        return None

    def abort_stale(self, *, older_than: float, now: float | None = None) -> int:
        """Abort the multipart uploads under this prefix started more than ``older_than``
        seconds before ``now`` (a wall-clock time); returns how many were aborted.

        Only age tells a dead upload from a live one: another agent or ``sync`` on the same
        prefix may be uploading right now, and its upload looks the same as ours.  Younger
        ones are left for :meth:`_resume` (and for their owners).  A server
        without the listing (NotImplemented, AccessDenied) is left alone.  The agent
        calls it at start with a day (``older_than=86400``)."""
        bucket, prefix = self.where.bucket, self.where.key("")
        cutoff = (time.time() if now is None else now) - older_than
        stale: list[tuple[str, str]] = []
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, **self.settings.payer_args()}

        def listed() -> Any:
            return self.client.list_multipart_uploads(**params)

        try:
            while True:
                page = self._call(listed, what=f"list uploads under {self.where.url()}")
                for upload in page.get("Uploads", []):
                    started = upload.get("Initiated")
                    if started is not None and started.timestamp() < cutoff:
                        stale.append((upload.get("Key", ""), upload.get("UploadId", "")))
                if not page.get("IsTruncated"):
                    break
                params.update(
                    KeyMarker=page.get("NextKeyMarker", ""),
                    UploadIdMarker=page.get("NextUploadIdMarker", ""),
                )
            aborted = 0
            for key, upload_id in stale:

                def abort(key: str = key, upload_id: str = upload_id) -> None:
                    self._abort(key, upload_id)

                try:
                    self._call(abort, what=f"abort upload {key}")
                except Failure as exc:
                    if exc.code != "NoSuchUpload":  # finished or aborted meanwhile
                        raise
                else:
                    aborted += 1
        except Failure as exc:
            # A refusal (no such bucket, no permission) is the caller's to report loudly.
            if not _answered(exc) or exc.kind is FailureKind.REFUSED:
                raise
            logger.info("upload: pending uploads not cleaned up (%s)", exc.text)
            return 0
        if aborted:
            logger.info(
                "upload: aborted %d multipart upload(s) under %s started over %.0f h ago",
                aborted,
                self.where.url(),
                older_than / 3600,
            )
        return aborted

    def _verified_parts(
        self, f: Any, key: str, upload_id: str, size: int
    ) -> tuple[int, dict[int, str]] | None:
        """(part size, {part number: ETag}) of the parts whose bytes match the file."""
        listed: list[Any] = []
        marker = 0
        while True:
            page = self.client.list_parts(
                Bucket=self.where.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumberMarker=marker,
                **self.settings.read_args(),
            )
            listed += page.get("Parts", [])
            if not page.get("IsTruncated"):
                break
            marker = int(page.get("NextPartNumberMarker", 0))
        first = next((p for p in listed if p.get("PartNumber") == 1), None)
        part_size = int(first.get("Size", 0)) if first else 0
        if part_size < 5 * 1024 * 1024 or -(-size // part_size) > 10_000:
            return None
        count = -(-size // part_size)
        kept: dict[int, str] = {}
        for part in listed:
            number, etag = int(part.get("PartNumber", 0)), part.get("ETag", "").strip('"')
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            if not 1 <= number <= count or int(part.get("Size", -1)) != length:
                continue
            data = _read_range(f, offset, length)
            if hashlib.md5(data, usedforsecurity=False).hexdigest() == etag:
                kept[number] = etag
        return (part_size, kept) if kept else None

    def _finish(
        self,
        f: Any,
        key: str,
        upload_id: str,
        size: int,
        part_size: int,
        kept: dict[int, str],
        full: str | None = None,
        conditions: dict[str, str] | None = None,
    ) -> str:
        """Send the parts that are missing, then complete the upload under ``conditions``;
        returns the ETag.  ``full``: the whole file's CRC32C when already known.  Memory is
        bounded: each worker reads its own part when it sends it.  A lost condition aborts
        the upload (it is obsolete) and raises (a ``PRECONDITION`` :class:`Failure`, once
        the caller's ``call`` has classified it)."""
        bucket = self.where.bucket
        count = -(-size // part_size)
        checksum = self.settings.checksum
        crcs: dict[int, str] = {}
        etags = dict(kept)

        def send(number: int) -> None:
            offset = (number - 1) * part_size
            data = _read_range(f, offset, min(part_size, size - offset))
            crcs[number] = _crc32c_bytes(data)
            if number in kept:
                return
            extra: dict[str, Any] = {"ChecksumCRC32C": crcs[number]} if checksum else {}
            extra.update(self.settings.read_args())
            # Under --bwlimit the part is paced as it is sent (its sum is given, its payload
            # unsigned, so the send is the only read of it).
            body: Any = UploadBody(io.BytesIO(data), self.limiter) if self.limiter else data
            resp = self.client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **extra
            )
            etags[number] = resp.get("ETag", "").strip('"')
            self.on_bytes(len(data))

        if kept:
            logger.info("upload: resuming %s, %d of %d parts already sent", key, len(kept), count)
        workers = max(1, min(self.concurrency, count))
        with futures.ThreadPoolExecutor(workers, thread_name_prefix="watchsync-part") as pool:
            for done in [pool.submit(send, n) for n in range(1, count + 1)]:
                done.result()
        parts: list[Any] = [
            {"PartNumber": n, "ETag": f'"{etags[n]}"'}
            | ({"ChecksumCRC32C": crcs[n]} if checksum else {})
            for n in range(1, count + 1)
        ]
        whole: dict[str, Any] = (
            {"ChecksumCRC32C": full or crc32c_file(f, key, size), "ChecksumType": "FULL_OBJECT"}
            if checksum
            else {}
        )
        try:
            resp = self.client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **(conditions or {}),  # type: ignore[arg-type]
                **whole,
                **self.settings.read_args(),
            )
        except Exception as exc:
            if classify(exc).kind is FailureKind.PRECONDITION:
                with contextlib.suppress(Exception):
                    self._abort(key, upload_id)
            raise
        return str(resp.get("ETag", "")).strip('"')

    def _abort(self, key: str, upload_id: str) -> None:
        self.client.abort_multipart_upload(
            Bucket=self.where.bucket,
            Key=key,
            UploadId=upload_id,
            **self.settings.payer_args(),  # type: ignore[arg-type]
        )


def _answered(failure: Failure) -> bool:
    """Whether S3 answered, with an error (not: no connection, or our own side)."""
    return failure.kind not in (FailureKind.UNREACHABLE, FailureKind.LOCAL)


def _read_range(f: Any, offset: int, length: int) -> bytes:
    """``length`` bytes of an open file at ``offset``, from any thread."""
    data = read_at(f.fileno(), length, offset)
    if len(data) != length:
        raise OSError(5, "file shrank while it was uploaded")
    return data


def _crc32c_bytes(data: bytes) -> str:
    """The base64 CRC32C of ``data``, as S3 writes it."""
    import base64

    from awscrt import checksums

    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode("ascii")


def crc32c_file(f: Any, path: str, size: int | None = None) -> str:
    """The base64 CRC32C of an open file, as S3 writes it (hardware CRC, in C); of its first
    ``size`` bytes when given (what an upload sends, should the file grow meanwhile)."""
    import base64

    from awscrt import checksums

    crc = 0
    left = -1 if size is None else size
    try:
        f.seek(0)
        while left and (chunk := f.read(_CHUNK * 8 if left < 0 else min(left, _CHUNK * 8))):
            crc = checksums.crc32c(chunk, crc)
            left = left - len(chunk) if left > 0 else left
        f.seek(0)
    except OSError as exc:
        raise FileError(path, exc.strerror or str(exc)) from exc
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")
