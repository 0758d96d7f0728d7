"""Room: the paths waiting for the uploader, and their journal.

The invariant kept here, and only here: a path in the queue (or in a worker's hands) has
exactly one open journal entry, written before it is queued and closed only once a worker
settled the path with no newer event waiting.  So a crash or ``kill -9`` at any moment
leaves every unfinished path in the journal, and the next start queues it again.

Must not touch: files, S3, threads (callers block in :meth:`take` on their own threads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from ..model import Action, Kind
from ..state import JournalEntry, StateStore
from ..workqueue import Item, PathQueue

_JOURNAL_KIND = "sync"
BATCH = 500  # paths journaled per transaction when many are queued at once


class Pending:
    """The uploader's queue with its write-ahead journal.

    >>> pending = Pending(store, included=bool, stop=threading.Event())  # doctest: +SKIP
    >>> pending.add([Item("a.txt")])  # doctest: +SKIP
    >>> pending.settle(pending.take().path)  # doctest: +SKIP
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

    def add(self, items: Sequence[Item]) -> None:
        """Journal every new path in one transaction, then queue them (blocking while full)."""
        items = [i for i in items if self.included(i.path)]
        if not items:
            return
        with self._lock:
            new = list(dict.fromkeys(i.path for i in items if i.path not in self._journal))
            if new:
                ids = self.store.journal_add_many(_JOURNAL_KIND, new)
                self._journal.update(zip(new, ids, strict=True))
        for item in items:
            self.queue.put(item, stop=self.stop)

    def resume(self, entries: Iterable[JournalEntry]) -> None:
        """Queue again what a previous run left in the journal (one entry per path kept)."""
        for entry in entries:
            if entry.kind != _JOURNAL_KIND:
                self.store.journal_done(entry.id)  # a download cut short: the reconcile redoes it
                continue
            if not self.included(entry.path):
                self.store.journal_done(entry.id)
                continue
            with self._lock:
                if entry.path not in self._journal:
                    self._journal[entry.path] = entry.id
                elif entry.id != self._journal[entry.path]:
                    self.store.journal_done(entry.id)
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
                    self.store.journal_done_later(jid)
            # Released last, so the path never looks idle before its entry is closed.
            if self.queue.done(path) and not again:
                self._journal[path] = self.store.journal_add(_JOURNAL_KIND, path)

    def retry(self, item: Item, delay: float) -> None:
        """Try ``item`` again after ``delay`` seconds; its journal entry stays open."""
        self.queue.done(item.path)
        if not self.stop.is_set():
            again = Item(item.path, item.expect_etag, item.attempt + 1, item.absent, item.remote)
            self.queue.put(again, delay=delay, block=False)

    def batch(self) -> Batch:
        """A collector that journals and queues items :data:`BATCH` at a time."""
        return Batch(self.add, holds=self.queue.holds, recorded_since=self._recorded_since)

    def _recorded_since(self, actions: Sequence[Action]) -> set[str]:
        """The paths of ``actions`` (at most :data:`BATCH`) the uploader recorded since the
        plan was made: their state is no longer the one the plan saw."""
        now = self.store.get_many([a.path for a in actions])
        return {a.path for a in actions if now.get(a.path) != a.synced}

    def close(self) -> None:
        """Wake every waiter; later adds are dropped (the journal keeps them)."""
        self.queue.close()


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
