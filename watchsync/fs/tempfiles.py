"""Our own temporary files: the name a download is written under until it is complete, and the
clean-up of those a killed run left behind (never those of a process still running)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from watchsync.fs.platform import pid_alive

logger = logging.getLogger(__name__)


TMP_MARKER = ".watchsync-tmp-"  # our own in-progress downloads, never synced


NAME_MAX = 255  # bytes in one path segment (Linux, and what S3 clients expect of a file name)


_PID_HEX = 8  # the writer's pid, in hex, closes every temp token


# Exactly the names temp_name() makes: a dot, the (maybe shortened) name, the marker, then
# a random token and the writer's pid, both in lower-case hex.  Nothing looser: a user file
# named like ``.a.watchsync-tmp-1234`` is the user's and is synced like any other.
# Versions before the pid was added wrote the token alone: those are ours too (writer unknown).
_TEMP_RE = re.compile(r"\..+" + re.escape(TMP_MARKER) + r"[0-9a-f]{8}([0-9a-f]{8})?", re.S)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of watchsync's own partial-download files.

    >>> is_temp_name(temp_name("a.txt", "0123abcd")), is_temp_name(".a.txt.watchsync-tmp-1234")
    (True, False)
    """
    return _TEMP_RE.fullmatch(name) is not None


def temp_name(name: str, token: str, *, pid: int | None = None) -> str:
    """The temporary name a download of ``name`` is written under before its final rename:
    ``.NAME.watchsync-tmp-TOKENPID``, ``NAME`` shortened (by bytes) to fit in 255 bytes.

    ``token`` is 8 random lower-case hex digits; the writer's pid follows it in 8 more, so
    leftovers of a dead process can be told from a live one's.

    >>> temp_name("a.txt", "0123abcd", pid=255)
    '.a.txt.watchsync-tmp-0123abcd000000ff'
    """
    tail = f"{TMP_MARKER}{token}{(os.getpid() if pid is None else pid) & 0xFFFFFFFF:08x}"
    room = NAME_MAX - 1 - len(tail.encode())
    return f".{cut_utf8(name, room)}{tail}"


def cut_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a character.

    >>> cut_utf8("héllo", 2)
    'h'
    """
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    return raw[: max(limit, 0)].decode("utf-8", "ignore")


def temp_owner(name: str) -> int | None:
    """The pid that wrote temp file ``name`` (0: unknown, an older version's), or None when
    it is not one of ours."""
    m = _TEMP_RE.fullmatch(name)
    if m is None:
        return None
    return int(m.group(1), 16) if m.group(1) else 0


def remove_temp_files(root: Path, *, pids: Callable[[int], bool] | None = None) -> int:
    """Remove our partial-download files under ``root`` left by processes that are gone
    (``pids`` says which writers to remove; default: dead processes and this one, as a
    restarted agent in a container often gets its old pid).  Returns how many.

    Symlinks are not followed; errors are logged and ignored (the walk's skip covers them).
    A directory under our temporary-name form (the volume probe's) goes whole.
    """
    gone = pids or _gone_or_me
    removed = 0
    for dirpath, dirs, names in os.walk(root, onerror=lambda _exc: None):
        for name in list(dirs):
            owner = temp_owner(name)
            if owner is not None:
                dirs.remove(name)  # ours (the volume probe's): never walked into
                if gone(owner):
                    shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)
        for name in names:
            owner = temp_owner(name)
            if owner is None or not gone(owner):
                continue
            try:
                os.unlink(os.path.join(dirpath, name))
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                logger.warning("temp: cannot remove %s: %s", name, exc.strerror or exc)
    if removed:
        logger.info("temp: removed %d partial download file(s) under %s", removed, root)
    return removed


def _gone_or_me(pid: int) -> bool:
    """Whether temp files written by ``pid`` are leftovers: it is us, or no such process."""
    if pid == 0 or pid == os.getpid() & 0xFFFFFFFF:
        return True
    return not pid_alive(pid)


def guard_temp_files(root: Path) -> None:
    """For a run writing under ``root``: remove the partial downloads a killed run left
    there, and remove this run's own if it is stopped by SIGTERM."""
    if os.path.isdir(root):
        remove_temp_files(root)
    remove_temp_files_on_sigterm(root)


_TERM_ROOTS: set[str] = set()


_TERM_LOCK = threading.Lock()


def remove_temp_files_on_sigterm(root: Path) -> None:
    """On SIGTERM, remove this process's partial downloads under ``root`` before dying.

    Only installed from the main thread, and only over the default SIGTERM action (the agent
    handles SIGTERM itself and cleans up on its way out).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    with _TERM_LOCK:
        current = signal.getsignal(signal.SIGTERM)
        if current is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
        elif current is not _on_sigterm:
            return
        _TERM_ROOTS.add(os.fspath(root))


def _on_sigterm(signum: int, _frame: object) -> None:
    me = os.getpid() & 0xFFFFFFFF
    for root in list(_TERM_ROOTS):
        remove_temp_files(Path(root), pids=lambda pid: pid == me)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
