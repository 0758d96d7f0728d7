"""The debouncer: changed paths in, each handed on once it has been quiet long enough.  Pure
bookkeeping on an injected clock (:class:`Debouncer`) and the one thread that waits on it
(:class:`DebounceThread`); nothing here knows about inotify or watchdog."""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


DIR_MARK = "/"
# A path written without pause (a log) is still handed on this often: its upload follows
# the writes at a steady cadence, not once the writer stops or a minute has gone by.
KEEPS_CHANGING_EVERY = 2.0


def is_dir_mark(path: str) -> bool:
    """Whether a ready path marks a directory to rescan: ``is_dir_mark("a/b/")``."""
    return path.endswith(DIR_MARK)


@dataclass(slots=True)
class _Pending:
    first: float
    deadline: float


class Debouncer:
    """Holds paths until they have been quiet for ``debounce`` seconds.

    ``touch(path)`` (re)starts the path's quiet period.  ``touch(path, closed=True)`` —
    the event was a close after writing — shortens the wait to ``close_delay``
    (``min(debounce, 0.05)`` by default): a writer that closed its file is usually done.
    It is only a shortcut: any later event for the path restarts the full ``debounce``,
    so an editor that closes and reopens the file within ``close_delay`` costs one extra
    sync, never a missed one (the consumer always reads the file as it is then).
    ``max_wait`` bounds the delay for a file written continuously (a log), so it is
    still synced every ``max_wait`` seconds (:data:`KEEPS_CHANGING_EVERY` by default, or
    ``debounce`` if that is longer).

    Thread-safe; the clock is injected:

    >>> now = [0.0]
    >>> d = Debouncer(0.5, clock=lambda: now[0])
    >>> d.touch("a.txt"); d.due(0.4), d.due(0.5)
    ([], ['a.txt'])
    """

    def __init__(
        self,
        debounce: float,
        *,
        close_delay: float | None = None,
        max_wait: float | None = KEEPS_CHANGING_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.debounce = debounce
        self.close_delay = min(debounce, 0.05) if close_delay is None else close_delay
        # Never shorter than the quiet period itself: a single write still waits it out.
        self.max_wait = None if max_wait is None else max(max_wait, debounce)
        self.clock = clock
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, str]] = []  # may hold stale deadlines; checked on pop
        self._cond = threading.Condition(threading.Lock())
        self._changes = 0

    def touch(self, path: str, *, closed: bool = False, is_dir: bool = False) -> None:
        """Record an event for ``path``; ``is_dir`` stores it as ``path + "/"``."""
        if is_dir and not path.endswith(DIR_MARK):
            path += DIR_MARK
        now = self.clock()
        with self._cond:
            item = self._pending.get(path)
            deadline = now + (self.close_delay if closed else self.debounce)
            if item is None:
                item = self._pending[path] = _Pending(now, deadline)
            else:
                item.deadline = deadline
            if self.max_wait is not None:
                item.deadline = min(item.deadline, item.first + self.max_wait)
            # The waiter sleeps until the earliest deadline: wake it only when this one is
            # earlier (a burst's create and modify events then wake nobody, its closes do).
            sooner = not self._heap or item.deadline < self._heap[0][0]
            heapq.heappush(self._heap, (item.deadline, path))
            if sooner:
                self._changes += 1
                self._cond.notify_all()

    def due(self, now: float) -> list[str]:
        """Remove and return the paths whose quiet period ended by ``now``, sorted."""
        ready: list[str] = []
        with self._cond:
            while self._heap and self._heap[0][0] <= now:
                deadline, path = heapq.heappop(self._heap)
                item = self._pending.get(path)
                if item is not None and item.deadline == deadline:
                    del self._pending[path]
                    ready.append(path)
            self._compact()
        return sorted(ready)

    def next_deadline(self) -> float | None:
        """When the next path becomes ready (clock time), or None if nothing is pending."""
        with self._cond:
            while self._heap:
                deadline, path = self._heap[0]
                item = self._pending.get(path)
                if item is not None and item.deadline == deadline:
                    return deadline
                heapq.heappop(self._heap)
            return None

    def pending(self) -> int:
        """How many paths are waiting."""
        with self._cond:
            return len(self._pending)

    def flush(self) -> list[str]:
        """Remove and return every pending path now, e.g. before shutting down."""
        with self._cond:
            ready = sorted(self._pending)
            self._pending.clear()
            self._heap.clear()
            return ready

    def wait(self, timeout: float | None, *, since: int) -> int:
        """Block until a touch after change number ``since``, or ``timeout``; returns the
        current change number.  Used by :class:`DebounceThread`."""
        with self._cond:
            if self._changes == since:
                self._cond.wait(timeout)
            return self._changes

    def wake(self) -> None:
        """Wake a thread blocked in :meth:`wait`, e.g. after setting its stop event."""
        with self._cond:
            self._changes += 1
            self._cond.notify_all()

    def _compact(self) -> None:
        """Drop stale heap entries when they dominate (a hot file touched many times)."""
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._pending):
            self._heap = [(p.deadline, path) for path, p in self._pending.items()]
            heapq.heapify(self._heap)


class DebounceThread(threading.Thread):
    """Calls ``on_ready(paths)`` with the paths the debouncer releases, outside its lock.

    It sleeps until the next deadline or the next touch — no polling while paths wait.
    When nothing is pending it still wakes every ``stop_poll`` seconds to notice a bare
    ``stop.set()`` (a Condition cannot also wait on an Event); :meth:`stop` sets the event
    *and* wakes the thread at once, so the poll can be long and an idle agent quiet.  An
    exception from ``on_ready`` is logged and the thread goes on.

    >>> import queue
    >>> released: queue.SimpleQueue[list[str]] = queue.SimpleQueue()
    >>> t = DebounceThread(Debouncer(0.01), released.put, threading.Event())
    >>> t.start(); t.debouncer.touch("a.txt")
    >>> released.get(timeout=10)  # once a.txt was quiet for 0.01 s
    ['a.txt']
    >>> t.stop(); t.join()
    """

    def __init__(
        self,
        debouncer: Debouncer,
        on_ready: Callable[[list[str]], None],
        stop: threading.Event,
        *,
        stop_poll: float = 30.0,
        name: str = "watchsync-debounce",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.debouncer = debouncer
        self.on_ready = on_ready
        self.stop_event = stop
        self.stop_poll = stop_poll
        # Set while paths are out of the debouncer but not yet through on_ready, so that
        # "debouncer empty and not busy" means every released path reached the consumer.
        self.busy = threading.Event()

    def stop(self) -> None:
        """Set the stop event and wake the thread now."""
        self.stop_event.set()
        self.debouncer.wake()

    def run(self) -> None:
        debouncer = self.debouncer
        seen = -1
        while not self.stop_event.is_set():
            now = debouncer.clock()
            ready: list[str] = []
            self.busy.set()
            try:
                ready = debouncer.due(now)
                if ready:
                    self.on_ready(ready)
            except Exception:
                logger.exception("watch: on_ready failed for %d paths", len(ready))
            finally:
                self.busy.clear()
            if ready:
                continue
            deadline = debouncer.next_deadline()
            timeout = self.stop_poll if deadline is None else min(self.stop_poll, deadline - now)
            seen = debouncer.wait(max(timeout, 0.0), since=seen)
