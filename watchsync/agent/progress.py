"""The agent's first full pass, shown on a terminal: a live line per folder."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
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
