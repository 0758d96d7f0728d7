"""The reconcile room: the periodic pass, from the walk or the watcher's paths, the listing or the
feed, and the state."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import T0, FakeFeedObject, cut, refused
from world import (
    World,
    _drain,
    _fed_world,
    _listings,
    _silently_changed,
    synced_file,
    upload_queued,
)

from watchsync.agent.uploader import Settled
from watchsync.core.model import Item, Kind, Mode, Skipped, SyncedEntry
from watchsync.s3.capabilities import Feature


def test_reconcile_failed_transfer_vetoes_the_pass_deletes(
    make_world: Callable[..., World],
) -> None:
    """The drift between the two executors: the agent's pass deleted despite a failure."""
    w = make_world(delete=True)
    synced_file(w, "gone.txt", b"deleted locally")
    synced_file(w, "changed.txt", b"v1")
    synced_file(w, "keep.txt", b"k")
    (w.root / "gone.txt").unlink()
    w.objects.put("changed.txt", b"v2 in S3")
    w.objects.fail["changed.txt"] = cut("download cut")
    stats = w.rooms.reconcile.run()
    assert stats.passed.failed == 1 and stats.passed.vetoed is not None
    assert "gone.txt" in w.objects.objects
    assert "delete: refused 1 deletes" in (w.status.last_error or "")
    del w.objects.fail["changed.txt"]
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is None
    assert "gone.txt" not in w.objects.objects
    assert (w.root / "changed.txt").read_bytes() == b"v2 in S3"


def test_reconcile_routes_uploads_to_pending(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "new.txt").write_bytes(b"n")
    w.rooms.reconcile.run()
    item = w.rooms.pending.take()
    assert item is not None and item.path == "new.txt" and item.absent
    assert "new.txt" not in w.objects.objects  # the uploader sends it, not the pass


def test_reconcile_same_content_is_recorded_not_moved(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "same.txt").write_bytes(b"same bytes")
    os.utime(w.root / "same.txt", ns=(T0, T0 - 50 * 10**9))  # older than the object
    w.objects.put("same.txt", b"same bytes")
    w.rooms.reconcile.run()
    assert w.store.synced.get("same.txt") is not None
    assert [c for c in w.objects.calls if c[0] in ("download", "upload")] == []


_UNREADABLE_DIR = """
import os, sys, threading
from pathlib import Path
from fakes import FakeObjects, InlinePool
from prometheus_client import CollectorRegistry
from watchsync.agent.wiring import wire
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.agent.config import FolderConfig
from watchsync.agent.metrics import Metrics
from watchsync.core.model import SyncedEntry
from watchsync.state.store import StateStore

base = Path(sys.argv[1])
root = base / "root"
cfg = FolderConfig(path=root, url="s3://bucket/p", debounce=0.1, delete=True)
store = StateStore.open(base / "state", local_root=root, url=cfg.url)
store.status.set_meta("root_dev", str(os.stat(root).st_dev))
metrics = Metrics(registry=CollectorRegistry()).folder(cfg.name)
status = Status(cfg.name, store=store, metrics=metrics)
objects = FakeObjects(root)
rooms = wire(cfg, store=store, transfer=objects, scope=Scope(cfg, state_dir=base / "state"),
             status=status, metrics=metrics, stop=threading.Event(), on_skip=lambda s: None,
             pool=InlinePool)
for path in ("locked/x.txt", "gone-in-s3.txt", "keep.txt"):
    rem = objects.put(path, b"body")
    st = (root / path).stat()
    store.synced.put_many([SyncedEntry(path, st.st_size, st.st_mtime_ns, rem.etag, rem.mtime_ns)])
del objects.objects["gone-in-s3.txt"]
os.chmod(root / "locked", 0)
for _ in range(2):
    stats = rooms.reconcile.run()
print(stats.skipped, stats.passed.vetoed.count if stats.passed.vetoed else None)
print(sorted(objects.objects), sorted(os.listdir(root)))
"""


def test_reconcile_with_an_unreadable_directory_goes_on(tmp_path: Path) -> None:
    """``chmod 000`` under the root, seen by an unprivileged agent (root reads anything):
    the pass goes on, the S3-side delete reaches the folder, nothing under the directory
    is deleted in S3."""
    import shutil
    import subprocess
    import sys
    import tempfile

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to run the pass as an unprivileged user")
    tests = Path(__file__).resolve().parent
    if any(not p.stat().st_mode & 0o001 for p in (tests, *tests.parents)):
        pytest.skip(f"the unprivileged user cannot reach {tests} (a parent is not o+x)")
    with tempfile.TemporaryDirectory() as base:
        os.chmod(base, 0o755)
        root = Path(base, "root")
        (root / "locked").mkdir(parents=True)
        for path in ("locked/x.txt", "gone-in-s3.txt", "keep.txt"):
            (root / path).write_bytes(b"body")
        for dirpath, dirs, names in os.walk(base):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirs + names)]:
                os.chown(name, 65534, 65534)
        tests = Path(__file__).parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
        nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        proc = subprocess.run(
            [setpriv, *nobody, sys.executable, "-c", _UNREADABLE_DIR, base],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        counts, listing = proc.stdout.splitlines()
        assert counts == "1 1"  # one skip, one delete held back (locked/x.txt in S3)
        assert listing == "['keep.txt', 'locked/x.txt'] ['keep.txt', 'locked']"


def test_periodic_pass_looks_only_at_reported_paths(make_world: Callable[..., World]) -> None:
    """After the first (full) pass the local side is the state plus the reported paths: an
    unreported change is not seen (no walk), a reported one is."""
    w = make_world()
    for name in ("a.txt", "b.txt", "d/c.txt"):
        synced_file(w, name, b"v1")
    first = w.rooms.reconcile.run()
    assert first.walked and first.passed.planned == {}
    _silently_changed(w, "a.txt", b"v2 unseen")
    _silently_changed(w, "b.txt", b"v2 reported")
    w.rooms.reconcile.dirty.note(["b.txt"])  # type: ignore[union-attr]
    second = w.rooms.reconcile.run()
    assert not second.walked
    assert second.passed.planned == {Kind.UPLOAD: 1}
    assert _drain(w) == ["b.txt"]


def test_missed_change_after_overflow_is_caught_by_a_full_walk(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2 missed: the kernel queue overflowed")
    w.rooms.reconcile.dirty.invalidate("the watcher overflowed")  # type: ignore[union-attr]
    stats = w.rooms.reconcile.run()
    assert stats.walked and stats.passed.planned == {Kind.UPLOAD: 1}
    assert _drain(w) == ["a.txt"]
    assert not w.rooms.reconcile.run().walked  # trusted again afterwards


@pytest.mark.parametrize(
    ("why", "caught"),
    [
        pytest.param("interval", True, id="full-walk-interval-elapsed"),
        pytest.param("polling", True, id="polling-observer"),
        pytest.param("none", False, id="healthy-watcher-trusted"),
    ],
)
def test_full_walk_when_the_watcher_cannot_be_trusted(
    make_world: Callable[..., World], why: str, caught: bool
) -> None:
    w = make_world(full_walk_interval=3600.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2 never reported")
    if why == "interval":
        w.now[0] += 3600.0
    elif why == "polling":
        w.status.watching(polling=True)
    stats = w.rooms.reconcile.run()
    assert stats.walked is caught
    assert (stats.passed.planned == {Kind.UPLOAD: 1}) is caught


def test_quiet_pass_trusting_the_feed_sends_no_request(make_world: Callable[..., World]) -> None:
    w = _fed_world(make_world, full_list_interval=3600.0)
    synced_file(w, "a.txt", b"v1")
    first = w.rooms.reconcile.run()
    assert first.listed and _listings(w) == 1
    w.objects.calls.clear()
    w.now[0] += 300.0
    quiet = w.rooms.reconcile.run()
    assert not quiet.listed and not quiet.walked
    assert quiet.passed.planned == {} and w.objects.calls == []


def test_reported_paths_are_planned_against_the_state_without_a_listing(
    make_world: Callable[..., World],
) -> None:
    """A trusted pass looks at what the watcher reported (a changed file, a vanished one, a
    new file in a reported directory), each object taken as last synced."""
    w = _fed_world(make_world, delete=True)
    for name in ("a.txt", "b.txt", "d/c.txt"):
        synced_file(w, name, b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2")
    (w.root / "b.txt").unlink()
    (w.root / "d" / "new.txt").write_bytes(b"new")
    w.rooms.reconcile.dirty.note(["a.txt", "b.txt", "d/"])  # type: ignore[union-attr]
    w.objects.calls.clear()
    stats = w.rooms.reconcile.run()
    assert not stats.listed and _listings(w) == 0
    assert stats.passed.planned == {Kind.UPLOAD: 2, Kind.DELETE_REMOTE: 1}
    assert sorted(_drain(w)) == ["a.txt", "d/new.txt"]
    assert "b.txt" not in w.objects.objects  # deleted, conditional on the synced ETag


def test_a_change_no_feed_reported_waits_for_the_full_list_interval(
    make_world: Callable[..., World],
) -> None:
    """Another tool's write (no feed entry) is found by the listing at the interval."""
    w = _fed_world(make_world, full_list_interval=3600.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    w.objects.put("a.txt", b"v2 from the console")
    w.now[0] += 300.0
    assert w.rooms.reconcile.run().passed.planned == {}
    w.now[0] += 3300.0
    late = w.rooms.reconcile.run()
    assert late.listed and late.passed.planned == {Kind.DOWNLOAD: 1}
    assert (w.root / "a.txt").read_bytes() == b"v2 from the console"


@pytest.mark.parametrize(
    "why",
    ["missed-entries", "unreadable-feed", "no-conditional-writes", "no-feed"],
)
def test_the_prefix_is_listed_when_the_feed_cannot_be_trusted(
    make_world: Callable[..., World], why: str
) -> None:
    obj = FakeFeedObject()
    w = make_world(feed_object=None if why == "no-feed" else obj)
    feed = w.rooms.feed
    if feed is not None:
        feed.poll()
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    w.objects.put("a.txt", b"v2 unreported")
    if why == "missed-entries":
        assert feed is not None
        feed.full()  # what the feed calls on a gap, a new epoch or a large change
    elif why == "unreadable-feed":
        assert feed is not None
        obj.body = b"{not json"
        feed.poll()
    elif why == "no-conditional-writes":
        assert feed is not None
        w.rooms.executor.server.refused(Feature.CONDITIONAL_WRITES)  # learnt by any writer
        feed.tick()
    w.now[0] += 300.0
    stats = w.rooms.reconcile.run()
    assert stats.listed
    assert Kind.DOWNLOAD in stats.passed.planned


def test_a_listing_pass_that_failed_lists_again(make_world: Callable[..., World]) -> None:
    w = _fed_world(make_world)
    synced_file(w, "a.txt", b"v1")
    w.objects.put("a.txt", b"v2 before the agent started")
    w.objects.fail["a.txt"] = cut()
    assert w.rooms.reconcile.run().passed.failed
    del w.objects.fail["a.txt"]
    w.now[0] += 300.0
    again = w.rooms.reconcile.run()
    assert again.listed and again.passed.planned == {Kind.DOWNLOAD: 1}


def test_push_agent_lists_only_at_the_interval(make_world: Callable[..., World]) -> None:
    """A push agent reads no feed: between listings it trusts its state for S3 outright."""
    w = make_world(direction=Mode.PUSH, full_list_interval=600.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    del w.objects.objects["a.txt"]  # removed by someone else
    w.now[0] += 300.0
    assert not w.rooms.reconcile.run().listed
    w.now[0] += 300.0
    stats = w.rooms.reconcile.run()
    assert stats.listed and stats.passed.planned == {Kind.UPLOAD: 1}


def test_a_file_found_changed_at_a_planned_download_is_looked_at_again(
    make_world: Callable[..., World],
) -> None:
    """A pass plans a download from the state's record of the file (not reported by the
    watcher), but the file is not that: the download is left (the file wins), and the next
    pass looks at the file as it is instead of planning the same download forever."""
    w = _fed_world(make_world, full_list_interval=0.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2 local, unreported")
    w.objects.put("a.txt", b"v2 remote")
    first = w.rooms.reconcile.run()
    assert first.passed.planned == {Kind.DOWNLOAD: 1} and first.passed.stale == ["a.txt"]
    assert (w.root / "a.txt").read_bytes() == b"v2 local, unreported"
    w.now[0] += 300.0
    second = w.rooms.reconcile.run()
    assert Kind.DOWNLOAD not in second.passed.planned  # seen as changed on both sides now
    assert second.passed.planned  # a conflict (both kept) or the upload it routes


def test_full_list_interval_zero_lists_every_pass(make_world: Callable[..., World]) -> None:
    w = _fed_world(make_world, full_list_interval=0.0)
    w.rooms.reconcile.run()
    assert w.rooms.reconcile.run().listed


def test_full_walk_interval_zero_walks_every_pass(make_world: Callable[..., World]) -> None:
    w = make_world(full_walk_interval=0.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    assert w.rooms.reconcile.run().walked


def test_periodic_pass_reported_directories_and_deletes(
    make_world: Callable[..., World],
) -> None:
    """A vanished file, a directory moved away, a directory replaced by a file and a new
    file in a reported directory: each as a full walk would see it."""
    w = make_world(delete=True)
    for name in ("gone.txt", "moved/x.txt", "moved/sub/y.txt", "swap/z.txt", "keep.txt"):
        synced_file(w, name, b"v1")
    (w.root / "fresh").mkdir()
    w.rooms.reconcile.run()
    (w.root / "gone.txt").unlink()
    (w.root / "moved").rename(w.root / "moved-to")
    (w.root / "swap" / "z.txt").unlink()
    (w.root / "swap").rmdir()
    (w.root / "swap").write_bytes(b"a file now")
    (w.root / "fresh" / "new.txt").write_bytes(b"new")
    w.rooms.reconcile.dirty.note(  # type: ignore[union-attr]
        ["gone.txt", "moved/", "moved-to/", "swap/", "fresh/"]
    )
    stats = w.rooms.reconcile.run()
    assert not stats.walked and stats.passed.vetoed is None
    sent = set(_drain(w)) | {c[1] for c in w.objects.calls if c[0] == "copy"}
    assert sent == {"fresh/new.txt", "moved-to/sub/y.txt", "moved-to/x.txt", "swap"}
    assert {p for p in w.objects.objects if not p.startswith("moved-to/")} == {"keep.txt"}


def test_failed_pass_gives_its_paths_to_the_next(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2")
    w.rooms.reconcile.dirty.note(["a.txt"])  # type: ignore[union-attr]
    listing = w.objects.listing

    def cut(*, for_download: bool, on_read: object = None) -> Iterator[Any]:
        raise ConnectionError("listing cut")
        yield

    w.objects.listing = cut  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        w.rooms.reconcile.run()
    w.objects.listing = listing  # type: ignore[method-assign]
    stats = w.rooms.reconcile.run()
    assert not stats.walked and stats.passed.planned == {Kind.UPLOAD: 1}


def test_parked_path_is_looked_at_by_the_next_trusted_pass(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    w.rooms.reconcile.run()  # the first, full pass: nothing yet
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = refused()
    for _ in range(5):
        w.rooms.uploader.process(Item("a.txt"))  # parked at the fifth refusal
    del w.objects.fail["a.txt"]
    stats = w.rooms.reconcile.run()
    assert not stats.walked and stats.passed.planned == {Kind.UPLOAD: 1}


@pytest.mark.parametrize("first", ["reported", "full-walk"])
def test_a_path_left_out_of_sync_is_looked_at_again(
    make_world: Callable[..., World], first: str
) -> None:
    """Under pull a local edit stays unsynced: later passes must not read it from the state
    as unchanged, or S3's next version would be taken as a plain download."""
    w = make_world(direction=Mode.PULL)
    synced_file(w, "doc.txt", b"v1")
    if first == "reported":
        w.rooms.reconcile.run()
    _silently_changed(w, "doc.txt", b"local edit")
    w.rooms.reconcile.dirty.note(["doc.txt"])  # type: ignore[union-attr]
    assert w.rooms.reconcile.run().passed.planned == {}
    assert w.rooms.reconcile.run().passed.planned == {}
    w.objects.put("doc.txt", b"v2 from s3")
    stats = w.rooms.reconcile.run()
    assert not stats.walked and stats.passed.planned == {Kind.CONFLICT: 1}


def test_paths_the_uploader_synced_are_not_looked_at_again(
    make_world: Callable[..., World],
) -> None:
    """A burst's files are reported, uploaded and recorded: the next trusted pass has
    nothing of them left to look at, except a file reported again since it was sent and a
    local edit left alone under pull."""
    w = make_world()
    dirty = w.rooms.reconcile.dirty
    assert dirty is not None
    w.rooms.reconcile.run()
    names = [f"f{i}.txt" for i in range(5)]
    for name in names:
        (w.root / name).write_bytes(name.encode())
    w.rooms.changes.ready(names)
    items = w.rooms.pending.take_many(10)
    assert w.rooms.uploader.process_many(items) == [Settled()] * len(names)
    (w.root / "f0.txt").write_bytes(b"written again")
    w.rooms.changes.ready(["f0.txt"])
    assert dirty.take().paths == {"f0.txt"}
    # Reported while it was being looked at: the look may have missed that change.
    mark = dirty.mark()
    dirty.note(["f1.txt"])
    dirty.settled(["f1.txt", "f2.txt"], mark)
    assert dirty.take().paths == {"f1.txt"}


def test_a_local_edit_left_under_pull_stays_reported(make_world: Callable[..., World]) -> None:
    w = make_world(direction=Mode.PULL)
    synced_file(w, "doc.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "doc.txt", b"local edit")
    w.rooms.changes.ready(["doc.txt"])
    assert w.rooms.uploader.process(Item("doc.txt")) == Settled()
    assert w.rooms.reconcile.dirty.take().paths == {"doc.txt"}  # type: ignore[union-attr]


def test_reconcile_leaves_a_path_the_uploader_holds_to_it(
    make_world: Callable[..., World],
) -> None:
    """A pass that lists while an upload is in flight sees the uploader's own PUT as a
    change in S3, beside the file's own change: it leaves the path to the worker (no
    conflict copy, nothing queued again), and once the record is in nothing is left to do."""
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    (w.root / "a.txt").write_bytes(b"v2, longer")
    w.rooms.pending.add([Item("a.txt")])
    item = w.rooms.pending.take()  # a worker has it in hand ...
    assert item is not None
    up = w.objects.upload("a.txt")  # ... its PUT went through, its record is not in yet
    stats = w.rooms.reconcile.run()  # the first pass walks and lists
    assert stats.passed.planned == {}
    assert not [p for p in w.objects.objects if ".conflict-" in p]
    assert not list(w.root.glob("*conflict*"))
    recorded = SyncedEntry("a.txt", up.size, up.mtime_ns, up.etag, T0, up.ino)
    w.store.synced.put_many([recorded])  # recorded
    w.rooms.pending.settle("a.txt")
    assert w.rooms.pending.idle()  # one sender for the path: the pass queued nothing
    uploads = len([c for c in w.objects.calls if c[0] == "upload"])
    assert w.rooms.reconcile.run().passed.planned == {}
    assert len([c for c in w.objects.calls if c[0] == "upload"]) == uploads
    assert w.store.status.counters().get("conflicts", 0) == 0


def test_an_upload_planned_while_the_uploader_sends_it_costs_no_second_request(
    make_world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass after an overflow during a burst (a walk; S3 as last synced) plans the upload
    of a new file that a worker sends and records meanwhile: the path comes back without
    the pass's stale view of S3 (no object), so the worker finds it synced instead of
    losing a conditional write to its own PUT and settling that race."""
    w = _fed_world(make_world, full_list_interval=3600.0)
    w.rooms.reconcile.run()
    (w.root / "n.txt").write_bytes(b"new in a burst")
    w.rooms.pending.add([Item("n.txt")])
    item = w.rooms.pending.take()  # a worker has it in hand
    assert item is not None
    rows = w.store.synced.iter_sorted

    def read_then_sent(prefix: str = "", *, batch: int = 1000) -> Iterator[SyncedEntry]:
        yield from rows(prefix, batch=batch)  # no record of n.txt yet
        assert w.rooms.uploader.process(item) == Settled()  # sent and recorded meanwhile
        w.rooms.pending.settle("n.txt")

    monkeypatch.setattr(w.store.synced, "iter_sorted", read_then_sent)
    w.rooms.reconcile.dirty.invalidate("the watcher overflowed")  # type: ignore[union-attr]
    stats = w.rooms.reconcile.run()
    assert stats.walked and not stats.listed and stats.passed.planned == {Kind.UPLOAD: 1}
    again = w.rooms.pending.take()
    assert again is not None and again.path == "n.txt"
    calls = len(w.objects.calls)
    assert w.rooms.uploader.process(again) == Settled()
    assert w.objects.calls[calls:] == []


def test_an_object_deleted_in_s3_is_sent_again_even_while_its_path_is_queued(
    make_world: Callable[..., World],
) -> None:
    """The pass saw no object for an unchanged file: the plan's view goes with the path into
    the queue even when the watcher queued that path already, or the worker, finding the
    file as last synced, would send nothing."""
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    del w.objects.objects["a.txt"]  # deleted in S3 by another tool
    w.rooms.pending.add([Item("a.txt")])  # a touch the watcher reported
    w.rooms.reconcile.dirty.note(["a.txt"])  # type: ignore[union-attr]
    assert w.rooms.reconcile.run().passed.planned == {Kind.UPLOAD: 1}
    item = w.rooms.pending.take()
    assert item is not None and item.absent
    assert w.rooms.uploader.process(item) == Settled()
    assert w.objects.objects["a.txt"][0] == b"v1"


def test_reconcile_removes_an_empty_directory_in_the_way_of_a_file(
    make_world: Callable[..., World],
) -> None:
    """A directory that became a file on the other side: once its files are gone here, the
    empty directory left behind gives way to the file; one that still holds a file stays."""
    w = make_world()
    (w.root / "a").mkdir()  # emptied by an earlier type change
    (w.root / "n/f1.txt/deeper").mkdir(parents=True)  # a file that became a directory, emptied
    (w.root / "b/sub").mkdir(parents=True)
    (w.root / "b/sub/keep.txt").write_bytes(b"still here")
    w.objects.put("a", b"a file now")
    w.objects.put("n", b"a file where empty directories are")
    w.objects.put("b", b"a file where a directory with a file is")
    stats = w.rooms.reconcile.run()
    assert (w.root / "a").read_bytes() == b"a file now"
    assert (w.root / "n").read_bytes() == b"a file where empty directories are"
    assert (w.root / "b/sub/keep.txt").read_bytes() == b"still here"
    assert stats.passed.failed == 0  # b: reported, left as it is (a stable state, no failure)
    assert "directory is in the way" in (w.status.last_error or "")


def test_by_default_every_periodic_pass_lists_the_prefix(
    make_world: Callable[..., World],
) -> None:
    """Another tool's write (no feed entry) is found by the next periodic pass: the
    listing follows the reconcile interval, and status says how often it comes."""
    w = _fed_world(make_world, reconcile_interval=3.0)
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    w.objects.put("a.txt", b"v2 from the console")
    w.now[0] += 3.0
    stats = w.rooms.reconcile.run()
    assert stats.listed and stats.passed.planned == {Kind.DOWNLOAD: 1}
    assert (w.root / "a.txt").read_bytes() == b"v2 from the console"
    fields = w.store.status.fields()
    assert fields["list_every"] == 3.0 and fields["list_stretched"] is None


def test_a_lost_delete_blocked_by_a_new_file_settles_as_a_collision(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """Soak seed 548694647: directory ``a/`` became a file ``a`` while another writer
    changed ``a/b`` in S3.  The delete of ``a/b`` lost to the change, whose download the
    file ``a`` blocks: a collision.  The record of ``a/b`` named a version neither side
    held any more; kept, every pass trusting the feed read it as ``a/b`` deleted locally,
    planned a delete of S3's newer version and held it ("refused 1 deletes"), pass after
    pass.  The record is given up: the collision is the folder's stable, reported state."""
    w = _fed_world(make_world, delete=True, full_list_interval=3600.0)
    synced_file(w, "a/b", b"v1")
    assert w.rooms.reconcile.run().listed
    w.objects.put("a/b", b"v2 from another writer")  # no feed entry: found by HEAD or listing
    (w.root / "a" / "b").unlink()
    (w.root / "a").rmdir()
    (w.root / "a").write_bytes(b"a file now")
    w.rooms.reconcile.dirty.note(["a/b", "a/", "a"])  # type: ignore[union-attr]
    with caplog.at_level(logging.INFO):
        first = w.rooms.reconcile.run()
        assert not first.listed and first.passed.vetoed is None
        upload_queued(w)
        later = []
        for _ in range(3):
            w.now[0] += 5.0
            later.append(w.rooms.reconcile.run().passed)
            upload_queued(w)
        w.now[0] += 3600.0
        listed = w.rooms.reconcile.run()
    assert listed.listed and listed.passed.vetoed is None
    assert [p.planned for p in later] == [{}, {}, {}]
    assert all(p.vetoed is None for p in later)
    assert w.objects.objects["a/b"][0] == b"v2 from another writer"
    assert w.objects.objects["a"][0] == b"a file now"
    assert (w.root / "a").read_bytes() == b"a file now"
    said = [r for r in caplog.records if "S3 has both a file and a directory" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "S3 has both a file and a directory" in (w.status.last_error or "")


def test_a_reported_path_under_what_is_now_a_file_is_deleted_not_skipped(
    make_world: Callable[..., World],
) -> None:
    """Directory ``a/`` replaced by a file ``a``: the reported ``a/b`` cannot exist any
    more (its stat says "Not a directory").  That is a file deleted, as a missing one is,
    not a path the folder cannot read (whose delete would be held, and said, every pass)."""
    skips: list[Skipped] = []
    w = _fed_world(make_world, delete=True, on_skip=skips.append)
    synced_file(w, "a/b", b"v1")
    w.rooms.reconcile.run()
    (w.root / "a" / "b").unlink()
    (w.root / "a").rmdir()
    (w.root / "a").write_bytes(b"a file now")
    w.rooms.reconcile.dirty.note(["a/b"])  # type: ignore[union-attr]  # alone, as a re-look
    stats = w.rooms.reconcile.run()
    assert skips == [] and stats.passed.vetoed is None
    assert stats.passed.planned == {Kind.DELETE_REMOTE: 1}
    assert "a/b" not in w.objects.objects
