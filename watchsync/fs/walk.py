"""Streaming, sorted walk of a local directory tree.

Entries come out in the order S3 lists keys (code point order of the ``/``-joined relative
path), which is not the order of a plain recursive walk: ``a-b`` sorts before ``a/x`` because
``-`` < ``/``.  Each directory is listed once and sorted with ``/`` appended to subdirectory
names, so only one directory's names are ever held at a time per level.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchsync.core.filters import is_reserved
from watchsync.core.model import LocalEntry, SkipKind, Skipped
from watchsync.fs.tempfiles import is_temp_name


@dataclass(frozen=True)
class WalkOptions:
    """How to walk: follow symlinks like ``aws s3 sync`` does unless told not to."""

    follow_symlinks: bool = True
    prune: Callable[[str], bool] | None = None  # relative dir path -> skip whole subtree
    # Skip files this user may not read (aws does, and counts them as skipped, not failed);
    # one access() per file, so only ``sync`` asks.
    check_readable: bool = False


#: What a stat or listing raises for a path that is not there: deleted, or below what is
#: now a file ("Not a directory": a directory replaced by a file is as gone as deleted).
GONE = (FileNotFoundError, NotADirectoryError)


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

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("a/x", "a-b", "a0"):
    ...         (Path(d) / name).parent.mkdir(exist_ok=True)
    ...         _ = (Path(d) / name).write_text("x")
    ...     print([e.path for e in walk(Path(d)) if isinstance(e, LocalEntry)])
    ['a-b', 'a/x', 'a0']
    """
    base = os.fspath(root)
    top = os.path.join(base, start) if start else base
    try:
        st = os.stat(top) if options.follow_symlinks else os.lstat(top)
    except GONE:
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
    except GONE:
        return
    except OSError as exc:
        yield Skipped(
            rel or ".", f"directory is not readable: {exc.strerror or exc}", SkipKind.UNREADABLE
        )
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
            except GONE:
                continue
            except OSError as exc:
                yield _stat_failed(relpath, exc)
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
        got = _file_entry(entry, relpath, options.follow_symlinks, options.check_readable)
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


def _file_entry(
    entry: os.DirEntry[str], relpath: str, follow: bool, check_readable: bool
) -> LocalEntry | Skipped | None:
    """Stat one non-directory entry; only regular files are synced."""
    try:
        st = entry.stat(follow_symlinks=follow)
    except GONE:
        if entry.is_symlink():
            return Skipped(relpath, "broken symlink", SkipKind.MISSING)
        return None  # deleted mid-walk
    except OSError as exc:
        return _stat_failed(relpath, exc)
    if not stat.S_ISREG(st.st_mode):
        return Skipped(relpath, f"not a regular file ({_kind(st.st_mode)})", SkipKind.SPECIAL)
    if check_readable and not os.access(entry.path, os.R_OK, effective_ids=_EFFECTIVE):
        return Skipped(relpath, "file is not readable", SkipKind.UNREADABLE)
    return entry_of(relpath, st)


# Whether access() can check as the effective user (who opens the file), as on Linux.
_EFFECTIVE = os.access in os.supports_effective_ids


def _stat_failed(relpath: str, exc: OSError) -> Skipped:
    """The skip of a path whose stat failed (a symlink loop, no permission, ...)."""
    if exc.errno == errno.ELOOP:
        return Skipped(relpath, "symlink loop", SkipKind.MISSING)
    kind = SkipKind.UNREADABLE if exc.errno == errno.EACCES else SkipKind.OTHER
    return Skipped(relpath, f"cannot stat: {exc.strerror or exc}", kind)


def stat_entry(
    root: Path,
    relpath: str,
    *,
    follow_symlinks: bool = True,
    spelled: Callable[[str], bool] | None = None,
) -> LocalEntry | None:
    """Stat one path under ``root``: a regular file's entry, or None when it is not one
    (or, ``spelled`` saying so, is held under another spelling: a volume ignoring case)."""
    try:
        # A string join: pathlib's parsing costs more than the stat itself, per file.
        st = os.stat(os.path.join(root, relpath), follow_symlinks=follow_symlinks)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or (spelled is not None and not spelled(relpath)):
        return None
    return entry_of(relpath, st)


def entry_of(relpath: str, st: os.stat_result) -> LocalEntry:
    """The entry a stat of ``relpath`` describes (its identity included)."""
    return LocalEntry(relpath, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


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
