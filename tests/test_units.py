"""Small pure units: external sort, key safety, S3 URLs, LastModified, rate limiter, spool."""

from __future__ import annotations

import random
from collections.abc import Generator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from watchsync.core.errors import UsageError
from watchsync.engine.spool import Spool
from watchsync.s3.bandwidth import RateLimiter
from watchsync.s3.client import mtime_ns
from watchsync.s3.extsort import sorted_stream
from watchsync.s3.listing import unsafe_reason
from watchsync.s3.location import S3Url

# ------------------------------------------------------------------------------ extsort


@pytest.mark.parametrize("run_size", [1, 2, 7, 1000], ids=lambda n: f"run{n}")
def test_sorted_stream_matches_sorted(run_size: int, tmp_path: Path) -> None:
    rng = random.Random(run_size)
    items = ["".join(rng.choices("ab/-.é", k=rng.randint(0, 5))) for _ in range(300)]
    got = list(sorted_stream(items, key=str, run_size=run_size, tmpdir=str(tmp_path)))
    assert got == sorted(items)


def test_sorted_stream_spills_to_tmpdir(tmp_path: Path) -> None:
    """Runs go to disk: with run_size 10, memory holds 10 items, not 1000."""
    items = [f"k{i:04d}" for i in range(1000)][::-1]
    stream = sorted_stream(iter(items), key=str, run_size=10, tmpdir=str(tmp_path))
    assert next(stream) == "k0000"
    assert list(stream) == sorted(items)[1:]


def test_sorted_stream_key_and_stability() -> None:
    items = [("b", 1), ("a", 2), ("b", 3), ("a", 4), ("c", 5), ("a", 6)]
    got = list(sorted_stream(items, key=lambda t: t[0], run_size=2))
    assert got == sorted(items, key=lambda t: t[0])  # equal keys keep input order


def test_sorted_stream_mixed_order_listing() -> None:
    """SeaweedFS lists directory by directory: 'a/b' before 'a-b'."""
    listing = ["a/b", "a/c", "a-b", "a.b", "a0", "b"]
    assert list(sorted_stream(listing, key=str, run_size=2)) == [
        "a-b",
        "a.b",
        "a/b",
        "a/c",
        "a0",
        "b",
    ]


@pytest.mark.parametrize("run_size", [1, 1000], ids=["spilling", "in-memory"])
def test_sorted_stream_empty(run_size: int) -> None:
    assert list(sorted_stream([], key=str, run_size=run_size)) == []


def test_sorted_stream_abandoned_early_closes_runs() -> None:
    stream = sorted_stream([str(i) for i in range(50)], key=str, run_size=5)
    assert isinstance(stream, Generator)
    assert next(stream) == "0"
    stream.close()  # runs back to the files are closed; no ResourceWarning (errors here)


# ------------------------------------------------------------------------- unsafe_reason

UNSAFE_TABLE: list[tuple[str, str, str | None]] = [
    ("dotdot-first", "../x", "key escapes the destination ('..' segment)"),
    ("dotdot-middle", "a/../b", "key escapes the destination ('..' segment)"),
    ("dotdot-alone", "..", "key escapes the destination ('..' segment)"),
    ("absolute", "/abs", "key is an absolute path"),
    ("double-slash", "a//b", "key has an empty or '.' segment"),
    ("trailing-slash", "a/", "key has an empty or '.' segment"),
    ("dot-first", "./a", "key has an empty or '.' segment"),
    ("dot-middle", "a/./b", "key has an empty or '.' segment"),
    ("nul", "a\x00b", "key contains NUL or control characters"),
    ("newline", "a\nb", None),  # legal in file names: what the agent uploads must list back
    ("carriage-return", "Icon\r", None),  # macOS folder icons
    ("tab", "a\tb", None),
    ("escape", "a\x1bb", "key contains NUL or control characters"),
    ("del", "a\x7fb", "key contains NUL or control characters"),
    ("empty", "", "key maps onto the destination root"),
    ("plain", "ok/name", None),
    ("unicode", "ünï", None),
    ("dots-in-name", "a/..b/c..", None),
    ("hidden", ".hidden/.x", None),
    ("long-segment", "d/" + "x" * 256, "key has a path segment longer than 255 bytes"),
    ("long-segment-multibyte", "é" * 128, "key has a path segment longer than 255 bytes"),
    ("max-segment", "d/" + "x" * 255, None),
]


@pytest.mark.parametrize(("path", "reason"), [pytest.param(*r[1:], id=r[0]) for r in UNSAFE_TABLE])
def test_unsafe_reason(path: str, reason: str | None) -> None:
    assert unsafe_reason(path) == reason


# ---------------------------------------------------------------------------------- S3Url

URL_TABLE: list[tuple[str, str, S3Url | None]] = [
    ("bucket-only", "s3://bucket", S3Url("bucket", "")),
    ("bucket-slash", "s3://bucket/", S3Url("bucket", "")),
    ("prefix", "s3://bucket/some/dir", S3Url("bucket", "some/dir/")),
    ("prefix-slash", "s3://bucket/some/dir/", S3Url("bucket", "some/dir/")),
    ("dotted-bucket", "s3://my.bucket-1/p", S3Url("my.bucket-1", "p/")),
    ("no-scheme", "bucket", None),
    ("empty-bucket", "s3://", None),
    ("uppercase", "s3://B", None),
    ("uppercase-long", "s3://Bucket", None),
    ("too-short", "s3://ab", None),
    ("wrong-scheme", "S3://bucket", None),
    ("http", "https://bucket.s3.amazonaws.com/x", None),
]


@pytest.mark.parametrize(("url", "expected"), [pytest.param(*r[1:], id=r[0]) for r in URL_TABLE])
def test_s3url_parse(url: str, expected: S3Url | None) -> None:
    if expected is None:
        with pytest.raises(UsageError):
            S3Url.parse(url)
    else:
        assert S3Url.parse(url) == expected


def test_s3url_key_and_url() -> None:
    where = S3Url.parse("s3://bucket/p")
    assert where.key("a/b") == "p/a/b"
    assert where.url("a/b") == "s3://bucket/p/a/b"
    assert S3Url.parse("s3://bucket").url() == "s3://bucket/"


def test_usage_error_exit_code() -> None:
    with pytest.raises(UsageError) as info:
        S3Url.parse("bucket")
    assert info.value.exit_code == 2
    assert "bucket" in str(info.value)


# ------------------------------------------------------------------------------- mtime_ns


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        pytest.param(datetime(1970, 1, 1, tzinfo=UTC), 0, id="epoch"),
        pytest.param(
            datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), 1_700_000_000 * 10**9, id="utc"
        ),
        pytest.param(
            datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone(timedelta(hours=1))),
            1_700_000_000 * 10**9,
            id="plus-one-hour",
        ),
        pytest.param(
            datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC),
            1_700_000_000_123_456_000,
            id="microseconds-exact",
        ),
        pytest.param(
            datetime(2286, 11, 20, 17, 46, 39, 999999, tzinfo=UTC),
            9_999_999_999_999_999_000,
            id="no-float-rounding",
        ),
    ],
)
def test_mtime_ns(when: datetime, expected: int) -> None:
    assert mtime_ns(when) == expected


# ---------------------------------------------------------------------------- RateLimiter


class FakeClock:
    """A monotonic clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_ratelimiter_starts_empty() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, burst=500, clock=clock, sleep=clock.sleep)
    limiter.take(100)  # the cap holds from the first byte: no burst at the start
    assert clock.slept == pytest.approx([0.1])


def test_ratelimiter_burst_then_debt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, burst=500, clock=clock, sleep=clock.sleep)
    clock.now += 0.5  # idle: the burst filled up
    limiter.take(300)
    limiter.take(200)  # the burst: no sleeping
    assert clock.slept == []
    limiter.take(250)  # 250 bytes in debt at 1000 B/s
    assert clock.slept == pytest.approx([0.25])
    limiter.take(100)  # the sleep paid the debt: now 100 more
    assert clock.slept == pytest.approx([0.25, 0.1])


def test_ratelimiter_refills_up_to_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, burst=500, clock=clock, sleep=clock.sleep)
    clock.now += 60  # idle for a minute: refilled to the burst, not 60000
    limiter.take(500)
    assert clock.slept == []
    limiter.take(1000)
    assert clock.slept == pytest.approx([1.0])


def test_ratelimiter_average_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2000, burst=100, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(100):
        limiter.take(400)
    # 40000 bytes at 2000 B/s, from an empty bucket
    assert clock.now - start == pytest.approx(40_000 / 2000)


def test_ratelimiter_debt_is_shared_by_later_takers() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1000, burst=100, clock=clock, sleep=lambda s: clock.slept.append(s))
    limiter.take(1000)  # a large request: one second of debt
    limiter.take(10)  # the next waits for that debt and its own bytes (the clock stood still)
    assert clock.slept == pytest.approx([1.0, 1.01])
    limiter.take(-50)  # a rewind (a retried range) costs nothing, gives nothing back
    limiter.take(0)
    assert len(clock.slept) == 2


def test_ratelimiter_default_burst_and_bad_rate() -> None:
    assert RateLimiter(1024).burst == 16 * 1024
    assert RateLimiter(4 * 1024 * 1024).burst == pytest.approx(4 * 1024 * 1024 / 10)
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(0)


# ---------------------------------------------------------------------------------- Spool


def test_spool_round_trip_beyond_batch() -> None:
    items = [f"{i}\n\0x" if i % 3 else f"delete-local\0dir/{i}" for i in range(25)]
    items += ["", "\0", "\n", "é\r\n"]
    with Spool(batch=4) as spool:
        for item in items:
            spool.add(item)
        assert spool.count == len(items)
        assert list(spool) == items
        assert list(spool) == items  # replayable


def test_spool_empty() -> None:
    with Spool() as spool:
        assert list(spool) == []
        assert spool.count == 0


def test_spool_add_after_full_replay() -> None:
    with Spool(batch=2) as spool:
        for item in "abc":
            spool.add(item)
        assert list(spool) == ["a", "b", "c"]
        spool.add("d")
        assert list(spool) == ["a", "b", "c", "d"]


def test_spool_add_after_partial_replay() -> None:
    """A replay abandoned midway must not make later adds overwrite unread batches."""
    with Spool(batch=2) as spool:
        for item in "abcdef":
            spool.add(item)
        replay = iter(spool)
        assert next(replay) == "a"
        spool.add("g")
        spool.add("h")
        assert list(replay) == ["b", "c", "d", "e", "f", "g", "h"]
        assert list(spool) == list("abcdefgh")
