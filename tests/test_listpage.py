"""ListObjectsV2 pages read from the raw XML: the same objects as botocore's own parse, for
keys that need decoding, with and without S3's namespace; and botocore's parse when no raw
body was kept (a stubbed client)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from watchsync.core.model import RemoteEntry
from watchsync.s3.client import mtime_ns
from watchsync.s3.listing import list_entries
from watchsync.s3.listpage import Page, read_page, read_raw
from watchsync.s3.location import S3Url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client



def _page(ns: str, body: str) -> Page:
    xml = f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{ns}>{body}</ListBucketResult>'
    page = read_raw(xml.encode())
    assert page is not None
    return page


def test_raw_page_with_url_encoded_keys() -> None:
    ns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    page = (
        _page(
            ns,
            "<EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
            "<Contents><Key>p/a+b%2Bc%09tab%E2%82%AC.txt</Key>"
            "<LastModified>2026-12-02T04:16:18.198Z</LastModified>"
            "<ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
            "<NextContinuationToken>tok+1</NextContinuationToken>",
        )
    )
    assert page.truncated and page.token == "tok+1"
    assert page.rows == [("p/a b+c\ttab€.txt", 12, "2026-12-02T04:16:18.198Z", "abc")]


def test_raw_page_without_namespace_or_encoding() -> None:
    page = (
        _page(
            "",
            "<IsTruncated>false</IsTruncated><Contents><Key>a&amp;b</Key>"
            '<LastModified>2026-12-02T04:16:18Z</LastModified><ETag>"e"</ETag>'
            "<Size>0</Size></Contents>",
        )
    )
    assert not page.truncated and page.token is None
    assert page.rows == [("a&b", 0, "2026-12-02T04:16:18Z", "e")]


def test_parsed_page_when_no_body_was_kept() -> None:
    when = datetime(2026, 12, 2, tzinfo=UTC)
    page = read_page({"Contents": [{"Key": "k", "Size": 3, "LastModified": when, "ETag": '"x"'}]})
    assert page.rows == [("k", 3, when, "x")] and not page.truncated


def test_listing_matches_botocore_on_the_real_server(s3: S3Client, bucket: str) -> None:
    keys = ["p/plain.txt", "p/sp ace+plus.txt", "p/tab\there", "p/€uro/ü.bin", "p/a&b<c>"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * i)
    expected = {
        o["Key"][2:]: (o["Size"], mtime_ns(o["LastModified"]), o["ETag"].strip('"'))
        for o in s3.list_objects_v2(Bucket=bucket, Prefix="p/")["Contents"]
    }
    got = {
        e.path: (e.size, e.mtime_ns, e.etag)
        for e in list_entries(s3, S3Url(bucket, "p/"), page_size=2)
        if isinstance(e, RemoteEntry)
    }
    assert got == expected and len(got) == len(keys)
    # The client's other callers still get botocore's parse.
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="p/")["Contents"]) == len(keys)


def test_a_page_in_another_shape_is_read_through_elementtree() -> None:
    """Fields in another order, a namespace prefix, an object without an ETag: the scans
    do not line up, so the page is read as a tree."""
    xml = (
        b'<?xml version="1.0"?><s3:ListBucketResult xmlns:s3="x"><s3:IsTruncated>false'
        b"</s3:IsTruncated><s3:Contents><s3:Key>k</s3:Key><s3:Size>3</s3:Size>"
        b"<s3:LastModified>2026-12-02T04:16:18Z</s3:LastModified></s3:Contents>"
        b"</s3:ListBucketResult>"
    )
    assert read_raw(xml) is None  # not S3's namespace: left to botocore
    xml = (
        b'<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Size>3</Size><Key>k'
        b"</Key><LastModified>2026-12-02T04:16:18Z</LastModified></Contents>"
        b"<NextContinuationToken>t</NextContinuationToken></ListBucketResult>"
    )
    page = read_raw(xml)
    assert page is not None and page.rows == [("k", 3, "2026-12-02T04:16:18Z", "")]
    assert page.truncated and page.token == "t"


def test_an_error_or_a_page_cut_short_is_left_to_botocore() -> None:
    whole = _page("", "<IsTruncated>false</IsTruncated>")
    assert whole.rows == []
    assert read_raw(b"<?xml version='1.0'?><Error><Code>SlowDown</Code></Error>") is None
    cut = b'<?xml version="1.0"?><ListBucketResult><Contents><Key>a</Key><Size>1</Si'
    assert read_raw(cut) is None
