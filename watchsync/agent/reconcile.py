"""Room: the periodic pass.  Walk the folder, list the prefix, read the state, merge the
three through the planner and hand the plan to the executor: downloads, records and
conflicts run in its pool, uploads are routed to the uploader's queue (so one worker owns a
path at a time), deletes run last and only if nothing in the pass failed and the guards
agree.

Each side is looked at whole only when it must be.  While the watcher can be trusted (see
:class:`~.local_changes.Dirty`) the local side is the paths it reported, every other path
taken from the state as last synced.  While S3 can be trusted (see
:class:`~.list_schedule.ListSchedule`: the change feed brings the other agents' changes as
they happen) the prefix is not listed and only the reported paths are planned, their objects
taken from the state; a pass with both sides trusted costs O(changes), not O(files), and one
with nothing reported costs nothing.

The change feed's re-check (:meth:`Reconcile.recheck`) is the same pass over the paths
other agents named alone (their files stat'ed, their objects HEADed): one code path, with a
pass's skips (an unreadable path holds the deletes under it) and its failure rules (what
failed is given back: a named path stays owed, see ``ListSchedule.rechecked``).

Must not touch: threads (the folder's runner calls :meth:`Reconcile.run` and
:meth:`Reconcile.recheck`), the SDK.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from watchsync.agent.list_schedule import ListSchedule
from watchsync.agent.local_changes import Dirty, Taken
from watchsync.agent.metrics import FolderMetrics
from watchsync.agent.progress import PassProgress, PassWatch
from watchsync.agent.scope import Scope
from watchsync.agent.status import State, Status
from watchsync.agent.upload_queue import Pending
from watchsync.core.filters import is_reserved
from watchsync.core.model import (
    Action,
    LocalEntry,
    Mode,
    RemoteEntry,
    RemoteRow,
    Skipped,
    SyncedEntry,
    Volume,
    without_skipped,
)
from watchsync.core.plan import (
    ReconcileOptions,
    last_synced_object,
    plan_listed,
    plan_reconcile,
    same_file,
    unwritable,
    unwritable_pages,
)
from watchsync.engine.executor import Executor, PassStats, Skips
from watchsync.engine.policy import Counted, Seen
from watchsync.engine.sender import Sending
from watchsync.fs.tempfiles import is_temp_name
from watchsync.fs.volume import FolderVolume
from watchsync.fs.walk import GONE, WalkOptions, entry_of, walk
from watchsync.s3.transfer import Objects
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int, bool], None]  # (folder, scanned, planned, done)
R = TypeVar("R")


@dataclass(frozen=True)
class _Look:
    """What one pass looks at: the local side (``taken``: walked, or the reported paths),
    the S3 side (``listing``: why the prefix is listed, or None: the state as last synced)
    and the paths the feed named, whose objects are looked at one by one (``named``).
    ``reported``: ``taken`` came from the watcher's reports (given back on failure)."""

    taken: Taken
    listing: str | None
    named: frozenset[str]
    reported: bool


@dataclass(frozen=True)
class ReconcileStats:
    """What one pass did."""

    started: float
    duration: float
    passed: PassStats
    skipped: int
    walked: bool = True  # the whole folder was walked (not only the reported paths)
    listed: bool = True  # the whole prefix was listed (not only the state trusted)


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
        sending: Sending,
        status: Status,
        metrics: FolderMetrics,
        mode: Mode,
        delete: bool,
        on_skip: Callable[[Skipped], None],
        dirty: Dirty | None = None,
        listed: ListSchedule | None = None,
        before_pass: Callable[[], object] = lambda: None,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        volume: FolderVolume | None = None,
    ) -> None:
        self.name = name
        self.volume = volume or FolderVolume(root)
        # Before a pass reads the state: the folder's root looked at (another directory is
        # met as a new folder, see folder_root.py) and the synced files counted (the
        # delete guards' rolling window).
        self.before_pass = before_pass
        self.listed = listed
        self.root = root
        self.store = store
        self.transfer = transfer
        self.executor = executor
        self.scope = scope
        self.pending = pending
        self.sending = sending
        self.status = status
        self.metrics = metrics
        self.mode = mode
        self.delete = delete
        self.on_skip = on_skip
        self.dirty = dirty
        self.wall = wall
        self.clock = clock
        self.count = 0  # passes completed
        self.listings = 0  # ... of which listed the whole prefix
        # The current (or last) pass's progress; an INFO line every this many seconds while
        # a pass lasts longer.
        self.watch: PassWatch | None = None
        self.progress_every = 5.0

    def progress(self) -> PassProgress | None:
        """How far the current pass has got (``finished``: the last pass, over), or None
        before the first: what ``watchsync status`` shows of a long first pass."""
        watch = self.watch
        return watch.snapshot() if watch is not None else None

    def run(self, *, progress: Progress | None = None) -> ReconcileStats:
        """One pass; a failed listing is raised (a :class:`~watchsync.core.errors.Failure`
        saying ``cannot list ...``), per-file failures reported."""
        self.before_pass()
        if self.dirty is None:
            taken = Taken("no watcher")
        else:
            if self.status.polling:  # a polling observer is not trusted to see every change
                self.dirty.invalidate("the watcher is polling")
            taken = self.dirty.take()
        # The two sides are trusted apart: lost inotify events (an overflow) cost a walk of
        # the folder, not a listing of the prefix, and a due listing does not walk.
        listing = self.listed.take() if self.listed is not None else "no change feed"
        owed = self.listed.owed() if self.listed is not None and listing is None else frozenset()
        started, t0 = self.wall(), self.clock()
        self.status.set(State.RECONCILING)
        watch = self.watch = PassWatch(
            self.name, every=self.progress_every, show=progress, clock=self.clock, wall=self.wall
        )
        look = _Look(taken, listing, owed, reported=self.dirty is not None)
        passed, skipped = self._settled(look, watch)
        duration = self.clock() - t0
        watch.finish()
        self.count += 1
        self.listings += listing is not None
        self.store.status.set(
            last_reconcile_at=started + duration, last_reconcile_duration=round(duration, 3)
        )
        self.metrics.reconciled(started + duration, duration)
        logger.info(
            "reconcile: %s done in %.2fs (planned: %s; local side: %s; S3 side: %s)",
            self.name,
            duration,
            passed.describe(),
            f"full walk, {taken.full}"
            if taken.full is not None
            else f"{len(taken.paths)} reported paths, {len(taken.dirs)} directories",
            f"listed, {listing}" if listing is not None else "as last synced (change feed)",
            extra={"folder": self.name, "event": "reconcile", "duration": duration},
        )
        self.status.set(State.WATCHING, only_from=State.RECONCILING)
        return ReconcileStats(
            started,
            duration,
            passed,
            skipped,
            walked=taken.full is not None,
            listed=listing is not None,
        )

    def recheck(self) -> PassStats | None:
        """The change feed's re-check: a pass over the paths other agents named that are
        owed (see :meth:`ListSchedule.owed`): each one's file, object (HEAD) and state
        through the planner and the executor, with a pass's skips and failure rules.  None
        when nothing is owed; S3 errors on HEAD are raised (the paths stay owed)."""
        owed = self.listed.owed() if self.listed is not None else frozenset()
        if not owed:
            return None
        logger.debug("feed: %s: re-checking %d paths changed elsewhere", self.name, len(owed))
        look = _Look(Taken(None, owed), None, owed, reported=False)
        passed, _ = self._settled(look, None)
        return passed

    def _settled(self, look: _Look, watch: PassWatch | None) -> tuple[PassStats, int]:
        """One look through :meth:`_pass`, then what it took is settled: done, or given back
        when anything failed or was held (looked at again by the next pass, as a full walk
        would have done; a named path is tried again later, or left to a listing).  When
        the pass breaks off, everything is given back and named paths stay owed."""
        cpu = time.thread_time()
        try:
            passed, skipped = self._pass(look, watch)
        except BaseException:
            self._restore(look)
            raise
        ok = not passed.failed and passed.vetoed is None
        if not ok:
            self._restore(look)
        else:
            if self.dirty is not None and look.reported:
                self.dirty.done(look.taken)
            if self.listed is not None:
                # The runner's own CPU: a quiet pass lists, parses and plans on this thread
                # (a pass that also walked the folder, or had work to do, says nothing of
                # the listing's cost).
                quiet = look.taken.full is None and not passed.planned
                cost = time.thread_time() - cpu if quiet else None
                self.listed.done(look.listing, cost=cost)
                if look.listing is not None:
                    self.store.status.set(
                        list_every=round(self.listed.interval(), 1),
                        list_stretched=self.listed.stretched(),
                    )
        if self.listed is not None and look.named:
            self.listed.rechecked(look.named, ok=ok)
        return passed, skipped

    def _restore(self, look: _Look) -> None:
        if self.dirty is not None and look.reported:
            self.dirty.restore(look.taken)
        if self.listed is not None:
            self.listed.restore(look.listing)

    def _look_again(self, looked: dict[str, LocalEntry | None]) -> None:
        """Files this pass looked at that are still not as last synced (a local edit under
        ``pull``, an upload still queued, a local delete kept) stay reported: the state
        does not describe them, so the next pass must look again."""
        if self.dirty is None:
            return
        again = [
            path
            for path, local in looked.items()
            if self.scope.included(path) and not same_file(local, self.store.synced.get(path))
        ]
        self.dirty.note(again)

    def _pass(self, look: _Look, watch: PassWatch | None) -> tuple[PassStats, int]:
        """Plan and execute one look (counted by ``watch``, a periodic pass's); the pass's
        stats and how many paths were skipped."""
        skipped = Skips()  # deletes under an unreadable path wait; the rest of the pass goes on

        def skip(item: Skipped) -> None:
            skipped.add(item)
            self.on_skip(item)

        taken, listing, named = look.taken, look.listing, look.named
        if named - taken.paths:  # the files of the named paths are looked at too
            taken = Taken(taken.full, taken.paths | named, taken.dirs, taken.at)
        options = self.scope.walk_options()
        looked: dict[str, LocalEntry | None] = {}
        remote: Iterable[RemoteEntry | Skipped]
        state: Iterable[SyncedEntry]
        local: Iterable[LocalEntry]
        opts = ReconcileOptions(
            mode=self.mode,
            delete=self.delete,
            included=self.scope.included,
            in_flight=self._in_flight,
            volume=self.volume.now,
        )
        plan: Iterable[Action]
        # What the pass saw of the sides it read whole, for the guards (None: not read).
        read: dict[str, Counted[Any]] = {}
        if listing is not None and taken.full is None:
            # The prefix listed, the folder trusted: the listing's rows and the state's are
            # compared in bulk, entries made only where they differ (the common pass).
            fresh, was_looked = self._looked_at(taken, options, looked, skip)
            # A list of rows at a time through each step, one row at a time only in the
            # planner; the watch counts each page as it is read (a sorted listing gives its
            # first row only once it is all read).
            pages = read["listed"] = listed_pages(
                self.transfer, opts.volume, self.on_skip, watch.listed if watch else None
            )
            plan = plan_listed(
                itertools.chain.from_iterable(pages),
                self.store.synced.iter_rows(),
                fresh,
                looked=was_looked,
                opts=opts,
            )
            if watch is not None:
                plan = watch.plan(plan)
        elif listing is None and taken.full is None:
            # Both sides trusted: only the reported paths, their objects as last synced
            # (the named ones as they are now).
            reported = self._synced_at(taken)
            state = reported
            remote = self._named_now(_as_last_synced(reported), named)
            local = without_skipped(
                changed_side(
                    self.root,
                    taken,
                    reported,
                    options=options,
                    looked=looked,
                    spelled=self.volume.spelled,
                ),
                skip,
            )
        else:
            state = self.store.synced.iter_sorted()
            if listing is None:
                # S3 trusted, the folder walked: S3's side is the state as last synced.
                state, synced = itertools.tee(state)
                remote = self._named_now(_as_last_synced(synced), named)
            else:
                # A key skipped as unsafe stays in the stream: the planner leaves its path
                # alone, so it is never read as deleted in S3 and need not veto other deletes.
                listed = unwritable(
                    self.transfer.listing(
                        for_download=True, on_read=watch.listed if watch is not None else None
                    ),
                    opts.volume,
                )
                remote = read["listed"] = Counted(_reporting(listed, self.on_skip))
            local = read["walked"] = Counted(
                without_skipped(walk(self.root, options=options), skip)
            )
            if self.dirty is not None:
                state, synced = itertools.tee(state)
                local = _diverging(local, synced, looked)
        if listing is not None and taken.full is None:
            pass  # planned above
        elif watch is None:
            plan = plan_reconcile(local, remote, state, opts=opts)
        else:
            # Counted only where a side is read whole (a side taken from the state is not news).
            # The listing is counted as its pages are read (on_read above).
            local = watch.local(local) if taken.full is not None else local
            plan = watch.plan(plan_reconcile(local, remote, state, opts=opts))
        queue = self.pending.batch()
        try:
            passed = self.executor.run(
                plan,
                skipped=skipped,
                route=queue.route,
                seen=lambda: Seen(
                    walked=read["walked"].count if "walked" in read else None,
                    listed=read["listed"].count if "listed" in read else None,
                ),
            )
        finally:
            queue.flush()
        self._look_again(looked)
        if self.dirty is not None and passed.stale:
            # The file is not what the plan saw (the state's record of it, for a path the
            # watcher did not report): the next pass looks at it as it is.
            self.dirty.note(passed.stale)
        return passed, skipped.count

    def _in_flight(self, path: str) -> bool:
        """Whether ``path`` is on its way to S3: in an upload worker's hands, or being sent
        by the executor (a conflict copy); the pass leaves it to that sender."""
        return path in self.sending or self.pending.in_hand(path)

    def _named_now(
        self, as_synced: Iterable[RemoteEntry], named: frozenset[str]
    ) -> Iterable[RemoteEntry]:
        """S3's side as last synced, but the named paths' objects as they are now (HEAD;
        an error is raised before anything is planned)."""
        if not named:
            return as_synced
        heads = [
            head
            for path in sorted(named)
            if self.scope.included(path) and (head := self.transfer.head(path)) is not None
        ]
        rest = (e for e in as_synced if e.path not in named)
        return heapq.merge(rest, heads, key=lambda e: e.path)

    def _looked_at(
        self,
        taken: Taken,
        options: WalkOptions,
        looked: dict[str, LocalEntry | None],
        skip: Callable[[Skipped], None],
    ) -> tuple[list[LocalEntry], Callable[[str], bool] | None]:
        """The reported paths' files as they are now (sorted), and which paths they stand
        for (None: no path was reported); ``looked`` receives each, with the synced paths
        below a reported directory (None until the pass finds them)."""
        reported = taken.paths | taken.dirs
        if not reported:
            return [], None
        tops = _outermost(taken.dirs)
        fresh = list(
            without_skipped(_fresh_side(self.root, reported, options, self.volume.spelled), skip)
        )
        looked.update(dict.fromkeys(reported))
        for top in tops:
            for e in self.store.synced.iter_sorted(prefix=top.rstrip("/")):
                looked.setdefault(e.path, None)
        looked.update((e.path, e) for e in fresh)
        return fresh, lambda path: path in reported or _under(path, tops)

    def _synced_at(self, taken: Taken) -> list[SyncedEntry]:
        """The state of the reported paths and of everything below the reported
        directories, in key order."""
        found: dict[str, SyncedEntry] = {}
        for path in taken.paths | taken.dirs:
            entry = self.store.synced.get(path)
            if entry is not None:
                found[path] = entry
        for top in _outermost(taken.dirs):
            found.update((e.path, e) for e in self.store.synced.iter_sorted(prefix=top.rstrip("/")))
        return sorted(found.values(), key=lambda e: e.path)


def _as_last_synced(synced: Iterable[SyncedEntry]) -> Iterator[RemoteEntry]:
    """S3's side taken from the state: each object as this agent last saw it."""
    return map(last_synced_object, synced)


def _diverging(
    local: Iterable[LocalEntry],
    synced: Iterable[SyncedEntry],
    looked: dict[str, LocalEntry | None],
) -> Iterator[LocalEntry]:
    """Pass the walk through, putting in ``looked`` every path where it and the state
    disagree (merged in step, so memory stays at the disagreements)."""
    it = iter(synced)
    syn = next(it, None)
    for entry in local:
        while syn is not None and syn.path < entry.path:
            looked[syn.path] = None
            syn = next(it, None)
        if syn is not None and syn.path == entry.path:
            if not same_file(entry, syn):
                looked[entry.path] = entry
            syn = next(it, None)
        else:
            looked[entry.path] = entry
        yield entry
    while syn is not None:
        looked[syn.path] = None
        syn = next(it, None)


def changed_side(
    root: Path,
    taken: Taken,
    synced: Iterable[SyncedEntry],
    *,
    options: WalkOptions,
    looked: dict[str, LocalEntry | None] | None = None,
    spelled: Callable[[str], bool] | None = None,
) -> Iterator[LocalEntry | Skipped]:
    """The local side of a pass from the state and the reported paths, in S3 key order.

    A reported file is stat-ed, a reported directory walked; every other synced path is
    yielded as it was last synced, so the planner reads it as unchanged.  Cost: one read of
    the state plus the reported paths.  ``looked`` receives each file looked at (None: gone),
    so that one left out of sync can be looked at again by the next pass.  ``spelled``:
    whether a path found is held as spelled (on a volume that ignores case, ``report.txt``
    is found where only ``Report.txt`` is: that path is gone, not changed).

    >>> t = Taken(None, frozenset({"b"}))
    >>> synced = [SyncedEntry("a", 1, 2, "e", 3), SyncedEntry("b", 1, 2, "e", 3)]
    >>> [e.path for e in changed_side(Path("/nonexistent"), t, synced, options=WalkOptions())]
    ['a']
    """
    # A reported directory may now be a file and a reported file a directory: each is
    # looked at as it is now.  Nothing below a reported path is taken from the state (a
    # directory that vanished or moved away is reported once, not per file).
    reported = taken.paths | taken.dirs
    tops = _outermost(reported)
    fresh = _fresh_side(root, reported, options, spelled)
    if looked is not None:
        looked.update(dict.fromkeys(reported))
        looked.update((e.path, e) for e in fresh if isinstance(e, LocalEntry))

    def as_synced() -> Iterator[LocalEntry]:
        for entry in synced:
            path = entry.path
            if path in reported or _under(path, tops):
                if looked is not None:
                    looked.setdefault(path, None)
                continue
            yield LocalEntry(path, entry.size, entry.mtime_ns)

    return heapq.merge(as_synced(), fresh, key=lambda e: e.path)


def _fresh_side(
    root: Path,
    reported: Iterable[str],
    options: WalkOptions,
    spelled: Callable[[str], bool] | None = None,
) -> list[LocalEntry | Skipped]:
    """The reported paths as they are now, in key order: a file stat-ed, a directory
    walked (a path below another reported directory is left to that walk)."""
    tops = _outermost(reported)
    fresh: list[LocalEntry | Skipped] = []
    for path in reported:
        if _under(path, tops) or not _taking_part(path, options):
            continue  # below another reported directory: its walk covers it
        got = _stat_one(root, path, options.follow_symlinks)
        if got is not None and spelled is not None and not spelled(path):
            continue  # found under another spelling (a case-only rename): gone as spelled
        if isinstance(got, str):
            fresh.extend(walk(root, options=options, start=path))
        elif got is not None:
            fresh.append(got)
    fresh.sort(key=lambda e: e.path)
    return fresh


def _taking_part(path: str, options: WalkOptions) -> bool:
    """What a full walk would enter: no temp name, reserved or pruned directory on the way."""
    if is_reserved(path) or any(is_temp_name(part) for part in path.split("/")):
        return False
    if options.prune is None:
        return True
    parts = path.split("/")
    return not any(options.prune("/".join(parts[:n])) for n in range(1, len(parts)))


def _stat_one(root: Path, path: str, follow: bool) -> LocalEntry | Skipped | str | None:
    """One reported path as the walk would see it; ``"dir"`` for a directory."""
    full = os.path.join(root, path)
    try:
        st = os.stat(full) if follow else os.lstat(full)
    except GONE:
        return Skipped(path, "broken symlink") if os.path.islink(full) else None
    except OSError as exc:
        return Skipped(path, f"cannot stat: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return None  # not following: links are left out, like the walk does
    if not stat.S_ISREG(st.st_mode):
        return Skipped(path, "not a regular file")
    return entry_of(path, st)


def _outermost(dirs: Iterable[str]) -> list[str]:
    """``a/``-style prefixes of the directories, sorted, without those inside another."""
    out: list[str] = []
    for d in sorted(d + "/" for d in dirs):
        if not out or not d.startswith(out[-1]):
            out.append(d)
    return out


def _under(path: str, tops: list[str]) -> bool:
    """Whether ``path`` lies below one of the sorted, non-nested prefixes ``tops``: only
    the greatest prefix not above ``path`` can hold it."""
    if not tops:
        return False
    i = bisect.bisect_right(tops, path) - 1
    return i >= 0 and path.startswith(tops[i])


def _reporting(stream: Iterable[R], on_skip: Callable[[Skipped], None]) -> Iterator[R]:
    """Pass the listing through whole, reporting each skipped key."""
    for item in stream:
        if isinstance(item, Skipped):
            on_skip(item)
        yield item


def listed_pages(
    transfer: Objects,
    volume: Volume,
    on_skip: Callable[[Skipped], None],
    on_read: Callable[[int], None] | None = None,
) -> Counted[list[RemoteRow | Skipped]]:
    """A listing pass's side of S3: the listing a list of rows at a time, each key the
    folder cannot hold a skip (reported to ``on_skip``), counted by rows; ``on_read``
    hears each page as it is read."""
    pages = unwritable_pages(transfer.listing_pages(on_read), volume)
    return Counted(_reporting_pages(pages, on_skip), size=len)


def _reporting_pages(
    pages: Iterable[list[R]], on_skip: Callable[[Skipped], None]
) -> Iterator[list[R]]:
    """:func:`_reporting` a list at a time: a list is looked at row by row only when it
    holds a skip (its items' types, gathered at C speed, say so)."""
    for page in pages:
        if any(issubclass(t, Skipped) for t in set(map(type, page))):
            for item in page:
                if isinstance(item, Skipped):
                    on_skip(item)
        yield page
