"""Room: the queued paths.  Look at each file as it is now and what was last synced, ask
the planner, and have the executor act: an upload (conditional on the object last seen), a
server-side copy for a rename, or a delete handed to the delete batches.  Paths taken
together (:meth:`Uploader.process_many`, a burst) have their plain uploads sent side by
side and recorded in one commit; the rest go one at a time.

``process(item)`` says how it went: :class:`Settled`, :class:`Retry` after a delay (S3
trouble; each path backs off on its own), or :class:`Conflict` (both versions were kept).

S3 trouble is told apart by its :class:`~watchsync.core.errors.Failure` kind alone; an
error that is no Failure came from our own side (the file, the state database).

Must not touch: threads (the folder's upload workers call :meth:`Uploader.process_many`),
the SDK.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from watchsync.agent.conflicts import Conflicts, Raced
from watchsync.agent.delete_guards import DeleteGuards
from watchsync.agent.local_changes import Dirty
from watchsync.agent.metrics import FolderMetrics
from watchsync.agent.outage import Outage
from watchsync.agent.status import Status
from watchsync.core.errors import Failure, FailureKind, FileError, failure_of
from watchsync.core.model import Action, Item, Kind, LocalEntry, SyncedEntry
from watchsync.core.plan import PathOptions, plan_path, plan_rename, same_file
from watchsync.engine.deleter import file_exists
from watchsync.engine.executor import Executor, Outcome
from watchsync.engine.sender import Sending, Sent
from watchsync.fs.volume import FolderVolume
from watchsync.fs.walk import stat_entry
from watchsync.s3.transfer import Uploaded
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)

_TRANSIENT_BACKOFF = (0.5, 30.0)  # first and longest wait after a transient S3 error
_PERMANENT_BACKOFF = (30.0, 300.0)  # ... after S3 refused
_RACE_BACKOFF = (1.0, 60.0)  # ... after a lost conditional write
_PARK_AFTER = 5  # failures in a row (not outages) after which a path waits for a reconcile
_PARK_AFTER_REFUSED = 3  # ... when S3 refuses to create a key it says does not exist
_AFTER_OUTAGE = 0.5  # a path cut short by an outage goes again this soon after it ends
# A path the executor is sending elsewhere (a conflict copy, a pass's conflict) is looked at
# again this often until that upload has landed: a path is in flight at most once.
_WHILE_SENT = 1.0


@dataclass(frozen=True)
class Settled:
    """Nothing more to do for the path (done, nothing to do, or a file error reported)."""


@dataclass(frozen=True)
class Retry:
    """Look at the path again after ``delay`` seconds (``counted``: as a retry, in the
    metrics; waiting for the path's own upload in flight elsewhere is none)."""

    delay: float
    counted: bool = True


@dataclass(frozen=True)
class Conflict:
    """Both sides had changed; both versions were kept."""


Result = Settled | Retry | Conflict
SETTLED = Settled()


class Uploader:
    """Brings one queued path in line with S3."""

    def __init__(
        self,
        *,
        root: Path,
        store: StateStore,
        executor: Executor,
        conflicts: Conflicts,
        guards: DeleteGuards,
        status: Status,
        metrics: FolderMetrics,
        opts: PathOptions,
        sending: Sending,
        follow_symlinks: bool = True,
        outage: Outage | None = None,
        dirty: Dirty | None = None,
        volume: FolderVolume | None = None,
    ) -> None:
        self.root = root
        self.sending = sending
        self.volume = volume or FolderVolume(root)
        self.outage = outage
        self.dirty = dirty  # a path left failed is looked at by the next reconcile
        self.store = store
        self.executor = executor
        self.conflicts = conflicts
        self.guards = guards
        self.status = status
        self.metrics = metrics
        self.opts = opts
        self.follow_symlinks = follow_symlinks
        self._backoff: dict[str, float] = {}
        self._failures: dict[str, int] = {}  # path -> failures in a row, outages excepted
        self._parked: set[str] = set()  # reported once; the next reconcile queues them again

    def process(self, item: Item) -> Result:
        """Decide ``item.path`` from the truth (the file now, the last sync) and act."""
        if item.path in self.sending:
            return Retry(_WHILE_SENT, counted=False)  # its upload records it once landed
        result: Result = SETTLED
        mark = self.dirty.mark() if self.dirty is not None else 0
        try:
            self._sync(item)
            if self._as_recorded(item.path):
                self._settled([item.path], mark)
        except FileError as exc:
            self.metrics.error("file")
            self.status.error(f"{exc.path}: {exc.reason}", level=logging.WARNING)
            self._look_again(item.path)
        except Exception as exc:
            if not _lost(exc):
                return self._failure(item, exc)
            try:
                raced = self.conflicts.raced(item.path, self.executor)
            except FileError as again:
                self.metrics.error("file")
                self.status.error(f"{again.path}: {again.reason}", level=logging.WARNING)
                return SETTLED
            except Exception as again:
                if not _lost(again):
                    return self._failure(item, again)
                raced = Raced(retry_in=1.0)  # S3 changed again while the race was settled
            if raced.retry_in is not None:
                why = raced.refused or "lost a conditional write again"
                park = _PARK_AFTER_REFUSED if raced.refused else _PARK_AFTER
                return self._again(item.path, _RACE_BACKOFF, raced.retry_in, why, park_after=park)
            if raced.conflict:
                result = Conflict()
        self._done(item)
        return result

    def process_many(self, items: Sequence[Item]) -> list[Result]:
        """:meth:`process` for several paths at once.  The plain uploads among them (a
        burst's new and changed files) are sent side by side and recorded in one commit;
        every other path, and any such upload that does not simply succeed, takes
        :meth:`process`, which decides it afresh."""
        if len(items) < 2:
            return [self.process(item) for item in items]
        results: dict[int, Result] = {}
        lane: list[tuple[int, Item, Action]] = []
        mark = self.dirty.mark() if self.dirty is not None else 0
        synced = self.store.synced.get_many([item.path for item in items])
        for i, item in enumerate(items):
            if item.path in self.sending:
                results[i] = self.process(item)
                continue
            action = self._plain_upload(item, synced.get(item.path))
            if action is None:
                results[i] = self.process(item)
            else:
                lane.append((i, item, action))
        if lane:
            try:
                sent = self.executor.send_together([action for _, _, action in lane])
            except Exception as exc:  # the state could not record them: as process() would
                for i, item, _ in lane:
                    results[i] = self._failure(item, exc)
            else:
                self._settled(
                    [item.path for (_, item, _), out in zip(lane, sent, strict=True)
                     if isinstance(out, Uploaded)],
                    mark,
                )  # fmt: skip
                for (i, item, _), outcome in zip(lane, sent, strict=True):
                    if isinstance(outcome, Uploaded):
                        self._done(item)
                        results[i] = SETTLED
                    elif outcome is Sent.CHANGED:
                        # Recorded as sent: what the item expected of S3 is out of date.
                        results[i] = self.process(Item(item.path, attempt=item.attempt))
                    elif isinstance(outcome, Failure) and outcome.kind.retried:
                        results[i] = self._failure(item, outcome)  # not one retry after another
                    else:
                        results[i] = self.process(item)
        return [results[i] for i in range(len(items))]

    def _plain_upload(self, item: Item, synced: SyncedEntry | None) -> Action | None:
        """The upload planned for ``item`` when it is a plain one: no rename to copy, no
        content check, no delete."""
        local = self._stat(item.path)
        if local is None:
            return None
        action = plan_path(local, synced, item, opts=self._opts())
        if action is None or action.kind is not Kind.UPLOAD or action.verify:
            return None
        return None if self._gone(local, set()) else action

    def _done(self, item: Item) -> None:
        """``item`` went through: its failures are forgotten."""
        self._backoff.pop(item.path, None)
        self._failures.pop(item.path, None)
        self._parked.discard(item.path)
        self.status.s3_ok()

    def _again(
        self,
        path: str,
        backoff: tuple[float, float],
        first: float,
        why: str,
        *,
        park_after: int = _PARK_AFTER,
    ) -> Retry | Settled:
        """A retry that backs off per path; a path that keeps failing is reported once and
        parked (settled: its journal entry closes, the next reconcile queues it again)."""
        failures = self._failures.get(path, 0) + 1
        self._failures[path] = failures
        if path in self._parked or failures >= park_after:
            self._backoff.pop(path, None)
            self._failures.pop(path, None)
            self._look_again(path)
            if path not in self._parked:
                self._parked.add(path)
                # Logged at ERROR and shown as the last error; the folder's state stays, as
                # the other paths go on.
                self.status.error(
                    f"{path}: keeps failing ({why}); parked until the next reconcile",
                    keep_state=True,
                )
            return SETTLED
        cap = backoff[1]
        delay = min(cap, self._backoff[path] * 2) if path in self._backoff else first
        self._backoff[path] = delay
        return Retry(delay)

    def _settled(self, paths: list[str], mark: int) -> None:
        """``paths`` are as the state records them, as of a look begun at ``mark``."""
        if self.dirty is not None and paths:
            self.dirty.settled(paths, mark)

    def _as_recorded(self, path: str) -> bool:
        """The file is as the state records it (or neither has it): the next pass would
        plan nothing for it.  Not so for a local edit left alone under pull, a conflict,
        a delete still to be made."""
        if self.dirty is None:
            return False
        local = self._stat(path)
        return same_file(local, self.store.synced.get(path))

    def _look_again(self, path: str) -> None:
        """The next reconcile looks at ``path`` even when it trusts the watcher."""
        if self.dirty is not None:
            self.dirty.note([path])

    def _sync(self, item: Item) -> None:
        local = self._stat(item.path)
        synced = self.store.synced.get(item.path)
        action = plan_path(local, synced, item, opts=self._opts())
        if action is None:
            return
        if action.kind is Kind.DELETE_REMOTE:
            if not self._exists(item.path):
                self.guards.add(item.path)
            return
        assert local is not None
        tried: set[str] = set()
        while True:
            chosen = plan_rename(action, self._gone(local, tried))
            outcome = self.executor.apply(chosen)
            if outcome is not Outcome.MISMATCH:
                break
            assert chosen.synced is not None
            tried.add(chosen.synced.path)
        if outcome is Outcome.SAME:
            # Found holding the bytes last synced (a touch): its record, batched for a
            # pass's many, is written now, so the path is settled as it is.
            self.executor.recorder.flush()
        if self._stat(item.path) is None:
            # Moved or deleted while it was sent: its key is recorded only now, after the
            # watcher's rescan of a vanished directory found nothing synced there; look again.
            after = plan_path(None, self.store.synced.get(item.path), item, opts=self._opts())
            gone = not self._exists(item.path)
            if after is not None and after.kind is Kind.DELETE_REMOTE and gone:
                self.guards.add(item.path)

    def _stat(self, path: str) -> LocalEntry | None:
        """The file at ``path`` now, as spelled (see :meth:`FolderVolume.spelled`)."""
        return stat_entry(
            self.root, path, follow_symlinks=self.follow_symlinks, spelled=self.volume.spelled
        )

    def _exists(self, path: str) -> bool:
        """Something other than a directory is at ``path``, as spelled."""
        return file_exists(self.root / path) and self.volume.spelled(path)

    def _opts(self) -> PathOptions:
        """The options, on the volume as last learnt."""
        return replace(self.opts, volume=self.volume.now)

    def _gone(self, local: LocalEntry, tried: set[str]) -> list[SyncedEntry]:
        """Synced files with this file's size and mtime that are gone (rename sources)."""
        return [
            cand
            for cand in self.store.synced.find_by_stat(local.size, local.mtime_ns)
            if cand.path != local.path
            and cand.path not in tried
            # Gone as spelled: ``Report.txt`` after ``mv Report.txt report.txt`` where
            # names fold case (a lookup of it still finds the file) is a rename's source.
            and not (os.path.lexists(self.root / cand.path) and self.volume.spelled(cand.path))
        ]

    def _failure(self, item: Item, exc: Exception) -> Retry | Settled:
        """Transient errors retry soon, for as long as the outage lasts; refusals (and local
        errors) retry slowly, and a path that keeps failing is parked.  The agent keeps
        watching.  No answer at all pauses the folder (outage.py): the path waits with the
        others, and no line is logged for it."""
        failure = failure_of(exc)
        if self.outage is not None and failure.kind is FailureKind.UNREACHABLE:
            self.metrics.error("transient")
            self.outage.down(failure)
            return Retry(_AFTER_OUTAGE)
        transient = failure.kind.retried
        # Our own side (the file, the state database) failing is no answer from S3.
        local = failure.kind is FailureKind.LOCAL
        self.metrics.error("transient" if transient else "local" if local else failure.code or "s3")
        if not transient:
            what = "local error" if local else "S3 refused"
            first_time = item.path not in self._failures and item.path not in self._parked
            result = self._again(
                item.path, _PERMANENT_BACKOFF, _PERMANENT_BACKOFF[0], f"{what}: {failure.text}"
            )
            if first_time and isinstance(result, Retry):
                self.status.error(
                    f"{what}: {failure.text} ({item.path}; retrying in {result.delay:.0f}s)",
                    s3=not local,
                )
            return result
        first, cap = _TRANSIENT_BACKOFF
        delay = min(cap, self._backoff.get(item.path, first / 2) * 2)
        self._backoff[item.path] = delay
        self.status.error(
            f"S3 unreachable: {failure.text} ({item.path}; retrying in {delay:.0f}s)",
            level=logging.WARNING,
            s3=True,
        )
        return Retry(delay)


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a conditional write or delete that lost to another version."""
    return isinstance(exc, Failure) and exc.kind is FailureKind.PRECONDITION
