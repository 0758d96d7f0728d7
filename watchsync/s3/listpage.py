"""ListObjectsV2 pages read from the raw XML, one row (a tuple) per object.

botocore's generic parser spends about 30 ms of CPU on a page of 1,000 keys (a shape walk,
a dict per object, a datetime per LastModified), and before it parses, its check for an
error hidden in a 200 answer builds an ElementTree of the whole page.  A listing is most of
what a no-op ``sync`` and an agent's listing pass cost, so :func:`list_page` sends the
signed request itself (botocore's ``before-send`` hook, through the client's own
connection pool) and reads the page here: four C-speed regular-expression scans (the keys,
sizes, times and ETags, each in document order) when every ``<Contents>`` holds exactly one
of each, as every server's pages do, else ElementTree.  botocore is handed an empty page to
parse.  An answer that is not one whole ``ListBucketResult`` (an error, a page cut short)
goes to botocore as it came, which explains or retries it.  Only the requests made through
:func:`list_page` are touched (other callers of the same client, on any thread, get
botocore's parse as usual); a page botocore parsed (a stubbed client) is read from its
parse.
"""

from __future__ import annotations

import html
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_ours = threading.local()  # set while this thread's request is one of list_page's

# One object of a page: the key (decoded), its size, LastModified as the server wrote it
# (text, or a datetime from botocore's parse) and its ETag without quotes.
Row = tuple[str, int, "str | datetime", str]

_KEYS = re.compile(r"<Key>([^<]*)</Key>")
_SIZES = re.compile(r"<Size>([0-9]+)</Size>")
_TIMES = re.compile(r"<LastModified>([^<]*)</LastModified>")
_ETAGS = re.compile(r"<ETag>([^<]*)</ETag>")
_CLASSES = re.compile(r"<StorageClass>([^<]*)</StorageClass>")
_TRUNCATED = re.compile(r"<IsTruncated>\s*true\s*</IsTruncated>", re.IGNORECASE)
_TOKEN = re.compile(r"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_URL_ENCODED = re.compile(r"<EncodingType>\s*url\s*</EncodingType>")


@dataclass(frozen=True, slots=True)
class Page:
    """One page as columns, one entry per object in each (the keys decoded, LastModified as
    the server wrote it or a datetime from botocore's parse, the ETags without quotes, the
    storage classes, "" where the server did not say)."""

    keys: list[str]
    sizes: list[int]
    times: list[str] | list[datetime]
    etags: list[str]
    classes: list[str]
    truncated: bool
    token: str | None

    @property
    def rows(self) -> list[Row]:
        """The page as one row per object."""
        return list(zip(self.keys, self.sizes, self.times, self.etags, strict=True))


def list_page(client: S3Client, request: Mapping[str, Any]) -> Page:
    """One ListObjectsV2 request, its page read from the raw XML."""
    client.meta.events.register(
        "before-send.s3.ListObjectsV2", _send, unique_id="watchsync-raw-list-pages"
    )
    _ours.session = cast(Any, client)._endpoint.http_session  # the client's own pool
    _ours.page = None
    try:
        parsed = client.list_objects_v2(**request)
    finally:
        _ours.session = None
    page, _ours.page = _ours.page, None
    return page if isinstance(page, Page) else read_page(parsed)


class _Canned:
    """The body botocore parses in place of a page read here."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


_EMPTY_PAGE = b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult></ListBucketResult>'


def _send(request: Any, **_: Any) -> Any:
    session = getattr(_ours, "session", None)
    if session is None:
        return None  # not one of list_page's requests: botocore sends it
    response = session.send(request)
    if response.status_code != 200:
        return response
    page = read_raw(response.content)
    if page is None:
        return response
    _ours.page = page
    from botocore.awsrequest import AWSResponse  # here: read_raw is read before any SDK loads

    return AWSResponse(response.url, 200, response.headers, _Canned(_EMPTY_PAGE))


def read_page(parsed: Mapping[str, Any]) -> Page:
    """The columns, truncation and continuation token of a response botocore parsed."""
    contents = parsed.get("Contents", ())
    return Page(
        [o["Key"] for o in contents],
        [o["Size"] for o in contents],
        [o["LastModified"] for o in contents],
        [o.get("ETag", "").strip('"') for o in contents],
        [o.get("StorageClass", "") for o in contents],
        bool(parsed.get("IsTruncated")),
        parsed.get("NextContinuationToken"),
    )


def read_raw(body: bytes) -> Page | None:
    """One page from its XML, or None when the body is not one whole ``ListBucketResult``.

    >>> read_raw(b'<ListBucketResult><IsTruncated>false</IsTruncated><Contents>'
    ...          b'<Key>a&amp;b</Key><LastModified>2026-12-02T04:16:18Z</LastModified>'
    ...          b'<ETag>&quot;e&quot;</ETag><Size>3</Size></Contents></ListBucketResult>').rows
    [('a&b', 3, '2026-12-02T04:16:18Z', 'e')]
    >>> read_raw(b'<Error><Code>InternalError</Code></Error>') is None
    True
    """
    tail = body[-64:].rstrip()
    if not tail.endswith(b"ListBucketResult>") or b"<ListBucketResult" not in body[:512]:
        return None  # an error document, or a page cut short: botocore's to explain
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    keys = _KEYS.findall(text)
    sizes = _SIZES.findall(text)
    times = _TIMES.findall(text)
    etags = _ETAGS.findall(text)
    classes = _CLASSES.findall(text)
    n = text.count("<Contents>")
    lined_up = len(keys) == len(sizes) == len(times) == len(etags) == n
    if not lined_up or len(classes) not in (n, 0):
        return _read_tree(body)  # a server writing its pages otherwise
    # The page's own fields lie before the first object and after the last.
    first, last = text.find("<Contents>"), text.rfind("</Contents>")
    around = text if first < 0 else text[:first] + text[last:]
    # Whole columns at once; a key or an ETag is decoded further only where it needs it.
    if "&" in text:
        keys = [html.unescape(k) if "&" in k else k for k in keys]
        etags = [
            e[5:-5] if e[:5] == "&#34;" == e[-5:] else html.unescape(e) if "&" in e else e
            for e in etags
        ]
    if _URL_ENCODED.search(around) is not None:
        keys = [unquote_plus(k) if "%" in k or "+" in k else k for k in keys]
    etags = [e.strip('"') if e[:1] == '"' else e for e in etags]
    token = _TOKEN.search(around)
    return Page(
        keys,
        list(map(int, sizes)),
        times,
        etags,
        classes or [""] * n,
        _TRUNCATED.search(around) is not None,
        (html.unescape(token.group(1)) or None) if token is not None else None,
    )


def _read_tree(body: bytes) -> Page | None:
    """The page through ElementTree: fields in any order, an object without an ETag."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    ns = _NS if root.tag.startswith(_NS) else ""
    if root.tag != f"{ns}ListBucketResult":
        return None
    decode = (root.findtext(f"{ns}EncodingType") or "").strip() == "url"
    keys: list[str] = []
    sizes: list[int] = []
    times: list[str] = []
    etags: list[str] = []
    classes: list[str] = []
    for c in root.iter(f"{ns}Contents"):
        got = {child.tag[len(ns) :]: child.text or "" for child in c}
        key = got.get("Key", "")
        keys.append(unquote_plus(key) if decode else key)
        sizes.append(int(got.get("Size") or 0))
        times.append(got.get("LastModified", ""))
        etags.append(got.get("ETag", "").strip('"'))
        classes.append(got.get("StorageClass", ""))
    truncated = (root.findtext(f"{ns}IsTruncated") or "").strip().lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") or None
    return Page(keys, sizes, times, etags, classes, truncated, token)
