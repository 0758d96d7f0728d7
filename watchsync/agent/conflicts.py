"""Room: conflicts.  Where the other version of a conflicting path is kept (its name), and
what to do when a conditional upload lost a race (ask the planner, then the executor).

Must not touch: threads, the SDK (S3 goes through :class:`~watchsync.s3.transfer.Transfer`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchsync.core.errors import Failure, FailureKind
from watchsync.core.model import Kind, Mode
from watchsync.core.plan import plan_raced
from watchsync.engine.executor import Executor
from watchsync.fs.tempfiles import NAME_MAX, cut_utf8
from watchsync.fs.walk import stat_entry
from watchsync.s3.transfer import Objects
from watchsync.state.store import StateStore

_EXT_MAX = 32  # bytes; a longer "extension" is part of the name, shortened with it


def conflict_name(path: str, when: float, *, taken: Callable[[str], bool]) -> str:
    """Where the other version of a conflicting ``path`` is kept: beside it, named
    ``NAME.conflict-YYYYMMDD-HHMMSS.EXT`` (UTC), numbered when that is taken.

    >>> conflict_name("docs/report.txt", 0, taken=lambda p: False)
    'docs/report.conflict-19700101-000000.txt'
    >>> conflict_name(".bashrc", 0, taken=lambda p: p == ".bashrc.conflict-19700101-000000")
    '.bashrc.conflict-19700101-000000-2'
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    head, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem or len(ext.encode("utf-8", "surrogateescape")) > _EXT_MAX:
        stem, dot, ext = name, "", ""  # no extension, a dot-file, or no real one
    n = 1
    while True:
        tail = f".conflict-{stamp}{'-' + str(n) if n > 1 else ''}{dot}{ext}"
        # Shortened by bytes, never inside a character: one segment holds 255 bytes.
        room = NAME_MAX - len(tail.encode("utf-8", "surrogateescape"))
        candidate = cut_utf8(stem, room) + tail
        full = f"{head}/{candidate}" if head else candidate
        if not taken(full):
            return full
        n += 1


@dataclass(frozen=True)
class Raced:
    """The outcome of a lost race: ``conflict`` when both versions were kept, ``retry_in``
    seconds when the path must be looked at again shortly."""

    conflict: bool = False
    retry_in: float | None = None
    refused: str | None = None  # why S3 keeps refusing the write (not a race at all)


class Conflicts:
    """Names conflict copies and settles lost races for one folder."""

    def __init__(
        self,
        *,
        root: Path,
        mode: Mode,
        transfer: Objects,
        store: StateStore,
        follow_symlinks: bool = True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.mode = mode
        self.transfer = transfer
        self.store = store
        self.follow_symlinks = follow_symlinks
        self.wall = wall

    def name(self, path: str) -> str:
        """A free conflict name for ``path`` (free locally, and in S3 under ``push``,
        where the conflict copies live only in S3)."""
        return conflict_name(path, self.wall(), taken=self._taken)

    def _taken(self, path: str) -> bool:
        if os.path.lexists(self.root / path):
            return True
        return self.mode is Mode.PUSH and self.transfer.head(path) is not None

    def raced(self, path: str, executor: Executor) -> Raced:
        """A conditional upload of ``path`` found another object than expected: look at
        what S3 holds now and let the planner decide (a change beats a delete; both
        changed: keep both)."""
        remote = self.transfer.head(path)
        local = stat_entry(self.root, path, follow_symlinks=self.follow_symlinks)
        action = plan_raced(local, remote, self.store.synced.get(path))
        if action is None:
            return Raced()
        try:
            executor.apply(action)
        except Failure as exc:
            if exc.kind is not FailureKind.PRECONDITION:
                raise
            if remote is None and action.kind is Kind.UPLOAD and self.transfer.head(path) is None:
                # "Only if absent" refused while nothing is there: not a race the next look
                # can win.  SeaweedFS does this when a directory of that name holds objects
                # (a directory replaced by a file).
                return Raced(
                    retry_in=1.0,
                    refused="S3 refuses to create it although no object has that name "
                    "(a directory of that name on the server?)",
                )
            return Raced(retry_in=1.0)  # written again meanwhile: look once more, shortly
        return Raced(conflict=action.kind is Kind.CONFLICT)
