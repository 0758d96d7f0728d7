"""The plan read ahead (engine/lookahead.py): order kept, totals known before the consumer
gets far, memory bounded, errors passed on, an early stop ends the reader."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from watchsync.engine.lookahead import _IN_MEMORY, Lookahead


def test_items_come_in_order_through_memory_and_the_file() -> None:
    with Lookahead(iter(range(10_000)), batch=7) as ahead:
        assert list(ahead) == list(range(10_000))


def test_the_whole_stream_is_counted_while_the_consumer_has_taken_one_item() -> None:
    counted: list[int] = []
    ended = threading.Event()
    with Lookahead(iter(range(5000)), on_item=counted.append, on_end=ended.set, batch=100) as a:
        it = iter(a)
        assert next(it) == 0
        # The consumer is still on its first item: the reader went on to the end.
        assert ended.wait(30), "the reader did not reach the end of the stream"
        assert len(counted) == 5000
        assert a._in_memory <= _IN_MEMORY  # the rest waits in the file, not in memory
        assert a._end > 0
        assert list(it) == list(range(1, 5000))


def test_an_error_in_the_stream_reaches_the_consumer_after_the_items_before_it() -> None:
    def broken() -> Iterator[int]:
        yield from range(3)
        raise OSError("listing failed")

    got: list[int] = []
    with Lookahead(broken(), batch=2) as ahead, pytest.raises(OSError, match="listing failed"):
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2]


def test_leaving_early_stops_the_reader() -> None:
    with Lookahead(itertools.count(), batch=10) as ahead:
        assert next(iter(ahead)) == 0
    assert not ahead._thread.is_alive()
