"""Room: one folder as the control channel steers and shows it: pause, resume, rescan, and
a snapshot of its status (the numbers ``watchsync status`` and the metrics publish, plus
what it did lately and the deletes it refused).

Must not touch: files, S3, threads (the folder's workers wait on :attr:`Steering.going`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from watchsync.agent.config import FolderConfig
from watchsync.agent.recent import Recent
from watchsync.agent.refused import RefusedDeletes
from watchsync.agent.status import State, Status
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)

PAUSED_BY_CTL = "paused by the control channel (watchsync ctl resume)"


class Steering:
    """Pause, resume and rescan one folder, and describe it.  A folder's :meth:`pause`
    clears :attr:`going`, on which its workers and its runner wait; :meth:`resume` sets it
    and wakes the runner for a pass over what changed meanwhile."""

    def __init__(
        self,
        cfg: FolderConfig,
        *,
        status: Status,
        store: StateStore,
        refused: RefusedDeletes,
        recent: Recent,
        sizes: Callable[[], tuple[int, int]],
        going: threading.Event,
        wake: Callable[[], None],
        rescan: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.status = status
        self.store = store
        self.refused = refused
        self.recent = recent
        self.sizes = sizes  # (pending, in flight)
        self.going = going  # clear while paused: the workers and the runner wait
        self.wake = wake  # the runner's next tick runs a pass
        self._rescan = rescan

    @property
    def name(self) -> str:
        return self.cfg.name

    def pause(self) -> None:
        """Stop sending and passes until :meth:`resume`; events are still collected (and
        journaled), so nothing is missed meanwhile."""
        if not self.going.is_set():
            return
        self.going.clear()
        self.status.set(State.PAUSED, reason=PAUSED_BY_CTL)
        logger.info("folder %s: paused by the control channel", self.name)

    def resume(self) -> None:
        """Undo :meth:`pause`; a pass then catches up with what changed meanwhile."""
        if self.going.is_set():
            return
        self.going.set()
        if self.status.reason == PAUSED_BY_CTL:
            self.status.set(State.WATCHING, only_from=State.PAUSED)
        logger.info("folder %s: resumed by the control channel", self.name)
        self.wake()

    def rescan(self) -> None:
        """A full pass now: the folder walked and the prefix listed."""
        self._rescan()

    def snapshot(self) -> dict[str, Any]:
        """What the control channel and the status page show of this folder."""
        status = self.status
        published = self.store.status.fields()
        pending, in_flight = self.sizes()
        return {
            "name": self.name,
            "path": str(self.cfg.path),
            "url": self.cfg.url,
            "direction": self.cfg.direction.value,
            "state": status.state.value,
            "state_since": status.since,
            "state_reason": status.reason,
            "pending": pending,
            "in_flight": in_flight,
            "last_reconcile_at": published.get("last_reconcile_at"),
            "last_error": status.last_error,
            "last_error_at": published.get("last_error_at"),
            "refused_deletes": self.refused.waiting(),
            "totals": self.store.status.counters(),
            **self.recent.describe(),
        }
