"""A minimal sd_notify(3) client: tell systemd we are ready, alive, reloading or stopping.

No dependency: one AF_UNIX datagram per message to ``$NOTIFY_SOCKET`` (a path, or an abstract
socket name written with a leading ``@``).  Outside systemd the variable is unset and every
call is a no-op returning False, so the agent calls these unconditionally.

    >>> ready(env={})
    False
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = [
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog_interval",
    "watchdog_ping",
]

logger = logging.getLogger(__name__)


def notify(message: str, *, env: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (newline-separated ``KEY=value`` lines) to ``$NOTIFY_SOCKET``.

    Returns True if it was sent, False if there is no socket or sending failed (logged: a
    service manager that cannot be told something is no reason to stop syncing).

    >>> notify("READY=1", env={"NOTIFY_SOCKET": ""})
    False
    """
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]  # abstract namespace
    elif address.startswith("/"):
        target = address
    else:  # e.g. vsock:, which only VMs' systemd uses
        logger.debug("sdnotify: unsupported NOTIFY_SOCKET %r", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode("utf-8"))
    except OSError as exc:
        logger.warning("sdnotify: cannot send to %s: %s", address, exc)
        return False
    return True


def ready(*, env: Mapping[str, str] = os.environ) -> bool:
    """Startup finished (Type=notify units become "active" only now)."""
    return notify("READY=1", env=env)


def status(text: str, *, env: Mapping[str, str] = os.environ) -> bool:
    """A one-line status shown by ``systemctl status``, e.g. ``status("idle, 3 folders")``."""
    return notify("STATUS=" + " ".join(text.splitlines()), env=env)


def watchdog_ping(*, env: Mapping[str, str] = os.environ) -> bool:
    """Tell the watchdog we are alive; send every ``watchdog_interval() / 2`` seconds."""
    return notify("WATCHDOG=1", env=env)


def reloading(*, env: Mapping[str, str] = os.environ) -> bool:
    """A reload (SIGHUP) started; send ``ready()`` when it is done."""
    monotonic_usec = time.monotonic_ns() // 1000  # CLOCK_MONOTONIC on Linux
    return notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}", env=env)


def stopping(*, env: Mapping[str, str] = os.environ) -> bool:
    """Shutdown started (the drain may take a while)."""
    return notify("STOPPING=1", env=env)


def watchdog_interval(
    env: Mapping[str, str] = os.environ, *, pid: int | None = None
) -> float | None:
    """The watchdog timeout in seconds from ``$WATCHDOG_USEC``, or None if there is none.

    None as well when ``$WATCHDOG_PID`` names another process (the variable was inherited,
    the watchdog is not ours), like sd_watchdog_enabled(3).

    >>> watchdog_interval({"WATCHDOG_USEC": "60000000"})
    60.0
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    me = os.getpid() if pid is None else pid
    if owner and (not owner.isdigit() or int(owner) != me):
        return None
    return int(usec) / 1_000_000
