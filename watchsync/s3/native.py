"""Small-file uploads through AWS's native runtime (``awscrt.s3.S3Client``).

boto3's ``put_object`` spends ~1.6 ms of GIL-bound CPU per small file on serialising,
signing and HTTP; the CRT signs, reads the file and speaks HTTP in C, leaving Python two
short callbacks per object.  s3transfer's CRT manager rejects custom endpoints, so this
module drives ``awscrt.s3.S3Client`` directly.  It only moves bytes: retries belong to the
caller's policy (the CRT's own retries are off by default so attempts don't multiply).
:func:`watchsync.s3.native_route.native_uploader` builds the one uploader a transfer uses, and
``tests/test_crt.py`` runs it against the real server.

Threading: ``submit`` returns at once; the CRT completes the returned future on one of its
native event-loop threads, so done-callbacks added by the caller run there and must be
short and must not log (logging from a foreign thread registers a never-ending
``_DummyThread``).  ``put_file`` is ``submit(...).result()``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import boto3

__all__ = [
    "TIMEOUT",
    "CrtError",
    "CrtFileChanged",
    "CrtUploader",
    "Upload",
    "address",
    "available",
    "encode_key",
]

DEFAULT_MULTIPART_THRESHOLD: Final = 8 * 1024 * 1024
_SHUTDOWN_TIMEOUT: Final = 30.0

# CRT error names that mean the local file did not match what we announced.
_FILE_ERRORS: Final = frozenset(
    {
        "AWS_ERROR_S3_INCORRECT_CONTENT_LENGTH",
        "AWS_ERROR_FILE_INVALID_PATH",
        "AWS_ERROR_NO_PERMISSION",
        "AWS_ERROR_FILE_OPEN_FAILURE",
        "AWS_ERROR_FILE_READ_FAILURE",
        "AWS_ERROR_STREAM_UNSEEKABLE",
        "AWS_IO_STREAM_READ_FAILED",
    }
)
TIMEOUT: Final = "Timeout"  # the code of a request that got no answer in time
_CRT_NAME = re.compile(r"\((AWS_[A-Z0-9_]+)\)")
_XML_FIELD = re.compile(rb"<(Code|Message)>([^<]*)</\1>")


class CrtError(Exception):
    """An upload through the CRT failed.

    ``status`` is the HTTP status (0 when no response arrived), ``code`` the S3 error code
    from the XML body (or the CRT error name).  What it means (worth another attempt, no
    answer at all, a lost condition) is decided in failures.py, as for boto3's errors.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return (
            f"{self.code} (HTTP {self.status}): {self.message}"
            if self.status
            else (f"{self.code}: {self.message}")
        )


class CrtFileChanged(CrtError):
    """The local file was shorter than ``size``, vanished or became unreadable mid-upload."""


def available() -> bool:
    """Whether awscrt imports and can create an S3 client here.

    >>> isinstance(available(), bool)
    True
    """
    try:
        from awscrt import io, s3

        io.ClientBootstrap.get_or_create_static_default()
        s3.S3RetryConfig  # noqa: B018  (older awscrt lacks per-client retry config)
    except Exception:
        return False
    return True


def encode_key(key: str) -> str:
    """Percent-encode an S3 key for the request path, keeping ``/`` (UTF-8, RFC 3986).

    >>> encode_key("a b/ü+%#?&=~.txt")
    'a%20b/%C3%BC%2B%25%23%3F%26%3D~.txt'
    """
    return urllib.parse.quote(key, safe="/")


def address(
    bucket: str, key: str, *, region: str, host: str | None, prefix: str = ""
) -> tuple[str, str]:
    """The (Host header, request path) of an object: path-style on a custom endpoint
    ``host``, else virtual-hosted on AWS (path-style for dotted bucket names, which the
    wildcard certificate does not cover).

    >>> address("b", "a b", region="eu-west-1", host=None)
    ('b.s3.eu-west-1.amazonaws.com', '/a%20b')
    >>> address("b", "d/k", region="us-east-1", host="127.0.0.1:8333")
    ('127.0.0.1:8333', '/b/d/k')
    """
    path = encode_key(key)
    if host is not None:
        return host, f"{prefix}/{bucket}/{path}"
    if "." in bucket:
        return f"s3.{region}.amazonaws.com", f"/{bucket}/{path}"
    return f"{bucket}.s3.{region}.amazonaws.com", f"/{path}"


def _error_from_crt(exc: BaseException) -> CrtError:
    """Translate whatever the CRT future failed with into a CrtError."""
    from awscrt.exceptions import AwsCrtError
    from awscrt.s3 import S3ResponseError

    if isinstance(exc, CrtError):
        return exc
    if isinstance(exc, S3ResponseError):
        status = int(exc.status_code or 0)
        fields = dict(_XML_FIELD.findall(exc.body or b""))
        code = fields.get(b"Code", b"").decode("utf-8", "replace") or str(status)
        message = fields.get(b"Message", b"").decode("utf-8", "replace") or exc.name
        return CrtError(status, code, message)
    if isinstance(exc, AwsCrtError):
        kind = CrtFileChanged if exc.name in _FILE_ERRORS else CrtError
        return kind(0, exc.name, exc.message)
    named = _CRT_NAME.search(str(exc)) if isinstance(exc, RuntimeError) else None
    if named:  # raised synchronously by make_request, e.g. "44 (AWS_ERROR_FILE_INVALID_PATH)"
        name = named.group(1)
        kind = CrtFileChanged if name in _FILE_ERRORS else CrtError
        return kind(0, name, str(exc))
    if isinstance(exc, OSError):
        return CrtFileChanged(0, type(exc).__name__, str(exc))
    return CrtError(0, type(exc).__name__, str(exc))


class CrtUploader:
    """PUTs local files to S3 with the CRT: signing, file reads and HTTP happen in C.

    ``session`` supplies credentials: static ones are handed to the CRT once; refreshable
    ones (STS, SSO, instance profile) are asked for on every request through a delegate,
    which costs ~0.1 ms of Python per file.  ``endpoint_url`` given: path-style
    ``{endpoint}/{bucket}/{key}``, TLS only for https; none: virtual-hosted
    ``{bucket}.s3.{region}.amazonaws.com`` over TLS (path-style for dotted bucket names,
    whose host would not match the wildcard certificate).  ``checksum``: each PUT carries a
    CRC32C of the file, computed in C, that S3 checks.  ``ca_file``: a PEM bundle that
    replaces the system trust store.

    For full throughput from few threads use :meth:`submit` and keep up to
    ``max_concurrency`` futures in flight; :meth:`put_file` blocks a thread per object.
    Either gives the object's ETag without quotes (for a 3-byte ``foo``,
    ``acbd18db4cc2f85cedef654fccc4a4d8``).
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region: str,
        session: boto3.Session,
        max_concurrency: int = 64,
        max_retries: int = 0,
        connect_timeout_ms: int = 3000,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        checksum: bool = True,
        ca_file: str | None = None,
    ) -> None:
        from awscrt import auth, io, s3

        self._s3 = s3
        self.region = region
        if endpoint_url:
            url = urllib.parse.urlsplit(endpoint_url)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"unsupported endpoint URL: {endpoint_url!r}")
            self._tls = url.scheme == "https"
            self._host: str | None = url.netloc.rpartition("@")[2]
            self._prefix = url.path.rstrip("/")
        else:
            self._tls = True
            self._host = None
            self._prefix = ""
        provider = _credentials_provider(session, auth)
        signing = s3.create_default_s3_signing_config(region=region, credential_provider=provider)
        tls_options = None
        if self._tls:
            options = io.TlsContextOptions()
            if ca_file:  # the same trust store as boto3 (AWS_CA_BUNDLE, a profile's ca_bundle)
                options.override_default_trust_store_from_path(ca_filepath=ca_file)
            tls_options = io.ClientTlsContext(options).new_connection_options()
        # The CRC is computed in C from the file before it is sent, and goes as a header:
        # a plain body costs the server less than an aws-chunked one with a trailer (12 %
        # less CPU per small PUT on SeaweedFS), and a file that changes between the two
        # reads is refused (BadDigest) instead of stored torn with a CRC that matches.
        self._checksum = (
            s3.S3ChecksumConfig(
                algorithm=s3.S3ChecksumAlgorithm.CRC32C, location=s3.S3ChecksumLocation.HEADER
            )
            if checksum
            else None
        )
        retry = (
            s3.S3RetryConfig(max_retries=max_retries)
            if max_retries > 0
            else s3.S3RetryConfig(retry_mode=s3.S3RetryMode.NONE)
        )
        self._client: Any = s3.S3Client(
            region=region,
            tls_mode=s3.S3RequestTlsMode.ENABLED if self._tls else s3.S3RequestTlsMode.DISABLED,
            tls_connection_options=tls_options,
            signing_config=signing,
            part_size=max(multipart_threshold, 5 * 1024 * 1024),
            multipart_upload_threshold=multipart_threshold,
            max_active_connections_override=max_concurrency,
            retry_config=retry,
            connect_timeout_ms=connect_timeout_ms,
        )
        self._lock = threading.Condition()
        self._inflight: dict[int, Any] = {}  # id -> S3Request, for cancel on close
        self._next_id = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, *, cancel: bool = False, timeout: float = _SHUTDOWN_TIMEOUT) -> None:
        """Drain (or cancel) in-flight uploads, then wait for the native client to shut down.

        Idempotent.  Raises TimeoutError when the CRT does not finish within ``timeout``.
        """
        with self._lock:
            self._closed = True
            pending = list(self._inflight.values()) if cancel else []
        for request in pending:
            if request is not None:
                request.cancel()
        with self._lock:
            if not self._lock.wait_for(lambda: not self._inflight, timeout):
                raise TimeoutError(f"{len(self._inflight)} CRT uploads still running")
            client, self._client = self._client, None
        if client is None:
            return
        shutdown = client.shutdown_event
        del client  # the native client shuts down once its last reference is gone
        if not shutdown.wait(timeout):
            raise TimeoutError("CRT S3 client did not shut down")

    def __enter__(self) -> CrtUploader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None)

    # -- uploads ---------------------------------------------------------------------------

    def submit(
        self, bucket: str, key: str, path: str, *, size: int, headers: Mapping[str, str]
    ) -> Upload:
        """Start uploading the first ``size`` bytes of ``path``; the future yields the ETag.

        ``headers`` are sent as given (Content-Type, x-amz-server-side-encryption,
        x-amz-storage-class, If-Match, If-None-Match ...).  Content-Length is ``size``: a
        file that grew uploads its first ``size`` bytes (re-stat afterwards to notice), one
        that shrank fails with :class:`CrtFileChanged`.  The future fails with a
        :class:`CrtError`.
        """
        from awscrt.http import HttpHeaders, HttpRequest

        host, target = address(
            bucket, key, region=self.region, host=self._host, prefix=self._prefix
        )
        fields = [("Host", host), ("Content-Length", str(size))]
        fields += [
            (name, value)
            for name, value in headers.items()
            if name.lower() not in ("host", "content-length")
        ]
        request = HttpRequest("PUT", target, HttpHeaders(fields))
        future = Upload()
        etag: list[str] = []

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            for name, value in headers:
                if name.lower() == "etag":
                    etag.append(value.strip('"'))

        with self._lock:
            if self._closed:
                raise RuntimeError("CrtUploader is closed")
            ident = self._next_id
            self._next_id += 1

            def on_done(error: BaseException | None = None, **_: Any) -> None:
                with self._lock:
                    self._inflight.pop(ident, None)
                    future.request = None  # it holds the native client, which must shut down
                    if not self._inflight:
                        self._lock.notify_all()
                if error is not None:
                    future.set_exception(_error_from_crt(error))
                elif not etag:
                    future.set_exception(CrtError(200, "MissingETag", "no ETag in response"))
                else:
                    future.set_result(etag[-1])

            self._inflight[ident] = None  # on_done may run before make_request returns
            failure: CrtError | None = None
            try:
                crt_request = self._client.make_request(
                    type=self._s3.S3RequestType.PUT_OBJECT,
                    request=request,
                    send_filepath=path,
                    checksum_config=self._checksum,
                    on_headers=on_headers,
                    on_done=on_done,
                )
            except Exception as exc:
                # Translated outside the handler: the CRT's traceback holds the native
                # client, and a caller keeping the error would stop it from shutting down.
                self._inflight.pop(ident, None)
                failure = _error_from_crt(exc)
            else:
                if ident in self._inflight:
                    self._inflight[ident] = future.request = crt_request
        if failure is not None:
            raise failure
        return future

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str,
        *,
        size: int,
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> str:
        """Upload ``path`` to ``bucket/key`` and return the ETag without quotes (blocking).

        ``timeout``: seconds for the whole request, as :func:`wait`.  ``headers`` are sent
        as they are (e.g. ``{"Content-Type": "text/plain"}``); the key may hold any
        character (``dir/a b.txt``), it is escaped here."""
        return wait(self.submit(bucket, key, path, size=size, headers=headers), timeout)


def wait(future: Upload, timeout: float | None) -> str:
    """The ETag of a submitted upload.  Past ``timeout`` seconds the request is cancelled
    and a :class:`CrtError` with code :data:`TIMEOUT` raised (the CRT has no read timeout
    of its own, so an endpoint that accepts connections but never answers would hang
    here)."""
    try:
        return future.result(timeout)
    except TimeoutError:
        if future.done():
            raise  # the CRT's own timeout error, already translated
        if future.request is not None:
            future.request.cancel()
        with contextlib.suppress(Exception):
            future.result(_SHUTDOWN_TIMEOUT)  # let the cancellation land
        raise CrtError(0, TIMEOUT, f"no answer within {timeout:g} s") from None


class Upload(Future[str]):
    """A future that knows its CRT request, so a caller that stops waiting can cancel it."""

    request: Any = None


def _credentials_provider(session: boto3.Session, auth: Any) -> Any:
    """A CRT credentials provider backed by the boto3 session's credentials."""
    from botocore.credentials import RefreshableCredentials

    creds = session.get_credentials()
    if creds is None:
        raise CrtError(0, "NoCredentials", "the boto3 session found no credentials")
    if not isinstance(creds, RefreshableCredentials):
        frozen = creds.get_frozen_credentials()
        return auth.AwsCredentialsProvider.new_static(
            frozen.access_key, frozen.secret_key, frozen.token or None
        )

    def current() -> Any:
        frozen = creds.get_frozen_credentials()  # refreshes when close to expiry
        return auth.AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)

    return auth.AwsCredentialsProvider.new_delegate(current)
