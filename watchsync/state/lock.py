"""The exclusive lock of a folder pair: a file beside its database, locked by the one agent
that serves the pair, holding that agent's pid for the message a second one prints.

filelock's descriptor lock: ``flock`` on POSIX, ``LockFileEx`` on byte 0 on Windows; the
OS drops it with the descriptor, so when the process dies too (even on ``kill -9``) and a
crash never leaves the pair locked.  The pid follows byte 0, where Windows lets another
process read it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import filelock

from watchsync.core.errors import LockedError

logger = logging.getLogger(__name__)


class PairLock:
    """The lock file at ``path``; taken with :meth:`acquire`, dropped with :meth:`release`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first, second = PairLock(Path(d) / "pair.lock"), PairLock(Path(d) / "pair.lock")
    ...     first.acquire()
    ...     try:
    ...         second.acquire()
    ...     except LockedError as exc:
    ...         print("refused:", "another watchsync agent" in str(exc), first.held, second.held)
    ...     first.release()
    refused: True True False
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`LockedError` naming the holder's pid."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            taken = filelock.lock_descriptor(fd, blocking=False)
        except BaseException:
            os.close(fd)
            raise
        if not taken:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockedError(
                f"another watchsync agent (pid {holder or 'unknown'}) already serves "
                f"this folder pair (lock {self.path})"
            )
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f" {os.getpid()}\n".encode())
        self._fd = fd
        logger.debug("state: locked %s", self.path)

    def release(self) -> None:
        """Drop the lock; idempotent.  The pid left in the file is harmless: only the
        ``flock`` counts."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    """The pid the lock holder wrote into the lock file, if readable (from byte 1 where
    Windows keeps byte 0 locked)."""
    for start in (0, 1):
        try:
            os.lseek(fd, start, os.SEEK_SET)
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text else None
        except ValueError:
            return None
        except OSError:
            continue
    return None
