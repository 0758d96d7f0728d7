"""The delete guards room: refusals, batches, the directory and device guards, the rolling cap."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from world import (
    World,
    synced_file,
    upload_queued,
)

from watchsync.agent.config import FolderConfig
from watchsync.agent.delete_guards import DeleteBatcher, DeleteGuards
from watchsync.agent.scope import Scope
from watchsync.core.model import Action, Kind
from watchsync.core.plan import DeleteCaps
from watchsync.engine.policy import NOTHING_SEEN, Seen


def _deletes(*paths: str, kind: Kind = Kind.DELETE_REMOTE) -> list[Action]:
    return [Action(kind, p, "deleted locally") for p in paths]


@pytest.mark.parametrize(
    ("setup", "overrides", "deletes", "expect"),
    [
        pytest.param("files", {}, 1, None, id="normal-pass-allowed"),
        pytest.param("missing", {}, 1, "is missing", id="root-missing"),
        pytest.param("empty", {}, 1, "is empty while 5 files", id="empty-root"),
        pytest.param("ignored-only", {}, 1, "is empty while 5 files", id="only-temp-files-left"),
        pytest.param("empty", {"force_delete": True}, 1, None, id="empty-root-forced"),
        pytest.param("files", {"max_delete": 3}, 4, "exceed --max-delete 3", id="too-many"),
        pytest.param(
            "files", {"max_delete": 3, "force_delete": True}, 4, None, id="too-many-forced"
        ),
        pytest.param("files", {"max_delete": 3}, 3, None, id="exactly-max"),
    ],
)
def test_delete_guards_of_the_folder(
    make_world: Callable[..., World],
    setup: str,
    overrides: dict[str, object],
    deletes: int,
    expect: str | None,
) -> None:
    w = make_world(delete=True, **overrides)
    for i in range(5):
        synced_file(w, f"f{i}.txt", f"file {i}".encode())  # no content elsewhere: no rename
    for i in range(5):
        (w.root / f"f{i}.txt").unlink()
    if setup == "files":
        (w.root / "keep.txt").write_text("x")
    if setup == "ignored-only":
        (w.root / ".a.swp").write_text("x")
    if setup == "missing":
        w.root.rmdir()
    got = w.rooms.guards.refusal(_deletes(*(f"f{i}.txt" for i in range(deletes))))
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
    w = make_world(delete=True, force_delete=force, max_delete_percent=100)
    for i in range(files):
        synced_file(w, f"photos/2020/p{i:02}.jpg", f"photo {i}".encode())
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
    w = make_world(delete=True, max_delete_percent=100)
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
        synced_file(w, name, name.encode())
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
        caps=DeleteCaps(max_delete=5),
        force=False,
        grace=0.1,
        refused=w.rooms.refused,
        wall=lambda: now[0],
    )
    assert again.refusal(_deletes("f08.txt", "f09.txt")) is not None
    assert again.refusal(_deletes("f08.txt")) is None
    now[0] += 3600
    slice_of(again, names[4:8])
    assert not any(n in w.objects.objects for n in names[4:8])


def _held(w: World) -> list[str]:
    return [b.why for b in w.rooms.refused.batches()]


def test_the_share_cap_holds_a_pass_in_both_directions_until_approved(
    make_world: Callable[..., World],
) -> None:
    """More than half of what was synced, deleted in one pass, waits for a person, in S3
    (files deleted here) and here (objects deleted in S3); approved, it runs."""
    w = make_world(delete=True)
    names = [f"f{i:02}.txt" for i in range(30)]
    for name in names:
        synced_file(w, name, name.encode())
    for name in names[:20]:
        (w.root / name).unlink()
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is not None
    assert "20 deletes in S3 are 66% of the 30 files synced" in (stats.passed.vetoed.refusal or "")
    assert all(n in w.objects.objects for n in names)
    (batch,) = w.rooms.refused.batches()
    assert w.rooms.refused.approve(batch.id) is not None
    assert w.rooms.reconcile.run().passed.vetoed is None
    assert sorted(w.objects.objects) == names[20:]
    # The other way: objects deleted in S3 by another tool.
    for name in names[20:]:
        synced_file(w, name.replace("f", "g"), name.encode() + b"g")
    for name in names[20:] + [n.replace("f", "g") for n in names[20:28]]:
        del w.objects.objects[name]
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is not None
    assert "18 deletes here are 90% of the 20 files synced" in (stats.passed.vetoed.refusal or "")
    assert all((w.root / n).exists() for n in names[20:])


def test_an_emptied_listing_holds_every_local_delete(make_world: Callable[..., World]) -> None:
    """The prefix emptied by another tool while files were synced: no file here is deleted
    (rclone bisync: "Empty current listing"), however few; approved, they go."""
    w = make_world(delete=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        synced_file(w, name, name.encode())
    w.objects.objects.clear()
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is not None
    assert "the listing of s3://bucket/p is empty while 3 files were synced" in (
        stats.passed.vetoed.refusal or ""
    )
    assert sorted(p.name for p in w.root.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    (batch,) = w.rooms.refused.batches()
    w.rooms.refused.approve(batch.id)
    assert w.rooms.reconcile.run().passed.vetoed is None
    assert list(w.root.iterdir()) == []


def test_a_renamed_folder_is_not_a_mass_delete(make_world: Callable[..., World]) -> None:
    """A folder renamed: its files copied server-side to the new names (recorded with the
    same ETags), then the old keys deleted: the deletes lose no content, so no cap holds
    them however many (a rename must not leave a double tree)."""
    w = make_world(delete=True, max_delete=50)
    names = [f"old/p{i:03}.jpg" for i in range(200)]
    for name in names:
        synced_file(w, name, name.encode())
    synced_file(w, "keep.txt", b"k")
    (w.root / "old").rename(w.root / "new")
    for name in names:  # as the uploader's server-side copies record them
        synced_file(w, name.replace("old/", "new/"), name.encode())
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is None, stats.passed.vetoed
    assert not any(k.startswith("old/") for k in w.objects.objects)
    assert len([k for k in w.objects.objects if k.startswith("new/")]) == 200
    # Deleting the same number of files whose content lives nowhere else is held.
    gone = [name.replace("old/", "new/") for name in names[:60]]
    for name in gone:
        (w.root / name).unlink()
    w.rooms.dirty.note(gone)  # as the watcher reports them
    assert w.rooms.reconcile.run().passed.vetoed is not None


def test_a_checkout_storm_does_not_add_up_but_rm_in_slices_does(
    make_world: Callable[..., World],
) -> None:
    """Branch switches a few seconds apart replace files (deleted, others written): the
    synced tree does not shrink, so neither the share nor the rolling window holds them;
    files only deleted, slice after slice, add up to --max-delete as before."""
    w = make_world(delete=True, max_delete=50)
    tree = [f"src/a{i:03}.c" for i in range(100)]
    for name in tree:
        synced_file(w, name, name.encode())
    for switch in range(4):  # each deletes 40 files and writes 40 others
        old, new = tree[:40], [f"src/b{switch}-{i:03}.c" for i in range(40)]
        for name in new:
            synced_file(w, name, name.encode())  # uploaded and recorded meanwhile
        for name in new:
            w.rooms.guards.added(name)  # as the executor's events tell of new paths
        for name in old:
            (w.root / name).unlink()
        w.wall[0] += 5
        w.rooms.guards.run(old, w.rooms.executor)
        assert not any(n in w.objects.objects for n in old), (switch, _held(w))
        tree = tree[40:] + new
    assert _held(w) == []
    w.now[0] += 600  # minutes later: no file written lately
    for name in tree[:30]:  # now only deleting: 30, then 30 more within the hour
        (w.root / name).unlink()
    w.rooms.guards.run(tree[:30], w.rooms.executor)
    for name in tree[30:60]:
        (w.root / name).unlink()
    w.wall[0] += 5
    w.rooms.guards.run(tree[30:60], w.rooms.executor)
    assert all(n in w.objects.objects for n in tree[30:60])
    assert "30 deletes after 30 in the last 60 min exceed --max-delete 50" in _held(w)[0]


def test_a_rejection_landing_after_a_pass_planned_keeps_the_files(
    make_world: Callable[..., World],
) -> None:
    """The emptied prefix's deletes rejected while the next pass is already under way
    (soak seed 867326214): the pass planned "deleted in S3" from the records the rejection
    gives up, and once they are gone no guard counts a synced file.  A local delete planned
    from a record the state no longer holds does not run; the next pass sends the files."""
    w = make_world(delete=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        synced_file(w, name, name.encode())
    w.objects.objects.clear()
    assert w.rooms.reconcile.run().passed.vetoed is not None
    (batch,) = w.rooms.refused.batches()
    guards = w.rooms.executor.guards

    class RejectedMeanwhile:
        """The person's `ctl deletes reject` lands between the pass's plan and its deletes."""

        def refusal(self, deletes: Iterable[Action], *, seen: Seen = NOTHING_SEEN) -> str | None:
            planned = list(deletes)
            w.rooms.refused.reject(batch.id)
            return guards.refusal(planned, seen=seen)

    w.rooms.executor.guards = RejectedMeanwhile()
    assert w.rooms.reconcile.dirty is not None
    w.rooms.reconcile.dirty.invalidate("the watcher is not running in a room test")
    w.rooms.reconcile.run()
    assert sorted(p.name for p in w.root.iterdir()) == ["a.txt", "b.txt", "c.txt"]
    w.rooms.executor.guards = guards
    assert w.rooms.reconcile.run().passed.planned == {Kind.UPLOAD: 3}
    upload_queued(w)  # the pass hands new files to the uploader
    assert sorted(w.objects.objects) == ["a.txt", "b.txt", "c.txt"]
    assert sorted(p.name for p in w.root.iterdir()) == ["a.txt", "b.txt", "c.txt"]
