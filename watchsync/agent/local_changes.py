"""Room: what the watcher reported, turned into work.  A ready file path is queued as it
is, with the other names of a file linked more than once (inotify reports a write only under
the name it went through, so the other names' objects would stay stale until the next full
walk); a directory that appeared, vanished or moved is rescanned (its files now, and the synced
files under it that are gone) because inotify reports a directory move as one event.  The
same paths are noted in :class:`Dirty`, so the next periodic pass looks at them and trusts
the state for the rest of the tree.

Must not touch: threads, S3.  Reads the folder and the state; writes only the queue.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from watchsync.agent.scope import Scope
from watchsync.agent.upload_queue import Pending
from watchsync.core.model import Item, Skipped, without_skipped
from watchsync.fs.debounce import is_dir_mark
from watchsync.fs.walk import walk
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)


class LocalChanges:
    """Hands the debouncer's ready paths to the uploader's queue."""

    def __init__(
        self,
        *,
        root: Path,
        scope: Scope,
        store: StateStore,
        pending: Pending,
        on_skip: Callable[[Skipped], None],
        dirty: Dirty | None = None,
    ) -> None:
        self.root = root
        self.scope = scope
        self.store = store
        self.pending = pending
        self.on_skip = on_skip
        self.dirty = dirty

    def ready(self, paths: list[str]) -> None:
        """Paths quiet for the debounce time: files (``a/b``) and directories (``a/``)."""
        files = [p for p in paths if not is_dir_mark(p)]
        others = self._other_names(files)
        if self.dirty is not None:
            self.dirty.note([*paths, *others])
        self.pending.add([Item(p, reported=True) for p in [*files, *others]])
        for path in paths:
            if is_dir_mark(path):
                self.rescan(path.rstrip("/"))

    def _other_names(self, paths: list[str]) -> list[str]:
        """The other names, as last synced, of the files among ``paths`` linked more than
        once: the synced paths recorded with the file's size and mtime before this change
        (the names were one file then) that are still the same inode now."""
        seen, others = set(paths), []
        for path in paths:
            try:
                st = os.lstat(self.root / path)
            except OSError:
                continue
            if st.st_nlink < 2 or not stat.S_ISREG(st.st_mode):
                continue  # the common case costs one lstat
            synced = self.store.synced.get(path)
            if synced is None:
                continue
            for cand in self.store.synced.find_by_stat(synced.size, synced.mtime_ns):
                if cand.path in seen or not self.scope.included(cand.path):
                    continue
                try:
                    same = os.path.samestat(os.lstat(self.root / cand.path), st)
                except OSError:
                    continue
                if same:
                    seen.add(cand.path)
                    others.append(cand.path)
        return others

    def rescan(self, rel: str) -> None:
        """Queue everything under directory ``rel``: what is there and what was synced.
        A file now at ``rel`` (a directory replaced by a file) is queued itself."""
        batch = self.pending.batch()
        if os.path.isdir(self.root / rel):
            walked = walk(self.root, options=self.scope.walk_options(), start=rel)
            for entry in without_skipped(walked, self.on_skip):
                batch.add(Item(entry.path))
        elif os.path.lexists(self.root / rel) and self.scope.included(rel):
            batch.add(Item(rel))
        for syn in self.store.synced.iter_sorted(prefix=rel + "/"):
            if not os.path.lexists(self.root / syn.path):
                batch.add(Item(syn.path))
        batch.flush()


@dataclass(frozen=True)
class Taken:
    """What one pass took from :class:`Dirty`: a full walk (``full`` says why), or the
    files (``paths``) and directories (``dirs``, without the trailing ``/``) to look at."""

    full: str | None
    paths: frozenset[str] = frozenset()
    dirs: frozenset[str] = frozenset()
    at: float = 0.0


class Dirty:
    """The paths the watcher reported since the last pass, and whether the watcher can be
    trusted for the rest of the tree.

    A full walk is due at the first pass, after anything that may have lost events
    (:meth:`invalidate`: an overflow, a polling fallback, an observer (re)start, a change of
    the ignore rules) and once ``full_interval`` seconds have passed since the last one (a
    safety net for what inotify never reports: writes through a mmap, a file changed under
    a followed symlink to a directory outside the watch).  ``full_interval`` 0 walks every
    pass.  Thread-safe: the debounce thread notes, the runner takes.

    >>> now = [0.0]
    >>> d = Dirty(full_interval=60, clock=lambda: now[0])
    >>> d.take().full
    'first pass'
    >>> d.done(d.take()); d.note(["a.txt", "b/"]); t = d.take()
    >>> t.full, sorted(t.paths), sorted(t.dirs)
    (None, ['a.txt'], ['b'])
    """

    def __init__(
        self, *, full_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.full_interval = full_interval
        self.clock = clock
        self._lock = threading.Lock()
        # Each file reported since the last pass, with when (a count of notes): a path the
        # uploader saw synced after its latest report needs no second look (:meth:`settled`).
        self._paths: dict[str, int] = {}
        self._seq = 0
        self._dirs: set[str] = set()
        self._full: str | None = "first pass"
        self._walked_at: float | None = None  # clock time the last full walk began

    def note(self, paths: Iterable[str]) -> None:
        """Remember reported paths: files (``a/b``) and directories (``a/``)."""
        with self._lock:
            for path in paths:
                if is_dir_mark(path):
                    rel = path.rstrip("/")
                    if not rel:
                        self._full = self._full or "the root changed"
                    self._dirs.add(rel)
                else:
                    self._seq += 1
                    self._paths[path] = self._seq

    def mark(self) -> int:
        """Where the reports stand now: pass it to :meth:`settled` after looking."""
        with self._lock:
            return self._seq

    def settled(self, paths: Iterable[str], mark: int) -> None:
        """``paths`` were found synced by a look that began at ``mark``: the next pass
        need not look at them again, unless they were reported since.  (A burst's files
        are uploaded as they come; without this, the next pass would stat them all again.)"""
        with self._lock:
            for path in paths:
                if self._paths.get(path, mark + 1) <= mark:
                    del self._paths[path]

    def invalidate(self, why: str) -> None:
        """The watcher may have missed something: the next pass walks the whole folder."""
        with self._lock:
            if self._full is None:
                logger.info("reconcile: next pass walks the whole folder (%s)", why)
                self._full = why

    def take(self) -> Taken:
        """What the next pass must look at; what it takes is cleared (see :meth:`restore`)."""
        with self._lock:
            now = self.clock()
            why = self._full
            if why is None and (
                self._walked_at is None or now - self._walked_at >= self.full_interval
            ):
                why = "full walk interval"
            if why is not None:
                taken = Taken(why, at=now)
                self._full = None
            else:
                taken = Taken(None, frozenset(self._paths), frozenset(self._dirs), now)
            self._paths.clear()
            self._dirs.clear()
            return taken

    def done(self, taken: Taken) -> None:
        """The pass that took ``taken`` finished."""
        if taken.full is not None:
            with self._lock:
                self._walked_at = taken.at

    def restore(self, taken: Taken) -> None:
        """The pass that took ``taken`` failed: give it back to the next one."""
        with self._lock:
            if taken.full is not None:
                self._full = self._full or taken.full
            self._seq += 1  # as if reported now: no earlier mark settles them
            for path in taken.paths:
                self._paths.setdefault(path, self._seq)
            self._dirs |= taken.dirs
