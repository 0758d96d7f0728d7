"""When a pass must list the whole prefix, and when it may take S3 to hold what the state
says.  The remote twin of :class:`~.local_changes.Dirty`: between listings, what other agents
change arrives through the change feed (applied as it comes), so a periodic pass only
looks at the paths the watcher reported and costs O(changes), not O(objects).

Must not touch: threads (thread-safe: the feed's callbacks and the runner share it), S3.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

# The share of one core the interval's listings may take: on a tree whose listing costs
# more than 9 s of CPU (about a million objects) they come less often than the interval.
LIST_BUDGET = 0.0025


class ListSchedule:
    """Whether the next pass lists the prefix (and why) or trusts the state for S3.

    A listing is due at the first pass; once ``full_interval`` seconds have passed since
    the last one (the safety net for what no feed reports: other tools, a console, a
    lifecycle rule); after anything that may have lost feed entries (:meth:`invalidate`:
    entries dropped before this agent read them, the feed replaced or gone); and for as
    long as ``untrusted`` gives a reason (no feed, one that cannot be read or was written
    by a newer agent, a server without conditional writes).  ``full_interval`` 0 lists
    every pass; otherwise the interval stretches so that listings take at most
    :data:`LIST_BUDGET` of a core (a listing costing 30 s of CPU comes every 12,000 s).

    >>> now = [0.0]
    >>> lst = ListSchedule(full_interval=3600, clock=lambda: now[0])
    >>> why = lst.take(); lst.done(why); why
    'first pass'
    >>> now[0] = 300; lst.take() is None
    True
    >>> now[0] = 3600; lst.take()
    'full list interval'
    """

    def __init__(
        self,
        *,
        full_interval: float,
        untrusted: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.full_interval = full_interval
        self.untrusted = untrusted
        self.clock = clock
        self._lock = threading.Lock()
        self._why: str | None = "first pass"
        self._listed_at: float | None = None  # clock time the last listing began
        self._taken_at = 0.0
        self._cost = 0.0  # CPU seconds of the last listing pass

    def invalidate(self, why: str) -> None:
        """Changes in S3 may have gone unreported: the next pass lists the prefix."""
        with self._lock:
            if self._why is None:
                logger.info("reconcile: next pass lists the whole prefix (%s)", why)
                self._why = why

    def take(self) -> str | None:
        """Why the next pass must list the prefix, or None when it may trust the state."""
        with self._lock:
            now = self.clock()
            why, self._why = self._why, None
            if why is None:
                why = self.untrusted()
            if why is None and (
                self._listed_at is None or now - self._listed_at >= self._interval()
            ):
                why = "full list interval"
            self._taken_at = now
            return why

    def done(self, why: str | None, *, cost: float | None = None) -> None:
        """The pass that took ``why`` finished (a listing costing ``cost`` CPU seconds,
        when ``why`` is not None; None when that cost is not the listing's alone, as in a
        pass that also walked the folder: the last known cost stands)."""
        if why is not None:
            with self._lock:
                self._listed_at = self._taken_at
                if cost is not None:
                    self._cost = cost

    def _interval(self) -> float:
        if self.full_interval <= 0:
            return 0.0
        return max(self.full_interval, self._cost / LIST_BUDGET)

    def restore(self, why: str | None) -> None:
        """The pass that took ``why`` failed: the next one lists instead."""
        if why is not None:
            with self._lock:
                self._why = self._why or why
