"""Safety rules of the agent, kept apart from its threads so they can be read and tested
alone: when deletes may run, how they are batched, and where a conflict's copy goes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


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

    def add(self, path: str) -> None:
        with self._cond:
            self._paths.add(path)
            self._deadline = self.clock() + self.grace
            self._cond.notify()

    def take(self, stop: threading.Event) -> list[str]:
        """Block until a batch is ready (or ``stop``); returns it sorted."""
        with self._cond:
            while not stop.is_set():
                if self._deadline is not None:
                    left = self._deadline - self.clock()
                    if left <= 0:
                        batch, self._paths, self._deadline = sorted(self._paths), set(), None
                        return batch
                    self._cond.wait(min(left, 0.25))
                else:
                    self._cond.wait(0.25)
            return []

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


def conflict_name(path: str, when: float, *, taken: Callable[[str], bool]) -> str:
    """Where the other version of a conflicting ``path`` is kept: beside it, named
    ``NAME.conflict-YYYYMMDD-HHMMSS.EXT`` (UTC), numbered when that is taken.

    >>> conflict_name("docs/report.txt", 0, taken=lambda p: False)
    'docs/report.conflict-19700101-000000.txt'
    >>> conflict_name(".bashrc", 0, taken=lambda p: p == ".bashrc.conflict-19700101-000000")
    '.bashrc.conflict-19700101-000000-2'
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    head, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dot-file
        stem, dot, ext = name, "", ""
    base = f"{stem}.conflict-{stamp}"
    n = 1
    while True:
        candidate = f"{base}{'-' + str(n) if n > 1 else ''}{dot}{ext}"
        full = f"{head}/{candidate}" if head else candidate
        if not taken(full):
            return full
        n += 1
