"""A shared token bucket that caps the total transfer rate (``--bwlimit``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import IO


class RateLimiter:
    """Thread-safe token bucket in bytes per second; ``take(n)`` blocks until ``n`` are allowed.

    >>> RateLimiter(1024 * 1024).take(10)
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate / 4, 64 * 1024)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def take(self, n: int) -> None:
        """Consume ``n`` bytes of allowance, sleeping (outside the lock) while in debt."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)


class ThrottledReader:
    """A read-only file wrapper whose reads are paced by a :class:`RateLimiter`."""

    def __init__(self, raw: IO[bytes], limiter: RateLimiter) -> None:
        self._raw = raw
        self._limiter = limiter

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if data:
            self._limiter.take(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


_shared: dict[float, RateLimiter] = {}
_shared_lock = threading.Lock()


def shared_limiter(rate: float) -> RateLimiter:
    """The process-wide limiter for ``rate``: folders sharing a ``bwlimit`` share its budget,
    so the setting caps the total rather than each folder."""
    with _shared_lock:
        limiter = _shared.get(rate)
        if limiter is None:
            limiter = _shared[rate] = RateLimiter(rate)
        return limiter
