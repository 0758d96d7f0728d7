"""Bounded-memory sorting of a stream, spilling sorted runs to temporary files.

S3 promises listings in UTF-8 key order, but S3-compatible servers do not all keep it
(SeaweedFS lists ``a/b`` before ``a-b``, directory by directory).  The planner merges sorted
streams in one pass, so every remote listing goes through here: for a listing that fits in
one run this is a plain in-memory sort (linear on already-sorted input); a larger one is cut
into sorted runs on disk and merged, so memory stays flat however large the bucket is.
"""

from __future__ import annotations

import heapq
import itertools
import pickle
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

DEFAULT_RUN = 100_000


def sorted_stream(
    items: Iterable[T],
    *,
    key: Callable[[T], str] | None,
    run_size: int = DEFAULT_RUN,
    tmpdir: str | None = None,
) -> Iterator[T]:
    """Yield ``items`` ordered by ``key`` (None: by the items themselves) holding at most
    ``run_size`` of them in memory.

    >>> list(sorted_stream(["b", "a"], key=str))
    ['a', 'b']
    """
    runs: list[IO[bytes]] = []
    buf: list[T] = []
    try:
        for item in items:
            if len(buf) >= run_size:  # spilled only once more follows: a full run stays
                buf.sort(key=key)
                runs.append(_spill(buf, tmpdir))
                buf = []
            buf.append(item)
        buf.sort(key=key)
        if not runs:
            yield from buf
            return
        if buf:
            runs.append(_spill(buf, tmpdir))
            buf = []
        yield from heapq.merge(*(_replay(f) for f in runs), key=key)
    finally:
        for f in runs:
            f.close()


def sorted_batches(
    batches: Iterable[list[T]],
    *,
    run_size: int = DEFAULT_RUN,
    tmpdir: str | None = None,
    batch: int = 1000,
) -> Iterator[list[T]]:
    """:func:`sorted_stream` of the items themselves, taken and given a list at a time (up
    to ``batch`` items each): a listing's pages go in and come out without a Python step
    per item, as long as the whole fits in one run (a run may pass ``run_size`` by one
    batch).

    >>> list(sorted_batches([["c", "a"], ["b"]], batch=2))
    [['a', 'b'], ['c']]
    """
    runs: list[IO[bytes]] = []
    buf: list[T] = []
    try:
        for items in batches:
            if len(buf) >= run_size:  # spilled only once more follows: a full run stays
                buf.sort()
                runs.append(_spill(buf, tmpdir))
                buf = []
            buf.extend(items)
        buf.sort()
        if not runs:
            for i in range(0, len(buf), batch):
                yield buf[i : i + batch]
            return
        if buf:
            runs.append(_spill(buf, tmpdir))
            buf = []
        merged: Iterator[T] = heapq.merge(*(_replay(f) for f in runs))
        while out := list(itertools.islice(merged, batch)):
            yield out
    finally:
        for f in runs:
            f.close()


def _spill(items: list[T], tmpdir: str | None) -> IO[bytes]:
    """Write one sorted run to an anonymous temporary file."""
    import tempfile  # here: most listings never spill, and a small sync starts sooner

    f = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115 - closed by sorted_stream
    pickler = pickle.Pickler(f, protocol=pickle.HIGHEST_PROTOCOL)
    for i in range(0, len(items), 1000):
        pickler.dump(items[i : i + 1000])
        pickler.clear_memo()
    f.seek(0)
    return f


def _replay(f: IO[bytes]) -> Iterator[Any]:
    """Read a run back, one batch at a time."""
    while True:
        try:
            batch = pickle.load(f)
        except EOFError:
            return
        yield from batch
