"""Room: the deletes the guards refused, waiting for a person's decision.

A refusal (``--max-delete``, the rolling window, a directory that looks unmounted) keeps
the batch it refused, with its paths, under a short id.  ``watchsync ctl deletes`` lists
them; ``approve ID`` lets exactly those paths through the guards once (as ``--force-delete``
would, for them alone) and has them planned again; ``reject ID`` gives the deletes up: the
paths are forgotten by the state, so the next pass meets the copy left on the other side as
new and copies it back (a delete refused in S3 brings the file back, a local delete refused
brings the object back; ``push`` and ``pull`` only copy their own way, so there the copy
left simply stays).

Batches live in memory: after a restart the next pass refuses the same deletes again and
records them anew.

Must not touch: files, S3, threads (the control channel and the delete guards call in).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from watchsync.agent.status import Status

_IDS = itertools.count(1)  # one numbering per process: an id names one batch of one folder


ROOT = "root"  # the origin of the batch that holds every delete for the root's sake


def _next_id() -> str:
    return str(next(_IDS))


@dataclass(frozen=True)
class RefusedBatch:
    """Deletes refused together: ``remote`` are objects whose files were deleted here,
    ``local`` are files whose objects were deleted in S3."""

    id: str
    at: float  # wall clock of the (latest) refusal
    why: str
    # "watch": a batch of local deletes the watcher saw; "pass": a pass's deletes; "root":
    # every delete, held while the root is another directory (approving accepts it)
    origin: str
    remote: tuple[str, ...]
    local: tuple[str, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        return self.remote + self.local

    def describe(self) -> dict[str, object]:
        """The batch as the control channel shows it."""
        return {
            "id": self.id,
            "at": self.at,
            "why": self.why,
            "count": len(self.paths),
            "root": self.origin == ROOT,
            "delete_in_s3": list(self.remote),
            "delete_locally": list(self.local),
        }


class RefusedDeletes:
    """The refused batches of one folder, and the paths approved to pass the guards once.

    >>> refused = RefusedDeletes("docs", status=Status("docs", store=None, metrics=None),
    ...                          exists=lambda p: False, next_id=lambda: "1")
    >>> refused.add(["a", "b"], why="2 deletes exceed --max-delete 1", origin="pass").id
    '1'
    >>> _ = refused.approve("1"); refused.approved(["a", "b"])
    True
    """

    def __init__(
        self,
        name: str,
        *,
        status: Status,
        exists: Callable[[str], bool],
        on_approved: Callable[[RefusedBatch], None] = lambda _b: None,
        on_rejected: Callable[[RefusedBatch], None] = lambda _b: None,
        next_id: Callable[[], str] = _next_id,
        wall: Callable[[], float] = time.time,
        approval_ttl: float = 3600.0,
    ) -> None:
        self.name = name
        self.status = status
        self.exists = exists  # whether the local file is there (then S3 lost it)
        self.on_approved = on_approved  # the batch is to be planned again
        self.on_rejected = on_rejected  # the batch's paths are to be copied back
        self.next_id = next_id
        self.wall = wall
        self.approval_ttl = approval_ttl
        self._lock = threading.Lock()
        self._batches: dict[str, RefusedBatch] = {}
        self._approved: dict[str, float] = {}  # path -> until (wall clock)

    def add(self, paths: Sequence[str], *, why: str, origin: str) -> RefusedBatch:
        """Keep a refused batch; the same paths refused again keep their id (whether the
        watcher's batch or a pass refused them: the next pass judges a refused batch of
        the watcher's again)."""
        key = frozenset(paths)
        gone = {p for p in paths if not self.exists(p)}
        remote = tuple(p for p in paths if p in gone)
        local = tuple(p for p in paths if p not in gone)
        with self._lock:
            kin = [b for b in self._batches.values() if (b.origin == ROOT) == (origin == ROOT)]
            same = next((b for b in kin if set(b.paths) == key), None)
            # An earlier batch of the same kind that this one covers is superseded.
            for old in kin:
                if old is not same and key.issuperset(old.paths):
                    del self._batches[old.id]
            batch = RefusedBatch(
                same.id if same else self.next_id(), self.wall(), why, origin, remote, local
            )
            self._batches[batch.id] = batch
        self._count()
        return batch

    def batches(self) -> list[RefusedBatch]:
        with self._lock:
            return sorted(self._batches.values(), key=lambda b: int(b.id) if b.id.isdigit() else 0)

    def get(self, batch_id: str) -> RefusedBatch | None:
        with self._lock:
            return self._batches.get(batch_id)

    def withdraw(self, batch_id: str) -> None:
        """Drop a batch whose cause is gone (the root is the folder's own again)."""
        with self._lock:
            self._batches.pop(batch_id, None)
        self._count()

    def approve(self, batch_id: str) -> RefusedBatch | None:
        """Let the batch's deletes through the guards once (None: no such batch)."""
        with self._lock:
            batch = self._batches.pop(batch_id, None)
            if batch is None:
                return None
            until = self.wall() + self.approval_ttl
            self._approved.update(dict.fromkeys(batch.paths, until))
        self._count()
        self.on_approved(batch)
        return batch

    def reject(self, batch_id: str) -> RefusedBatch | None:
        """Give the batch's deletes up (None: no such batch)."""
        with self._lock:
            batch = self._batches.pop(batch_id, None)
            if batch is None:
                return None
            for path in batch.paths:
                self._approved.pop(path, None)
        self._count()
        self.on_rejected(batch)
        return batch

    def approved(self, paths: Iterable[str]) -> bool:
        """Whether every one of ``paths`` was approved (and the approval has not run out)."""
        now = self.wall()
        with self._lock:
            return all(self._approved.get(p, 0.0) >= now for p in paths)

    def used(self, paths: Iterable[str]) -> None:
        """These paths' deletes were let through: approvals are spent, and batches that
        held them are settled."""
        gone = set(paths)
        with self._lock:
            for path in gone:
                self._approved.pop(path, None)
            for batch in list(self._batches.values()):
                if gone.issuperset(batch.paths):
                    del self._batches[batch.id]
        self._count()

    def waiting(self) -> int:
        """Deletes refused and not yet decided."""
        with self._lock:
            return sum(len(b.paths) for b in self._batches.values())

    def _count(self) -> None:
        self.status.waiting(self.waiting())
