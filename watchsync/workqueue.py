"""The uploader's queue: one entry per path, optional delay, bounded, with backpressure.

Many events for one path coalesce into one entry; a path being worked on is not handed to a
second worker, but is queued again once the first finishes, so the newest state of the file
is always looked at.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .model import Hint, RemoteEntry


@dataclass(frozen=True, slots=True)
class Item:
    """A path to look at, and the ETag the caller expects the object to have, if any.

    ``absent``: the reconcile saw no object, so the file is sent (``If-None-Match``) even
    when it is unchanged since the last sync.
    """

    path: str
    expect_etag: str | None = None
    attempt: int = 0
    absent: bool = False
    remote: RemoteEntry | None = None  # the object a reconcile saw, for a content check

    def hint(self) -> Hint:
        """What the planner is told about this path."""
        return Hint(self.expect_etag, self.absent, self.remote)


class PathQueue:
    """Coalescing, delay-capable, bounded queue of paths.

    >>> q = PathQueue(maxsize=10); _ = q.put(Item("a")); _ = q.put(Item("a")); len(q)
    1
    """

    def __init__(self, *, maxsize: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.maxsize = maxsize
        self.clock = clock
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # workers wait here for a ready item
        self._room = threading.Condition(lock)  # puts wait here while the queue is full
        self._items: dict[str, tuple[float, Item]] = {}  # path -> (ready_at, item)
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._active: set[str] = set()
        self._again: dict[str, tuple[float, Item]] = {}  # path -> (delay, item) once done
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items) + len(self._again)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return len(self._active)

    def put(
        self,
        item: Item,
        *,
        delay: float = 0.0,
        block: bool = True,
        stop: threading.Event | None = None,
    ) -> bool:
        """Queue ``item`` (merging with a queued one for the same path); blocks while full.

        Returns False when the queue was closed or ``stop`` was set while waiting.
        """
        with self._cond:
            while (
                block
                and not self._closed
                and item.path not in self._items
                and len(self._items) >= self.maxsize
                and not (stop is not None and stop.is_set())
            ):
                self._room.wait(0.25)
            if self._closed or (stop is not None and stop.is_set()):
                return False
            if item.path in self._active:
                # Kept with its delay: a retry handed in while the path is still being
                # worked on must wait like any other, not run the moment the worker is done.
                prev = self._again.get(item.path)
                if prev is not None:
                    delay = _later(delay, item, prev[0], prev[1])
                    item = _merge(prev[1], item)
                self._again[item.path] = (delay, item)
                return True
            self._schedule(item, self.clock() + delay)
            return True

    def _schedule(self, item: Item, ready_at: float) -> None:
        """Queue ``item`` at ``ready_at`` (caller holds the lock), merged with a queued one."""
        old = self._items.get(item.path)
        if old is not None:
            now = self.clock()
            ready_at = now + _later(ready_at - now, item, old[0] - now, old[1])
            item = _merge(old[1], item)
        self._items[item.path] = (ready_at, item)
        self._seq += 1
        heapq.heappush(self._heap, (ready_at, self._seq, item.path))
        self._cond.notify()

    def get(self, stop: threading.Event, *, poll: float = 30.0) -> Item | None:
        """The next ready item, marking its path active; None once ``stop`` is set.

        Waits for a put, :meth:`close` or the next delayed item; ``poll`` only bounds how
        late a ``stop`` set without a :meth:`close` is noticed (an idle agent's workers
        must not wake several times a second)."""
        items = self.get_many(stop, 1, poll=poll)
        return items[0] if items else None

    def get_many(self, stop: threading.Event, limit: int, *, poll: float = 30.0) -> list[Item]:
        """As :meth:`get`, but up to ``limit`` items: the first one ready, and those ready
        with it (never waiting for more); empty once ``stop`` is set."""
        with self._cond:
            while not stop.is_set() and not self._closed:
                now = self.clock()
                taken: list[Item] = []
                while self._heap and len(taken) < limit:
                    ready_at, _, path = self._heap[0]
                    current = self._items.get(path)
                    if current is None or current[0] != ready_at:
                        heapq.heappop(self._heap)  # stale
                        continue
                    if ready_at > now:
                        break
                    heapq.heappop(self._heap)
                    del self._items[path]
                    self._active.add(path)
                    taken.append(current[1])
                if taken:
                    self._room.notify_all()
                    return taken
                wait = poll if not self._heap else min(poll, self._heap[0][0] - now)
                self._cond.wait(max(wait, 0.001))
            return []

    def done(self, path: str) -> bool:
        """The worker finished ``path``; requeue it if it changed meanwhile (returns True)."""
        with self._cond:
            self._active.discard(path)
            again = self._again.pop(path, None)
            if again is None:
                return False
            # Queued again under the same lock, so idle() never sees the path nowhere.
            delay, item = again
            self._schedule(item, self.clock() + delay)
            return True

    def holds(self, path: str) -> bool:
        """Whether ``path`` is queued or being worked on."""
        with self._cond:
            return path in self._items or path in self._active

    def has_again(self, path: str) -> bool:
        """Whether ``path`` was queued again while it was being worked on."""
        with self._cond:
            return path in self._again

    def close(self) -> None:
        """Wake every waiter; later puts are refused."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._room.notify_all()

    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        with self._cond:
            return not self._items and not self._active and not self._again


def _later(delay: float, item: Item, old_delay: float, old: Item) -> float:
    """The wait of two entries for one path merged: a fresh event (no delay) goes first,
    unless either entry is a retry, whose back-off a new event must not cut short."""
    if delay <= 0 and item.attempt == 0 and old.attempt == 0:
        return min(max(delay, 0.0), old_delay)
    return max(delay, old_delay)


def _merge(old: Item | None, new: Item) -> Item:
    """Keep the caller's expectation when only one of the two has one."""
    if old is None:
        return new
    etag = new.expect_etag or old.expect_etag
    absent = (new.absent or old.absent) and not new.expect_etag
    remote = new.remote if (new.remote or new.expect_etag) else old.remote
    return Item(new.path, etag, max(old.attempt, new.attempt), absent, remote)
