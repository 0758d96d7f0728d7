"""A stream read ahead of its consumer, so that what is coming is known (counted) before it
is worked through: ``watchsync sync`` plans on while the executor transfers, and its
progress bar shows the whole plan's totals as soon as the walk and the listing end.

Memory stays bounded however long the stream: a few batches wait in memory, the rest in an
anonymous temporary file, read back in order.
"""

from __future__ import annotations

import collections
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_IN_MEMORY = 4  # batches kept in memory before they go to the file


class Lookahead(Generic[T]):
    """Read ``source`` on a thread of its own, calling ``on_item`` for each item as it is
    read and ``on_end`` once the stream is exhausted; iterate to get the items in order.
    An error in the stream is raised to the consumer after the items read before it.

    >>> seen = []
    >>> with Lookahead(iter("abc"), on_item=seen.append, batch=2) as ahead:
    ...     "".join(ahead)
    'abc'
    >>> seen
    ['a', 'b', 'c']
    """

    def __init__(
        self,
        source: Iterable[T],
        *,
        on_item: Callable[[T], None] = lambda _item: None,
        on_end: Callable[[], None] = lambda: None,
        batch: int = 1000,
    ) -> None:
        self._source = source
        self._on_item = on_item
        self._on_end = on_end
        self._batch = batch
        self._cond = threading.Condition()
        # Batches in order: a list in memory, or (offset, length) of one in the file.
        self._queue: collections.deque[list[T] | tuple[int, int]] = collections.deque()
        self._in_memory = 0
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._io = threading.Lock()  # one position for the reader's and the writer's seeks
        self._end = 0  # where the next spilled batch goes
        self._done = False
        self._error: BaseException | None = None
        self._waiting = False  # the consumer has nothing: hand over what there is
        self._closing = False
        self._thread = threading.Thread(target=self._read, name="watchsync-plan", daemon=True)

    def __enter__(self) -> Lookahead[T]:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading ahead (the reader ends at its next item) and free the file."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join()
        self._file.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            with self._cond:
                while not self._queue and not self._done:
                    self._waiting = True
                    self._cond.wait()
                self._waiting = False
                if not self._queue:
                    break
                entry = self._queue.popleft()
                if isinstance(entry, list):
                    self._in_memory -= 1
            if isinstance(entry, tuple):
                offset, length = entry
                with self._io:
                    self._file.seek(offset)
                    items: list[T] = pickle.loads(self._file.read(length))
            else:
                items = entry
            yield from items
        if self._error is not None:
            raise self._error

    def _read(self) -> None:
        buf: list[T] = []
        try:
            for item in self._source:
                if self._closing:
                    return
                self._on_item(item)
                buf.append(item)
                if len(buf) >= self._batch or self._waiting:
                    self._put(buf)
                    buf = []
            self._put(buf)
            self._on_end()
        except BaseException as exc:  # handed to the consumer, who raises it
            self._put(buf)
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _put(self, items: list[T]) -> None:
        if not items:
            return
        with self._cond:
            spill = self._in_memory >= _IN_MEMORY  # only this thread adds to it
        if spill:  # the queue keeps the order, wherever each batch waits
            data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
            with self._io:
                self._file.seek(self._end)
                self._file.write(data)
            entry: list[T] | tuple[int, int] = (self._end, len(data))
            self._end += len(data)
        else:
            entry = items
        with self._cond:
            self._queue.append(entry)
            if not spill:
                self._in_memory += 1
            self._cond.notify_all()
