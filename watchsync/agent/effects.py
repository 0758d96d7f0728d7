"""Room: what the executor's work means to the agent.  The :class:`StoreRecorder` writes
finished work to the state (records batched; transfers group-committed, each with its
counters and journal entry in the same transaction); :class:`AgentEvents` turns it into
log lines, metrics and status; :class:`SkipLog` says each path the folder cannot sync once.

A failure is told apart by its :class:`~watchsync.core.errors.Failure` kind alone.

Must not touch: files, S3, threads.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from watchsync.agent.metrics import FolderMetrics
from watchsync.agent.outage import Outage
from watchsync.agent.recent import Recent
from watchsync.agent.status import Status
from watchsync.core.errors import (
    Deferred,
    FailureKind,
    FileError,
    PathBlocked,
    StillChanging,
    failure_of,
)
from watchsync.core.model import Action, Kind, Skipped, SyncedEntry
from watchsync.engine.reporting import Veto
from watchsync.s3.location import S3Url
from watchsync.state.store import Recorded, StateStore

logger = logging.getLogger(__name__)

_RECORD_BATCH = 500  # synced entries per transaction when only recording


class _Ticket:
    """One transfer waiting for its group commit."""

    __slots__ = ("done", "error", "item")

    def __init__(self, item: Recorded) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None


class StoreRecorder:
    """The executor's :class:`~watchsync.engine.reporting.Recorder` backed by the state database.

    Finished transfers are group-committed: a caller returns only once its record is in a
    committed transaction (so a crash never loses a transfer that was reported done, nor
    leaves one recorded that was not), but the transfers that finish while one commit is
    being fsynced share the next one, so a burst costs one fsync per batch, not per file.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._batch: list[SyncedEntry] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: list[_Ticket] = []
        self._committing = False
        self.commits = 0  # group commits made (for tests and benchmarks)

    def synced(
        self,
        entry: SyncedEntry,
        *,
        counters: Mapping[str, int] | None = None,
        journal_id: int | None = None,
    ) -> None:
        self._durable([_Ticket(Recorded(entry, counters, journal_id))])

    def synced_many(
        self, entries: Sequence[SyncedEntry], *, counters: Mapping[str, int] | None = None
    ) -> None:
        if entries:
            first, *rest = entries
            tickets = [_Ticket(Recorded(first, counters))]
            self._durable(tickets + [_Ticket(Recorded(e)) for e in rest])

    def _durable(self, tickets: list[_Ticket]) -> None:
        """Queue ``tickets`` and return once they are committed: in a commit led by this
        thread, or in one another thread led meanwhile."""
        last = tickets[-1]
        with self._cond:
            self._queue.extend(tickets)
            while not last.done and self._committing:
                self._cond.wait()
            if not last.done:  # lead the next commit: everything queued so far
                self._committing = True
                batch, self._queue = self._queue, []
        if not last.done:
            self._commit(batch)
        if last.error is not None:
            raise last.error

    def _commit(self, batch: list[_Ticket]) -> None:
        error: BaseException | None = None
        try:
            self.store.record_many([t.item for t in batch])
        except BaseException as exc:
            error = exc
        with self._cond:
            self.commits += 1
            for t in batch:
                t.done, t.error = True, error
            self._committing = False
            self._cond.notify_all()

    def remember(self, entry: SyncedEntry) -> None:
        with self._lock:
            self._batch.append(entry)
            full = len(self._batch) >= _RECORD_BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._batch = self._batch, []
        if batch:
            self.store.synced.put_many(batch)

    def forget(self, path: str, *, counter: str | None = None) -> None:
        self.store.synced.delete(path)
        if counter is not None:
            self.store.status.incr(counter)

    def journal(self, kind: str, path: str, detail: str) -> int | None:
        return self.store.journal.add(kind, path, detail)

    def unjournal(self, journal_id: int | None) -> None:
        if journal_id is not None:
            self.store.journal.done(journal_id)

    def count(self, counter: str, n: int = 1) -> None:
        self.store.status.incr(counter, n)

    def recorded(self, path: str, etag: str) -> bool:
        entry = self.store.synced.get(path)
        return entry is not None and entry.etag == etag

    def holds(self, path: str, etag: str) -> bool:
        return self.recorded(path, etag)


class SkipLog:
    """How a folder reports a path it cannot sync: one warning per path and reason, where
    the scanners and the executor meet the same skip pass after pass (a key the folder's
    file system cannot hold, an unreadable directory); a new reason is said again.  At most
    ``limit`` paths are remembered, the oldest forgotten first.

    >>> said = SkipLog("docs", limit=2)
    >>> [said.first(Skipped(p, "why")) for p in ("a", "a", "b", "c", "a")]
    [True, False, True, True, True]
    """

    def __init__(self, name: str, *, limit: int = 10_000) -> None:
        self.name = name
        self.limit = limit
        self._said: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, item: Skipped) -> None:
        """Report ``item`` unless it was said already."""
        if self.first(item):
            logger.warning(
                "skip: %s: %s",
                item.path,
                item.reason,
                extra={"folder": self.name, "event": "skip", "path": item.path},
            )

    def first(self, item: Skipped) -> bool:
        """Whether ``item`` was not said yet (it is remembered as said now)."""
        with self._lock:
            if self._said.get(item.path) == item.reason:
                self._said.move_to_end(item.path)
                return False
            self._said[item.path] = item.reason
            self._said.move_to_end(item.path)
            if len(self._said) > self.limit:
                self._said.popitem(last=False)
            return True


class AgentEvents:
    """The executor's :class:`~watchsync.engine.reporting.Events` as log lines, metrics
    and status."""

    def __init__(
        self,
        name: str,
        where: S3Url,
        *,
        status: Status,
        metrics: FolderMetrics,
        outage: Outage | None = None,
        recent: Recent | None = None,
        on_changed: Callable[[str], None] | None = None,
        on_skip: Callable[[Skipped], object] | None = None,
        on_new: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.on_skip = on_skip or SkipLog(name)
        # What stays as it is pass after pass (a file/directory collision, deletes held back
        # under an unreadable directory) is logged when it changes, not every pass.
        self._lasting = SkipLog(name)
        self.outage = outage
        self.recent = recent or Recent()
        self.where = where
        self.status = status
        self.metrics = metrics
        # Told of every path this agent changed in S3 (the change feed publishes them).
        self.on_changed: Callable[[str], None] = on_changed or (lambda _path: None)
        # Told of every new path synced (a file new here, an object new in S3): files that
        # replace deleted ones, as a checkout does, offset the delete guards' counts.
        self.on_new: Callable[[str], None] = on_new or (lambda _path: None)

    def started(self, action: Action) -> None:
        pass

    def settled(self, action: Action) -> None:
        pass

    def finished(self, action: Action, nbytes: int) -> None:
        if action.kind in (Kind.UPLOAD, Kind.CONFLICT, Kind.COPY):
            self.on_changed(action.path)
        if action.kind is Kind.COPY:
            assert action.synced is not None
            self.recent.add("copy", action.path, action.synced.path)
            logger.info(
                "copy: %s: %s -> %s (renamed)",
                self.name,
                action.synced.path,
                action.path,
                extra={"folder": self.name, "event": "copy", "path": action.path},
            )
            return
        verb = "upload" if action.kind in (Kind.UPLOAD, Kind.CONFLICT) else "download"
        if action.synced is None and action.kind in (Kind.UPLOAD, Kind.DOWNLOAD):
            self.on_new(action.path)
        self.metrics.transferred("up" if verb == "upload" else "down", nbytes)
        self.recent.add(verb, action.path)
        logger.info(
            "%s: %s: %s",
            verb,
            self.name,
            action.path,
            extra={"folder": self.name, "event": verb, "path": action.path, "bytes": nbytes},
        )

    def deleted(self, action: Action) -> None:
        remote = action.kind is Kind.DELETE_REMOTE
        if remote:
            self.on_changed(action.path)
        self.metrics.deleted("remote" if remote else "local")
        self.recent.add("delete-remote" if remote else "delete-local", action.path)
        logger.info(
            "delete: %s: %s",
            self.name,
            self.where.url(action.path) if remote else action.path,
            extra={
                "folder": self.name,
                "event": "delete-remote" if remote else "delete-local",
                "path": action.path,
            },
        )

    def failed(self, action: Action, exc: Exception) -> None:
        if isinstance(exc, Deferred):
            return  # reported when it was put off
        if isinstance(exc, StillChanging):
            # A file being written (a log appended without pause) is no error of the
            # folder's: its last read is stored, its next change sends it again.
            logger.info("folder %s: %s", self.name, exc, extra={"folder": self.name})
            return
        if isinstance(exc, FileError):
            self.metrics.error("file")
            said = not isinstance(exc, PathBlocked) or self._lasting.first(
                Skipped(exc.path, exc.reason)
            )
            self.status.error(f"{exc.path}: {exc.reason}", level=logging.WARNING, said=said)
            return
        failure = failure_of(exc)
        self.metrics.error(failure.code or "s3")
        if self.outage is not None and failure.kind is FailureKind.UNREACHABLE:
            self.outage.down(failure)  # one line for the outage, none per path
            return
        self.status.error(f"{action.kind.value} {action.path} failed: {failure.text}", s3=True)

    def vetoed(self, veto: Veto) -> None:
        if veto.refusal is not None:
            self.status.refused(f"delete: refused {veto.count} deletes: {veto.refusal}")
            return
        why = (
            f"{veto.failed} transfers failed and {veto.skipped} paths were skipped in this pass"
            if not veto.stopped
            else "the pass was interrupted"
        )
        text = f"delete: refused {veto.count} deletes: {why}"
        self.status.error(text, said=self._lasting.first(Skipped("", text)))

    def would(self, action: Action) -> None:
        pass

    def skipped(self, item: Skipped, *, remote: bool) -> None:
        self.on_skip(item)

    def conflict(self, action: Action, name: str) -> None:
        self.on_changed(name)
        self.on_changed(action.path)
        self.metrics.conflict()
        self.recent.add("conflict", action.path, name)
        logger.warning(
            "conflict: %s: %s changed on both sides; the S3 version is kept as %s",
            self.name,
            action.path,
            name,
            extra={"folder": self.name, "event": "conflict", "path": action.path},
        )
