"""How far a reconcile pass has got: its numbers (:class:`PassProgress`, which status
reads), an INFO line every few seconds while a pass lasts (:class:`PassWatch`), and on a
terminal a live line per folder during the agent's first pass (:class:`ReconcileProgress`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from watchsync.core.model import Action, LocalEntry

logger = logging.getLogger(__name__)

E = TypeVar("E")

# (folder, files scanned, actions planned, done): the live display's callback.
Show = Callable[[str, int, int, bool], None]


@dataclass
class PassProgress:
    """How far one reconcile pass has got: files looked at, objects listed, actions planned
    (by kind), since ``started`` (wall-clock seconds).

    >>> p = PassProgress("docs", 0.0, scanned=1200, listed=900, planned=3, kinds={"upload": 3})
    >>> p.describe(10.0)
    '1200 local files scanned (120/s), 900 objects listed, 3 actions planned (upload 3)'
    """

    folder: str
    started: float
    scanned: int = 0
    listed: int = 0
    planned: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    finished: bool = False

    def describe(self, elapsed: float) -> str:
        """The numbers as the INFO line says them, ``elapsed`` seconds into the pass."""
        rate = f" ({self.scanned / elapsed:.0f}/s)" if elapsed > 0 and self.scanned else ""
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.kinds.items()))
        return (
            f"{self.scanned} local files scanned{rate}, {self.listed} objects listed, "
            f"{self.planned} actions planned" + (f" ({kinds})" if kinds else "")
        )

    def as_dict(self) -> dict[str, Any]:
        """The numbers as status shows them (plain JSON values)."""
        return {
            "started": self.started,
            "scanned": self.scanned,
            "listed": self.listed,
            "planned": self.planned,
            "kinds": dict(self.kinds),
            "finished": self.finished,
        }


class PassWatch:
    """Room: counts one pass's progress as its streams go past (all on the runner's
    thread), says where it is at INFO every ``every`` seconds once the pass has lasted that
    long (a large first pass takes minutes; a quick one stays quiet), and feeds a live
    display (``show``) five times a second.

    >>> clock = iter(range(0, 100, 3)).__next__
    >>> watch = PassWatch("docs", every=5.0, clock=clock, wall=lambda: 0.0)
    >>> files = [LocalEntry(f"f{i}", 1, 0) for i in range(4)]
    >>> [e.path for e in watch.local(files)]
    ['f0', 'f1', 'f2', 'f3']
    >>> watch.numbers.scanned, watch.logged
    (4, 2)
    """

    def __init__(
        self,
        folder: str,
        *,
        every: float = 5.0,
        show: Show | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.numbers = PassProgress(folder, wall())
        self.every = every
        self.show = show
        self.clock = clock
        self._t0 = clock()
        self._next_log = self._t0 + every
        self._next_show = self._t0
        self.logged = 0  # INFO lines said so far

    def snapshot(self) -> PassProgress:
        """A copy of the numbers, for a reader on another thread."""
        return replace(self.numbers, kinds=dict(self.numbers.kinds))

    def local(self, stream: Iterable[E]) -> Iterator[E]:
        """The local side, each file counted as it goes past."""
        for entry in stream:
            if isinstance(entry, LocalEntry):
                self.numbers.scanned += 1
                self._tick()
            yield entry

    def listed(self, count: int) -> None:
        """``count`` more objects listed (a page, counted as it is read)."""
        self.numbers.listed += count
        self._tick()

    def plan(self, stream: Iterable[Action]) -> Iterator[Action]:
        """The plan, each action counted by kind as it goes past."""
        kinds = self.numbers.kinds
        for action in stream:
            self.numbers.planned += 1
            kinds[action.kind.value] = kinds.get(action.kind.value, 0) + 1
            self._tick()
            yield action

    def finish(self) -> None:
        """The pass is over: the display ends (its last line stays in the log)."""
        self.numbers.finished = True
        if self.show is not None:
            self.show(self.numbers.folder, self.numbers.scanned, self.numbers.planned, True)

    def _tick(self) -> None:
        now = self.clock()
        if self.show is not None and now >= self._next_show:
            self._next_show = now + 0.2
            self.show(self.numbers.folder, self.numbers.scanned, self.numbers.planned, False)
        if now >= self._next_log:
            self._next_log = now + self.every
            self.logged += 1
            logger.info(
                "reconcile: %s under way for %.0fs: %s",
                self.numbers.folder,
                now - self._t0,
                self.numbers.describe(now - self._t0),
                extra={"folder": self.numbers.folder, "event": "reconcile-progress"},
            )


class ReconcileProgress:
    """A live line per folder during the agent's first full reconcile, on a terminal.

    Thread-safe: each folder's runner calls :meth:`update`; the display ends when every
    folder it showed is done.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}
        self._open = 0

    def update(self, folder: str, scanned: int, planned: int, done: bool) -> None:
        with self._lock:
            if self._progress is None:
                if done:
                    return
                self._progress = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=stderr_console(),
                    transient=True,
                )
                self._progress.start()
            task = self._tasks.get(folder)
            if task is None:
                task = self._tasks[folder] = self._progress.add_task("", total=None)
                self._open += 1
            text = f"first reconcile {folder}: {scanned} local files scanned, {planned} actions"
            self._progress.update(task, description=text, refresh=True)
            if done:
                self._progress.remove_task(task)
                self._open -= 1
                if self._open == 0:
                    self._progress.stop()
                    self._progress = None
                    self._tasks.clear()


_console: Console | None = None


_console_lock = threading.Lock()


def stderr_console() -> Console:
    """The one rich console on stderr: log lines printed through it stay above a live
    progress display instead of tearing it."""
    global _console
    with _console_lock:
        if _console is None:
            _console = Console(stderr=True)
        return _console
