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

from watchsync.agent.metrics import FolderMetrics
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
    ) -> None:
        self.name = name
        self.store = store
        self.metrics = metrics
        self.wall = wall or time.time
        self.polling = False
        # (pending, in flight), asked at every publish; set once the queue exists.
        self.sizes: Callable[[], tuple[int, int]] | None = None
        self._lock = threading.Lock()
        self._state = State.STARTING
        self._last_error: str | None = None
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

    def set(self, state: State, *, only_from: State | None = None) -> None:
        """Enter ``state`` (only when currently ``only_from``, if given)."""
        with self._lock:
            if only_from is not None and self._state is not only_from:
                return
            self._state = state
        self.publish(force=True)

    def pause(self, why: str) -> None:
        """Paused, with a warning that says why (the why first: whoever sees the pause can
        read it)."""
        self.error(why, level=logging.WARNING, keep_state=True)
        self.set(State.PAUSED)

    def error(
        self,
        text: str,
        *,
        level: int = logging.ERROR,
        s3: bool = False,
        keep_state: bool = False,
    ) -> None:
        """Record and log an error; at ERROR level the folder shows ``error`` until a later
        success clears it (``s3``: S3 trouble, which the next good S3 call clears)."""
        with self._lock:
            self._last_error = text
            if level >= logging.ERROR and not keep_state:
                self._state = State.ERROR
                self._error_from_s3 = s3
        logger.log(
            level,
            "folder %s: %s",
            self.name,
            text,
            extra={"folder": self.name, "event": "error", "error": text},
        )
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
            self._state = State.WATCHING
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
        status: dict[str, StatusValue] = {"state": self.state.value, "polling": int(self.polling)}
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
