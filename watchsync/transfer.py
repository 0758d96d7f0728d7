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
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from . import crt as native
from .errors import FileError, NotFound, PathBlocked, PreconditionFailed
from .local import temp_name
from .model import RemoteEntry, Skipped
from .ratelimit import RateLimiter, ThrottledReader, shared_limiter
from .remote import S3Settings, S3Url, list_entries, make_client, mtime_ns, s3_error
from .retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    """What an upload put in S3: the file as it was opened, and the new object's ETag."""

    size: int
    mtime_ns: int
    etag: str


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

    def download(
        self, path: str, *, size: int, mtime_ns: int, etag: str = "", dest: str | None = None
    ) -> Path: ...

    def copy(self, src_path: str, dst_path: str) -> str: ...

    def head(self, path: str) -> RemoteEntry | None: ...

    def listing(self, *, for_download: bool) -> Iterator[RemoteEntry | Skipped]: ...

    def delete_remote(self, paths: Iterable[str]) -> list[tuple[str, str]]: ...

    def delete_local(self, path: str) -> None: ...


class _ProvideSize(BaseSubscriber):
    """Hands s3transfer the size from the listing, so it sends no HEAD request."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)


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
    ) -> None:
        self.client = client
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
            f = open(self.root / path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc
        with f:
            st = os.fstat(f.fileno())
            etag: str | None
            if st.st_size >= self.threshold:
                etag = self._upload_multipart(f, key, st.st_size, extra)
            else:
                if if_match:
                    extra["IfMatch"] = f'"{if_match}"'
                elif if_none_match:
                    extra["IfNoneMatch"] = "*"
                etag = self._put_native(path, key, st.st_size, extra) if self.crt else None
                if etag is None:
                    etag = self._put(f, key, extra)
                    self._native_unusable()
        return Uploaded(st.st_size, st.st_mtime_ns, etag)

    def _put(self, f: Any, key: str, extra: dict[str, Any]) -> str:
        body: Any = ThrottledReader(f, self.limiter) if self.limiter else f

        def once() -> str:
            f.seek(0)
            try:
                resp = self.client.put_object(Bucket=self.where.bucket, Key=key, Body=body, **extra)
            except Exception as exc:
                raise (s3_error(exc, key) or exc) from exc
            return resp.get("ETag", "").strip('"')

        return self.retry.call(once, what=f"upload {key}")

    def _put_native(self, path: str, key: str, size: int, extra: dict[str, Any]) -> str | None:
        """One PUT through the native client.  None when it failed below S3 (TLS, proxies,
        redirects it does not follow): the caller then tries boto3, and if boto3 gets
        through, every later upload skips the native client."""
        crt = self.crt
        assert crt is not None
        headers = {_HEADERS[name]: str(value) for name, value in extra.items()}
        filename = str(self.root / path)

        def once() -> str:
            try:
                return crt.put_file(self.where.bucket, key, filename, size=size, headers=headers)
            except native.CrtPreconditionFailed as exc:
                raise PreconditionFailed(key) from exc
            except native.CrtFileChanged as exc:
                raise FileError(path, "changed or unreadable while uploading") from exc

        try:
            return self.retry.call(once, what=f"upload {key}")
        except native.CrtError as exc:
            if exc.status >= 400 and exc.code not in _REDIRECTS:
                raise  # S3 itself said no: boto3 would hear the same
            self._native_failure = exc
            return None

    def _native_unusable(self) -> None:
        """boto3 succeeded where the native client had failed: stop using it."""
        if self._native_failure is not None and self.crt is not None:
            logger.warning(
                "upload: native client fails here (%s); using boto3", self._native_failure
            )
            self.crt = None

    def _upload_multipart(self, f: Any, key: str, size: int, extra: dict[str, Any]) -> str:
        def once() -> str:
            f.seek(0)
            future = self._multipart().upload(
                f, self.where.bucket, key, extra_args=extra, subscribers=[_ProvideSize(size)]
            )
            future.result()
            head = self.client.head_object(Bucket=self.where.bucket, Key=key)
            return head.get("ETag", "").strip('"')

        return self.retry.call(once, what=f"upload {key}")

    # -- downloads -----------------------------------------------------------------------

    def local_target(self, path: str) -> Path:
        """The file a relative path maps to, refusing anything that resolves outside root."""
        target = self.root / path
        parent = os.path.realpath(target.parent)
        if parent != self._root_real and not parent.startswith(self._root_real + os.sep):
            raise FileError(path, "refusing to write outside the destination")
        return target

    def download(
        self, path: str, *, size: int, mtime_ns: int, etag: str = "", dest: str | None = None
    ) -> Path:
        """Download the object at ``path`` to ``root/(dest or path)`` via a temporary file,
        then set its mtime and atime to LastModified and rename it into place."""
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
                self.retry.call(lambda: self._get_multipart(key, tmp, size), what=f"download {key}")
            else:
                self.retry.call(lambda: self._get(key, tmp, etag), what=f"download {key}")
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
            os.replace(tmp, target)
        except IsADirectoryError as exc:  # made meanwhile (a download below it, or the user)
            raise PathBlocked(target_rel, "a directory is in the way") from exc
        except OSError as exc:
            raise FileError(target_rel, exc.strerror or str(exc)) from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return target

    def _get(self, key: str, tmp: Path, etag: str) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.where.bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = f'"{etag}"'
        resp = self.client.get_object(**kwargs)
        body = resp["Body"]
        try:
            with open(tmp, "wb") as out:
                while chunk := body.read(_CHUNK):
                    if self.limiter:
                        self.limiter.take(len(chunk))
                    out.write(chunk)
        finally:
            body.close()

    def _get_multipart(self, key: str, tmp: Path, size: int) -> None:
        future = self._multipart().download(
            self.where.bucket, key, str(tmp), subscribers=[_ProvideSize(size)]
        )
        future.result()

    # -- metadata, copies and deletes ------------------------------------------------------

    def listing(self, *, for_download: bool) -> Iterator[RemoteEntry | Skipped]:
        """The objects under the prefix in key order (see :func:`remote.list_entries`)."""
        return list_entries(self.client, self.where, for_download=for_download)

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

        return self.retry.call(once, what=f"head {key}")

    def copy(self, src_path: str, dst_path: str) -> str:
        """Server-side copy of one object under the prefix; returns the new ETag.  A source
        that is gone raises :class:`NotFound`."""
        src = {"Bucket": self.where.bucket, "Key": self.where.key(src_path)}
        dst = self.where.key(dst_path)
        extra: dict[str, Any] = self.settings.extra_args(dst_path)

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

        return self.retry.call(once, what=f"copy {dst}")

    def delete_remote(self, paths: Iterable[str]) -> list[tuple[str, str]]:
        """Delete objects in batches of 1000; returns (path, error) for each that failed."""
        failed: list[tuple[str, str]] = []
        batch: list[str] = []
        for path in paths:
            batch.append(path)
            if len(batch) == 1000:
                failed += self._delete_batch(batch)
                batch = []
        if batch:
            failed += self._delete_batch(batch)
        return failed

    def _delete_batch(self, paths: list[str]) -> list[tuple[str, str]]:
        by_key = {self.where.key(p): p for p in paths}

        def once() -> list[tuple[str, str]]:
            resp = self.client.delete_objects(
                Bucket=self.where.bucket,
                Delete={"Objects": [{"Key": k} for k in by_key], "Quiet": True},
            )
            return [
                (by_key.get(e.get("Key", ""), e.get("Key", "")), e.get("Code", "error"))
                for e in resp.get("Errors", [])
            ]

        return self.retry.call(once, what=f"delete {len(paths)} objects")

    def delete_local(self, path: str) -> None:
        """Remove one file under the root (never a directory tree)."""
        target = self.local_target(path)
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError as exc:
            raise FileError(path, "is a directory") from exc
        except OSError as exc:
            raise FileError(path, exc.strerror or str(exc)) from exc


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
        endpoint = client.meta.endpoint_url
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        return native.CrtUploader(
            # AWS itself: the native client's own virtual-hosted addressing per region.
            endpoint_url=None if host.endswith(".amazonaws.com") else endpoint,
            region=client.meta.region_name or "us-east-1",
            session=session,
            max_concurrency=max(64, settings.max_concurrency * 2),
        )
    except Exception as exc:  # any trouble here only costs speed
        logger.debug("upload: native client unavailable: %s", exc)
        return None
