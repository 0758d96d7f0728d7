"""Room: deletes.  Local deletes collected into batches (so a whole ``rm -rf`` is judged as
one), the guards every delete must pass, and the refusal when they do not.

Must not touch: threads (the folder's delete thread calls :meth:`Deletes.take` and
:meth:`Deletes.run`), the SDK (deletes go through the executor).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..execute import Executor
from ..model import Action, Kind
from ..state import StateStore
from .scope import Scope
from .status import Status


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
        return (
            f"{count} deletes exceed --max-delete {max_delete}; "
            "pass --force-delete once to allow them"
        )
    return None


class Deletes:
    """The delete guards of one folder, and the batches of deletes the watcher saw."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.store = store
        self.scope = scope
        self.status = status
        self.max_delete = max_delete
        self.force = force
        self.batcher = DeleteBatcher(grace, clock=clock)

    def add(self, path: str) -> None:
        """A synced file is gone locally: delete its object with the next batch."""
        self.batcher.add(path)

    def pending(self) -> int:
        return self.batcher.pending()

    def take(self, stop: threading.Event) -> list[str]:
        return self.batcher.take(stop)

    def refusal(self, count: int) -> str | None:
        """Why ``count`` deletes must not run now, or None when they may (the executor's
        :class:`~watchsync.execute.DeletePolicy`)."""
        try:
            return delete_refusal(
                self.root,
                count=count,
                synced=self.store.count,
                root_dev=self.store.meta().get("root_dev", ""),
                ignored=self.scope.ignored,
                max_delete=self.max_delete,
                force=self.force,
            )
        except OSError as exc:
            return f"folder {self.root} cannot be read: {exc.strerror or exc}"

    def run(self, batch: list[str], executor: Executor) -> None:
        """Delete the objects of a batch whose files are still gone, if the guards allow."""
        gone = [p for p in batch if not os.path.lexists(self.root / p) and self.scope.included(p)]
        if not gone:
            return
        why = self.refusal(len(gone))
        if why:
            self.status.error(f"delete: refused {len(gone)} deletes in S3: {why}")
            return
        executor.delete(
            Action(Kind.DELETE_REMOTE, p, "deleted locally", synced=self.store.get(p)) for p in gone
        )
