"""S3's timestamps as the rest of the code keeps them, without loading botocore: a listing
read before any SDK is imported (a no-op ``sync``'s quick look) needs them too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(value: str) -> datetime:
    """A response's timestamp: ISO 8601 as listings send it (``2026-12-02T01:00:00.000Z``)
    at C speed, anything else (HTTP dates of HEAD answers, epoch seconds) as botocore does.

    >>> parse_timestamp("2026-12-02T01:00:00.000Z")
    datetime.datetime(2026, 12, 2, 1, 0, tzinfo=datetime.timezone.utc)
    """
    try:
        when = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        from botocore.utils import parse_timestamp as botocore_parse_timestamp

        return botocore_parse_timestamp(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def mtime_ns(when: datetime) -> int:
    """LastModified as integer nanoseconds since the epoch (no float rounding).

    >>> mtime_ns(parse_timestamp("1970-01-01T00:00:01.5Z"))
    1500000000
    """
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000
