"""Which small uploads take the native client (awscrt) and how they are sent there; boto3
takes the rest, and every upload from the moment the native client fails below S3 (TLS,
proxies, redirects it does not follow) where boto3 then gets through.

A bandwidth cap holds on this route too: each request takes its bytes from the limiter
before it goes (once per attempt), and a file too large to send in one paced burst goes
through boto3, which paces it as it reads it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from watchsync.core.errors import Failure, FailureKind, FileError
from watchsync.s3 import native
from watchsync.s3.bandwidth import RateLimiter
from watchsync.s3.failures import classify
from watchsync.s3.file_metadata import metadata_headers
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.multipart import Call
from watchsync.s3.reachability import Reachability

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)

# Under --bwlimit, files from this size up go through boto3, paced as they are sent.
PACED_WHOLE = 1024 * 1024


class NativeRoute:
    """The native client's side of a transfer's small uploads; ``crt`` None: no such route.

    >>> route = NativeRoute(None, where=S3Url("b", "p/"), root=Path("/data"),
    ...                     settings=S3Settings(), limiter=None, call=None,
    ...                     reachability=Reachability(None, what="http://127.0.0.1:9"))
    >>> route.usable, route.takes(3, {"ContentType": "text/plain"})
    (False, False)
    """

    def __init__(
        self,
        crt: native.CrtUploader | Callable[[], native.CrtUploader | None] | None,
        *,
        where: S3Url,
        root: Path,
        settings: S3Settings,
        limiter: RateLimiter | None,
        call: Call | None,
        reachability: Reachability,
    ) -> None:
        # A factory is called at the first upload, not before: a run with nothing to send
        # (a no-op sync, an idle agent) never starts the native client.
        self._make = crt if callable(crt) and not isinstance(crt, native.CrtUploader) else None
        self._made = threading.Lock()
        self._crt = None if self._make is not None or callable(crt) else crt
        self._owned = self._crt
        self._failure: Exception | None = None  # why it failed below S3, once it has
        self.where = where
        self.root = root
        self.settings = settings
        self.limiter = limiter
        self._call = call
        self.reachability = reachability

    @property
    def crt(self) -> native.CrtUploader | None:
        """The native client, made at the first use by the factory given (if any)."""
        if self._make is not None:
            with self._made:
                if self._make is not None:
                    self._crt = self._owned = self._make()
                    self._make = None
        return self._crt

    @crt.setter
    def crt(self, value: native.CrtUploader | None) -> None:
        self._crt = value

    @property
    def usable(self) -> bool:
        """Whether there is a native client that has not failed here."""
        return self.crt is not None and self._failure is None

    def takes(self, size: int, extra: Mapping[str, Any]) -> bool:
        """Whether a file of ``size`` bytes (under the multipart threshold) with the
        ``extra`` arguments goes through the native client: when there is one, every
        argument is a header it can send as it is, and the file is not a large one under
        ``--bwlimit``.  The native client reads the whole file before it sends it, so it
        can only be paced a request at a time; past :data:`PACED_WHOLE` that would send
        the file in one burst after its wait, and boto3 sends it paced as it reads it."""
        return (
            self.crt is not None
            and (self.limiter is None or size < PACED_WHOLE)
            and native_headers(extra) is not None
        )

    def put(self, path: str, key: str, size: int, extra: Mapping[str, Any]) -> str | None:
        """One PUT of ``root/path`` (:meth:`takes` said yes), retried under the transfer's
        policy; its ETag.  None when it failed below S3: the caller then tries boto3, and
        if boto3 gets through (:meth:`boto3_got_through`) every later upload skips it."""
        crt, call = self.crt, self._call
        assert crt is not None and call is not None
        headers, filename, timeout = self._request(path, size, extra)

        def once() -> str:
            self._pace(size)
            try:
                return crt.put_file(
                    self.where.bucket, key, filename, size=size, headers=headers, timeout=timeout
                )
            except native.CrtFileChanged as exc:
                raise FileError(path, "changed or unreadable while uploading") from exc

        try:
            return call(once, what=f"upload {key}")
        except Failure as failure:
            exc = failure.__cause__
            if not isinstance(exc, native.CrtError) or (
                exc.status >= 400 and exc.code not in _REDIRECTS
            ):
                raise  # S3 itself said no: boto3 would hear the same
            self._failure = exc
            return None

    def submit(
        self, path: str, key: str, size: int, extra: Mapping[str, Any]
    ) -> tuple[native.Upload, float]:
        """Start one PUT (:meth:`takes` said yes) and return at once: its future and the
        time to wait for it.  A first attempt only, counted by the reachability watch."""
        crt = self.crt
        assert crt is not None
        headers, filename, timeout = self._request(path, size, extra)
        self._pace(size)
        try:
            future = crt.submit(self.where.bucket, key, filename, size=size, headers=headers)
        except native.CrtFileChanged as exc:
            raise FileError(path, "changed or unreadable while uploading") from exc
        except Exception as exc:
            failure = classify(exc)
            self.reachability.failed(failure)
            if failure.kind is FailureKind.LOCAL:
                raise
            raise failure from exc
        return future, timeout

    def boto3_got_through(self) -> None:
        """boto3 stored an upload: if the native client had failed here, stop using it."""
        if self._failure is not None and self.crt is not None:
            logger.warning("upload: native client fails here (%s); using boto3", self._failure)
            self.crt = None

    def close(self) -> None:
        """Drain and shut down the native client, where this route owns one; idempotent."""
        with self._made:
            self._make = None  # never made now
        if self._owned is not None:
            self._owned.close()
            self._owned = self._crt = None

    def _pace(self, nbytes: int) -> None:
        """Under ``--bwlimit``, wait until the budget covers a request's body (charged once
        per attempt, before it goes)."""
        if self.limiter is not None:
            self.limiter.take(nbytes)

    def _request(
        self, path: str, size: int, extra: Mapping[str, Any]
    ) -> tuple[dict[str, str], str, float]:
        """Headers, file name and timeout of a PUT of ``path``."""
        headers = native_headers(extra)
        assert headers is not None
        # boto3's read timeout, plus the time to send the file at a slow 64 KiB/s
        return headers, os.path.join(self.root, path), self.settings.read_timeout + size / 65536


# Answers meaning "ask elsewhere" (another region): boto3 follows them, the native client
# does not, so they send the upload (and the rest) back to boto3.
_REDIRECTS = frozenset({"PermanentRedirect", "TemporaryRedirect", "AuthorizationHeaderMalformed"})

# boto3 ExtraArgs -> the HTTP headers the native client sends.
_HEADERS = {
    "ContentType": "Content-Type",
    "CacheControl": "Cache-Control",
    "ContentDisposition": "Content-Disposition",
    "ContentEncoding": "Content-Encoding",
    "ContentLanguage": "Content-Language",
    "Expires": "Expires",
    "ACL": "x-amz-acl",
    "GrantRead": "x-amz-grant-read",
    "GrantReadACP": "x-amz-grant-read-acp",
    "GrantWriteACP": "x-amz-grant-write-acp",
    "GrantFullControl": "x-amz-grant-full-control",
    "WebsiteRedirectLocation": "x-amz-website-redirect-location",
    "RequestPayer": "x-amz-request-payer",
    "ServerSideEncryption": "x-amz-server-side-encryption",
    "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id",
    "SSECustomerAlgorithm": "x-amz-server-side-encryption-customer-algorithm",
    "StorageClass": "x-amz-storage-class",
    "IfMatch": "If-Match",
    "IfNoneMatch": "If-None-Match",
}


def native_headers(extra: Mapping[str, Any]) -> dict[str, str] | None:
    """The HTTP headers of a native PUT carrying ``extra``, or None when one of them is
    not a plain ASCII header the native client can send as it is (such a file goes
    through boto3, which encodes it).

    >>> native_headers({"ContentType": "text/plain", "Metadata": {"owner": "me"}})
    {'Content-Type': 'text/plain', 'x-amz-meta-owner': 'me'}
    >>> native_headers({"Metadata": {"owner": "Zoë"}}) is None
    True
    """
    headers: dict[str, str] = {}
    for name, value in extra.items():
        if name == "Metadata":
            headers.update(metadata_headers(value))
        elif name == "SSECustomerKey":
            key = value.encode() if isinstance(value, str) else value
            headers["x-amz-server-side-encryption-customer-key"] = _b64(key)
            headers["x-amz-server-side-encryption-customer-key-MD5"] = _b64(
                hashlib.md5(key, usedforsecurity=False).digest()
            )
        elif name in _HEADERS:
            headers[_HEADERS[name]] = str(value)
        else:
            return None
    if not all(_HEADER_TEXT.match(f"{k}{v}") for k, v in headers.items()):
        return None
    return headers


_HEADER_TEXT = re.compile(r"^[\x20-\x7e]*$")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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
            # --ca-bundle, else botocore's resolution of AWS_CA_BUNDLE and the profile's
            ca_file=settings.ca_bundle or session._session.get_config_variable("ca_bundle"),
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

    >>> aws = boto3.client(
    ...     "s3", region_name="eu-west-1", endpoint_url="https://s3.eu-west-1.amazonaws.com"
    ... )
    >>> native_endpoint(aws, "eu-west-1")
    (None, '')
    >>> fips = boto3.client(
    ...     "s3", region_name="us-east-1", endpoint_url="https://s3-fips.us-east-1.amazonaws.com"
    ... )
    >>> native_endpoint(fips, "us-east-1")
    (None, 'FIPS endpoint')
    >>> local = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:8333")
    >>> native_endpoint(local, "us-east-1")
    ('http://127.0.0.1:8333', '')
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
