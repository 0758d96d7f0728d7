"""ListObjectsV2 pages read from the raw XML with ElementTree (the C expat parser).

botocore's generic parser spends about 30 ms of CPU on a page of 1,000 keys (a shape walk,
a dict per object, a datetime per LastModified); ElementTree reads the same page in about
5 (a whole request: 44 ms before, 16 now).
A listing is most of what a no-op ``sync`` and an agent's listing pass cost, so a client
that lists keeps each page's body aside before botocore parses it (error answers are left
to botocore, which explains them) and :func:`read_page` reads it.  Only the requests made
through :func:`list_page` are touched (other callers of the same client, on any thread, get
botocore's parse as usual); a page without a body kept aside (a stubbed client) is read
from botocore's parse.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_RAW = "WatchsyncRawBody"  # where the body waits in the parsed response
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_ours = threading.local()  # set while this thread's request is one of list_page's


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object of a page: the key (URL-decoded), its size, LastModified as the server
    wrote it (text, or a datetime from botocore's parse), its ETag without quotes and its
    storage class ("" when the server did not say)."""

    key: str
    size: int
    last_modified: Any
    etag: str
    storage_class: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    objects: list[ListedObject]
    truncated: bool
    token: str | None


def list_page(client: S3Client, request: Mapping[str, Any]) -> Page:
    """One ListObjectsV2 request, its page read from the raw XML."""
    client.meta.events.register(
        "before-parse.s3.ListObjectsV2", _keep_body, unique_id="watchsync-raw-list-pages"
    )
    _ours.on = True
    try:
        parsed = client.list_objects_v2(**request)
    finally:
        _ours.on = False
    return read_page(parsed)


def _keep_body(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    body = response_dict.get("body")
    if (
        getattr(_ours, "on", False)
        and response_dict.get("status_code") == 200
        and isinstance(body, bytes)
        and body
    ):
        customized_response_dict[_RAW] = body
        response_dict["body"] = b""  # nothing left for the generic parser to walk


def read_page(parsed: Mapping[str, Any]) -> Page:
    """The objects, truncation and continuation token of one parsed response."""
    raw = parsed.get(_RAW)
    if raw is None:
        return Page(
            [
                ListedObject(
                    o["Key"],
                    o["Size"],
                    o["LastModified"],
                    o.get("ETag", "").strip('"'),
                    o.get("StorageClass", ""),
                )
                for o in parsed.get("Contents", ())
            ],
            bool(parsed.get("IsTruncated")),
            parsed.get("NextContinuationToken"),
        )
    root = ET.fromstring(raw)
    ns = _NS if root.tag.startswith(_NS) else ""
    decode = root.findtext(f"{ns}EncodingType") == "url"
    objects = [_listed(c, ns, decode) for c in root.iter(f"{ns}Contents")]
    truncated = (root.findtext(f"{ns}IsTruncated") or "").strip().lower() == "true"
    return Page(objects, truncated, root.findtext(f"{ns}NextContinuationToken") or None)


def _listed(c: ET.Element, ns: str, decode: bool) -> ListedObject:
    # One pass over the children (four findtext calls would walk them four times).
    got = {child.tag[len(ns) :]: child.text or "" for child in c}
    key = got.get("Key", "")
    return ListedObject(
        unquote_plus(key) if decode else key,
        int(got.get("Size") or 0),
        got.get("LastModified", ""),
        got.get("ETag", "").strip('"'),
        got.get("StorageClass", ""),
    )
