"""Whether the S3 endpoint answers: attempts that found no connection, counted across every
thread of a run, so a ``sync`` gives up within one round of retries and the agent pauses
instead of failing file after file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from watchsync.core.errors import Failure, FailureKind
from watchsync.s3.failures import EndpointGone, classify
from watchsync.s3.retry import RetryPolicy

__all__ = ["EndpointGone", "Reachability", "UntilAnswered"]

T = TypeVar("T")

_UNREACHABLE = FailureKind.UNREACHABLE


class Reachability:
    """Counts consecutive attempts that found no connection, across every thread of a run.

    With ``give_up_after`` set, that many in a row over at least ``min_seconds`` (so a
    burst of parallel attempts during a short blip does not count) mean the endpoint is
    plainly gone: the failing attempt and every later one raise :class:`EndpointGone` (not
    retried), so a ``sync`` stops within one round of retries instead of failing file after
    file.  None (the agent): only counted; the agent pauses and probes by itself.

    >>> r = Reachability(2, what="http://x", min_seconds=0)
    >>> r.failed(classify(ConnectionRefusedError())); r.gone is None
    True
    """

    def __init__(
        self,
        give_up_after: int | None,
        *,
        what: str,
        min_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.give_up_after = give_up_after
        self.what = what
        self.min_seconds = min_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._since = 0.0
        self.gone: EndpointGone | None = None
        self.answered = False  # any answer at all, even an S3 error

    def check(self) -> None:
        """Raise at once once the endpoint was declared gone."""
        if self.gone is not None:
            raise self.gone

    def ok(self) -> None:
        """An attempt got an answer."""
        with self._lock:
            self._in_a_row = 0
            self.answered = True

    def failed(self, failure: Failure) -> None:
        """Count ``failure`` when nothing answered; raise once there were too many."""
        if isinstance(failure, EndpointGone):
            return  # counted when it was declared
        if failure.kind is not _UNREACHABLE:
            if failure.kind is not FailureKind.LOCAL:
                self.answered = True  # S3 said no, or something answered on its behalf
            return
        with self._lock:
            now = self.clock()
            if self._in_a_row == 0:
                self._since = now
            self._in_a_row += 1
            if (
                self.give_up_after is None
                or self._in_a_row < self.give_up_after
                or now - self._since < self.min_seconds
            ):
                return
            if self.gone is None:
                self.gone = EndpointGone(
                    f"S3 endpoint {self.what} stopped answering ({self._in_a_row} attempts "
                    f"in a row failed: {failure.text}); stopping the run",
                    failure,
                )
            gone = self.gone
        raise gone from failure

    def hold(self, why: str) -> None:
        """Declare the endpoint gone now (the agent's pause): attempts in flight or queued
        fail at once instead of each retrying on its own, until :meth:`reset`."""
        with self._lock:
            if self.gone is None:
                self.gone = EndpointGone(why)

    def reset(self) -> None:
        """The endpoint answers again: count afresh and let attempts through."""
        with self._lock:
            self.gone = None
            self._in_a_row = 0
            self.answered = True


@dataclass(frozen=True)
class UntilAnswered(RetryPolicy):
    """The retry policy, except for connection failures while the endpoint never answered."""

    watch: Reachability | None = None

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        """``fn`` once while nothing has answered yet; then the usual retries."""
        if self.watch is None or self.watch.answered:
            return super().call(fn, what=what)
        try:
            result = fn()
        except Exception as exc:
            if classify(exc).kind is _UNREACHABLE:
                raise
            return super().call(fn, what=what)
        self.watch.ok()
        return result
