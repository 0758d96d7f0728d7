"""A loopback TCP proxy whose network can be cut, restored and slowed down by tests.

Example::

    with NetProxy("127.0.0.1", server.port) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint, ...)
        proxy.cut()      # open connections die, new ones are reset at once
        proxy.restore()  # traffic flows again
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_JOIN_TIMEOUT = 5.0
# SO_LINGER on with 0 s: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


class NetProxy:
    """Forward ``127.0.0.1:<free port>`` to ``target_host:target_port``, one thread per link.

    All threads share one stop Event; ``close()`` (or leaving the ``with``) joins them.

    Example::

        with NetProxy("127.0.0.1", 8333) as proxy:
            requests_go_to(proxy.endpoint)
            proxy.delay(0.5)
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cut = False
        self._delay = 0.0
        self._links: dict[int, _Link] = {}
        self._ids = itertools.count(1)
        self._accepted = 0
        self._sent = 0  # bytes forwarded from clients to the target
        self._first_byte: float | None = None  # time.monotonic() of the first byte forwarded
        self._last_sent: float | None = None  # ... of the last byte forwarded to the target
        self._first_put: float | None = None  # ... of the first HTTP PUT sent to the target
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: use as an S3 endpoint_url."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        """Whether the network is currently cut."""
        with self._lock:
            return self._cut

    @property
    def accepted(self) -> int:
        """How many connections were accepted so far, refused ones included."""
        with self._lock:
            return self._accepted

    @property
    def sent(self) -> int:
        """How many bytes were forwarded from clients to the target so far."""
        with self._lock:
            return self._sent

    @property
    def first_byte_at(self) -> float | None:
        """When (``time.monotonic()``) the first byte went through, either way; None
        before any did.  A client's start-up (building its SDK objects) ends here."""
        with self._lock:
            return self._first_byte

    @property
    def first_put_at(self) -> float | None:
        """When (``time.monotonic()``) a client first sent an HTTP ``PUT`` (an upload's
        first body: a listing, a HEAD or a multipart upload's creation come before it and
        carry none); None before any did."""
        with self._lock:
            return self._first_put

    @property
    def last_sent_at(self) -> float | None:
        """When (``time.monotonic()``) the last byte went from a client to the target; None
        before any did.  An upload's bytes have all gone by then (what follows is the
        server's work and its answer)."""
        with self._lock:
            return self._last_sent

    @property
    def open_links(self) -> int:
        """How many proxied connections are open right now."""
        with self._lock:
            return len(self._links)

    def start(self) -> Self:
        """Listen on a free loopback port and start accepting."""
        if self._listener is not None:
            raise RuntimeError("NetProxy already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"netproxy-accept-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def cut(self) -> None:
        """Close every open connection and reset new ones until ``restore()``.

        Returns once the open connections are really closed.
        """
        with self._lock:
            self._cut = True
            links = list(self._links.values())
        self._abort(links)
        logger.debug("netproxy %d: cut, %d connections closed", self.port, len(links))

    def restore(self) -> None:
        """Let new connections through again."""
        with self._lock:
            self._cut = False
        logger.debug("netproxy %d: restored", self.port)

    def delay(self, seconds: float) -> None:
        """Hold every forwarded chunk, in both directions, for ``seconds`` (0 to stop)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        with self._lock:
            self._delay = seconds

    def close(self) -> None:
        """Stop accepting, close every connection and join all threads."""
        self._stop.set()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            # accept() does not wake when the socket closes under it; a connection does.
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            acceptor.join(_JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            links = list(self._links.values())
        self._abort(links)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _abort(self, links: list[_Link]) -> None:
        """Shut the links down (wakes their threads) and wait until they are gone."""
        for link in links:
            link.shutdown()
        for link in links:
            link.thread.join(_JOIN_TIMEOUT)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                if self._stop.is_set():
                    return
                raise
            if self._stop.is_set():
                client.close()  # the wake-up connection from close()
                return
            with self._lock:
                self._accepted += 1
                refuse = self._cut
            if refuse:
                _reset(client)
                continue
            self._open_link(client)

    def _open_link(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout)
        except OSError as exc:
            logger.debug("netproxy %d: upstream %s unreachable: %s", self.port, self.target, exc)
            _reset(client)
            return
        upstream.settimeout(None)
        link_id = next(self._ids)
        thread = threading.Thread(
            target=self._pump,
            args=(link_id,),
            name=f"netproxy-link-{self.port}-{link_id}",
            daemon=True,  # a proxy a test forgot to close must not hang interpreter exit
        )
        link = _Link(client, upstream, thread)
        with self._lock:
            # Checked again under the lock cut() holds, so no link slips past a cut; and
            # started under it, so a cut never finds (and joins) a thread not yet started.
            refuse = self._cut or self._stop.is_set()
            if not refuse:
                self._links[link_id] = link
                thread.start()
        if refuse:
            upstream.close()
            _reset(client)

    def _pump(self, link_id: int) -> None:
        """Copy bytes both ways until both sides have closed or the link is shut down."""
        with self._lock:
            link = self._links[link_id]
        peer = {link.client: link.upstream, link.upstream: link.client}
        try:
            with selectors.DefaultSelector() as selector:
                for sock in peer:
                    selector.register(sock, selectors.EVENT_READ, data=sock)
                while selector.get_map() and not self._stop.is_set():
                    for key, _ in selector.select():
                        source: socket.socket = key.data
                        upstream = source is link.client
                        if not self._forward(source, peer[source], upstream=upstream):
                            selector.unregister(source)
        except OSError as exc:
            logger.debug("netproxy %d: link %d ended: %s", self.port, link_id, exc)
        finally:
            with self._lock:
                del self._links[link_id]
            link.client.close()
            link.upstream.close()

    def _forward(self, source: socket.socket, target: socket.socket, *, upstream: bool) -> bool:
        """Move one chunk; False once ``source`` reached EOF (passed on as a half-close)."""
        data = source.recv(_CHUNK)
        if not data:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            return False
        with self._lock:
            delay = self._delay
        if delay and self._stop.wait(delay):
            raise ConnectionAbortedError("proxy closed")
        with self._lock:
            cut = self._cut
        if cut:  # data that was in flight when the network went down is lost
            raise ConnectionAbortedError("network cut")
        with self._lock:
            if self._first_byte is None:
                self._first_byte = time.monotonic()
        target.sendall(data)
        if upstream:
            with self._lock:
                self._sent += len(data)
                self._last_sent = time.monotonic()
                if self._first_put is None and data.startswith(b"PUT "):
                    self._first_put = self._last_sent
        return True


def _reset(sock: socket.socket) -> None:
    """Close with an RST, so the peer fails at once instead of reading a clean EOF."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class _Link:
    """One proxied connection: both sockets and the thread pumping between them."""

    def __init__(self, client: socket.socket, upstream: socket.socket, thread: threading.Thread):
        self.client = client
        self.upstream = upstream
        self.thread = thread

    def shutdown(self) -> None:
        """Wake the pump thread: both sockets read EOF and the peers see the link die."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
