"""Room: deletes.  Local deletes collected into batches (so a whole ``rm -rf`` is judged as
one), the guards every delete must pass, and the refusal when they do not.

Must not touch: threads (the folder's delete thread calls :meth:`DeleteGuards.take` and
:meth:`DeleteGuards.run`), the SDK (deletes go through the executor).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchsync.agent.refused import RefusedDeletes
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.core.model import Action, Kind
from watchsync.engine.deleter import file_exists
from watchsync.engine.executor import Executor
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
        self._cond = threading.Condition()
        self._woken = False

    def add(self, path: str) -> None:
        with self._cond:
            self._paths.add(path)
            self._deadline = self.clock() + self.grace
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
            return batch

    def wake(self) -> None:
        """Release every :meth:`take` (on stop)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._paths)


def delete_refusal(
    root: Path,
    *,
    count: int,
    synced: Callable[[], int],
    root_dev: str,
    ignored: Callable[[str, bool], bool],
    max_delete: int,
    force: bool,
) -> str | None:
    """Why ``count`` deletes must not run now, or None when they may.

    No delete at all when the folder is missing, is on another device than when first synced
    (an unmounted disk shows the empty mount point), or is empty while files were synced;
    and never more than ``max_delete`` in one pass unless forced.

    >>> delete_refusal(Path("/nonexistent"), count=1, synced=lambda: 0, root_dev="",
    ...                ignored=lambda p, d: False, max_delete=10, force=False)
    'folder /nonexistent is missing'
    """
    try:
        st = os.stat(root)
    except OSError:
        return f"folder {root} is missing"
    if root_dev and root_dev != str(st.st_dev):
        return f"folder {root} is on another device than when first synced (unmounted?)"
    with os.scandir(root) as it:
        empty = not any(not ignored(e.name, e.is_dir()) for e in it)
    if empty and synced() > 0:
        return f"folder {root} is empty while {synced()} files were synced"
    if count > max_delete and not force:
        return f"{count} deletes exceed --max-delete {max_delete}"
    return None


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


class DeleteGuards:
    """The delete guards of one folder, and the batches of deletes the watcher saw.

    ``--max-delete`` holds for one pass and for every ``window`` seconds (kept in the state,
    so a restart does not reset it): ``rm -rf`` in slices adds up.  ``rebuilding``: the
    state was lost, so no delete may run until a full pass has rebuilt it (:meth:`rebuilt`).
    """

    def __init__(
        self,
        *,
        root: Path,
        store: StateStore,
        scope: Scope,
        status: Status,
        max_delete: int,
        force: bool,
        grace: float,
        refused: RefusedDeletes,
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
        self.max_delete = max_delete
        self.force = force
        self.refused = refused
        self.batcher = batcher or DeleteBatcher(grace, clock=clock)
        self.wall = wall
        self.window = window
        self.stat = stat
        self.mounts = mounts
        self._rebuilding = threading.Event()
        if rebuilding:
            self._rebuilding.set()
        self.survey()

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

    def refusal(self, count: int, paths: Iterable[str] = ()) -> str | None:
        """Why ``count`` deletes (of ``paths``) must not run now, or None when they may (the
        executor's :class:`~watchsync.engine.policy.DeletePolicy`, for a pass's deletes);
        deletes allowed are counted in the rolling window."""
        return self._judge(count, paths, origin="pass")

    def _judge(self, count: int, paths: Iterable[str], *, origin: str) -> str | None:
        """:meth:`refusal`; a refusal a person may overrule is kept in :attr:`refused`,
        and deletes approved there pass as if forced."""
        if self._rebuilding.is_set():
            return "the state was lost (corrupt database); no deletes until a full pass rebuilt it"
        listed = list(paths)
        forced = self.force or (bool(listed) and self.refused.approved(listed))

        def guards(force: bool) -> str | None:
            return delete_refusal(
                self.root,
                count=count,
                synced=self.store.synced.count,
                root_dev=self.store.status.meta().get("root_dev", ""),
                ignored=self.scope.ignored,
                max_delete=self.max_delete,
                force=force,
            )

        try:
            # The folder's own guards (missing, another device, emptied): nothing overrules them.
            own = guards(True)
            why = own or (None if forced else guards(False)) or self._directories(listed, forced)
        except OSError as exc:
            return f"folder {self.root} cannot be read: {exc.strerror or exc}"
        if why is None:
            why = self._windowed(count, forced)
        if why is None:
            self.refused.used(listed)
            return None
        if own is not None or not listed:
            return why
        batch = self.refused.add(listed, why=why, origin=origin)
        return (
            f"{why}; see them with `watchsync ctl deletes`, then `watchsync ctl deletes "
            f"approve {batch.id}` runs them once or `reject {batch.id}` gives them up"
        )

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

    def _windowed(self, count: int, forced: bool) -> str | None:
        """``--max-delete`` over the rolling window; an allowed pass is counted in it."""
        now = self.wall()
        recent = self.store.guards.deletes_since(now - self.window)
        if not forced and recent + count > self.max_delete:
            return (
                f"{count} deletes after {recent} in the last {self.window / 60:.0f} min exceed "
                f"--max-delete {self.max_delete}"
            )
        self.store.guards.log_deletes(now, count, keep_after=now - self.window)
        return None

    def run(self, batch: list[str], executor: Executor) -> None:
        """Delete the objects of a batch whose files are still gone, if the guards allow."""
        gone = [p for p in batch if not file_exists(self.root / p) and self.scope.included(p)]
        if not gone:
            return
        why = self._judge(len(gone), gone, origin="watch")
        if why:
            self.status.refused(f"delete: refused {len(gone)} deletes in S3: {why}")
            return
        synced = self.store.synced
        executor.delete(
            Action(Kind.DELETE_REMOTE, p, "deleted locally", synced=synced.get(p)) for p in gone
        )
