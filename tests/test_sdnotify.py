"""watchsync.agent.systemd against a real AF_UNIX datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from watchsync.agent import systemd as sdnotify


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and its NOTIFY_SOCKET value (short path: sun_path is 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as tmp:
        path = str(Path(tmp) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(5)
            yield sock, path


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, written ``@name`` in NOTIFY_SOCKET."""
    name = f"watchsync-test-{os.getpid()}-{os.urandom(4).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        yield sock, "@" + name


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        (lambda env: sdnotify.notify("X=1\nY=2", env=env), b"X=1\nY=2"),
        (lambda env: sdnotify.ready(env=env), b"READY=1"),
        (lambda env: sdnotify.status("syncing 3 files", env=env), b"STATUS=syncing 3 files"),
        (lambda env: sdnotify.status("two\nlines", env=env), b"STATUS=two lines"),
        (lambda env: sdnotify.watchdog_ping(env=env), b"WATCHDOG=1"),
        (lambda env: sdnotify.stopping(env=env), b"STOPPING=1"),
    ],
)
def test_messages(
    listener: tuple[socket.socket, str],
    send: Callable[[dict[str, str]], bool],
    expected: bytes,
) -> None:
    sock, address = listener
    assert send({"NOTIFY_SOCKET": address}) is True
    assert sock.recv(4096) == expected


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    assert sdnotify.reloading(env={"NOTIFY_SOCKET": address})
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=") and int(second.split("=")[1]) > 0


def test_abstract_socket(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, address = abstract_listener
    assert sdnotify.ready(env={"NOTIFY_SOCKET": address})
    assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_no_socket_is_a_noop(env: dict[str, str]) -> None:
    assert sdnotify.ready(env=env) is False
    assert sdnotify.watchdog_ping(env=env) is False


def test_dead_socket_returns_false_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="watchsync.agent.systemd"):
        assert sdnotify.ready(env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "sdnotify: cannot send to" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": ""}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "60000000"}, 60.0),
        ({"WATCHDOG_USEC": "500000"}, 0.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 60.0),  # ours (pid=4242)
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # someone else's
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_own_pid() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(env) == 2.0
