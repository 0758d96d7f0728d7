"""A listing without botocore, for the quick look of a ``sync`` that may have nothing to do.

Pages come over one kept-alive ``http.client`` connection, signed by :mod:`sigv4`, read by
the same raw-XML reader and row code as every listing (:mod:`listing_rows`).  It never
explains or retries anything: an answer that is not a whole page, an error, a slow server or
a listing longer than the look may read raises :class:`QuickUnavailable`, and the run's
listing goes on through botocore (from the pages already :attr:`~QuickLister.read`), whose
retries and words for errors are aws's.
"""

from __future__ import annotations

import email.utils
import http.client
import ssl
import urllib.parse
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

from watchsync.core.model import RemoteEntry, Skipped
from watchsync.s3.file_metadata import stored_mtime
from watchsync.s3.listing_rows import entries, listed_pages
from watchsync.s3.listpage import Page, read_raw
from watchsync.s3.location import S3Url
from watchsync.s3.quick_route import QuickRoute
from watchsync.s3.sigv4 import query_string, signed_headers
from watchsync.s3.timestamps import mtime_ns

# A quick look is worth it only while it is quick: past these, botocore's path is as fast.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0


class QuickUnavailable(Exception):
    """The quick look cannot tell; the run goes the usual way."""


class QuickLister:
    """Lists one bucket by ``route``, at most ``max_pages`` pages.

    >>> from watchsync.s3.quick_route import QuickRoute
    >>> lister = QuickLister(QuickRoute("http", "127.0.0.1:9", "", True, "us-east-1", None))
    >>> lister.request_line({"Bucket": "b", "Prefix": "p/", "ContinuationToken": "t+1"})
    '/b/?continuation-token=t%2B1&encoding-type=url&list-type=2&prefix=p%2F'
    """

    def __init__(self, route: QuickRoute, *, max_pages: int = 10) -> None:
        self.route = route
        self.max_pages = max_pages
        self._pages = 0
        self._conn: http.client.HTTPConnection | None = None
        # Every page read, by the continuation token that asked for it (None: the first),
        # for a listing through botocore to take instead of asking again.
        self.read: dict[str | None, Page] = {}

    def __enter__(self) -> QuickLister:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def listing(
        self,
        where: S3Url,
        *,
        for_download: bool,
        page_size: int | None = None,
        request_extra: Mapping[str, str] | None = None,
    ) -> Iterator[RemoteEntry | Skipped]:
        """The objects under ``where`` as :meth:`Transfer.listing` gives them."""
        pages, unsafe = listed_pages(
            self.fetch,
            where,
            endpoint_url=self.route.endpoint_url,
            page_size=page_size,
            request_extra=request_extra,
            classes=True,
        )
        return entries(pages, unsafe, for_download=for_download)

    def request_line(self, request: Mapping[str, Any]) -> str:
        """The path and query of one ListObjectsV2 request (boto3's parameter names)."""
        known = {"Bucket", "Prefix", "MaxKeys", "ContinuationToken", "RequestPayer"}
        if set(request) - known:
            raise QuickUnavailable(f"a listing with {sorted(set(request) - known)}")
        return f"{self._path(request['Bucket'])}?{query_string(self._params(request))}"

    def fetch(self, request: dict[str, Any]) -> Page:
        """One page, or :class:`QuickUnavailable`."""
        self._pages += 1
        if self._pages > self.max_pages:
            raise QuickUnavailable(f"a listing longer than {self.max_pages} pages")
        self.request_line(request)  # refuses a parameter it does not know
        status, body, _ = self._send(
            "GET", self._path(request["Bucket"]), self._params(request), request.get("RequestPayer")
        )
        if status != 200:
            raise QuickUnavailable(f"HTTP {status}")
        page = read_raw(body)
        if page is None:
            raise QuickUnavailable("not a whole ListBucketResult")
        self.read[request.get("ContinuationToken")] = page
        return page

    def head(
        self, bucket: str, key: str, path: str, *, payer: str | None = None
    ) -> RemoteEntry | None:
        """The object as :meth:`Transfer.head` finds it, the mtime it keeps included; None
        when there is none."""
        where = self._path(bucket) + urllib.parse.quote(key, safe="/")
        status, _, headers = self._send("HEAD", where, [], payer)
        if status == 404:
            return None
        if status != 200:
            raise QuickUnavailable(f"HTTP {status} for a HEAD")
        try:
            when = email.utils.parsedate_to_datetime(headers["last-modified"])
            size = int(headers["content-length"])
        except (KeyError, TypeError, ValueError) as exc:
            raise QuickUnavailable(f"a HEAD without its size or time: {exc}") from exc
        metadata = {k[11:]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
        etag = headers.get("etag", "").strip('"')
        return RemoteEntry(path, size, mtime_ns(when), etag, stored_mtime_ns=stored_mtime(metadata))

    def _send(
        self, method: str, path: str, params: list[tuple[str, str]], payer: str | None
    ) -> tuple[int, bytes, dict[str, str]]:
        """One signed request; its status, body and headers (names in lower case)."""
        route = self.route
        headers: dict[str, str] = {}
        if payer:
            headers["x-amz-request-payer"] = payer
        if route.keys is not None:
            headers = signed_headers(
                method, route.netloc, path, params, route.keys,
                region=route.region, headers=headers,
            )  # fmt: skip
        headers["User-Agent"] = "watchsync"  # unsigned, as botocore leaves it: proxies rewrite it
        line = f"{path}?{query_string(params)}" if params else path
        try:
            conn = self._connection()
            conn.request(method, line, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise QuickUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return answer.status, body, {k.lower(): v for k, v in answer.getheaders()}

    def _path(self, bucket: str) -> str:
        return f"{self.route.base}/{bucket}/" if self.route.path_style else f"{self.route.base}/"

    @staticmethod
    def _params(request: Mapping[str, Any]) -> list[tuple[str, str]]:
        # botocore asks for URL-encoded keys too: a key with a control character stays XML.
        params = [("list-type", "2"), ("prefix", request.get("Prefix", ""))]
        params.append(("encoding-type", "url"))
        if request.get("MaxKeys"):
            params.append(("max-keys", str(request["MaxKeys"])))
        if request.get("ContinuationToken"):
            params.append(("continuation-token", request["ContinuationToken"]))
        return params

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        route = self.route
        timeout = min(route.connect_timeout, CONNECT_TIMEOUT)
        if route.scheme == "http":
            self._conn = http.client.HTTPConnection(route.netloc, timeout=timeout)
        else:
            self._conn = http.client.HTTPSConnection(
                route.netloc, timeout=timeout, context=_tls(route)
            )
        self._conn.connect()
        if self._conn.sock is not None:
            self._conn.sock.settimeout(min(route.read_timeout, READ_TIMEOUT))
        return self._conn


def _tls(route: QuickRoute) -> ssl.SSLContext:
    """The trust botocore would use: the route's CA file, else certifi's bundle (botocore's
    own default), no check at all under ``--no-verify-ssl``."""
    if not route.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    ca_file = route.ca_file
    if ca_file is None:
        try:
            import certifi
        except ImportError as exc:
            raise QuickUnavailable("no CA bundle known") from exc
        ca_file = certifi.where()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise QuickUnavailable(f"CA bundle {ca_file}: {exc}") from exc
