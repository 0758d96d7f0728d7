"""Room: one queued path at a time.  Look at the file as it is now and what was last synced,
ask the planner, and have the executor act: an upload (conditional on the object last
seen), a server-side copy for a rename, or a delete handed to the delete batches.

``process(item)`` says how it went: :class:`Settled`, :class:`Retry` after a delay (S3
trouble; each path backs off on its own), or :class:`Conflict` (both versions were kept).

Must not touch: threads (the folder's upload workers call :meth:`Uploads.process`), the SDK.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FileError, PreconditionFailed
from ..execute import Executor, Outcome, file_exists
from ..local import stat_entry
from ..metrics import FolderMetrics
from ..model import Kind, LocalEntry, SyncedEntry
from ..plan import PathOptions, plan_path, plan_rename
from ..remote import describe, error_code
from ..retry import is_transient
from ..state import StateStore
from ..workqueue import Item
from .conflicts import Conflicts
from .deletes import Deletes
from .status import Status

logger = logging.getLogger(__name__)

_TRANSIENT_BACKOFF = (0.5, 30.0)  # first and longest wait after a transient S3 error
_PERMANENT_BACKOFF = (30.0, 300.0)  # ... after S3 refused


@dataclass(frozen=True)
class Settled:
    """Nothing more to do for the path (done, nothing to do, or a file error reported)."""


@dataclass(frozen=True)
class Retry:
    """Look at the path again after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True)
class Conflict:
    """Both sides had changed; both versions were kept."""


Result = Settled | Retry | Conflict
SETTLED = Settled()


class Uploads:
    """Brings one queued path in line with S3."""

    def __init__(
        self,
        *,
        root: Path,
        store: StateStore,
        executor: Executor,
        conflicts: Conflicts,
        deletes: Deletes,
        status: Status,
        metrics: FolderMetrics,
        opts: PathOptions,
        follow_symlinks: bool = True,
    ) -> None:
        self.root = root
        self.store = store
        self.executor = executor
        self.conflicts = conflicts
        self.deletes = deletes
        self.status = status
        self.metrics = metrics
        self.opts = opts
        self.follow_symlinks = follow_symlinks
        self._backoff: dict[str, float] = {}

    def process(self, item: Item) -> Result:
        """Decide ``item.path`` from the truth (the file now, the last sync) and act."""
        result: Result = SETTLED
        try:
            self._sync(item)
        except FileError as exc:
            self.metrics.error("file")
            self.status.error(f"{exc.path}: {exc.reason}", level=logging.WARNING)
        except PreconditionFailed:
            raced = self.conflicts.raced(item.path, self.executor)
            if raced.retry_in is not None:
                return Retry(raced.retry_in)
            if raced.conflict:
                result = Conflict()
        except Exception as exc:
            return self._failure(item, exc)
        self._backoff.pop(item.path, None)
        self.status.s3_ok()
        return result

    def _sync(self, item: Item) -> None:
        local = stat_entry(self.root, item.path, follow_symlinks=self.follow_symlinks)
        synced = self.store.get(item.path)
        action = plan_path(local, synced, item.hint(), opts=self.opts)
        if action is None:
            return
        if action.kind is Kind.DELETE_REMOTE:
            if not file_exists(self.root / item.path):
                self.deletes.add(item.path)
            return
        assert local is not None
        tried: set[str] = set()
        while True:
            chosen = plan_rename(action, self._gone(local, tried))
            if self.executor.apply(chosen) is not Outcome.MISMATCH:
                return
            assert chosen.synced is not None
            tried.add(chosen.synced.path)

    def _gone(self, local: LocalEntry, tried: set[str]) -> list[SyncedEntry]:
        """Synced files with this file's size and mtime that are gone (rename sources)."""
        return [
            cand
            for cand in self.store.find_by_stat(local.size, local.mtime_ns)
            if cand.path != local.path
            and cand.path not in tried
            and not os.path.lexists(self.root / cand.path)
        ]

    def _failure(self, item: Item, exc: Exception) -> Retry:
        """Transient errors retry soon, permanent ones slowly; the agent keeps watching."""
        transient = is_transient(exc)
        first, cap = _TRANSIENT_BACKOFF if transient else _PERMANENT_BACKOFF
        delay = min(cap, self._backoff.get(item.path, first / 2) * 2)
        self._backoff[item.path] = delay
        self.metrics.error("transient" if transient else error_code(exc) or "s3")
        what = "S3 unreachable" if transient else "S3 refused"
        self.status.error(
            f"{what}: {describe(exc)} ({item.path}; retrying in {delay:.0f}s)",
            level=logging.WARNING if transient else logging.ERROR,
            s3=True,
        )
        return Retry(delay)
