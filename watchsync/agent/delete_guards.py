"""Room: deletes.  Local deletes collected into batches (so a whole ``rm -rf`` is judged as
one), the guards every delete must pass, and the refusal when they do not.

Must not touch: threads (the folder's delete thread calls :meth:`DeleteGuards.take` and
:meth:`DeleteGuards.run`), the SDK (deletes go through the executor).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from watchsync.agent.refused import RefusedDeletes
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.core.model import Action, Kind
from watchsync.core.plan import DeleteCaps, Deletes, Hold, hold_deletes
from watchsync.engine.deleter import file_exists
from watchsync.engine.executor import Executor
from watchsync.engine.policy import NOTHING_SEEN, Seen
from watchsync.fs.platform import mount_points
from watchsync.state.store import StateStore

DELETE_WINDOW = 3600.0  # --max-delete also holds for every rolling window this long (seconds)
EMPTY_DIR_MANY = 10  # an empty directory with this many synced files under it looks unmounted

Stat = Callable[[Path], os.stat_result]


class DeleteBatcher:
    """Collects local deletes and releases them as one pass once none came for ``grace``.

    A whole ``rm -rf`` therefore arrives as one batch, so ``--max-delete`` sees its real size,
    and a path that reappears within the grace period (an atomic save, a remount) is dropped.
    """

    def __init__(self, grace: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.clock = clock
        self._paths: set[str] = set()
        self._deadline: float | None = None
        self._first: float | None = None  # when the batch being collected began
        self.began: float | None = None  # when the batch last released began
        self._cond = threading.Condition()
        self._woken = False

    def add(self, path: str) -> None:
        with self._cond:
            self._paths.add(path)
            self._deadline = self.clock() + self.grace
            if self._first is None:
                self._first = self.clock()
            self._cond.notify()

    def take(self, stop: threading.Event) -> list[str]:
        """Block until a batch is ready (or ``stop`` with :meth:`wake`); returns it sorted."""
        with self._cond:
            while not stop.is_set() and not self._woken:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - self.clock()
                if left <= 0:
                    return self.ready()
                self._cond.wait(left)
            return []

    def ready(self) -> list[str]:
        """The batch, if its grace period is over (else nothing); for callers that poll."""
        with self._cond:
            if self._deadline is None or self._deadline > self.clock():
                return []
            batch, self._paths, self._deadline = sorted(self._paths), set(), None
            self.began, self._first = self._first, None
            return batch

    def wake(self) -> None:
        """Release every :meth:`take` (on stop)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._paths)


def folder_empty(root: Path, ignored: Callable[[str, bool], bool]) -> bool:
    """Whether ``root`` holds nothing but ignored names (an unmounted disk's mount point,
    a folder emptied); raises OSError when it cannot be read.

    >>> folder_empty(Path("/"), lambda name, is_dir: False)
    False
    """
    with os.scandir(root) as it:
        return not any(not ignored(e.name, e.is_dir()) for e in it)


def root_gone(root: Path, exc: OSError | None) -> str:
    """How a folder whose root cannot be looked at is said: missing, or there but not
    answering (``exc``: the error its stat met; a FUSE daemon killed under its mount point).

    >>> root_gone(Path("/media/card"), OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN)))
    'folder /media/card is unavailable (Transport endpoint is not connected)'
    >>> root_gone(Path("/media/card"), FileNotFoundError(errno.ENOENT, "No such file"))
    'folder /media/card is missing'
    """
    if exc is None or exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"folder {root} is missing"
    return f"folder {root} is unavailable ({exc.strerror or exc})"


def ancestors(paths: Iterable[str]) -> list[str]:
    """Every directory (relative, not the root) that holds one of ``paths``, sorted.

    >>> ancestors(["a/b/c.txt", "a/d.txt", "e.txt"])
    ['a', 'a/b']
    """
    dirs: set[str] = set()
    for path in paths:
        parent = path.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(dirs)


def directory_refusal(
    root: Path,
    dirs: Iterable[str],
    *,
    recorded: dict[str, str],
    synced_under: Callable[[str], int],
    ignored: Callable[[str, bool], bool],
    stat: Stat = os.stat,
    many: int = EMPTY_DIR_MANY,
) -> str | None:
    """The root's guards, for each directory the deletes are in: why they must not run, or
    None.  A directory on another device than recorded (a disk unmounted below the root), or
    empty while ``many`` or more synced files lie under it (unmounted, or never recorded),
    refuses the pass.  A directory that is gone was deleted: that is no reason to refuse.

    >>> directory_refusal(Path("/nonexistent"), ["photos"], recorded={"photos": "7"},
    ...                   synced_under=lambda d: 50, ignored=lambda n, d: False)
    """
    for rel in dirs:
        try:
            st = stat(root / rel)
        except OSError:
            continue
        dev = recorded.get(rel)
        if dev is not None and dev != str(st.st_dev):
            return f"directory {rel} is on another device than when synced (unmounted?)"
        try:
            with os.scandir(root / rel) as it:
                empty = not any(not ignored(e.name, e.is_dir()) for e in it)
        except OSError:
            continue  # not a directory (a type change), or unreadable: the walk reports it
        if empty and (n := synced_under(rel)) >= many:
            return (
                f"directory {rel} is empty while {n} files under it were synced "
                "(unmounted? or remove the directory)"
            )
    return None


class RootHold(Protocol):
    """Why the folder's root holds every delete now (agent/folder_root.py), or None."""

    def holding(self) -> str | None: ...


class DeleteGuards:
    """The delete guards of one folder, and the batches of deletes the watcher saw.

    What holds a pass's deletes is decided in :func:`~watchsync.core.plan.hold_deletes`
    (an emptied side, ``--max-delete``, ``--max-delete-percent``, the rolling window, with
    the deletes of moved content left out); this room gathers what that needs (the state's
    counts, the folder's emptiness, the window kept in the state so a restart does not
    reset it), adds the folder's own guards (a missing root, a root that is another
    directory, a directory below it on another device or emptied) and keeps every hold a
    person may release in :attr:`refused`.  ``rebuilding``: the state was lost, so no delete
    may run until a full pass has rebuilt it (:meth:`rebuilt`).
    """

    def __init__(
        self,
        *,
        root: Path,
        store: StateStore,
        scope: Scope,
        status: Status,
        caps: DeleteCaps,
        force: bool,
        grace: float,
        refused: RefusedDeletes,
        url: str = "the prefix",
        folder_root: RootHold | None = None,
        look_again: Callable[[Iterable[str]], None] = lambda _paths: None,
        batcher: DeleteBatcher | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        window: float = DELETE_WINDOW,
        stat: Stat = os.stat,
        mounts: Callable[[Path], list[str]] = mount_points,
        rebuilding: bool = False,
    ) -> None:
        self.root = root
        self.store = store
        self.scope = scope
        self.status = status
        self.caps = replace(caps, window_minutes=round(window / 60))
        self.force = force
        self.refused = refused
        self.url = url
        self.folder_root = folder_root
        self.look_again = look_again  # a refused watcher batch: the next pass judges it again
        self.batcher = batcher or DeleteBatcher(grace, clock=clock)
        self.wall = wall
        self.window = window
        self.stat = stat
        self.mounts = mounts
        self._rebuilding = threading.Event()
        if rebuilding:
            self._rebuilding.set()
        self.clock = clock
        self._added: collections.deque[tuple[float, str]] = collections.deque()
        self._added_lock = threading.Lock()
        self._pass_began: float | None = None
        self.survey()

    def added(self, path: str) -> None:
        """A new file was synced (written here or uploaded): a tree replaced within seconds
        (a checkout) deletes files and writes others, and those offset its deletes in the
        share and the rolling window for :data:`REPLACE_SPAN` seconds."""
        with self._added_lock:
            self._added.append((self.clock(), path))
            if len(self._added) > _ADDED_MAX:
                self._added.popleft()

    def began_pass(self) -> None:
        """A pass begins: files synced from now on may replace the deletes it plans."""
        self._pass_began = self.clock()

    def _recently_added(self, deleted: set[str], began: float | None) -> int:
        """New files synced since the deletes began (else in the last :data:`REPLACE_SPAN`
        seconds) that are not being deleted (files written and deleted again replace
        nothing; files synced before the deletes began are no checkout's)."""
        with self._added_lock:
            while self._added and self._added[0][0] < self.clock() - REPLACE_SPAN:
                self._added.popleft()
            since = began if began is not None else self.clock() - REPLACE_SPAN
            return sum(1 for at, path in self._added if at >= since and path not in deleted)

    def _spend_added(self, n: int, deleted: set[str]) -> None:
        """The deletes just allowed used up ``n`` of the new files (none offsets two
        batches of deletes)."""
        with self._added_lock:
            kept: collections.deque[tuple[float, str]] = collections.deque()
            for at, path in self._added:
                if n > 0 and path not in deleted:
                    n -= 1
                else:
                    kept.append((at, path))
            self._added = kept

    def survey(self) -> None:
        """Record the device of each mount point below the root not recorded yet, so that
        a disk unmounted later is told from a directory whose files were deleted."""
        known = self.store.guards.dir_devices()
        for rel in self.mounts(self.root):
            if rel in known:
                continue
            try:
                dev = str(self.stat(self.root / rel).st_dev)
            except OSError:
                continue
            self.store.guards.set_dir_device(rel, dev)

    def add(self, path: str) -> None:
        """A synced file is gone locally: delete its object with the next batch."""
        self.batcher.add(path)

    def pending(self) -> int:
        return self.batcher.pending()

    def take(self, stop: threading.Event) -> list[str]:
        return self.batcher.take(stop)

    def refusal(self, deletes: Iterable[Action], *, seen: Seen = NOTHING_SEEN) -> str | None:
        """Why a pass's ``deletes`` must not run now, or None when they may (the executor's
        :class:`~watchsync.engine.policy.DeletePolicy`); deletes allowed are counted in the
        rolling window."""
        return self._judge(list(deletes), seen, origin="pass", began=self._pass_began)

    def _judge(
        self, deletes: list[Action], seen: Seen, *, origin: str, began: float | None = None
    ) -> str | None:
        """:meth:`refusal`; a refusal a person may overrule is kept in :attr:`refused`,
        and deletes approved there pass as if forced."""
        if self._rebuilding.is_set():
            return "the state was lost (corrupt database); no deletes until a full pass rebuilt it"
        try:
            self.stat(self.root)
        except OSError as exc:
            return root_gone(self.root, exc)
        held_by_root = self.folder_root.holding() if self.folder_root is not None else None
        if held_by_root is not None:
            return held_by_root  # released by accepting the root (its own batch), not per path
        paths = [a.path for a in deletes]
        forced = self.force or (bool(paths) and self.refused.approved(paths))
        try:
            why, judged = (None, None) if forced else self._held(deletes, seen, began)
            why = why or self._directories(paths, forced)
        except OSError as exc:
            return f"folder {self.root} cannot be read: {exc.strerror or exc}"
        if why is None:
            # Counted in the rolling window net of the files that replaced them.
            net = judged.net if judged is not None else len(paths)
            now = self.wall()
            self.store.guards.log_deletes(now, net, keep_after=now - self.window)
            if judged is not None:
                self._spend_added(judged.counted, set(paths))
            self.refused.used(paths)
            return None
        if not paths:
            return why
        batch = self.refused.add(paths, why=why, origin=origin)
        return (
            f"{why}; see them with `watchsync ctl deletes`, then `watchsync ctl deletes "
            f"approve {batch.id}` runs them once or `reject {batch.id}` gives them up"
        )

    def _held(
        self, deletes: list[Action], seen: Seen, began: float | None
    ) -> tuple[str | None, Deletes]:
        """The pass's deletes as :func:`hold_deletes` judges them (why they wait, or None,
        and what it judged); the moved ones (a rename's) are looked for only when the
        counts alone would hold the pass."""
        remote = sum(1 for a in deletes if a.kind is Kind.DELETE_REMOTE)
        synced = self.store.synced.count()
        d = Deletes(
            remote=remote,
            local=len(deletes) - remote,
            synced=synced,
            listed=seen.listed,
            local_empty=synced > 0 and folder_empty(self.root, self.scope.ignored),
            added=self._recently_added({a.path for a in deletes}, began),
            recent=self.store.guards.deletes_since(self.wall() - self.window),
        )
        held = hold_deletes(d, self.caps, folder=f"folder {self.root}", url=self.url)
        if held is not None and held.hold in _COUNTED:
            moved_remote, moved_local = self._moved(deletes)
            d = replace(
                d,
                remote=d.remote - moved_remote,
                local=d.local - moved_local,
                moved=moved_remote + moved_local,
            )
            held = hold_deletes(d, self.caps, folder=f"folder {self.root}", url=self.url)
        return (held.why if held is not None else None), d

    def _moved(self, deletes: list[Action]) -> tuple[int, int]:
        """How many of ``deletes`` (in S3, here) are of content recorded at another synced
        path that stays (the same ETag): a rename's, whose bytes live on.  One read of the
        state; past ``_MOVED_MAX`` deletes none is looked for (all count)."""
        if len(deletes) > _MOVED_MAX:
            return 0, 0
        paths = {a.path for a in deletes}
        etags: dict[str, str] = {}
        chunk = [a.path for a in deletes]
        for i in range(0, len(chunk), 500):
            for path, entry in self.store.synced.get_many(chunk[i : i + 500]).items():
                if entry.etag:
                    etags[path] = entry.etag
        wanted = set(etags.values())
        kept: set[str] = set()
        for entry in self.store.synced.iter_sorted():
            if entry.etag in wanted and entry.path not in paths:
                kept.add(entry.etag)
        moved = [a for a in deletes if etags.get(a.path) in kept]
        remote = sum(1 for a in moved if a.kind is Kind.DELETE_REMOTE)
        return remote, len(moved) - remote

    def rebuilt(self) -> None:
        """A full pass rebuilt a lost state: deletes are judged as usual again."""
        self._rebuilding.clear()

    def _directories(self, paths: Iterable[str], forced: bool) -> str | None:
        """The per-directory guards (skipped when forced; the devices seen then are kept)."""
        self.survey()
        dirs = ancestors(paths)
        guards = self.store.guards
        recorded = guards.dir_devices()
        if forced:
            for rel in dirs:
                if rel in recorded:
                    with contextlib.suppress(OSError):
                        guards.set_dir_device(rel, str(self.stat(self.root / rel).st_dev))
            return None
        return directory_refusal(
            self.root,
            dirs,
            recorded=recorded,
            synced_under=self.store.synced.count_under,
            ignored=self.scope.ignored,
            stat=self.stat,
        )

    def run(self, batch: list[str], executor: Executor) -> None:
        """Delete the objects of a batch whose files are still gone and still recorded (a
        path forgotten meanwhile was deleted by a pass, or given up), if the guards allow;
        a refused batch is looked at again by the next pass."""
        synced = self.store.synced
        actions = [
            Action(Kind.DELETE_REMOTE, p, "deleted locally", synced=entry)
            for p in batch
            if not file_exists(self.root / p)
            and self.scope.included(p)
            and (entry := synced.get(p)) is not None
        ]
        gone = [a.path for a in actions]
        if not gone:
            return
        why = self._judge(actions, Seen(), origin="watch", began=self.batcher.began)
        if why:
            self.status.refused(f"delete: refused {len(gone)} deletes in S3: {why}")
            self.look_again(gone)
            return
        executor.delete(actions)


# The holds that count deletes: a rename's deletes (moved content) may lift them.
_COUNTED = frozenset({Hold.COUNT, Hold.SHARE, Hold.WINDOW})
_MOVED_MAX = 100_000  # deletes past which moved content is not looked for (one state read)
#: Seconds during which new files offset deletes: a tree replaced "within seconds" (a
#: checkout writes the new files and deletes the old ones in one go).
REPLACE_SPAN = 300.0
_ADDED_MAX = 200_000  # new files remembered for that (the oldest go first)
