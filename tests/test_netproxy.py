"""NetProxy against a tiny echo server and against the real SeaweedFS server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from netproxy import NetProxy
from s3server import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

IO_TIMEOUT = 5.0


class EchoServer:
    """Echoes every byte back; half-closes when the client does. One thread per connection."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="echo-accept")

    def __enter__(self) -> EchoServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # shutdown() wakes the blocked accept() on Linux; close() alone does not.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._acceptor.join(IO_TIMEOUT)
        for thread in self._threads:
            thread.join(IO_TIMEOUT)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._echo, args=(conn,), name="echo-conn")
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(IO_TIMEOUT)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                return


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[NetProxy]:
    with NetProxy("127.0.0.1", echo.port) as proxy:
        yield proxy


def connect(proxy: NetProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT)


def roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def is_dead(sock: socket.socket) -> bool:
    """Whether the peer closed or reset the connection (a recv that returns no data)."""
    try:
        sock.sendall(b"ping")
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def is_refused(proxy: NetProxy) -> bool:
    """Whether a new connection dies at once; the reset may even beat connect() returning."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return True
    with sock:
        return is_dead(sock)


def test_forwards_both_ways(proxy: NetProxy) -> None:
    payload = bytes(range(256)) * 1024
    with connect(proxy) as sock:
        assert roundtrip(sock, payload) == payload
    assert proxy.endpoint == f"http://127.0.0.1:{proxy.port}"


def test_passes_half_close_on(proxy: NetProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(1024):
            received += chunk
    assert received == b"last words"


def test_cut_closes_open_connections(proxy: NetProxy) -> None:
    with connect(proxy) as sock:
        assert roundtrip(sock, b"hi") == b"hi"
        proxy.cut()
        assert proxy.open_links == 0
        assert is_dead(sock)


def test_cut_refuses_new_connections_until_restore(proxy: NetProxy) -> None:
    proxy.cut()
    assert proxy.is_cut
    assert is_refused(proxy)
    assert proxy.accepted == 1
    proxy.restore()
    assert not proxy.is_cut
    with connect(proxy) as sock:
        assert roundtrip(sock, b"back") == b"back"


def test_delay_holds_each_chunk(proxy: NetProxy) -> None:
    proxy.delay(0.2)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert roundtrip(sock, b"slow") == b"slow"
        elapsed = time.monotonic() - started
    assert elapsed >= 0.4  # held once on the way there, once on the way back
    with pytest.raises(ValueError):
        proxy.delay(-1)


def test_close_ends_links_and_threads(echo: EchoServer) -> None:
    proxy = NetProxy("127.0.0.1", echo.port).start()
    sock = connect(proxy)
    try:
        assert roundtrip(sock, b"x") == b"x"
        proxy.close()
        assert is_dead(sock)
    finally:
        sock.close()
    # This proxy's threads (netproxy-accept-PORT, netproxy-link-PORT-N), not other tests'.
    mine = (f"netproxy-accept-{proxy.port}", f"netproxy-link-{proxy.port}-")
    assert not [t for t in threading.enumerate() if t.name.startswith(mine)]


def test_unreachable_target_resets_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead_port = placeholder.getsockname()[1]
    with NetProxy("127.0.0.1", dead_port, connect_timeout=1) as proxy:
        assert is_refused(proxy)


# Fail fast and exactly once, so a cut shows up as one quick error.
FAST = Config(
    connect_timeout=1,
    read_timeout=2,
    retries={"mode": "standard", "max_attempts": 1},
)


@pytest.fixture
def s3_proxy(s3server: SeaweedServer) -> Iterator[NetProxy]:
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        yield proxy


@pytest.fixture
def proxied_s3(s3server: SeaweedServer, s3_proxy: NetProxy) -> Iterator[S3Client]:
    client = s3server.client(config=FAST, endpoint_url=s3_proxy.endpoint)
    yield client
    client.close()


def test_s3_through_proxy_fails_fast_while_cut(
    s3: S3Client, bucket: str, s3_proxy: NetProxy, proxied_s3: S3Client
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert proxied_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"

    s3_proxy.cut()
    started = time.monotonic()
    with pytest.raises(BotoCoreError):
        proxied_s3.head_object(Bucket=bucket, Key="k")
    assert time.monotonic() - started < 3

    s3_proxy.restore()
    assert proxied_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
