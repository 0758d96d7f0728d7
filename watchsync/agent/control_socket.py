"""The control channel's socket: a local stream socket in the state directory, named after
the agent's pid (``ctl-PID.sock``, so agents sharing a state directory each have one), mode
0600, and answering only the agent's own user (or root).  One JSON object per line each way.

This module is the channel's one platform seam: where AF_UNIX is missing, a loopback TCP
port with a token file beside it would take its place behind :class:`ControlServer` and
:func:`ask`; the protocol and the room (control.py) stay as they are.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "ctl-", ".sock"
_MAX_LINE = 1 << 20  # longest request a client may send
_SUN_PATH = 100  # sun_path holds 108 bytes; longer paths go through the directory's fd
TIMEOUT = 10.0


def socket_path(state_dir: Path, pid: int) -> Path:
    """Where the agent with ``pid`` listens.

    >>> socket_path(Path("/var/lib/watchsync"), 42)
    PosixPath('/var/lib/watchsync/ctl-42.sock')
    """
    return state_dir / f"{_PREFIX}{pid}{_SUFFIX}"


def listening(state_dir: Path, alive: Callable[[int], bool]) -> dict[int, Path]:
    """The sockets in ``state_dir`` whose agents still run, by pid."""
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for entry in state_dir.iterdir():
            name = entry.name
            if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
                pid = name[len(_PREFIX) : -len(_SUFFIX)]
                if pid.isdigit() and alive(int(pid)):
                    found[int(pid)] = entry
    return found


def remove_stale(state_dir: Path, alive: Callable[[int], bool]) -> None:
    """Remove the sockets of agents that are gone (killed before they could)."""
    with contextlib.suppress(OSError):
        for entry in state_dir.glob(f"{_PREFIX}*{_SUFFIX}"):
            pid = entry.name[len(_PREFIX) : -len(_SUFFIX)]
            if pid.isdigit() and not alive(int(pid)):
                with contextlib.suppress(OSError):
                    entry.unlink()


@contextlib.contextmanager
def _addressable(path: Path) -> Iterator[str]:
    """``path`` as a socket address: itself, or through ``/proc/self/fd`` when it is too
    long for ``sun_path`` (a deep state directory)."""
    text = str(path)
    if len(os.fsencode(text)) <= _SUN_PATH:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def ask(path: Path, request: dict[str, Any], *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Send one request to the agent listening at ``path``; its answer.

    Raises OSError when nothing answers there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        with _addressable(path) as address:
            sock.connect(address)
        # An agent that turns the caller away answers before reading and closes: the
        # request meets a closed socket, the answer is there to read all the same.
        with contextlib.suppress(BrokenPipeError):
            sock.sendall(json.dumps(request).encode() + b"\n")
        with sock.makefile("rb") as stream:
            line = stream.readline(_MAX_LINE)
    if not line:
        raise ConnectionResetError(f"{path}: the agent closed the connection")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError(f"{path}: not an answer: {line[:200]!r}")
    return answer


Handle = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """Serves ``handle`` on a socket at ``path`` from a thread, until :meth:`close`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = socket_path(Path(tmp), os.getpid())
    ...     with ControlServer(path, lambda request: {"ok": True, "echo": request}):
    ...         ask(path, {"cmd": "status"})
    {'ok': True, 'echo': {'cmd': 'status'}}
    """

    def __init__(self, path: Path, handle: Handle, *, uids: frozenset[int] | None = None) -> None:
        self.path = path
        self.handle = handle
        # Only the agent's user (and root) may steer it, whatever the file's mode.
        self.uids = frozenset({os.getuid(), 0}) if uids is None else uids
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an agent with this pid before a reboot
        with _addressable(self.path) as address:
            server = _Server(address, _Handler, bind_and_activate=False)
            try:
                server.server_bind()
                os.chmod(self.path, 0o600)
                server.server_activate()
            except BaseException:
                server.server_close()
                raise
        server.control = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="watchsync-control"
        )
        self._thread.start()

    def close(self) -> None:
        """Stop answering, wait for the connections being served, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(TIMEOUT)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def allowed(self, sock: socket.socket) -> bool:
        """Whether the peer's user is one of :attr:`uids` (the kernel says who it is)."""
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid in self.uids


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = False
    block_on_close = True  # server_close() waits for the connections being answered
    control: ControlServer


class _Handler(socketserver.StreamRequestHandler):
    """One connection: a request per line, an answer per line."""

    timeout = TIMEOUT
    server: _Server

    def handle(self) -> None:
        control = self.server.control
        if not control.allowed(self.request):
            self._send({"ok": False, "error": "not the agent's user"})
            return
        with contextlib.suppress(OSError):  # a client gone or silent past the timeout
            while line := self.rfile.readline(_MAX_LINE):
                self._send(_answer(control, line))

    def _send(self, answer: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")
            self.wfile.flush()


def _answer(control: ControlServer, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except ValueError:
        return {"ok": False, "error": "not a JSON line"}
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object"}
    return control.handle(request)
