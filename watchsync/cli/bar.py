"""The progress bar and log lines of a run watched at a terminal, through rich: loaded only
there, so that a script's run (a pipe, a cron job) starts without it."""

from __future__ import annotations

import logging
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from watchsync.agent.progress import stderr_console
from watchsync.cli.sizes import binary_size


def new_bar(out: TextIO) -> Progress:
    """The bar of a run: bytes moved (of how many, once the plan is known), the rate, the
    time left and the time taken; it vanishes when the run ends."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        _Bytes(),
        _Rate(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=Console(file=out),
        transient=True,
        speed_estimate_period=10.0,
    )


class _Bytes(ProgressColumn):
    """Bytes moved, and of how many once the plan is known (binary units)."""

    def render(self, task: Task) -> Text:
        done = binary_size(task.completed)
        if task.total is None or not task.fields.get("by_bytes", True):
            return Text(done, style="progress.download")
        return Text(f"{done}/{binary_size(task.total)}", style="progress.download")


class _Rate(ProgressColumn):
    """The recent transfer rate in binary units (rich's own column counts in 1000s)."""

    def render(self, task: Task) -> Text:
        speed = task.speed if task.fields.get("by_bytes", True) else None
        return Text(f"{binary_size(speed)}/s" if speed else "", style="progress.data.speed")


class ConsoleLogHandler(logging.Handler):
    """Log records printed through :func:`stderr_console` (used when stderr is a terminal)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stderr_console().print(text, markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)
