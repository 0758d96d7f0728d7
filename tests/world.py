"""One folder's rooms wired to a real local root and state and a fake bucket, for the room tests
(no threads, no inotify, no server)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeFeedObject, FakeObjects, InlinePool
from prometheus_client import CollectorRegistry

from watchsync.agent.config import FolderConfig
from watchsync.agent.effects import StoreRecorder
from watchsync.agent.metrics import Metrics
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.agent.wiring import Rooms, wire
from watchsync.core.model import Skipped, SyncedEntry
from watchsync.fs.volume import FolderVolume
from watchsync.state.store import StateStore


@dataclass
class World:
    """One folder's rooms over a real local root and state, and a fake bucket."""

    root: Path
    objects: FakeObjects
    store: StateStore
    rooms: Rooms
    status: Status
    now: list[float]  # the rooms' clock (monotonic seconds)
    wall: list[float]  # their wall clock (epoch seconds)


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    stores: list[StateStore] = []

    def make(
        feed_object: FakeFeedObject | None = None,
        bucket: Callable[[Path], FakeObjects] = FakeObjects,
        volume: Callable[[Path], FolderVolume] | None = None,
        on_skip: Callable[[Skipped], None] = lambda _s: None,
        **overrides: Any,
    ) -> World:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        cfg = FolderConfig(path=root, url="s3://bucket/p", debounce=0.1, **overrides)
        store = StateStore.open(tmp_path / "state", local_root=root, url=cfg.url)
        stores.append(store)
        store.status.set_meta("root_dev", str(os.stat(root).st_dev))
        metrics = Metrics(registry=CollectorRegistry()).folder(cfg.name)
        status = Status(cfg.name, store=store, metrics=metrics)
        now = [100.0]
        wall = [1_800_000_000.0]
        objects = bucket(root)
        rooms = wire(
            cfg,
            store=store,
            transfer=objects,
            scope=Scope(cfg, state_dir=tmp_path / "state"),
            status=status,
            metrics=metrics,
            stop=threading.Event(),
            on_skip=on_skip,
            pool=InlinePool,
            clock=lambda: now[0],
            wall=lambda: wall[0],
            feed_object=feed_object,
            volume=volume(root) if volume is not None else None,
        )
        return World(root, objects, store, rooms, status, now, wall)

    yield make
    for store in stores:
        store.close()


def synced_file(world: World, path: str, body: bytes, *, identity: bool = False) -> None:
    """A file on both sides, recorded as synced (as after an upload; ``identity``: with its
    inode and ctime, as this version's uploads record it)."""
    target = world.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    rem = world.objects.put(path, body)
    st = target.stat()
    ino, ctime = (st.st_ino, st.st_ctime_ns) if identity else (0, 0)
    synced = SyncedEntry(path, st.st_size, st.st_mtime_ns, rem.etag, rem.mtime_ns, ino, ctime)
    world.store.synced.put_many([synced])


def _silently_changed(world: World, path: str, body: bytes) -> None:
    """Change a synced file the way the watcher would miss it (no note to the rooms)."""
    target = world.root / path
    target.write_bytes(body)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def _drain(world: World) -> list[str]:
    paths = []
    while len(world.rooms.pending) and (item := world.rooms.pending.take()) is not None:
        paths.append(item.path)
        world.rooms.pending.settle(item.path)
    return paths


def upload_queued(world: World) -> None:
    """Run what a pass queued for the uploader, as its workers would."""
    while len(world.rooms.pending) and (item := world.rooms.pending.take()) is not None:
        world.rooms.uploader.process(item)
        world.rooms.pending.settle(item.path)


def _listings(w: World) -> int:
    return sum(1 for op, _ in w.objects.calls if op == "list")


def _fed_world(make_world: Callable[..., World], **overrides: Any) -> World:
    """A world whose feed was read once (as the runner's first tick does)."""
    w = make_world(feed_object=FakeFeedObject(), **overrides)
    assert w.rooms.feed is not None
    w.rooms.feed.poll()
    return w


def _commits(w: World) -> int:
    recorder = w.rooms.executor.recorder
    assert isinstance(recorder, StoreRecorder)
    return recorder.commits
