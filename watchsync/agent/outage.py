"""Room: whether the S3 endpoint answers at all.

When a request finds no connection (refused, reset, timed out), the folder pauses instead of
letting every upload worker retry its own path: :meth:`Outage.down` holds every request
(those in flight fail at once), upload and delete workers wait, reconciles and the change
feed wait, and the runner sends one cheap probe at a time (:meth:`Outage.tick`), backing
off from 1 s to 30 s.  When the endpoint answers again, requests flow, the queued paths go
out and the runner starts a full reconcile.  One log line when it goes, one when it is back;
meanwhile the status shows ``paused`` with the reason.

Decides on a :class:`~watchsync.core.errors.Failure`'s kind alone (``UNREACHABLE``: no
answer at all); the adapters classified it.

Must not touch: the SDK (the probe, hold and release are injected), threads (the runner
calls :meth:`Outage.tick`; workers wait on :attr:`Outage.up`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeGuard

from watchsync.agent.status import State, Status
from watchsync.core.errors import Failure, FailureKind

logger = logging.getLogger(__name__)

PROBE_BACKOFF = (1.0, 30.0)  # first and longest wait between probes


def no_answer(exc: BaseException) -> TypeGuard[Failure]:
    """Whether ``exc`` means the endpoint did not answer at all.

    >>> no_answer(Failure(FailureKind.UNREACHABLE, "EndpointConnectionError", "refused"))
    True
    >>> no_answer(Failure(FailureKind.REFUSED, "AccessDenied", "AccessDenied"))
    False
    """
    return isinstance(exc, Failure) and exc.kind is FailureKind.UNREACHABLE


class Outage:
    """The folder's view of the endpoint: up, or paused and probing.

    >>> now = [0.0]
    >>> status = Status("docs", store=None, metrics=None)
    >>> o = Outage("docs", status=status, probe=lambda: None, clock=lambda: now[0])
    >>> o.down(Failure(FailureKind.UNREACHABLE, "EndpointConnectionError", "refused"))
    >>> o.is_down, status.state
    (True, <State.PAUSED: 'paused'>)
    >>> o.tick()  # the first probe is due a second later
    False
    >>> now[0] = 1.0; o.tick(), o.is_down, o.probes
    (True, False, 1)
    """

    def __init__(
        self,
        name: str,
        *,
        status: Status,
        probe: Callable[[], None],
        hold: Callable[[str], None] = lambda _why: None,
        release: Callable[[], None] = lambda: None,
        endpoint: str = "",
        clock: Callable[[], float] = time.monotonic,
        backoff: tuple[float, float] = PROBE_BACKOFF,
    ) -> None:
        self.name = name
        self.status = status
        self.probe = probe
        self.hold = hold
        self.release = release
        self.endpoint = endpoint
        self.clock = clock
        self.backoff = backoff
        self.up = threading.Event()  # set while the endpoint answers
        self.up.set()
        self.probes = 0  # probes sent, for tests and status
        self._lock = threading.Lock()
        self._since = 0.0
        self._next_probe = 0.0
        self._delay = backoff[0]

    @property
    def is_down(self) -> bool:
        return not self.up.is_set()

    @property
    def next_probe(self) -> float | None:
        """Clock time the next probe is due while the endpoint does not answer; None while
        it answers."""
        with self._lock:
            return None if self.up.is_set() else self._next_probe

    def down(self, failure: Failure) -> None:
        """A request found no endpoint: pause (logged once per outage)."""
        with self._lock:
            if not self.up.is_set():
                return
            self.up.clear()
            self._since = self.clock()
            self._delay = self.backoff[0]
            self._next_probe = self._since + self._delay
        why = failure.text
        where = f" {self.endpoint}" if self.endpoint else ""
        text = f"S3 unreachable: endpoint{where} does not answer ({why}); paused, probing"
        self.hold(text)
        self.status.pause(text)

    def tick(self) -> bool:
        """Probe when one is due; True when the endpoint has just come back (the caller then
        reconciles).  Call from one thread (the runner)."""
        with self._lock:
            if self.up.is_set() or self.clock() < self._next_probe:
                return False
        self.probes += 1
        try:
            self.probe()
        except Exception as exc:
            if not no_answer(exc):
                raise
            with self._lock:
                self._delay = min(self.backoff[1], self._delay * 2)
                self._next_probe = self.clock() + self._delay
            return False
        with self._lock:
            lasted = self.clock() - self._since
        self.release()
        self.up.set()
        self.status.set(State.WATCHING, only_from=State.PAUSED)
        logger.warning(
            "folder %s: S3 endpoint answers again after %.0fs; resuming",
            self.name,
            lasted,
            extra={"folder": self.name, "event": "s3-back"},
        )
        return True
