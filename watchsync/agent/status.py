"""Room: the folder's status.  One state under a lock, the last error, and publishing them
to the state database (for ``watchsync status``) and to the metrics.

Must not touch: files, S3, threads.  Every other room reports through here.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable

from watchsync.agent.metrics import STATES, FolderMetrics
from watchsync.state.status import StatusValue
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)


class State(enum.StrEnum):
    """What a folder is doing; compares equal to its value (``State.WATCHING == "watching"``)."""

    STARTING = "starting"
    RECONCILING = "reconciling"
    WATCHING = "watching"
    PAUSED = "paused"
    ERROR = "error"
    STOPPED = "stopped"


assert {s.value for s in State} == set(STATES)

# The states in which a folder syncs (``watchsync_folder_up`` 1); paused, error and stopped
# are not.
_UP = frozenset({State.STARTING, State.RECONCILING, State.WATCHING})


class Status:
    """The state and last error of one folder, safe to use from any thread.

    >>> s = Status("docs", store=None, metrics=None)
    >>> s.set(State.WATCHING); s.state
    <State.WATCHING: 'watching'>
    """

    def __init__(
        self,
        name: str,
        *,
        store: StateStore | None,
        metrics: FolderMetrics | None,
        wall: Callable[[], float] | None = None,
        sizes: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.metrics = metrics
        self.wall = wall or time.time
        self._polling = False
        # (pending, in flight), asked at every publish.
        self.sizes = sizes
        self._lock = threading.Lock()
        self._state = State.STARTING
        self._since = self.wall()  # when the state was entered (wall clock)
        self._reason: str | None = None  # why it is paused, while it is
        self._refused = 0  # deletes refused and waiting for a decision (refused.py)
        self._last_error: str | None = None
        self._last_refusal: str | None = None
        self._error_from_s3 = False
        self._published: dict[str, StatusValue] = {}
        self._oldest = 0.0  # age of the oldest journal entry when last read

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    @property
    def last_error(self) -> str | None:
        with self._lock:
            return self._last_error

    @property
    def since(self) -> float:
        """When the current state was entered (wall clock)."""
        with self._lock:
            return self._since

    @property
    def reason(self) -> str | None:
        """Why the folder is paused, while it is."""
        with self._lock:
            return self._reason

    @property
    def polling(self) -> bool:
        """The watcher fell back to polling (it is not trusted to see every change)."""
        with self._lock:
            return self._polling

    def watching(self, *, polling: bool) -> None:
        """The watcher (re)started, through inotify or by polling."""
        with self._lock:
            self._polling = polling

    def set(
        self, state: State, *, only_from: State | None = None, reason: str | None = None
    ) -> None:
        """Enter ``state`` (only when currently ``only_from``, if given); ``reason`` says
        why a pause happens."""
        with self._lock:
            if only_from is not None and self._state is not only_from:
                return
            self._enter(state, reason)
        self._show_state()
        self.publish(force=True)

    def pause(self, why: str) -> None:
        """Paused, with a warning that says why (the why first: whoever sees the pause can
        read it)."""
        self.error(why, level=logging.WARNING, keep_state=True)
        self.set(State.PAUSED, reason=why)

    def refused(self, text: str, *, waiting: int | None = None) -> None:
        """Deletes were refused by a guard: an error, counted as such in the metrics;
        ``waiting``: how many refused deletes now wait for a decision (``ctl deletes``).
        The same refusal again (the next pass holding the same batch) is counted but not
        news: it is logged at debug level and the error stays as it was."""
        if waiting is not None:
            self.waiting(waiting)
        if self.metrics is not None:
            self.metrics.error("delete_refused")
        with self._lock:
            again = text == self._last_refusal
            self._last_refusal = text
            if again:
                self._enter(State.ERROR, None)
        if again:
            logger.debug("folder %s: still %s", self.name, text)
            self._show_state()
            self.publish(force=True)
            return
        self.error(text)

    def waiting(self, refused: int) -> None:
        """How many refused deletes wait for a decision (after one was approved or
        rejected, or a refusal was recorded)."""
        with self._lock:
            self._refused = refused
            if not refused:
                self._last_refusal = None  # settled: a later refusal is news again
        if self.metrics is not None:
            self.metrics.refused(refused)
        self.publish(force=True)

    def _enter(self, state: State, reason: str | None) -> None:
        """Change state (the caller holds the lock); the time is kept only on a change."""
        if state is not self._state:
            self._since = self.wall()
        self._state = state
        self._reason = reason if state is State.PAUSED else None

    def _show_state(self) -> None:
        """The state to the metrics: one gauge per state, up, and since when."""
        if self.metrics is not None:
            with self._lock:
                state, since = self._state, self._since
            self.metrics.state(state.value, since=since, up=state in _UP)

    def error(
        self,
        text: str,
        *,
        level: int = logging.ERROR,
        s3: bool = False,
        keep_state: bool = False,
        said: bool = True,
    ) -> None:
        """Record and log an error; at ERROR level the folder shows ``error`` until a later
        success clears it (``s3``: S3 trouble, which the next good S3 call clears).
        ``said=False``: the same error as last time, recorded but not logged again."""
        with self._lock:
            self._last_error = text
            entered = level >= logging.ERROR and not keep_state
            if entered:
                self._enter(State.ERROR, None)
                self._error_from_s3 = s3
        logger.log(
            level if said else logging.DEBUG,
            "folder %s: %s",
            self.name,
            text,
            extra={"folder": self.name, "event": "error", "error": text},
        )
        if entered:
            self._show_state()
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.status.set(last_error=text, last_error_at=self.wall())
                self.store.status.incr("errors")
        self.publish(force=True)

    def s3_ok(self) -> None:
        """S3 answered: an error that came from S3 is over (refusals and bugs stay)."""
        with self._lock:
            if self._state is not State.ERROR or not self._error_from_s3:
                return
            self._enter(State.WATCHING, None)
        self._show_state()
        self.publish(force=True)

    def publish(self, *, force: bool = False) -> None:
        """Write the status to the state database when it changed (or ``force``), and the
        same numbers to the metrics: ``watchsync status`` and the metrics read one truth.

        The journal's held-back closes are committed first, so that a path settled on an
        idle agent (no later write carries them) does not linger as pending in the file.
        """
        store = self.store
        if store is None:
            return
        with self._lock:
            status: dict[str, StatusValue] = {
                "state": self._state.value,
                "state_since": self._since,
                "state_reason": self._reason,
                "refused_deletes": self._refused,
                "polling": int(self._polling),
            }
        if self.sizes is not None:
            pending, in_flight = self.sizes()
            with contextlib.suppress(Exception):
                store.journal.flush()
            # Read only while there is work (a query a second is an idle agent's cost).
            busy = pending or in_flight or self._oldest
            oldest = (store.journal.oldest_age(self.wall()) or 0.0) if busy else 0.0
            self._oldest = oldest
            status.update(
                pending=pending,
                in_flight=in_flight,
                oldest_pending_at=round(self.wall() - oldest, 1) if oldest else None,
            )
            if self.metrics is not None:
                self.metrics.queue(pending, in_flight, oldest)
        if force or status != self._published:
            self._published = status
            with contextlib.suppress(Exception):
                store.status.set(**status)
