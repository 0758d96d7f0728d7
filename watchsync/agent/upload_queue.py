"""Room: the paths waiting for the uploader, and their journal.

:class:`PathQueue` holds one entry per path, with an optional delay, bounded, with
backpressure.  Many events for one path coalesce into one entry; a path being worked on is
not handed to a second worker, but is queued again once the first finishes, so the newest
state of the file is always looked at.

:class:`Pending` keeps the invariant, here and only here: a path in the queue (or in a
worker's hands) has exactly one open journal entry, written before it is queued and closed
only once a worker settled the path with no newer event waiting.  So a crash or ``kill -9``
at any moment leaves every unfinished path in the journal, and the next start queues it
again.

Must not touch: files, S3, threads (callers block in :meth:`Pending.take` on their own
threads).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from watchsync.core.model import Action, Item, Kind, SyncedEntry
from watchsync.core.plan import same_file
from watchsync.state.journal import JournalEntry
from watchsync.state.store import StateStore


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
                # What the item knew of S3 (a pass's look) predates the upload in hand, which
                # records a newer object: the path is looked at again from the state alone,
                # so a change during the send is one more send, never a conflict with itself.
                item = Item(item.path, attempt=item.attempt)
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

    def in_hand(self, path: str) -> bool:
        """Whether a worker has ``path`` in hand now."""
        with self._cond:
            return path in self._active

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
    reported = new.reported or old.reported
    return Item(new.path, etag, max(old.attempt, new.attempt), absent, remote, reported)


_JOURNAL_KIND = "sync"


BATCH = 500  # paths journaled per transaction when many are queued at once


class Pending:
    """The uploader's queue with its write-ahead journal.

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d, StateStore.open(
    ...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix"
    ... ) as store:
    ...     pending = Pending(store, included=bool, stop=threading.Event())
    ...     pending.add([Item("a.txt")])
    ...     print([e.path for e in store.journal.pending()], end=" ")  # journaled first
    ...     pending.settle(pending.take().path)
    ...     print(store.journal.pending(), pending.idle())
    ['a.txt'] [] True
    """

    def __init__(
        self,
        store: StateStore,
        *,
        included: Callable[[str], bool],
        stop: threading.Event,
        maxsize: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.included = included
        self.stop = stop
        self.queue = PathQueue(maxsize=maxsize, clock=clock)
        self._journal: dict[str, int] = {}  # path -> its open journal entry
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.queue)

    @property
    def in_flight(self) -> int:
        return self.queue.in_flight

    def idle(self) -> bool:
        """Nothing queued and nothing in a worker's hands."""
        return self.queue.idle()

    def in_hand(self, path: str) -> bool:
        """Whether a worker has ``path`` in hand now (a pass then leaves it to that worker)."""
        return self.queue.in_hand(path)

    def add(self, items: Sequence[Item]) -> None:
        """Journal every new path in one transaction, then queue them (blocking while full)."""
        items = [i for i in items if self.included(i.path)]
        if not items:
            return
        with self._lock:
            new = list(dict.fromkeys(i.path for i in items if i.path not in self._journal))
            if new:
                ids = self.store.journal.add_many(_JOURNAL_KIND, new)
                self._journal.update(zip(new, ids, strict=True))
        for item in items:
            self.queue.put(item, stop=self.stop)

    def resume(self, entries: Iterable[JournalEntry]) -> None:
        """Queue again what a previous run left in the journal (one entry per path kept)."""
        for entry in entries:
            if entry.kind != _JOURNAL_KIND:
                self.store.journal.done(entry.id)  # a download cut short: the reconcile redoes it
                continue
            if not self.included(entry.path):
                self.store.journal.done(entry.id)
                continue
            with self._lock:
                if entry.path not in self._journal:
                    self._journal[entry.path] = entry.id
                elif entry.id != self._journal[entry.path]:
                    self.store.journal.done(entry.id)
            self.queue.put(Item(entry.path), stop=self.stop)

    def take(self) -> Item | None:
        """The next path to work on (blocks); None once stopped."""
        return self.queue.get(self.stop)

    def take_many(self, limit: int) -> list[Item]:
        """The next path to work on and up to ``limit - 1`` more ready with it (blocks for
        the first); empty once stopped."""
        return self.queue.get_many(self.stop, limit)

    def settle(self, path: str) -> None:
        """The worker is done with ``path``: close its journal entry, unless a newer event
        queued it again meanwhile (that entry then stays until that one is done)."""
        with self._lock:
            again = self.queue.has_again(path)
            if not again:
                jid = self._journal.pop(path, None)
                if jid is not None:
                    # The path's outcome is durable already (recorded, or found in step):
                    # closing its entry need not cost a commit of its own.
                    self.store.journal.done_later(jid)
            # Released last, so the path never looks idle before its entry is closed.
            if self.queue.done(path) and not again:
                self._journal[path] = self.store.journal.add(_JOURNAL_KIND, path)

    def retry(self, item: Item, delay: float) -> None:
        """Try ``item`` again after ``delay`` seconds; its journal entry stays open."""
        self.queue.done(item.path)
        if not self.stop.is_set():
            again = replace(item, attempt=item.attempt + 1)
            self.queue.put(again, delay=delay, block=False)

    def batch(self) -> Batch:
        """A collector that journals and queues items :data:`BATCH` at a time."""
        return Batch(self.add, holds=self.queue.holds, recorded_since=self._recorded_since)

    def _recorded_since(self, actions: Sequence[Action]) -> set[str]:
        """The paths of ``actions`` (at most :data:`BATCH`) the uploader recorded since the
        plan was made: their state is no longer the one the plan saw."""
        now = self.store.synced.get_many([a.path for a in actions])
        return {a.path for a in actions if not _same_record(now.get(a.path), a.synced)}

    def close(self) -> None:
        """Wake every waiter; later adds are dropped (the journal keeps them)."""
        self.queue.close()


def _same_record(a: SyncedEntry | None, b: SyncedEntry | None) -> bool:
    """Whether two reads of a path's record found the same record: the same file, and the
    same object too (the uploader sending a file the state already describes, as for an
    object deleted in S3, changes only the record's object side)."""
    if a is None or b is None:
        return a is None and b is None
    return same_file(a, b) and (a.etag, a.remote_mtime_ns) == (b.etag, b.remote_mtime_ns)


class Batch:
    """Collects items and hands them on :data:`BATCH` at a time; :meth:`flush` the rest."""

    def __init__(
        self,
        sink: Callable[[Sequence[Item]], None],
        *,
        holds: Callable[[str], bool] = lambda _path: False,
        recorded_since: Callable[[Sequence[Action]], set[str]] = lambda _actions: set(),
    ) -> None:
        self._sink = sink
        self._holds = holds  # the uploader has the path queued or in hand
        self._recorded_since = recorded_since  # ... or recorded it since the plan
        self._items: list[Item] = []
        self._uploads: list[Action] = []  # routed, their state read once per batch

    def add(self, item: Item) -> None:
        self._items.append(item)
        if len(self._items) + len(self._uploads) >= BATCH:
            self.flush()

    def route(self, action: Action) -> bool:
        """The executor's route in a pass: an upload joins the uploader's queue (so one
        worker owns a path at a time, conditional on the object the pass saw); the rest
        runs in the pass.

        So does a conflict on a path the uploader holds or recorded since the plan: what
        the pass saw as a change in S3 is most likely the uploader's own PUT, listed before
        its record was committed.  Such a conflict, and an upload of a path recorded since
        the plan (a pass during a burst), go without the plan's view of S3, which predates
        that PUT (a write conditional on it would lose to the agent's own object): the
        worker decides afresh from the state, and its write, conditional on the ETag last
        synced, still keeps both versions if another writer's is there.  An upload of a
        path merely queued keeps the plan's view (an object deleted in S3 is sent again)."""
        if action.kind is Kind.CONFLICT:
            if not (self._holds(action.path) or self._recorded_since([action])):
                return False
            self.add(Item(action.path))
            return True
        if action.kind is not Kind.UPLOAD:
            return False
        self._uploads.append(action)
        if len(self._items) + len(self._uploads) >= BATCH:
            self.flush()
        return True

    def flush(self) -> None:
        uploads, self._uploads = self._uploads, []
        if uploads:
            moved = self._recorded_since(uploads)
            for action in uploads:
                rem = action.remote
                if action.path in moved:
                    self._items.append(Item(action.path))
                else:
                    etag = rem.etag if rem else None
                    self._items.append(Item(action.path, etag, absent=rem is None, remote=rem))
        items, self._items = self._items, []
        if items:
            self._sink(items)
