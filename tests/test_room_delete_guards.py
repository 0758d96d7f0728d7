"""The delete guards room: refusals, batches, the directory and device guards, the rolling cap."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from world import (
    World,
    synced_file,
)

from watchsync.agent.config import FolderConfig
from watchsync.agent.delete_guards import DeleteBatcher, DeleteGuards, delete_refusal
from watchsync.agent.scope import Scope


def refusal(
    root: Path,
    *,
    count: int = 1,
    synced: int = 5,
    dev: str | None = None,
    max_delete: int = 10,
    force: bool = False,
) -> str | None:
    why = delete_refusal(
        root,
        count=count,
        synced=lambda: synced,
        root_dev=str(os.stat(root).st_dev) if dev is None and root.exists() else (dev or ""),
        ignored=lambda name, is_dir: name.endswith(".swp"),
        max_delete=max_delete,
        force=force,
    )
    return why


@pytest.mark.parametrize(
    ("setup", "kwargs", "expect"),
    [
        pytest.param("files", {}, None, id="normal-pass-allowed"),
        pytest.param("missing", {}, "is missing", id="root-missing"),
        pytest.param("files", {"dev": "999999"}, "another device", id="other-device"),
        pytest.param("empty", {}, "is empty while 5 files", id="empty-root"),
        pytest.param("ignored-only", {}, "is empty while 5 files", id="only-temp-files-left"),
        pytest.param("empty", {"synced": 0}, None, id="empty-and-nothing-synced"),
        pytest.param("files", {"count": 11}, "exceed --max-delete 10", id="too-many"),
        pytest.param("files", {"count": 11, "force": True}, None, id="too-many-forced"),
        pytest.param("files", {"count": 10}, None, id="exactly-max"),
    ],
)
def test_delete_refusal(
    tmp_path: Path, setup: str, kwargs: dict[str, object], expect: str | None
) -> None:
    root = tmp_path / "root"
    if setup != "missing":
        root.mkdir()
    if setup == "files":
        (root / "keep.txt").write_text("x")
    if setup == "ignored-only":
        (root / ".a.swp").write_text("x")
    got = refusal(root, **kwargs)  # type: ignore[arg-type]
    if expect is None:
        assert got is None
    else:
        assert got is not None and expect in got


def test_delete_batcher_releases_one_batch_after_quiet() -> None:
    now = [0.0]
    batcher = DeleteBatcher(1.0, clock=lambda: now[0])
    batcher.add("b")
    now[0] = 0.9
    batcher.add("a")  # restarts the grace period for the whole batch
    now[0] = 1.5
    stop = threading.Event()
    result: list[list[str]] = []
    t = threading.Thread(target=lambda: result.append(batcher.take(stop)))
    t.start()
    t.join(0.5)
    assert t.is_alive() and batcher.pending() == 2  # 0.6 s quiet is not enough
    now[0] = 2.0
    t.join(5)
    assert result == [["a", "b"]] and batcher.pending() == 0


def test_delete_batcher_take_returns_on_stop() -> None:
    stop = threading.Event()
    stop.set()
    assert DeleteBatcher(1.0).take(stop) == []


def test_delete_batcher_wake_releases_a_waiting_take() -> None:
    batcher = DeleteBatcher(1.0)
    stop = threading.Event()
    result: list[list[str]] = []
    t = threading.Thread(target=lambda: result.append(batcher.take(stop)))
    t.start()
    stop.set()
    batcher.wake()
    t.join(5)
    assert not t.is_alive() and result == [[]]


def _on_device(dev: int, *dirs: Path) -> Callable[[Path], os.stat_result]:
    """A stat that reports ``dirs`` on device ``dev`` (a disk mounted there)."""

    def stat(path: Path) -> os.stat_result:
        st = os.stat(path)
        if path in dirs:
            return os.stat_result(tuple(dev if i == 2 else v for i, v in enumerate(st)))
        return st

    return stat


def test_deletes_refused_below_a_directory_whose_device_changed(
    make_world: Callable[..., World],
) -> None:
    """photos/ was a mounted disk when synced; unmounted, it is an empty directory on the
    root's device: its files must not be deleted from S3 (the root's guard missed it)."""
    w = make_world(delete=True)
    for i in range(3):
        synced_file(w, f"photos/p{i}.jpg", b"photo")
    synced_file(w, "keep.txt", b"k")
    deletes = w.rooms.guards
    deletes.stat = _on_device(4242, w.root / "photos")
    deletes.mounts = lambda root: ["photos"]
    deletes.survey()
    assert w.store.guards.dir_devices() == {"photos": "4242"}
    # Unmounted: the mount point is an empty directory on the root's device.
    deletes.stat, deletes.mounts = os.stat, lambda root: []
    for i in range(3):
        (w.root / f"photos/p{i}.jpg").unlink()
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is not None
    assert "directory photos is on another device" in (stats.passed.vetoed.refusal or "")
    assert all(f"photos/p{i}.jpg" in w.objects.objects for i in range(3))
    # Remounted: the files are back and nothing is deleted.
    deletes.stat = _on_device(4242, w.root / "photos")
    for i in range(3):
        (w.root / f"photos/p{i}.jpg").write_bytes(b"photo")
    # A delete inside the mounted disk passes the guard.
    (w.root / "photos/p0.jpg").unlink()
    assert w.rooms.reconcile.run().passed.vetoed is None
    assert "photos/p0.jpg" not in w.objects.objects and "photos/p1.jpg" in w.objects.objects


@pytest.mark.parametrize(
    ("files", "remove_dir", "force", "refused"),
    [
        pytest.param(12, False, False, True, id="many-files-dir-left-empty"),
        pytest.param(12, True, False, False, id="dir-removed-too"),
        pytest.param(12, False, True, False, id="forced"),
        pytest.param(3, False, False, False, id="few-files-rm-star"),
    ],
)
def test_deletes_refused_below_a_directory_that_went_empty(
    make_world: Callable[..., World], files: int, remove_dir: bool, force: bool, refused: bool
) -> None:
    w = make_world(delete=True, force_delete=force)
    for i in range(files):
        synced_file(w, f"photos/2020/p{i:02}.jpg", b"photo")
    synced_file(w, "keep.txt", b"k")
    for i in range(files):
        (w.root / f"photos/2020/p{i:02}.jpg").unlink()
    (w.root / "photos/2020").rmdir()  # photos/ itself is the empty mount point
    if remove_dir:
        (w.root / "photos").rmdir()
    stats = w.rooms.reconcile.run()
    left = [p for p in w.objects.objects if p.startswith("photos/")]
    assert (len(left) == files) is refused
    if refused:
        assert stats.passed.vetoed is not None
        assert "directory photos is empty while 12 files" in (stats.passed.vetoed.refusal or "")
    else:
        assert left == [] and stats.passed.vetoed is None


def test_directory_guard_applies_to_the_watchers_batches(make_world: Callable[..., World]) -> None:
    w = make_world(delete=True)
    names = [f"photos/p{i:02}.jpg" for i in range(12)]
    for name in names:
        synced_file(w, name, b"photo")
    synced_file(w, "keep.txt", b"k")
    for name in names:
        (w.root / name).unlink()
    w.rooms.guards.run(names, w.rooms.executor)
    assert "directory photos is empty while 12 files" in (w.status.last_error or "")
    assert all(n in w.objects.objects for n in names)


def test_max_delete_holds_for_a_rolling_window_across_passes_and_restarts(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    """Three slices of deletes a few seconds apart, each under --max-delete, add up."""
    w = make_world(delete=True, max_delete=5)
    names = [f"f{i:02}.txt" for i in range(12)]
    for name in names:
        synced_file(w, name, b"x")
    synced_file(w, "keep.txt", b"k")
    now = w.wall

    def slice_of(deletes: DeleteGuards, batch: list[str]) -> None:
        for name in batch:
            (w.root / name).unlink(missing_ok=True)
        deletes.run(batch, w.rooms.executor)

    slice_of(w.rooms.guards, names[:4])
    assert not any(n in w.objects.objects for n in names[:4])
    now[0] += 5
    slice_of(w.rooms.guards, names[4:8])
    assert all(n in w.objects.objects for n in names[4:8])
    assert "4 deletes after 4 in the last 60 min exceed --max-delete 5" in (
        w.status.last_error or ""
    )
    # A restart (new rooms over the same state) does not reset the window.
    again = DeleteGuards(
        root=w.root,
        store=w.store,
        scope=Scope(FolderConfig(path=w.root, url="s3://bucket/p"), state_dir=tmp_path / "s"),
        status=w.status,
        max_delete=5,
        force=False,
        grace=0.1,
        refused=w.rooms.refused,
        wall=lambda: now[0],
    )
    assert again.refusal(2) is not None and again.refusal(1) is None
    now[0] += 3600
    slice_of(again, names[4:8])
    assert not any(n in w.objects.objects for n in names[4:8])
