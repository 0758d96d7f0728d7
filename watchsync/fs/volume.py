"""The file system under a local folder: what it keeps and refuses, learnt by trying.

An SD card or a USB disk is most often FAT32 or exFAT: timestamps of one or two seconds,
no ctime, no hard links, names that ignore case and refuse ``:*?"<>|``.  macOS (APFS) and
Windows (NTFS) ignore case by default.  The planner needs to know (a rewrite within one
tick of the clock leaves the stat as it was; ``photo.jpg`` lands on ``Photo.JPG``), so
:func:`probe` finds out once, when a folder is first met, by writing a few files in a
directory under our own temporary-name form (:mod:`~watchsync.fs.tempfiles`: never synced,
removed after, and removed at the next start should the process die meanwhile).

:class:`FolderVolume` is the seam the rest of the agent asks: the probed
:class:`~watchsync.core.model.Volume`, hard links (with the link that fails where the
volume has none, so a test on ext4 meets FAT's EPERM), and names as the folder holds them
(an exact lookup, and the other-case twin of a name).  A test builds one with a fixed
volume instead of a probe.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     probe(Path(d)).hard_links, os.listdir(d)
(True, [])
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
import threading
from pathlib import Path

from watchsync.core.model import POSIX_VOLUME, Volume
from watchsync.fs.tempfiles import temp_name

logger = logging.getLogger(__name__)

# Characters FAT, exFAT and NTFS refuse in names (besides NUL and "/", which no POSIX
# name holds); backslash is a separator to Windows.
NAME_CHARACTERS = ':*?"<>|\\'

# A time with a digit at every scale (2020-09-13 12:26:41.234567891 UTC, an odd second): it
# comes back whole where the clock ticks in nanoseconds, and rounded to its tick elsewhere.
_PROBE_TIME_NS = 1_600_000_001_234_567_891
_STEPS = (1, 100, 1_000, 1_000_000, 10**9, 2 * 10**9)  # ns: ext4, NTFS, us, ms, exFAT, FAT

# What link() says where a volume has no hard links: EPERM (Linux on FAT and exFAT),
# ENOTSUP / EOPNOTSUPP (FUSE, some NAS), EMLINK (the link count is full), EXDEV.
NO_LINK_ERRNOS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}
)


def probe(root: Path) -> Volume:
    """What the file system at ``root`` keeps and refuses; the POSIX defaults wherever a
    question cannot be asked (the folder missing or read-only: nothing is written then)."""
    where = root / temp_name("volume-probe", secrets.token_hex(4))
    try:
        where.mkdir()
    except OSError:
        return POSIX_VOLUME
    try:
        return _probe_in(where)
    except OSError as exc:
        logger.debug("volume: probing %s failed: %s", root, exc)
        return POSIX_VOLUME
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _probe_in(where: Path) -> Volume:
    """The questions, asked in the empty directory ``where``."""
    sample = where / "Probe"
    sample.write_bytes(b"x")
    os.utime(sample, ns=(_PROBE_TIME_NS, _PROBE_TIME_NS))
    first = os.stat(sample)
    step = _step(first.st_mtime_ns)
    os.utime(sample, ns=(_PROBE_TIME_NS, _PROBE_TIME_NS))
    # A ctime worth the name moved with the utime (and is not the mtime itself, as FAT's).
    ctime = first.st_ctime_ns != first.st_mtime_ns or os.stat(sample).st_ctime_ns != (
        first.st_ctime_ns
    )
    case_sensitive = not os.path.lexists(where / "pROBE")
    try:
        os.link(sample, where / "link")
        hard_links = True
    except OSError as exc:
        if exc.errno not in NO_LINK_ERRNOS:
            raise
        hard_links = False
    refused = "".join(c for c in NAME_CHARACTERS if not _holds(where, f"n{c}n"))
    trailing = _holds(where, "dot.") and _holds(where, "space ")
    return Volume(
        mtime_step_ns=step,
        ctime=ctime,
        case_sensitive=case_sensitive,
        hard_links=hard_links,
        refused=refused,
        trailing_dot_space=trailing,
    )


def _step(kept_ns: int) -> int:
    """The clock's tick, from what it kept of :data:`_PROBE_TIME_NS`: the finest step that
    explains the difference (a FAT time rounded up to the next even second included)."""
    for step in _STEPS:
        if kept_ns % step == 0 and abs(kept_ns - _PROBE_TIME_NS) < step:
            return step
    return _STEPS[-1]


def _holds(where: Path, name: str) -> bool:
    """Whether a file named ``name`` can be made and is listed under that exact name."""
    try:
        (where / name).write_bytes(b"")
    except OSError:
        return False
    return name in os.listdir(where)


class FolderVolume:
    """The volume under one folder root, probed on :meth:`learn` (at start, and when the
    folder comes back: another card may be in the slot) or fixed (``fixed``: a test's
    simulated FAT or exFAT on any disk).  Thread-safe: the value is replaced whole.

    >>> v = FolderVolume(Path("/nonexistent"), fixed=Volume(case_sensitive=False))
    >>> v.now.case_sensitive, v.learn().case_sensitive
    (False, False)
    """

    def __init__(self, root: Path, *, fixed: Volume | None = None) -> None:
        self.root = root
        self._fixed = fixed
        self._now = fixed or POSIX_VOLUME
        self._lock = threading.Lock()
        self._told: set[str] = set()  # what was said once already (see :meth:`once`)

    @property
    def now(self) -> Volume:
        """The volume as last learnt (a POSIX disk's until then)."""
        return self._now

    def learn(self) -> Volume:
        """Probe the folder again (nothing when fixed); says in the log what sets it apart."""
        if self._fixed is not None:
            return self._fixed
        found = probe(self.root)
        with self._lock:
            changed, self._now = found != self._now, found
        if changed and found.describe():
            logger.info("volume: %s has %s", self.root, found.describe())
        return found

    def link(self, src: Path, dst: Path) -> None:
        """A second name for a file (no symlink followed); raises EPERM, as FAT does, where
        the volume has no hard links."""
        if not self._now.hard_links:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), os.fspath(src))
        os.link(src, dst, follow_symlinks=False)

    def once(self, key: str) -> bool:
        """True the first time ``key`` is asked: for what is logged once per folder."""
        with self._lock:
            if key in self._told:
                return False
            self._told.add(key)
            return True

    def spelled(self, rel: str) -> bool:
        """Whether what a lookup of ``rel`` finds (if anything) is held under that very
        spelling: on a volume that ignores case a stat of ``report.txt`` succeeds when only
        ``Report.txt`` is there, and must not be taken for it.  No I/O where case counts.

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "Dir").mkdir()
        ...     v = FolderVolume(Path(d), fixed=Volume(case_sensitive=False))
        ...     v.spelled("Dir"), v.spelled("dir"), v.spelled("Dir/new"), v.spelled("dir/new")
        (True, False, True, False)
        """
        return self._now.case_sensitive or self.twin(rel) is None

    def twin(self, rel: str) -> str | None:
        """Where the folder would put ``rel`` under another spelling, on a volume that
        ignores case: ``Photo.JPG`` for ``photo.jpg``, ``Dir/b.txt`` for ``dir/b.txt`` when
        ``Dir`` is there (whether or not ``b.txt`` is); None when every part the folder
        holds is held as spelled."""
        if self._now.case_sensitive:
            return None
        held: list[str] = []
        parts = rel.split("/")
        here = os.fspath(self.root)
        for i, part in enumerate(parts):
            try:
                names = os.listdir(here)
            except OSError:
                break
            if part not in names:
                folded = part.casefold()
                name = next((n for n in sorted(names) if n.casefold() == folded), "")
                if not name:
                    break
                return "/".join([*held, name, *parts[i + 1 :]])
            held.append(part)
            here = os.path.join(here, part)
        return None
