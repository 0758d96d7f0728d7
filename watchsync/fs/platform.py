"""What differs between operating systems, in one place, each with a portable default.

Everything here works on Linux, macOS and Windows; Linux only refines some of it:

* the mount points below a folder: every OS compares each directory's ``st_dev`` with its
  parent's; Linux reads ``/proc/self/mountinfo`` instead (cheaper, and it sees bind mounts);
* the stop and reload signals: SIGTERM and SIGINT everywhere, SIGBREAK (Ctrl+Break) on
  Windows, SIGHUP reloads on POSIX; a reload *request file* in the state directory
  (:func:`request_reload`, what ``watchsync reload`` writes) works everywhere;
* reading a file at an offset from several threads: ``os.pread`` on POSIX, a seek and a
  read under a lock elsewhere;
* whether a process is alive: ``os.kill(pid, 0)`` on POSIX (on Windows ``os.kill`` would
  terminate it), the process table on Windows;
* the watcher: inotify on Linux, watchdog's native observer elsewhere (see
  :mod:`watchsync.fs.watcher`, which asks :func:`linux`).

The state lock is :mod:`filelock`'s descriptor lock on every OS (see
:mod:`watchsync.state.lock`); nothing in watchsync imports ``fcntl``.

``WATCHSYNC_PORTABLE=1`` forces the portable defaults on Linux too, so that the paths macOS
and Windows take run in this project's tests: watchdog's generic observer, no ``/proc``, no
SIGHUP, no ``pread``.

>>> isinstance(linux(), bool)
True
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

PORTABLE_ENV = "WATCHSYNC_PORTABLE"
RELOAD_REQUEST = "reload.request"  # in the state directory: the agent re-reads its config


def portable() -> bool:
    """Whether the portable defaults are forced (``WATCHSYNC_PORTABLE=1``); read only here.

    >>> portable() == (os.environ.get("WATCHSYNC_PORTABLE") == "1")
    True
    """
    return os.environ.get(PORTABLE_ENV, "") == "1"


def linux() -> bool:
    """Whether the Linux refinements apply: on Linux, unless the portable defaults are forced."""
    return sys.platform.startswith("linux") and not portable()


# -- signals -------------------------------------------------------------------------------


def stop_signals() -> list[signal.Signals]:
    """The signals that stop the agent: SIGTERM, SIGINT and, on Windows, SIGBREAK (the
    Ctrl+Break a service wrapper or console sends).

    >>> signal.SIGTERM in stop_signals() and signal.SIGINT in stop_signals()
    True
    """
    found = [signal.SIGTERM, signal.SIGINT]
    brk = getattr(signal, "SIGBREAK", None)
    if brk is not None:
        found.append(brk)
    return found


def reload_signal() -> signal.Signals | None:
    """SIGHUP where there is one (POSIX, portable defaults not forced), else None: then only
    the reload request file (:func:`request_reload`) reloads."""
    hup: signal.Signals | None = getattr(signal, "SIGHUP", None)
    return None if portable() else hup


def request_reload(state_dir: Path) -> Path:
    """Ask the agent whose state lives in ``state_dir`` to re-read its configuration (the
    agent looks every second); returns the request file's path.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = request_reload(Path(d))
    ...     take_reload_request(Path(d)), take_reload_request(Path(d))
    (True, False)
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / RELOAD_REQUEST
    path.write_bytes(b"")
    return path


def take_reload_request(state_dir: Path) -> bool:
    """Whether a reload was requested since the last call (the request is consumed)."""
    try:
        (state_dir / RELOAD_REQUEST).unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # unreadable state directory: the folders report that themselves
    return True


# -- mounts --------------------------------------------------------------------------------


def mount_points(root: Path) -> list[str]:
    """The mount points strictly below ``root``, relative to it and sorted.

    >>> mount_points(Path("/nonexistent"))
    []
    """
    if linux():
        found = _mountinfo_points(root)
        if found is not None:
            return found
    return device_changes(root)


def device_changes(root: Path) -> list[str]:
    """The directories below ``root`` on another device than their parent (every OS has
    ``st_dev``); symlinks are not followed, unreadable directories are passed over.

    >>> device_changes(Path("/nonexistent"))
    []
    """
    found: list[str] = []
    try:
        top = os.stat(root)
    except OSError:
        return found
    stack: list[tuple[str, str, int]] = [(os.fspath(root), "", top.st_dev)]
    while stack:
        path, rel, dev = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = [e for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for entry in entries:
            try:
                child = entry.stat(follow_symlinks=False).st_dev
            except OSError:
                continue
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if child != dev:
                found.append(sub)
            stack.append((entry.path, sub, child))
    return sorted(found)


def _mountinfo_points(root: Path) -> list[str] | None:
    """The mount points below ``root`` from /proc/self/mountinfo, or None when unreadable."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    base = os.path.realpath(root)
    found = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        # mountinfo escapes space, tab, newline and backslash as octal: \040 etc.
        point = fields[4].encode("latin-1", "surrogateescape").decode("unicode_escape")
        rel = os.path.relpath(point, base)
        if rel != "." and not rel.startswith(".."):
            found.append(rel)
    return sorted(set(found))


def inotify_watch_limit() -> int | None:
    """Linux's ``fs.inotify.max_user_watches``, or None where there is no such limit."""
    if not linux():
        return None
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return None


# -- files and processes -------------------------------------------------------------------

_SEEK_LOCK = threading.Lock()


def read_at(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes of ``fd`` at ``offset``, safe to call from several threads at
    once (pread where there is one; a seek and a read under one lock elsewhere).

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f:
    ...     _ = f.write(b"0123456789"); f.flush()
    ...     read_at(f.fileno(), 3, 4)
    b'456'
    """
    if hasattr(os, "pread") and not portable():
        return os.pread(fd, length, offset)
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        chunks = []
        while length > 0:
            chunk = os.read(fd, length)
            if not chunk:
                break
            chunks.append(chunk)
            length -= len(chunk)
        return b"".join(chunks)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists, or may (one we may not ask about, or a number no
    pid can be); on Windows asked of the process table, as there ``os.kill`` terminates the
    process whatever the signal.

    >>> pid_alive(os.getpid())
    True
    """
    if sys.platform == "win32":
        import psutil

        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    except OSError:
        return False
    return True
