"""What a run tells the user: aws-format action lines on stdout, one-line problems on stderr,
and a progress bar on a terminal."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from watchsync.agent.progress import stderr_console


@dataclass
class Totals:
    """Counters of one run; ``failed`` and ``skipped`` decide the exit code."""

    failed: int = 0
    skipped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


class Reporter:
    """Thread-safe printer of the lines scripts parse, with an optional rich progress bar.

    >>> Reporter(out=sys.stdout, err=sys.stderr).line("upload: a to s3://b/a")
    upload: a to s3://b/a
    """

    def __init__(
        self,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        quiet: bool = False,
        only_show_errors: bool = False,
        progress: bool = False,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.quiet = quiet
        self.only_errors = only_show_errors
        self.totals = Totals()
        # Flush per line only for a person watching; a pipe gets block-buffered output.
        self._ttys = [s for s in (self.out, self.err) if self._interactive(s)]
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._files_total = self._files_done = 0
        if progress and not quiet:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.out),
                transient=True,
            )
            self._task = self._progress.add_task("0/0 files", total=0)

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def planned(self, nbytes: int) -> None:
        """One more transfer was planned; grows the bar's totals."""
        if self._progress is not None:
            with self._lock:
                self._files_total += 1
                total = (self._progress.tasks[0].total or 0) + nbytes
                self._progress.update(self._task, total=total, description=self._describe())

    def done(self, nbytes: int) -> None:
        """One planned transfer finished (well or not)."""
        if self._progress is not None:
            with self._lock:
                self._files_done += 1
                self._progress.update(self._task, advance=nbytes, description=self._describe())

    def _describe(self) -> str:
        return f"{self._files_done}/{self._files_total} files"

    def line(self, text: str) -> None:
        """An action line on stdout (suppressed by ``--quiet`` and ``--only-show-errors``)."""
        if self.quiet or self.only_errors:
            return
        self._print(self.out, text)

    def problem(self, text: str) -> None:
        """A one-line error or warning on stderr (suppressed only by ``--quiet``)."""
        if self.quiet:
            return
        self._print(self.err, text)

    @staticmethod
    def _interactive(stream: TextIO) -> bool:
        """Whether a person is probably reading ``stream`` live."""
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _print(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if self._progress is not None:
                self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                stream.write(text + "\n")
                if stream in self._ttys:
                    stream.flush()


class ConsoleLogHandler(logging.Handler):
    """Log records printed through :func:`stderr_console` (used when stderr is a terminal)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stderr_console().print(text, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


