"""What keeps a periodic reconcile cheap: the listing's timestamps parsed at C speed, the
same values as botocore's own parser."""

from __future__ import annotations

import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from watchsync.remote import S3Settings, make_client, mtime_ns, parse_timestamp, unsafe_reason


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


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f", "\n"])
def test_control_characters_still_make_a_key_unsafe(char: str) -> None:
    assert unsafe_reason(f"a{char}b") == "key contains NUL or control characters"
    assert unsafe_reason("a\x80b") is None
