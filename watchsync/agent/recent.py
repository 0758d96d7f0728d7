"""Room: what a folder did lately, for ``watchsync ctl status`` and the status page: the
last actions (uploads, downloads, deletes, copies) and the last conflicts, each with its
time.  Bounded: an agent that ran for months keeps the same few hundred entries.

Must not touch: files, S3, threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Done:
    """One thing done: ``what`` is upload, download, delete-remote, delete-local, copy or
    conflict; ``detail`` the other name (a copy's source, a conflict's kept version)."""

    at: float
    what: str
    path: str
    detail: str = ""


class Recent:
    """The last ``keep`` actions and the last ``keep`` conflicts of one folder.

    >>> r = Recent(keep=2, wall=lambda: 5.0)
    >>> r.add("upload", "a"); r.add("upload", "b"); r.add("upload", "c")
    >>> [d.path for d in r.actions()]
    ['c', 'b']
    """

    def __init__(self, *, keep: int = 50, wall: Callable[[], float] = time.time) -> None:
        self.wall = wall
        self._lock = threading.Lock()
        self._actions: deque[Done] = deque(maxlen=keep)
        self._conflicts: deque[Done] = deque(maxlen=keep)

    def add(self, what: str, path: str, detail: str = "") -> None:
        done = Done(self.wall(), what, path, detail)
        with self._lock:
            (self._conflicts if what == "conflict" else self._actions).append(done)

    def actions(self) -> list[Done]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._actions))

    def conflicts(self) -> list[Done]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._conflicts))

    def describe(self) -> dict[str, list[dict[str, object]]]:
        return {
            "recent": [asdict(d) for d in self.actions()],
            "conflicts": [asdict(d) for d in self.conflicts()],
        }
