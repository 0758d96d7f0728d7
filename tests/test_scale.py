"""What keeps a periodic reconcile cheap: the listing's timestamps parsed at C speed (the
same values as botocore's own parser), and AWS listings streamed without a sort."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from watchsync.s3.client import make_client, mtime_ns, parse_timestamp
from watchsync.s3.listing import keeps_key_order, list_entries, unsafe_reason
from watchsync.s3.location import S3Settings, S3Url


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-02T01:00:00.000Z",  # ListObjectsV2
        "2026-12-02T01:00:00Z",
        "2026-12-02T01:00:00.123456Z",
        "2026-12-02T01:00:00+02:00",
        "Wed, 02 Dec 2026 01:00:00 GMT",  # HeadObject's Last-Modified header
        "1700000000",  # epoch seconds
    ],
)
def test_parse_timestamp_agrees_with_botocore(value: str) -> None:
    ours, theirs = parse_timestamp(value), botocore_parse_timestamp(value)
    assert ours == theirs and mtime_ns(ours) == mtime_ns(theirs)


def test_clients_parse_timestamps_with_the_fast_parser() -> None:
    client = make_client(S3Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    try:
        # The endpoint's factory makes the parser of every response (botocore internals).
        factory = client._endpoint._response_parser_factory  # type: ignore[attr-defined]
        assert factory.create_parser("rest-xml")._timestamp_parser is parse_timestamp
    finally:
        client.close()


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x1f", "\x7f"])
def test_control_characters_still_make_a_key_unsafe(char: str) -> None:
    assert unsafe_reason(f"a{char}b") == "key contains NUL or control characters"
    assert unsafe_reason("a\x80b") is None
    assert unsafe_reason("a\tb\rc\nd") is None  # legal in file names (macOS's Icon\r)


@pytest.mark.parametrize(
    ("endpoint", "bucket", "ordered"),
    [
        ("https://s3.amazonaws.com", "photos", True),
        ("https://s3.eu-west-1.amazonaws.com", "photos", True),
        ("https://photos.s3.us-east-2.amazonaws.com", "photos", True),
        ("https://s3.cn-north-1.amazonaws.com.cn", "photos", True),
        ("https://s3express-use1-az4.us-east-1.amazonaws.com", "b--use1-az4--x-s3", False),
        ("http://127.0.0.1:8333", "photos", False),
        ("https://minio.example.com", "photos", False),
        ("https://amazonaws.com.evil.example", "photos", False),
    ],
)
def test_only_aws_listings_skip_the_sort(endpoint: str, bucket: str, ordered: bool) -> None:
    assert keeps_key_order(endpoint, bucket) is ordered


def test_an_aws_listing_streams_without_sorting() -> None:
    """Pages go out as they come: the first entry is yielded before the second page is
    asked for (a sort would read every page first)."""
    client = make_client(S3Settings(region="us-east-1"))
    try:
        with Stubber(client) as stub:
            page = {"Contents": [_obj("p/a"), _obj("p/b")], "IsTruncated": True,
                    "NextContinuationToken": "t"}  # fmt: skip
            stub.add_response("list_objects_v2", page)
            stub.add_response("list_objects_v2", {"Contents": [_obj("p/c")], "IsTruncated": False})
            stream = list_entries(client, S3Url("bkt", "p/"))
            assert next(stream).path == "a"
            with pytest.raises(AssertionError):  # the second page is not read yet
                stub.assert_no_pending_responses()
            assert [e.path for e in stream] == ["b", "c"]
    finally:
        client.close()


def _obj(key: str) -> dict[str, Any]:
    when = datetime(2026, 12, 2, tzinfo=UTC)
    return {"Key": key, "Size": 1, "LastModified": when, "ETag": '"e"'}
