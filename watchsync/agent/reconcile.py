"""Room: the full pass.  Walk the folder, list the prefix, read the state, merge the three
through the planner and hand the plan to the executor: downloads, records and conflicts run
in its pool, uploads are routed to the uploader's queue (so one worker owns a path at a
time), deletes run last and only if nothing in the pass failed and the guards agree.

Must not touch: threads (the folder's runner calls :meth:`Reconcile.run`), the SDK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..execute import Executor, PassStats, Skips
from ..local import walk
from ..metrics import FolderMetrics
from ..model import Action, Kind, LocalEntry, Mode, RemoteEntry, Skipped, without_skipped
from ..plan import ReconcileOptions, plan_reconcile
from ..state import StateStore
from ..transfer import Objects
from ..workqueue import Item
from .pending import Pending
from .scope import Scope
from .status import State, Status

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, bool], None]  # (folder, scanned, planned, done)


@dataclass(frozen=True)
class ReconcileStats:
    """What one pass did."""

    started: float
    duration: float
    passed: PassStats
    skipped: int


class Reconcile:
    """One full three-way pass over a folder, its prefix and its state."""

    def __init__(
        self,
        name: str,
        *,
        root: Path,
        store: StateStore,
        transfer: Objects,
        executor: Executor,
        scope: Scope,
        pending: Pending,
        status: Status,
        metrics: FolderMetrics,
        mode: Mode,
        delete: bool,
        on_skip: Callable[[Skipped], None],
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.root = root
        self.store = store
        self.transfer = transfer
        self.executor = executor
        self.scope = scope
        self.pending = pending
        self.status = status
        self.metrics = metrics
        self.mode = mode
        self.delete = delete
        self.on_skip = on_skip
        self.wall = wall
        self.clock = clock
        self.count = 0  # passes completed

    def run(self, *, progress: Progress | None = None) -> ReconcileStats:
        """One pass; listing errors (RemoteError) are raised, per-file ones reported."""
        started, t0 = self.wall(), self.clock()
        self.status.set(State.RECONCILING)
        skipped = Skips()  # deletes under an unreadable path wait; the rest of the pass goes on

        def skip(item: Skipped) -> None:
            skipped.add(item)
            self.on_skip(item)

        local: Iterable[LocalEntry] = without_skipped(
            walk(self.root, options=self.scope.walk_options()), skip
        )
        scanned = [0]
        if progress is not None:
            local = _counted(local, scanned)
        # A key skipped as unsafe stays in the stream: the planner leaves its path alone, so
        # it is never read as deleted in S3 and need not veto the pass's other deletes.
        remote = _reporting(self.transfer.listing(for_download=True), self.on_skip)
        opts = ReconcileOptions(mode=self.mode, delete=self.delete, included=self.scope.included)
        plan: Iterable[Action] = plan_reconcile(local, remote, self.store.iter_sorted(), opts=opts)
        if progress is not None:
            plan = _reported(plan, lambda n: progress(self.name, scanned[0], n, False))
        queue = self.pending.batch()

        def route(action: Action) -> bool:
            if action.kind is not Kind.UPLOAD:
                return False
            rem = action.remote
            etag = rem.etag if rem is not None else None
            queue.add(Item(action.path, etag, absent=rem is None, remote=rem))
            return True

        try:
            passed = self.executor.run(plan, skipped=skipped, route=route)
        finally:
            queue.flush()
        duration = self.clock() - t0
        if progress is not None:
            progress(self.name, scanned[0], sum(passed.planned.values()), True)
        self.count += 1
        self.store.set_status(
            last_reconcile_at=started + duration, last_reconcile_duration=round(duration, 3)
        )
        self.metrics.reconciled(started + duration, duration)
        self.metrics.healthy(True)
        logger.info(
            "reconcile: %s done in %.2fs (planned: %s)",
            self.name,
            duration,
            passed.describe(),
            extra={"folder": self.name, "event": "reconcile", "duration": duration},
        )
        self.status.set(State.WATCHING, only_from=State.RECONCILING)
        return ReconcileStats(started, duration, passed, skipped.count)


def _reporting(
    stream: Iterable[RemoteEntry | Skipped], on_skip: Callable[[Skipped], None]
) -> Iterator[RemoteEntry | Skipped]:
    """Pass the listing through whole, reporting each skipped key."""
    for item in stream:
        if isinstance(item, Skipped):
            on_skip(item)
        yield item


def _counted(stream: Iterable[LocalEntry], box: list[int]) -> Iterator[LocalEntry]:
    """Count entries as they stream past (for the progress display)."""
    for entry in stream:
        box[0] += 1
        yield entry


def _reported(plan: Iterable[Action], report: Callable[[int], None]) -> Iterator[Action]:
    """Report the number of planned actions every 200 (for the progress display)."""
    for n, action in enumerate(plan, 1):
        if n % 200 == 0:
            report(n)
        yield action
