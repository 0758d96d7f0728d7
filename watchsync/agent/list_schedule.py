"""When a pass must list the whole prefix, and when it may take S3 to hold what the state
says.  The remote twin of :class:`~.local_changes.Dirty`.  Every periodic pass lists the
prefix (other tools, a console, a lifecycle rule are heard at the reconcile interval) unless
that would spend more than :data:`LIST_BUDGET` of a core; passes in between (an overflow's
walk, a rescan) trust the change feed, which brings the other agents' changes as they
happen: as paths named (:meth:`ListSchedule.note`), which the feed's re-check looks at right
away (a pass over those paths alone).  A named path stays owed until a re-check of it
succeeded or a listing looked at it: one that failed is tried again after a growing wait,
and one that keeps failing is left to the next pass's listing of the prefix.

Must not touch: threads (thread-safe: the feed and the runner share it), S3.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# The share of one core the listings may take: at the default 300 s interval a listing
# costing more than 1.5 s of CPU (about 150,000 objects) comes less often than every pass.
LIST_BUDGET = 0.005
RECHECK_BACKOFF = (1.0, 60.0)  # first and longest wait after a failed re-check of a path
RECHECK_TRIES = 5  # failed re-checks of a path after which the prefix is listed instead


@dataclass(frozen=True)
class _Owed:
    failures: int = 0
    due: float = 0.0  # clock time the next re-check may run


class ListSchedule:
    """Whether the next pass lists the prefix (and why) or trusts the state for S3.

    A listing is due at the first pass; once ``full_interval`` seconds (the reconcile
    interval, unless ``--full-list-interval`` says otherwise) have passed since the last one;
    after anything that may have lost changes (:meth:`invalidate`: feed entries dropped
    before this agent read them, the feed replaced or gone, a notification queue that lost
    events); and for as long as the feed cannot be counted on (``untrusted`` at first, then
    what the feed says through :meth:`distrust`: no feed, one that cannot be read or was
    written by a newer agent, a server without conditional writes).
    ``full_interval`` 0 lists every pass; otherwise the interval stretches so that listings
    take at most :data:`LIST_BUDGET` of a core (a listing costing 10 s of CPU comes every
    2,000 s), and :meth:`stretched` says so.

    >>> now = [0.0]
    >>> lst = ListSchedule(full_interval=300, clock=lambda: now[0])
    >>> why = lst.take(); lst.done(why, cost=0.5); why
    'first pass'
    >>> now[0] = 100; lst.take() is None
    True
    >>> now[0] = 300; why = lst.take(); why
    'full list interval'
    >>> lst.done(why, cost=10.0); lst.stretched()
    'every 2000s instead of 300s: a listing costs 10.00s of CPU, over 0.5% of a core'
    """

    def __init__(
        self,
        *,
        full_interval: float,
        untrusted: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_interval = full_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._why: str | None = "first pass"
        self._untrusted = untrusted  # why the feed cannot be counted on, while it cannot
        self._listed_at: float | None = None  # clock time the last listing began
        self._taken_at = 0.0
        self._cost = 0.0  # CPU seconds of the last listing pass
        self._told: float | None = None  # the stretched interval last logged
        self._named: dict[str, _Owed] = {}  # paths named by the feed, not yet re-checked
        self._covered: frozenset[str] = frozenset()  # ... that the pass under way lists

    def distrust(self, why: str | None) -> None:
        """Why the feed cannot be counted on for the other agents' changes (every pass
        lists while it cannot), or None once it can."""
        with self._lock:
            self._untrusted = why

    def note(self, paths: Iterable[str]) -> None:
        """Paths changed in S3 elsewhere (named by the feed or a notification): due for a
        re-check now."""
        now = self.clock()
        with self._lock:
            for path in paths:
                self._named[path] = _Owed(self._named.get(path, _Owed()).failures, now)

    def waiting(self) -> frozenset[str]:
        """Every named path not yet re-checked, due now or later."""
        with self._lock:
            return frozenset(self._named)

    def owed(self) -> frozenset[str]:
        """The named paths due for a re-check now; they stay owed until one succeeded."""
        now = self.clock()
        with self._lock:
            return frozenset(p for p, o in self._named.items() if o.due <= now)

    def rechecked(self, paths: Iterable[str], *, ok: bool) -> None:
        """A re-check of named ``paths`` finished: done (``ok``), or failed, so each is tried
        again after a growing wait; one failing :data:`RECHECK_TRIES` times in a row is no
        longer chased path by path: the next pass lists the prefix."""
        now = self.clock()
        first, cap = RECHECK_BACKOFF
        with self._lock:
            for path in paths:
                if ok:
                    self._named.pop(path, None)
                    continue
                failures = self._named.get(path, _Owed()).failures + 1
                if failures >= RECHECK_TRIES:
                    self._named.pop(path, None)
                    self._invalidate(f"the re-check of {path} failed {failures} times")
                    continue
                self._named[path] = _Owed(failures, now + min(cap, first * 2 ** (failures - 1)))

    def invalidate(self, why: str) -> None:
        """Changes in S3 may have gone unreported: the next pass lists the prefix."""
        with self._lock:
            self._invalidate(why)

    def _invalidate(self, why: str) -> None:
        if self._why is None:
            logger.info("reconcile: next pass lists the whole prefix (%s)", why)
            self._why = why

    def take(self) -> str | None:
        """Why the next pass must list the prefix, or None when it may trust the state."""
        with self._lock:
            now = self.clock()
            why, self._why = self._why, None
            if why is None:
                why = self._untrusted
            if why is None and (
                self._listed_at is None or now - self._listed_at >= self.interval()
            ):
                why = "full list interval"
            self._taken_at = now
            # A listing looks at every path the feed named so far.
            self._covered = frozenset(self._named) if why is not None else frozenset()
            return why

    def done(self, why: str | None, *, cost: float | None = None) -> None:
        """The pass that took ``why`` finished (a listing costing ``cost`` CPU seconds,
        when ``why`` is not None; None when that cost is not the listing's alone, as in a
        pass that also walked the folder: the last known cost stands)."""
        if why is None:
            return
        with self._lock:
            self._listed_at = self._taken_at
            if cost is not None:
                self._cost = cost
            for path in self._covered:
                self._named.pop(path, None)
            self._covered = frozenset()
            stretch, every, told = self._stretch(), self.interval(), self._told
            # Said when it starts, when it moves by more than a quarter, and when it ends.
            if stretch is not None and (told is None or abs(every - told) > told / 4):
                self._told = every
                logger.info("reconcile: the prefix is listed %s", stretch)
            elif stretch is None and told is not None:
                self._told = None
                logger.info("reconcile: the prefix is listed every %.0fs again", every)

    def interval(self) -> float:
        """Seconds between listings now: the interval, stretched by the CPU budget."""
        if self.full_interval <= 0:
            return 0.0
        return max(self.full_interval, self._cost / LIST_BUDGET)

    def stretched(self) -> str | None:
        """Why listings come less often than the interval, or None when they do not."""
        with self._lock:
            return self._stretch()

    def _stretch(self) -> str | None:
        every = self.interval()
        if every <= self.full_interval:
            return None
        return (
            f"every {every:.0f}s instead of {self.full_interval:.0f}s: a listing costs "
            f"{self._cost:.2f}s of CPU, over {LIST_BUDGET:.1%} of a core"
        )

    def restore(self, why: str | None) -> None:
        """The pass that took ``why`` failed: the next one lists instead."""
        with self._lock:
            self._covered = frozenset()
            if why is not None:
                self._why = self._why or why
