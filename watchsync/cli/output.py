"""What a run tells the user: aws-format action lines on stdout, one-line problems on stderr,
a progress bar on a terminal, and a closing summary (a line, or one JSON object for
scripts).  Sizes and rates are in binary units, as ``--bwlimit`` counts them."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from watchsync.cli.sizes import binary_size

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass
class Totals:
    """Counters of one run, for its summary (in a dry run: what would be done);
    ``failed``, ``refused`` (deletes) and ``skipped`` decide the exit code."""

    uploaded: int = 0
    downloaded: int = 0
    deleted: int = 0
    bytes: int = 0  # of the files copied
    failed: int = 0
    skipped: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class PlanProgress:
    """The bar's numbers: the plan's transfers as far as it is known, and how far they got.

    ``planning`` stays true until the walk and the listing have ended; until then the totals
    are only a floor and the bar shows no fraction.
    """

    planning: bool = True
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0

    def describe(self) -> str:
        """The bar's label.

        >>> PlanProgress(True, 12, 0, 3, 0).describe(), PlanProgress(False, 12, 0, 3).describe()
        ('planning… 3/12+ files', '3/12 files')
        """
        if self.planning:
            return f"planning… {self.files_done}/{self.files_total}+ files"
        return f"{self.files_done}/{self.files_total} files"


class Reporter:
    """Thread-safe printer of the lines scripts parse, with an optional rich progress bar
    and a closing summary.

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
        summary: bool = False,
        json_summary: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.quiet = quiet
        self.only_errors = only_show_errors
        self.totals = Totals()
        self.plan = PlanProgress()
        self.summary_line = summary and not (quiet or only_show_errors)
        self.json_summary = json_summary
        self._clock = clock
        self._started = clock()
        # Flush per line only for a person watching; a pipe gets block-buffered output.
        self._ttys = [s for s in (self.out, self.err) if self._interactive(s)]
        self._lock = threading.Lock()
        self._closed: list[TextIO] = []  # streams whose reader went away
        self._progress: Progress | None = None
        # Lines printed above a live bar are gathered and printed a tenth of a second at a
        # time: rich redraws the bar for every print, which cost 1.7 ms a line (a 10,000-file
        # upload spent three times its own CPU on it).
        self._above: list[str] = []
        self._flushed = threading.Event()
        self._flusher: threading.Thread | None = None
        if progress and not (quiet or only_show_errors):
            from watchsync.cli.bar import new_bar  # rich's bar loads only for a terminal

            self._progress = new_bar(self.out)
            self._task = self._progress.add_task(self.plan.describe(), total=None)

    @property
    def wants_plan_totals(self) -> bool:
        """Whether a bar shows the plan's totals: the plan is then read ahead to count them."""
        return self._progress is not None

    def __enter__(self) -> Reporter:
        self._started = self._clock()
        if self._progress is not None:
            self._progress.start()
            self._flushed.clear()
            self._flusher = threading.Thread(
                target=self._flush_loop, name="watchsync-lines", daemon=True
            )
            self._flusher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._flushed.set()
            if self._flusher is not None:
                self._flusher.join()
            with self._lock:
                self._flush()
            self._progress.stop()
        self.flush()

    def flush(self) -> None:
        """Write out what is buffered; a reader that went away is no error (see _print)."""
        with self._lock:
            for stream in (self.out, self.err):
                if stream in self._closed:
                    continue
                try:
                    stream.flush()
                except BrokenPipeError:
                    self._closed.append(stream)
                    _quiet_from_now_on(stream)
                except ValueError:
                    pass  # closed by the caller: nothing to flush into

    def _flush_loop(self) -> None:
        while not self._flushed.wait(0.1):
            with self._lock:
                self._flush()

    def _flush(self) -> None:
        """Print the lines gathered above the bar, in one go (the caller holds the lock)."""
        if self._above and self._progress is not None:
            text, self._above = "\n".join(self._above), []
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    # -- the bar -----------------------------------------------------------------------------

    def planned(self, nbytes: int) -> None:
        """One more transfer of ``nbytes`` found in the plan."""
        with self._lock:
            self.plan.files_total += 1
            self.plan.bytes_total += nbytes
            self._show()

    def planned_all(self) -> None:
        """The walk and the listing have ended: the plan's totals are known."""
        with self._lock:
            self.plan.planning = False
            self._show()

    def moved(self, nbytes: int) -> None:
        """``nbytes`` more went up or came down."""
        with self._lock:
            self.plan.bytes_done += nbytes
            self._show()

    def settled(self, nbytes: int, *, needed: bool = True) -> None:
        """One planned transfer of ``nbytes`` is over (done or failed); ``needed`` false:
        it turned out to be current (the object's kept mtime said so), so the plan was
        smaller than it looked."""
        with self._lock:
            if needed:
                self.plan.files_done += 1
            else:
                self.plan.files_total -= 1
                self.plan.bytes_total -= nbytes
            self._show()

    def _show(self) -> None:
        """Bring the bar up to date (the caller holds the lock).  It counts bytes, or files
        when the plan moves none (only empty files)."""
        if self._progress is None:
            return
        plan = self.plan
        by_bytes = plan.planning or plan.bytes_total > 0
        if plan.planning:
            total: int | None = None
        else:
            total = plan.bytes_total if by_bytes else max(plan.files_total, 1)
        done = plan.bytes_done if by_bytes else plan.files_done
        self._progress.update(
            self._task,
            description=plan.describe(),
            total=total,
            completed=min(done, total) if total is not None else done,
            by_bytes=by_bytes,
        )

    # -- lines -------------------------------------------------------------------------------

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

    def summary(self, *, exit_code: int, dry_run: bool = False, error: str | None = None) -> None:
        """The run's closing summary, once the bar is gone: a line (unless silenced), and
        with ``--output json`` one JSON object, the last line on stdout.  A run ended by an
        error (``error``) has no summary line (its one-line error says it), only JSON."""
        seconds = self._clock() - self._started
        t = self.totals
        if self.json_summary:
            report = {
                "uploaded": t.uploaded,
                "downloaded": t.downloaded,
                "deleted": t.deleted,
                "bytes": t.bytes,
                "failed": t.failed,
                "skipped": t.skipped,
                "seconds": round(seconds, 3),
                "dryrun": dry_run,
                "exit_code": exit_code,
            } | ({"error": error} if error is not None else {})
            self._print(self.out, json.dumps(report))
        elif self.summary_line and error is None:
            self._print(self.out, summary_line(t, seconds, dry_run=dry_run))

    @staticmethod
    def _interactive(stream: TextIO) -> bool:
        """Whether a person is probably reading ``stream`` live."""
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _print(self, stream: TextIO, text: str) -> None:
        with self._lock:
            if stream in self._closed:
                return
            live = self._progress is not None and self._progress.live.is_started
            # Above the bar go the lines of the terminal it is drawn on; a stream sent
            # elsewhere (``2>errors.log``) gets its lines as usual.
            if live and (stream is self.out or stream in self._ttys):
                self._above.append(text)
                return
            try:
                stream.write(text + "\n")
                if stream in self._ttys:
                    stream.flush()
            except BrokenPipeError:
                # The reader went away (``| head -1``): what is left to say goes nowhere,
                # and the run goes on as if it were read.
                self._closed.append(stream)
                _quiet_from_now_on(stream)


def _quiet_from_now_on(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null, so neither a later write nor the
    interpreter's final flush of what is buffered fails again (and exits 120)."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (a test's capture)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def summary_line(t: Totals, seconds: float, *, dry_run: bool = False) -> str:
    """The human closing line: what was done, how much, how long, and what went wrong.

    >>> summary_line(Totals(uploaded=900, deleted=8, bytes=3_774_873), 10.2)
    'Completed 900 uploads, 8 deletes: 3.6 MiB in 10.2s (361.4 KiB/s)'
    >>> summary_line(Totals(downloaded=1, failed=2, skipped=1, bytes=10), 0.5)
    'Completed 1 download: 10 B in 0.5s (20 B/s); 2 failed, 1 skipped'
    >>> summary_line(Totals(), 0.81), summary_line(Totals(uploaded=3, bytes=2048), 1, dry_run=True)
    ('Completed: nothing to do (0.8s)', '(dryrun) Would do 3 uploads: 2.0 KiB')
    """
    counts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((t.uploaded, "upload"), (t.downloaded, "download"), (t.deleted, "delete"))
        if n
    ]
    problems = [f"{n} {word}" for n, word in ((t.failed, "failed"), (t.skipped, "skipped")) if n]
    tail = f"; {', '.join(problems)}" if problems else ""
    if dry_run:
        return f"(dryrun) Would do {', '.join(counts) or 'nothing'}: {binary_size(t.bytes)}{tail}"
    if not counts:
        return f"Completed: nothing to do ({seconds:.1f}s){tail}"
    rate = binary_size(t.bytes / seconds) if seconds > 0 else binary_size(t.bytes)
    return (
        f"Completed {', '.join(counts)}: {binary_size(t.bytes)} in {seconds:.1f}s ({rate}/s){tail}"
    )
