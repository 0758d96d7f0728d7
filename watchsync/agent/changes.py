"""Room: what the watcher reported, turned into work.  A ready file path is queued as it
is; a directory that appeared, vanished or moved is rescanned (its files now, and the synced
files under it that are gone) because inotify reports a directory move as one event.

Must not touch: threads, S3.  Reads the folder and the state; writes only the queue.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..local import walk
from ..model import Skipped, without_skipped
from ..state import StateStore
from ..watch import is_dir_mark
from ..workqueue import Item
from .pending import Pending
from .scope import Scope

logger = logging.getLogger(__name__)


class Changes:
    """Hands the debouncer's ready paths to the uploader's queue."""

    def __init__(
        self,
        *,
        root: Path,
        scope: Scope,
        store: StateStore,
        pending: Pending,
        on_skip: Callable[[Skipped], None],
    ) -> None:
        self.root = root
        self.scope = scope
        self.store = store
        self.pending = pending
        self.on_skip = on_skip

    def ready(self, paths: list[str]) -> None:
        """Paths quiet for the debounce time: files (``a/b``) and directories (``a/``)."""
        self.pending.add([Item(p) for p in paths if not is_dir_mark(p)])
        for path in paths:
            if is_dir_mark(path):
                self.rescan(path.rstrip("/"))

    def rescan(self, rel: str) -> None:
        """Queue everything under directory ``rel``: what is there and what was synced.
        A file now at ``rel`` (a directory replaced by a file) is queued itself."""
        batch = self.pending.batch()
        if os.path.isdir(self.root / rel):
            walked = walk(self.root, options=self.scope.walk_options(), start=rel)
            for entry in without_skipped(walked, self.on_skip):
                batch.add(Item(entry.path))
        elif os.path.lexists(self.root / rel) and self.scope.included(rel):
            batch.add(Item(rel))
        for syn in self.store.iter_sorted(prefix=rel + "/"):
            if not os.path.lexists(self.root / syn.path):
                batch.add(Item(syn.path))
        batch.flush()
