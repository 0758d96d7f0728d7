"""The composition root of one folder: every room and the engine are built here, once, in
dependency order, and nothing is changed on them afterwards.  The folder (folder.py) opens
what needs the real world first (the state, the transfer, the status and the outage watch
on them) and adds the threads; the room tests call :func:`wire` with a fake bucket.

The order, bottom up: what the server takes and the paths on their way to S3 (one object
each, shared by whoever sends conditions, and by whoever must leave a path in flight to its
sender); the local side (the watcher's reports, the uploader's queue); the S3 side
(when to list, the change feed, which reports to it); the deletes (their batches, the
refused ones kept for a person to decide, the guards); the engine (the conflict names, the
executor and where its work goes); then the rooms that drive them (the uploader, the
periodic pass).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from watchsync.agent.config import FolderConfig
from watchsync.agent.conflicts import Conflicts
from watchsync.agent.delete_guards import DeleteBatcher, DeleteGuards
from watchsync.agent.effects import AgentEvents, StoreRecorder
from watchsync.agent.feed import Feed, FeedObject
from watchsync.agent.folder_root import FolderRoot
from watchsync.agent.list_schedule import ListSchedule
from watchsync.agent.local_changes import Dirty, LocalChanges
from watchsync.agent.metrics import FolderMetrics
from watchsync.agent.notifications import Notifications, Queue
from watchsync.agent.outage import Outage
from watchsync.agent.recent import Recent
from watchsync.agent.reconcile import Reconcile
from watchsync.agent.refused import RefusedBatch, RefusedDeletes
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.agent.upload_queue import Pending
from watchsync.agent.uploader import Uploader
from watchsync.core.model import Mode, Skipped
from watchsync.core.plan import DeleteCaps, PathOptions
from watchsync.engine.executor import Executor, PoolFactory, thread_pool
from watchsync.engine.policy import ExecPolicy
from watchsync.engine.sender import Sending
from watchsync.fs.volume import FolderVolume
from watchsync.s3.capabilities import Capabilities
from watchsync.s3.transfer import Objects
from watchsync.state.store import StateStore


@dataclass(frozen=True)
class Rooms:
    """The rooms of one folder, wired to one state, one transfer and one executor."""

    status: Status
    pending: Pending
    dirty: Dirty
    changes: LocalChanges
    listed: ListSchedule
    feed: Feed | None
    refused: RefusedDeletes
    root: FolderRoot
    guards: DeleteGuards
    conflicts: Conflicts
    recent: Recent
    executor: Executor
    uploader: Uploader
    reconcile: Reconcile
    notifications: Notifications | None = None


@dataclass(frozen=True)
class _Given:
    """What the folder hands to the wiring: its configuration and the world it opened."""

    cfg: FolderConfig
    store: StateStore
    transfer: Objects
    scope: Scope
    status: Status
    metrics: FolderMetrics
    stop: threading.Event
    clock: Callable[[], float]
    wall: Callable[[], float]
    outage: Outage | None
    volume: FolderVolume  # the folder's file system (probed by the folder)
    on_skip: Callable[[Skipped], None]  # how a path the folder cannot sync is reported


def wire(
    cfg: FolderConfig,
    *,
    store: StateStore,
    transfer: Objects,
    scope: Scope,
    status: Status,
    metrics: FolderMetrics,
    stop: threading.Event,
    on_skip: Callable[[Skipped], None],
    pool: PoolFactory = thread_pool,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    feed_object: FeedObject | None = None,
    request_reconcile: Callable[[], None] = lambda: None,
    outage: Outage | None = None,
    queue: Queue | None = None,
    volume: FolderVolume | None = None,
) -> Rooms:
    """Build the rooms of one folder (the folder adds the threads; tests call rooms directly).

    The room tests (``tests/world.py``) wire a folder over a state in a temporary directory
    and an in-memory bucket, then drive each room by hand: ``rooms.uploader.process(item)``
    uploads one queued path and says how it settled.
    """
    volume = volume or FolderVolume(cfg.path)
    given = _Given(
        cfg, store, transfer, scope, status, metrics, stop, clock, wall, outage, volume, on_skip
    )
    server = Capabilities()
    sending = Sending()  # the paths on their way to S3, one sender each
    pending = Pending(store, included=scope.included, stop=stop, clock=clock)
    dirty = Dirty(full_interval=cfg.full_walk_interval, clock=clock)
    changes = LocalChanges(
        root=cfg.path, scope=scope, store=store, pending=pending, on_skip=on_skip, dirty=dirty
    )
    listed, feed = _s3_side(given, server, feed_object, request_reconcile)
    refused, root, guards = _deletes(given, dirty, listed, request_reconcile)
    conflicts, recent, executor = _engine(given, server, sending, feed, guards, pool)
    uploader = Uploader(
        root=cfg.path,
        store=store,
        executor=executor,
        conflicts=conflicts,
        guards=guards,
        status=status,
        metrics=metrics,
        opts=PathOptions(mode=cfg.direction, delete=cfg.delete),
        sending=sending,
        follow_symlinks=cfg.follow_symlinks,
        outage=outage,
        dirty=dirty,
        volume=volume,
    )

    def before_pass() -> None:
        root.check()
        guards.began_pass()

    reconcile = Reconcile(
        cfg.name,
        root=cfg.path,
        store=store,
        transfer=transfer,
        executor=executor,
        scope=scope,
        pending=pending,
        sending=sending,
        status=status,
        metrics=metrics,
        mode=cfg.direction,
        delete=cfg.delete,
        on_skip=on_skip,
        dirty=dirty,
        listed=listed,
        before_pass=before_pass,
        wall=wall,
        clock=clock,
        volume=volume,
    )
    notifications = None
    if queue is not None:
        notifications = Notifications(
            cfg.name,
            queue=queue,
            where=cfg.where,
            note=listed.note,
            named=listed.waiting,
            invalidate=listed.invalidate,
            request_reconcile=request_reconcile,
            clock=clock,
        )
    return Rooms(
        status,
        pending,
        dirty,
        changes,
        listed,
        feed,
        refused,
        root,
        guards,
        conflicts,
        recent,
        executor,
        uploader,
        reconcile,
        notifications,
    )


def _s3_side(
    given: _Given,
    server: Capabilities,
    feed_object: FeedObject | None,
    request_reconcile: Callable[[], None],
) -> tuple[ListSchedule, Feed | None]:
    """When a pass lists the prefix, and the change feed that tells it what other agents
    changed (the paths they name, entries missed, whether the feed can be counted on)."""
    cfg = given.cfg
    # Without a feed, only a listing shows what other writers did (a push agent needs none).
    alone = feed_object is None and cfg.direction is not Mode.PUSH
    listed = ListSchedule(
        full_interval=cfg.list_interval,
        untrusted="no change feed" if alone else None,
        clock=given.clock,
    )
    if feed_object is None:
        return listed, None

    def missed() -> None:
        listed.invalidate("the change feed missed entries")
        request_reconcile()

    feed = Feed(
        cfg.name,
        obj=feed_object,
        named=listed.note,
        full=missed,
        trouble=listed.distrust,
        server=server,
        publish=cfg.direction is not Mode.PULL,
        poll=cfg.direction is not Mode.PUSH,
        clock=given.clock,
        wall=given.wall,
    )
    return listed, feed


def _deletes(
    given: _Given, dirty: Dirty, listed: ListSchedule, request_reconcile: Callable[[], None]
) -> tuple[RefusedDeletes, FolderRoot, DeleteGuards]:
    """The guards every delete passes (holding all of them while a lost state is rebuilt,
    or while the root is another directory than the folder's), the watcher's delete
    batches, and the refused batches a person approves or rejects: an approved batch of
    the watcher's goes back to its batches, one of a pass is planned again by the next
    pass, the root's accepts the directory as the folder; a rejected one is forgotten, so
    the next pass copies it back."""
    cfg, store = given.cfg, given.store
    batcher = DeleteBatcher(2 * cfg.debounce, clock=given.clock)

    def approved(batch: RefusedBatch) -> None:
        if batch.origin == "root":
            root.accept()
        elif batch.origin == "watch":
            for path in batch.remote:
                batcher.add(path)
        else:
            request_reconcile()

    def root_changed() -> None:
        # Another directory: walked and listed whole by the next pass, which meets it.
        dirty.invalidate("the folder's root is another directory")
        listed.invalidate("the folder's root is another directory")
        request_reconcile()

    def rejected(batch: RefusedBatch) -> None:
        for path in batch.paths:
            store.synced.delete(path)
        dirty.note(batch.paths)
        request_reconcile()

    refused = RefusedDeletes(
        cfg.name,
        status=given.status,
        exists=lambda path: os.path.lexists(cfg.path / path),
        on_approved=approved,
        on_rejected=rejected,
        wall=given.wall,
    )
    root = FolderRoot(
        cfg.name,
        root=cfg.path,
        store=store,
        status=given.status,
        refused=refused,
        marker=cfg.folder_marker,
        force=cfg.force_delete,
        ignored=given.scope.ignored,
        on_new=root_changed,
    )
    guards = DeleteGuards(
        root=cfg.path,
        store=store,
        scope=given.scope,
        status=given.status,
        caps=DeleteCaps(max_delete=cfg.max_delete, max_percent=cfg.max_delete_percent),
        force=cfg.force_delete,
        grace=2 * cfg.debounce,
        refused=refused,
        url=cfg.url,
        folder_root=root,
        look_again=dirty.note,
        batcher=batcher,
        clock=given.clock,
        wall=given.wall,
        rebuilding=store.recovered is not None,
    )
    return refused, root, guards


def _engine(
    given: _Given,
    server: Capabilities,
    sending: Sending,
    feed: Feed | None,
    guards: DeleteGuards,
    pool: PoolFactory,
) -> tuple[Conflicts, Recent, Executor]:
    """The executor with the agent's policy, and what it consults: the delete guards, the
    conflict names, the state it records in and the events it reports (kept for the control
    channel as the recent actions, and telling the feed what this agent changed)."""
    cfg, store = given.cfg, given.store
    conflicts = Conflicts(
        root=cfg.path,
        mode=cfg.direction,
        transfer=given.transfer,
        store=store,
        follow_symlinks=cfg.follow_symlinks,
        wall=given.wall,
    )
    recent = Recent(wall=given.wall)
    events = AgentEvents(
        cfg.name,
        cfg.where,
        status=given.status,
        metrics=given.metrics,
        outage=given.outage,
        recent=recent,
        on_changed=feed.note if feed is not None else None,
        on_skip=given.on_skip,
        on_new=guards.added,
    )
    executor = Executor(
        given.transfer,
        recorder=StoreRecorder(store),
        events=events,
        policy=replace(ExecPolicy.AGENT, mode=cfg.direction),
        guards=guards,
        server=server,
        conflict_name=conflicts.name,
        follow_symlinks=cfg.follow_symlinks,
        pool=pool,
        max_concurrency=cfg.s3.max_concurrency,
        stop=given.stop,
        sending=sending,
        wall=given.wall,
        volume=given.volume,
    )
    return conflicts, recent, executor
