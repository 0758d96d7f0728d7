"""A shared token bucket that caps the total transfer rate (``--bwlimit``).

The cap is applied to what is sent and received, once per byte.  An upload through boto3
(a file of 1 MiB or more, a part of a large one) reads its body through a
:class:`UploadBody` as it sends it: the SDK is given the checksum and an unsigned payload,
so the send is its only read, and a read of bytes already read is not charged again.  A
smaller file through the native client takes its bytes from the bucket just before its
request goes out.  A download takes what it received as it reads the body.  The bucket
starts empty, so the cap holds from the first byte.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import IO


class RateLimiter:
    """Thread-safe token bucket in bytes per second; ``take(n)`` blocks until ``n`` are allowed.

    It starts empty and refills at ``rate``, holding at most ``burst`` bytes after an idle
    spell; a taker may go into debt (a request larger than the burst), which the next takers
    wait out, so the long-run rate is exactly ``rate`` however the requests are sized.

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
        # A tenth of a second's worth: what a loaded machine's late wake-ups (or a request
        # that moves no bytes) left unused is caught up on, up to this; small enough that a
        # transfer of a few seconds does not run measurably above the cap.
        self.burst = burst if burst is not None else max(rate / 10, 16 * 1024)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = 0.0
        self._stamp = clock()

    def take(self, n: int) -> None:
        """Consume ``n`` bytes of allowance, sleeping (outside the lock) while in debt."""
        if n <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)


class UploadBody:
    """The body of one upload request, read from a file: at most ``size`` bytes from where
    the file stands (the length the request announced, and the bytes its checksum covers),
    each taken from ``limiter`` the first time it is read, so the sender is paced as it
    reads and a second pass over the body (a retry's rewind, an SDK summing it) costs
    nothing more.  A file that grows while it is sent puts no byte more on the wire: one
    more would be read by the server as the start of the connection's next request.

    >>> import io
    >>> body = UploadBody(io.BytesIO(b"abcdef"), RateLimiter(1 << 30))
    >>> body.read(4), body.seek(0), body.read(), body.charged
    (b'abcd', 0, b'abcdef', 6)
    >>> grown = UploadBody(io.BytesIO(b"abc, and what was appended since"), None, size=3)
    >>> grown.read(), grown.seek(0, 2)
    (b'abc', 3)
    """

    def __init__(
        self, raw: IO[bytes], limiter: RateLimiter | None, *, size: int | None = None
    ) -> None:
        self._raw = raw
        self._limiter = limiter
        self._start = raw.tell()
        self._end = None if size is None else self._start + size
        self.charged = 0  # bytes past the start taken from the limiter so far

    def read(self, n: int | None = -1) -> bytes:
        pos = self._raw.tell()
        want = -1 if n is None else n
        if self._end is not None:
            left = max(0, self._end - pos)
            want = left if want < 0 else min(want, left)
        data = self._raw.read(want)
        fresh = pos - self._start + len(data) - self.charged
        if fresh > 0 and self._limiter is not None:
            self._limiter.take(fresh)
        self.charged += max(fresh, 0)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2 and self._end is not None:  # the end is the announced one
            return self._raw.seek(self._end + offset)
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
