"""Streaming, sorted walk of a local directory tree.

Entries come out in the order S3 lists keys (code point order of the ``/``-joined relative
path), which is not the order of a plain recursive walk: ``a-b`` sorts before ``a/x`` because
``-`` < ``/``.  Each directory is listed once and sorted with ``/`` appended to subdirectory
names, so only one directory's names are ever held at a time per level.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .filters import is_reserved
from .model import LocalEntry, Skipped

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
    """
    gone = pids or _gone_or_me
    removed = 0
    for dirpath, _dirs, names in os.walk(root, onerror=lambda _exc: None):
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


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


@dataclass(frozen=True)
class WalkOptions:
    """How to walk: follow symlinks like ``aws s3 sync`` does unless told not to."""

    follow_symlinks: bool = True
    prune: Callable[[str], bool] | None = None  # relative dir path -> skip whole subtree


def walk(
    root: Path,
    *,
    options: WalkOptions = WalkOptions(),
    scandir: Callable[[str], Iterator[os.DirEntry[str]]] = os.scandir,
    start: str = "",
) -> Iterator[LocalEntry | Skipped]:
    """Yield every regular file under ``root`` (or under ``root/start``) in S3 key order.

    Paths that cannot be synced are yielded as :class:`Skipped` with a reason; a file or
    directory that vanishes mid-walk is silently left out.

    >>> [e.path for e in walk(Path("tree")) if isinstance(e, LocalEntry)]  # doctest: +SKIP
    ['a-b', 'a/x', 'a0']
    """
    base = os.fspath(root)
    top = os.path.join(base, start) if start else base
    try:
        st = os.stat(top) if options.follow_symlinks else os.lstat(top)
    except FileNotFoundError:
        return
    ancestors: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    yield from _walk_dir(top, start.strip("/"), ancestors, options, scandir)


def _walk_dir(
    abspath: str,
    rel: str,
    ancestors: set[tuple[int, int]],
    options: WalkOptions,
    scandir: Callable[[str], Iterator[os.DirEntry[str]]],
) -> Iterator[LocalEntry | Skipped]:
    """Walk one directory, recursing into subdirectories in sorted position."""
    try:
        it = scandir(abspath)
        try:
            children = _sorted_children(it, options.follow_symlinks)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
    except FileNotFoundError:
        return
    except OSError as exc:
        yield Skipped(rel or ".", f"directory is not readable: {exc.strerror or exc}")
        return
    prefix = rel + "/" if rel else ""
    for entry, is_dir in children:
        name = entry.name
        relpath = prefix + name
        if not _utf8(name):
            yield Skipped(_printable(relpath), "name is not valid UTF-8")
            continue
        if is_temp_name(name):
            continue
        if is_dir:
            if is_reserved(relpath) or (options.prune is not None and options.prune(relpath)):
                continue
            try:
                st = entry.stat(follow_symlinks=options.follow_symlinks)
            except FileNotFoundError:
                continue
            except OSError as exc:
                yield Skipped(relpath, f"cannot stat: {exc.strerror or exc}")
                continue
            ident = (st.st_dev, st.st_ino)
            if ident in ancestors:
                yield Skipped(relpath, "symlink loop")
                continue
            ancestors.add(ident)
            try:
                yield from _walk_dir(entry.path, relpath, ancestors, options, scandir)
            finally:
                ancestors.discard(ident)
            continue
        got = _file_entry(entry, relpath, options.follow_symlinks)
        if got is not None:
            yield got


def _sorted_children(
    it: Iterator[os.DirEntry[str]], follow: bool
) -> list[tuple[os.DirEntry[str], bool]]:
    """List a directory sorted the way its paths sort as S3 keys."""
    out: list[tuple[str, os.DirEntry[str], bool]] = []
    for entry in it:
        if not follow and entry.is_symlink():
            continue  # aws --no-follow-symlinks leaves links out entirely
        try:
            is_dir = entry.is_dir(follow_symlinks=follow)
        except OSError:
            is_dir = False
        out.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
    out.sort(key=lambda t: t[0])
    return [(e, d) for _, e, d in out]


def _file_entry(entry: os.DirEntry[str], relpath: str, follow: bool) -> LocalEntry | Skipped | None:
    """Stat one non-directory entry; only regular files are synced."""
    try:
        st = entry.stat(follow_symlinks=follow)
    except FileNotFoundError:
        if entry.is_symlink():
            return Skipped(relpath, "broken symlink")
        return None  # deleted mid-walk
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skipped(relpath, "symlink loop")
        return Skipped(relpath, f"cannot stat: {exc.strerror or exc}")
    if not stat.S_ISREG(st.st_mode):
        return Skipped(relpath, f"not a regular file ({_kind(st.st_mode)})")
    return LocalEntry(relpath, st.st_size, st.st_mtime_ns, st.st_ino)


def stat_entry(root: Path, relpath: str, *, follow_symlinks: bool = True) -> LocalEntry | None:
    """Stat one path under ``root``: a regular file's entry, or None when it is not one."""
    try:
        # A string join: pathlib's parsing costs more than the stat itself, per file.
        st = os.stat(os.path.join(root, relpath), follow_symlinks=follow_symlinks)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return LocalEntry(relpath, st.st_size, st.st_mtime_ns, st.st_ino)


def _kind(mode: int) -> str:
    """A short human name for a non-regular file type."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def _utf8(name: str) -> bool:
    """Whether a name decoded by the OS (with surrogateescape) is valid UTF-8."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(path: str) -> str:
    """Show an undecodable name with its bad bytes escaped."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
