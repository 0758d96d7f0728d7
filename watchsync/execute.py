"""Carrying out a ``watchsync sync`` plan: transfers in a bounded pool, then deletes.

Deletes wait until every transfer is done, and are dropped entirely when anything failed or
was skipped, so a half-read source can never turn into a mass delete (rclone's
``--delete-after``).  Dry-run prints the same plan instead of executing it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .errors import FileError
from .model import Action, Kind
from .remote import S3Url, describe
from .report import Reporter
from .spool import Spool
from .transfer import Transfer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Display:
    """How paths are printed: the local root as the user typed it, and the S3 location."""

    local_root: str
    where: S3Url

    def local(self, path: str) -> str:
        return os.path.join(self.local_root, path) if self.local_root else path

    def remote(self, path: str) -> str:
        return self.where.url(path)

    def describe(self, action: Action) -> str:
        """The aws-format line of an action, e.g. ``upload: dir/a.txt to s3://b/p/a.txt``."""
        path = action.path
        if action.kind is Kind.UPLOAD:
            return f"upload: {self.local(path)} to {self.remote(path)}"
        if action.kind is Kind.DOWNLOAD:
            return f"download: {self.remote(path)} to {self.local(path)}"
        if action.kind is Kind.DELETE_REMOTE:
            return f"delete: {self.remote(path)}"
        if action.kind is Kind.DELETE_LOCAL:
            return f"delete: {self.local(path)}"
        return f"{action.kind.value}: {path}"


class SyncExecutor:
    """Runs a sync plan with at most ``max_concurrency`` transfers in flight.

    >>> SyncExecutor(transfer, display=d, reporter=r).run(actions)  # doctest: +SKIP
    """

    def __init__(
        self,
        transfer: Transfer | None,
        *,
        display: Display,
        reporter: Reporter,
        max_concurrency: int = 16,
        dry_run: bool = False,
        stop: threading.Event | None = None,
    ) -> None:
        if transfer is None and not dry_run:
            raise ValueError("a transfer is needed unless dry_run")
        self.transfer = transfer
        self.display = display
        self.reporter = reporter
        self.max_concurrency = max_concurrency
        self.dry_run = dry_run
        self.stop = stop or threading.Event()
        self._slots = threading.BoundedSemaphore(max_concurrency * 2)

    def run(self, actions: Iterable[Action]) -> None:
        """Execute every action; per-file failures are reported and counted, not raised."""
        totals = self.reporter.totals
        with (
            Spool() as deletes,
            ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="watchsync-xfer") as pool,
        ):
            try:
                for action in actions:
                    if self.stop.is_set():
                        break
                    if action.kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE):
                        deletes.add(action.kind.value + "\0" + action.path)
                        continue
                    if self.dry_run:
                        self.reporter.line("(dryrun) " + self.display.describe(action))
                        continue
                    self._slots.acquire()
                    nbytes = _size(action)
                    self.reporter.planned(nbytes)
                    fut = pool.submit(self._transfer_one, action)
                    fut.add_done_callback(self._release(nbytes))
            except BaseException:
                self.stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            if deletes.count:
                if totals.failed or totals.skipped or self.stop.is_set():
                    self.reporter.problem(
                        f"warning: {deletes.count} deletes not done because "
                        f"{totals.failed} transfers failed and {totals.skipped} paths were skipped"
                    )
                else:
                    self._delete(deletes)

    def _release(self, nbytes: int) -> Callable[[Future[None]], None]:
        def done(_fut: Future[None]) -> None:
            self._slots.release()
            self.reporter.done(nbytes)

        return done

    def _transfer_one(self, action: Action) -> None:
        assert self.transfer is not None
        totals = self.reporter.totals
        try:
            if action.kind is Kind.UPLOAD:
                up = self.transfer.upload(action.path)
                nbytes = up.size
            else:
                assert action.remote is not None
                rem = action.remote
                self.transfer.download(
                    action.path, size=rem.size, mtime_ns=rem.mtime_ns, etag=rem.etag
                )
                nbytes = rem.size
        except Exception as exc:
            with totals.lock:
                totals.failed += 1
            verb = "upload" if action.kind is Kind.UPLOAD else "download"
            line = self.display.describe(action).split(": ", 1)[1]
            reason = exc.reason if isinstance(exc, FileError) else describe(exc)
            self.reporter.problem(f"{verb} failed: {line} {reason}")
            logger.debug("transfer failed: %s", action.path, exc_info=True)
            return
        with totals.lock:
            totals.bytes += nbytes
            if action.kind is Kind.UPLOAD:
                totals.uploaded += 1
            else:
                totals.downloaded += 1
        self.reporter.line(self.display.describe(action))

    def _delete(self, deletes: Spool) -> None:
        totals = self.reporter.totals
        remote: list[str] = []
        for item in deletes:
            kind_value, _, path = item.partition("\0")
            action = Action(Kind(kind_value), path, "not in source")
            if self.dry_run:
                self.reporter.line("(dryrun) " + self.display.describe(action))
                continue
            if action.kind is Kind.DELETE_REMOTE:
                remote.append(path)
                if len(remote) >= 1000:
                    self._delete_remote(remote)
                    remote = []
                continue
            assert self.transfer is not None
            try:
                self.transfer.delete_local(path)
            except FileError as exc:
                with totals.lock:
                    totals.failed += 1
                self.reporter.problem(f"delete failed: {self.display.local(path)} {exc.reason}")
                continue
            totals.deleted += 1
            self.reporter.line(self.display.describe(action))
        if remote:
            self._delete_remote(remote)

    def _delete_remote(self, paths: list[str]) -> None:
        assert self.transfer is not None
        totals = self.reporter.totals
        try:
            failed = dict(self.transfer.delete_remote(paths))
        except Exception as exc:
            failed = {p: describe(exc) for p in paths}
        for path in paths:
            if path in failed:
                totals.failed += 1
                self.reporter.problem(f"delete failed: {self.display.remote(path)} {failed[path]}")
            else:
                totals.deleted += 1
                self.reporter.line(f"delete: {self.display.remote(path)}")


def _size(action: Action) -> int:
    entry = action.local if action.kind is Kind.UPLOAD else action.remote
    return entry.size if entry is not None else 0
