"""The agent's rooms without threads, inotify or a server: delete guards and batches,
conflict names, pending, uploads, reconcile and the executor's delete veto."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import T0, FakeFeedObject, FakeObjects, InlinePool, RecordedEvents
from prometheus_client import CollectorRegistry

from watchsync.agent.changes import Taken
from watchsync.agent.conflicts import conflict_name
from watchsync.agent.deletes import DeleteBatcher, Deletes, delete_refusal
from watchsync.agent.effects import StoreRecorder
from watchsync.agent.folder import Rooms, wire
from watchsync.agent.listing import LIST_BUDGET, Listed
from watchsync.agent.outage import Outage, no_answer
from watchsync.agent.reconcile import changed_side
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.agent.uploads import Conflict, Retry, Settled
from watchsync.config import FolderConfig
from watchsync.errors import ConditionalWritesUnsupported, PreconditionFailed
from watchsync.execute import Executor, NullRecorder, Skips
from watchsync.local import WalkOptions, walk
from watchsync.metrics import Metrics
from watchsync.model import Action, Kind, LocalEntry, Mode, Skipped, SyncedEntry
from watchsync.state import StateStore
from watchsync.transfer import Uploaded
from watchsync.workqueue import Item, PathQueue


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


@pytest.mark.parametrize(
    ("path", "taken", "expect"),
    [
        ("a.txt", set(), "a.conflict-20261125-101500.txt"),
        ("dir/sub/photo.tar.gz", set(), "dir/sub/photo.tar.conflict-20261125-101500.gz"),
        ("Makefile", set(), "Makefile.conflict-20261125-101500"),
        ("a.txt", {"a.conflict-20261125-101500.txt"}, "a.conflict-20261125-101500-2.txt"),
    ],
)
def test_conflict_name(path: str, taken: set[str], expect: str) -> None:
    when = 1795601700.0  # 2026-11-25 10:15:00 UTC
    assert conflict_name(path, when, taken=taken.__contains__) == expect


# -- the rooms, wired to a fake bucket -------------------------------------------------------


@dataclass
class World:
    """One folder's rooms over a real local root and state, and a fake bucket."""

    root: Path
    objects: FakeObjects
    store: StateStore
    rooms: Rooms
    status: Status
    now: list[float]


@pytest.fixture
def make_world(tmp_path: Path) -> Iterator[Callable[..., World]]:
    stores: list[StateStore] = []

    def make(feed_object: FakeFeedObject | None = None, **overrides: Any) -> World:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        cfg = FolderConfig(path=root, url="s3://bucket/p", debounce=0.1, **overrides)
        store = StateStore.open(tmp_path / "state", local_root=root, url=cfg.url)
        stores.append(store)
        store.set_meta("root_dev", str(os.stat(root).st_dev))
        metrics = Metrics(registry=CollectorRegistry()).folder(cfg.name)
        status = Status(cfg.name, store=store, metrics=metrics)
        now = [100.0]
        objects = FakeObjects(root)
        rooms = wire(
            cfg,
            store=store,
            transfer=objects,
            scope=Scope(cfg, state_dir=tmp_path / "state"),
            status=status,
            metrics=metrics,
            stop=threading.Event(),
            on_skip=lambda _s: None,
            pool=InlinePool,
            clock=lambda: now[0],
            wall=lambda: 1_800_000_000.0,
            feed_object=feed_object,
        )
        return World(root, objects, store, rooms, status, now)

    yield make
    for store in stores:
        store.close()


def synced_file(world: World, path: str, body: bytes) -> None:
    """A file on both sides, recorded as synced (as after an upload)."""
    target = world.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(body)
    rem = world.objects.put(path, body)
    st = target.stat()
    world.store.put(SyncedEntry(path, st.st_size, st.st_mtime_ns, rem.etag, rem.mtime_ns))


def test_uploads_new_file_is_sent_and_recorded(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"hello")
    assert w.rooms.uploads.process(Item("a.txt")) == Settled()
    assert w.objects.objects["a.txt"][0] == b"hello"
    synced = w.store.get("a.txt")
    assert synced is not None and synced.etag == w.objects.objects["a.txt"][1]
    assert w.rooms.uploads.process(Item("a.txt")) == Settled()  # unchanged: nothing sent
    assert [c for c in w.objects.calls if c[0] == "upload"] == [("upload", "a.txt")]


def test_uploads_transient_errors_back_off_per_path(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = ConnectionError("cut")
    delays = [w.rooms.uploads.process(Item("a.txt")) for _ in range(4)]
    assert delays == [Retry(0.5), Retry(1.0), Retry(2.0), Retry(4.0)]
    assert "S3 unreachable" in (w.status.last_error or "")
    del w.objects.fail["a.txt"]
    assert w.rooms.uploads.process(Item("a.txt")) == Settled()
    w.objects.fail["a.txt"] = ConnectionError("cut again")
    assert w.rooms.uploads.process(Item("a.txt", attempt=0)) == Settled()  # unchanged


def test_uploads_lost_race_keeps_both_versions(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "doc.txt", b"v1")
    w.objects.put("doc.txt", b"v2 from elsewhere")  # S3 changed
    (w.root / "doc.txt").write_bytes(b"v2 local edit")  # and so did the file
    assert w.rooms.uploads.process(Item("doc.txt")) == Conflict()
    copies = [p for p in w.objects.objects if ".conflict-" in p]
    assert len(copies) == 1
    assert w.objects.objects[copies[0]][0] == b"v2 from elsewhere"
    assert (w.root / copies[0]).read_bytes() == b"v2 from elsewhere"
    assert w.objects.objects["doc.txt"][0] == b"v2 local edit"
    assert w.store.counters()["conflicts"] == 1


def test_uploads_rename_is_a_server_side_copy(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "old.txt", b"content")
    (w.root / "old.txt").rename(w.root / "new.txt")
    assert w.rooms.uploads.process(Item("new.txt")) == Settled()
    assert ("copy", "new.txt") in w.objects.calls
    assert ("upload", "new.txt") not in w.objects.calls
    assert w.objects.objects["new.txt"][0] == b"content"


def test_uploads_rename_with_other_content_is_uploaded(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "old.txt", b"aaaa")
    st = (w.root / "old.txt").stat()
    (w.root / "old.txt").unlink()
    (w.root / "new.txt").write_bytes(b"bbbb")
    os.utime(w.root / "new.txt", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    assert w.rooms.uploads.process(Item("new.txt")) == Settled()
    assert ("copy", "new.txt") not in w.objects.calls
    assert w.objects.objects["new.txt"][0] == b"bbbb"


def test_uploads_local_delete_goes_to_the_batch(make_world: Callable[..., World]) -> None:
    w = make_world(delete=True)
    synced_file(w, "a.txt", b"a")
    synced_file(w, "keep.txt", b"k")
    (w.root / "a.txt").unlink()
    assert w.rooms.uploads.process(Item("a.txt")) == Settled()
    assert w.rooms.deletes.pending() == 1 and "a.txt" in w.objects.objects
    w.now[0] += 1.0  # the batch's grace period is over
    batch = w.rooms.deletes.batcher.ready()
    w.rooms.deletes.run(batch, w.rooms.executor)
    assert "a.txt" not in w.objects.objects and w.store.get("a.txt") is None


def test_pending_journal_entry_lives_until_settled(make_world: Callable[..., World]) -> None:
    w = make_world()
    pending = w.rooms.pending
    pending.add([Item("a.txt"), Item("b.txt"), Item("a.txt")])
    assert sorted(e.path for e in w.store.journal_pending()) == ["a.txt", "b.txt"]
    item = pending.take()
    assert item is not None
    pending.add([Item(item.path)])  # a new event while a worker holds the path
    pending.settle(item.path)
    assert item.path in [e.path for e in w.store.journal_pending()]  # still owed a look
    rest = [pending.take(), pending.take()]
    assert sorted(i.path for i in rest if i is not None) == ["a.txt", "b.txt"]
    for i in rest:
        assert i is not None
        pending.settle(i.path)
    assert w.store.journal_pending() == [] and pending.idle()


def test_pending_resume_keeps_one_entry_per_path(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.store.journal_add_many("sync", ["a.txt", "a.txt", "b.swp"])
    w.rooms.pending.resume(w.store.journal_pending())
    assert [e.path for e in w.store.journal_pending()] == ["a.txt"]  # b.swp is ignored
    assert len(w.rooms.pending) == 1


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
    w.objects.fail["changed.txt"] = ConnectionError("download cut")
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
    assert w.store.get("same.txt") is not None
    assert [c for c in w.objects.calls if c[0] in ("download", "upload")] == []


def test_conflict_name_under_push_avoids_names_taken_in_s3(
    make_world: Callable[..., World],
) -> None:
    w = make_world(direction=Mode.PUSH)
    first = w.rooms.conflicts.name("a.txt")
    w.objects.put(first, b"an earlier conflict copy")
    second = w.rooms.conflicts.name("a.txt")
    assert second != first and second.endswith("-2.txt")


# -- the executor's delete veto ------------------------------------------------------------


class Refuse:
    def __init__(self, why: str | None) -> None:
        self.why = why

    def refusal(self, count: int, paths: Iterable[str] = ()) -> str | None:
        return self.why


@pytest.mark.parametrize(
    ("fail", "skipped", "refusal", "deleted"),
    [
        pytest.param(False, 0, None, True, id="clean-pass-deletes"),
        pytest.param(True, 0, None, False, id="failed-transfer-vetoes"),
        pytest.param(False, 1, None, False, id="skipped-path-vetoes"),
        pytest.param(False, 0, "guard says no", False, id="policy-refuses"),
        pytest.param(True, 2, "guard says no", False, id="everything-wrong"),
    ],
)
def test_executor_delete_veto(
    tmp_path: Path, fail: bool, skipped: int, refusal: str | None, deleted: bool
) -> None:
    objects = FakeObjects(tmp_path)
    objects.put("gone.txt", b"g")
    (tmp_path / "a.txt").write_bytes(b"a")
    if fail:
        objects.fail["a.txt"] = ConnectionError("cut")
    events = RecordedEvents()
    executor = Executor(
        objects, recorder=NullRecorder(), events=events, policy=Refuse(refusal), pool=InlinePool
    )
    actions = [
        Action(Kind.DELETE_REMOTE, "gone.txt", "not in source"),
        Action(Kind.UPLOAD, "a.txt", "new", LocalEntry("a.txt", 1, 0)),
    ]
    stats = executor.run(actions, skipped=lambda: skipped)
    assert ("gone.txt" not in objects.objects) is deleted
    assert (stats.vetoed is None) is deleted
    if not deleted:
        assert events.vetoes and events.vetoes[0].count == 1


def test_executor_never_deletes_a_file_that_came_back(tmp_path: Path) -> None:
    objects = FakeObjects(tmp_path)
    objects.put("back.txt", b"b")
    (tmp_path / "back.txt").write_bytes(b"b")  # reappeared after the plan
    executor = Executor(objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool)
    executor.run([Action(Kind.DELETE_REMOTE, "back.txt", "not in source")])
    assert "back.txt" in objects.objects


def test_executor_upload_resends_a_file_that_changed_while_read(tmp_path: Path) -> None:
    objects = FakeObjects(tmp_path)
    target = tmp_path / "grow.log"
    target.write_bytes(b"1")
    upload = objects.upload

    def growing(path: str, **kw: Any) -> Uploaded:
        up = upload(path, **kw)
        if len(target.read_bytes()) < 3:
            with target.open("ab") as f:
                f.write(b"+")
        return up

    objects.upload = growing  # type: ignore[method-assign]
    executor = Executor(objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool)
    executor.apply(Action(Kind.UPLOAD, "grow.log", "new", LocalEntry("grow.log", 1, 0)))
    assert objects.objects["grow.log"][0] == target.read_bytes() == b"1++"


# -- an unreadable directory holds back only the deletes under it ---------------------------


def test_executor_skipped_directory_vetoes_only_deletes_under_it(tmp_path: Path) -> None:
    objects = FakeObjects(tmp_path)
    for key in ("locked/a.txt", "locked-not/b.txt", "elsewhere.txt"):
        objects.put(key, b"x")
    skips = Skips()
    skips.add(Skipped("locked", "directory is not readable: Permission denied"))
    events = RecordedEvents()
    executor = Executor(objects, recorder=NullRecorder(), events=events, pool=InlinePool)
    stats = executor.run(
        [Action(Kind.DELETE_REMOTE, k, "not in source") for k in sorted(objects.objects)],
        skipped=skips,
    )
    assert sorted(objects.objects) == ["locked/a.txt"]
    assert stats.vetoed is not None and stats.vetoed.scoped and stats.vetoed.count == 1
    # A plain count (``watchsync sync``) keeps the whole-pass veto; so does a failure.
    objects.put("elsewhere.txt", b"x")
    stats = executor.run(
        [Action(Kind.DELETE_REMOTE, "elsewhere.txt", "not in source")], skipped=lambda: 1
    )
    assert "elsewhere.txt" in objects.objects and stats.vetoed is not None


_UNREADABLE_DIR = """
import os, sys, threading
from pathlib import Path
from fakes import FakeObjects, InlinePool
from prometheus_client import CollectorRegistry
from watchsync.agent.folder import wire
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.config import FolderConfig
from watchsync.metrics import Metrics
from watchsync.model import SyncedEntry
from watchsync.state import StateStore

base = Path(sys.argv[1])
root = base / "root"
cfg = FolderConfig(path=root, url="s3://bucket/p", debounce=0.1, delete=True)
store = StateStore.open(base / "state", local_root=root, url=cfg.url)
store.set_meta("root_dev", str(os.stat(root).st_dev))
metrics = Metrics(registry=CollectorRegistry()).folder(cfg.name)
status = Status(cfg.name, store=store, metrics=metrics)
objects = FakeObjects(root)
rooms = wire(cfg, store=store, transfer=objects, scope=Scope(cfg, state_dir=base / "state"),
             status=status, metrics=metrics, stop=threading.Event(), on_skip=lambda s: None,
             pool=InlinePool)
for path in ("locked/x.txt", "gone-in-s3.txt", "keep.txt"):
    rem = objects.put(path, b"body")
    st = (root / path).stat()
    store.put(SyncedEntry(path, st.st_size, st.st_mtime_ns, rem.etag, rem.mtime_ns))
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


# -- retries back off; a path that keeps failing is parked ----------------------------------


def test_queue_keeps_the_delay_of_a_retry_for_a_path_in_progress() -> None:
    now = [0.0]
    queue = PathQueue(clock=lambda: now[0])
    queue.put(Item("a"))
    stop = threading.Event()
    assert queue.get(stop, poll=0.001) == Item("a")
    queue.put(Item("a", attempt=1), delay=30.0)  # handed in while a worker holds "a"
    queue.put(Item("a"))  # and a fresh event: it must not cut the back-off short
    queue.done("a")
    now[0] = 29.0
    stop.set()
    assert queue.get(stop) is None
    stop.clear()
    ready: list[Item | None] = []
    t = threading.Thread(target=lambda: ready.append(queue.get(stop, poll=0.01)))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not ready  # not before the delay
    now[0] = 30.0
    t.join(5)
    assert ready and ready[0] is not None and ready[0].path == "a"


class RefusingObjects(FakeObjects):
    """SeaweedFS with a directory where a file now is: PUT If-None-Match gives 412, HEAD 404."""

    def upload(
        self,
        path: str,
        *,
        key: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> Uploaded:
        if path == "d" and if_none_match:
            self.calls.append(("upload", path))
            raise PreconditionFailed(path)
        return super().upload(path, key=key, if_match=if_match, if_none_match=if_none_match)


def test_uploads_refused_create_with_no_object_is_sent_once(
    make_world: Callable[..., World],
) -> None:
    """A filer-backed server refuses "only if absent" for a former directory name although
    HEAD finds no object: the file is sent without the condition, once, not retried in a
    loop."""
    w = make_world()
    w.rooms.uploads.conflicts.transfer = RefusingObjects(w.root)
    w.rooms.uploads.executor.transfer = w.rooms.uploads.conflicts.transfer
    objects = w.rooms.uploads.conflicts.transfer
    (w.root / "d").write_bytes(b"a file where a directory was")
    assert w.rooms.uploads.process(Item("d", absent=True)) == Settled()
    assert isinstance(objects, FakeObjects)
    assert objects.objects["d"][0] == b"a file where a directory was"
    assert len([c for c in objects.calls if c[0] == "upload"]) == 2  # refused, then sent


def test_uploads_permanent_refusal_is_parked(make_world: Callable[..., World]) -> None:
    from watchsync.errors import RemoteError

    w = make_world()
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = RemoteError("AccessDenied")
    results = [w.rooms.uploads.process(Item("a.txt")) for _ in range(5)]
    assert [type(r) for r in results] == [Retry] * 4 + [Settled]
    assert "parked" in (w.status.last_error or "")


# -- names that fit in 255 bytes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ext"),
    [("é" * 120 + ".txt", ".txt"), ("名" * 84, ""), ("a" * 250 + ".tar.gz", ".gz")],
    ids=["two-byte-chars", "three-byte-chars-no-ext", "ascii"],
)
def test_conflict_name_of_a_long_name_fits_and_stays_unique(name: str, ext: str) -> None:
    taken: set[str] = set()
    for _ in range(3):
        got = conflict_name("dir/" + name, 1795601700.0, taken=taken.__contains__)
        leaf = got.split("/")[-1]
        assert len(leaf.encode()) <= 255 and leaf.endswith(ext) and got.startswith("dir/")
        assert ".conflict-20261125-101500" in leaf and got not in taken
        leaf.encode("utf-8")  # never cut inside a character
        taken.add(got)


# -- a file dated after 2262 -------------------------------------------------------------------


def test_uploads_file_dated_after_2262_is_recorded_once(make_world: Callable[..., World]) -> None:
    w = make_world()
    target = w.root / "future.txt"
    target.write_bytes(b"from the future")
    far = 2**63 + 10**9  # 2262-04-11 and a bit: beyond SQLite's 64-bit INTEGER
    try:
        os.utime(target, ns=(far, far))
    except (OverflowError, OSError):
        pytest.skip("the file system cannot hold such a time")
    far = target.stat().st_mtime_ns
    assert w.rooms.uploads.process(Item("future.txt", absent=True)) == Settled()
    synced = w.store.get("future.txt")
    assert synced is not None and synced.mtime_ns == far
    assert w.rooms.uploads.process(Item("future.txt")) == Settled()  # unchanged: not sent again
    assert [c for c in w.objects.calls if c[0] == "upload"] == [("upload", "future.txt")]


@pytest.mark.parametrize(
    ("skipped", "path", "held"),
    [
        ("locked", "locked/a/b.txt", True),
        ("locked", "locked", True),  # an unreadable file: its own delete waits
        ("locked", "locked-b/x", False),
        ("locked", "lock", False),
        (".", "anything/at/all", True),  # the root itself could not be read
        ("", "a.txt", False),  # a key at the prefix itself (a marker) holds nothing back
    ],
)
def test_skips_cover_what_lies_under_them(skipped: str, path: str, held: bool) -> None:
    skips = Skips()
    skips.add(Skipped(skipped, "why"))
    assert skips.covers(path) is held and skips() == 1


# -- conditional remote deletes (issue 8) ----------------------------------------------------


class IgnoresConditions(FakeObjects):
    """A server that ignores a delete's ETag condition: only the check before protects."""

    def delete_remote(
        self, paths: Iterable[str], *, etags: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        return super().delete_remote(paths)


class RejectsConditions(FakeObjects):
    """A server that refuses a delete's ETag condition (NotImplemented)."""

    def delete_remote(
        self, paths: Iterable[str], *, etags: Mapping[str, str] | None = None
    ) -> list[tuple[str, str]]:
        if etags:
            raise ConditionalWritesUnsupported("delete")
        return super().delete_remote(paths)


@pytest.mark.parametrize("server", [FakeObjects, IgnoresConditions, RejectsConditions])
def test_executor_stale_remote_delete_loses_to_a_newer_object(
    tmp_path: Path, server: type[FakeObjects]
) -> None:
    """Deleted here, changed in S3 meanwhile: the change wins and is downloaded."""
    objects = server(tmp_path)
    old = objects.put("a04.txt", b"v1")
    objects.put("other.txt", b"o")
    objects.put("a04.txt", b"v2 from elsewhere")
    executor = Executor(
        objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool,
        conditional=True,
    )  # fmt: skip
    synced = [SyncedEntry(p, 1, 0, e.etag, e.mtime_ns) for p, e in
              (("a04.txt", old), ("other.txt", objects.entry("other.txt")))]  # fmt: skip
    executor.delete(Action(Kind.DELETE_REMOTE, s.path, "deleted locally", synced=s) for s in synced)
    assert objects.objects["a04.txt"][0] == b"v2 from elsewhere"
    assert (tmp_path / "a04.txt").read_bytes() == b"v2 from elsewhere"
    assert "other.txt" not in objects.objects  # unchanged: deleted


def test_executor_remote_delete_race_after_the_check_is_caught_by_the_condition(
    tmp_path: Path,
) -> None:
    """Written between the check and the delete: the server's condition catches it."""
    objects = FakeObjects(tmp_path)
    old = objects.put("a.txt", b"v1")
    delete = objects.delete_remote

    def racing(paths: Iterable[str], *, etags: Mapping[str, str] | None = None) -> Any:
        objects.put("a.txt", b"v2 just now")
        return delete(paths, etags=etags)

    objects.delete_remote = racing  # type: ignore[method-assign]
    executor = Executor(
        objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool,
        conditional=True,
    )  # fmt: skip
    syn = SyncedEntry("a.txt", 2, 0, old.etag, old.mtime_ns)
    executor.delete([Action(Kind.DELETE_REMOTE, "a.txt", "deleted locally", synced=syn)])
    assert objects.objects["a.txt"][0] == b"v2 just now"
    assert (tmp_path / "a.txt").read_bytes() == b"v2 just now"


# -- issue 8: wrong deletes ------------------------------------------------------------------


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
    deletes = w.rooms.deletes
    deletes.stat = _on_device(4242, w.root / "photos")
    deletes.mounts = lambda root: ["photos"]
    deletes.survey()
    assert w.store.dir_devices() == {"photos": "4242"}
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
    w.rooms.deletes.run(names, w.rooms.executor)
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
    now = [1_800_000_000.0]
    w.rooms.deletes.wall = lambda: now[0]

    def slice_of(deletes: Deletes, batch: list[str]) -> None:
        for name in batch:
            (w.root / name).unlink(missing_ok=True)
        deletes.run(batch, w.rooms.executor)

    slice_of(w.rooms.deletes, names[:4])
    assert not any(n in w.objects.objects for n in names[:4])
    now[0] += 5
    slice_of(w.rooms.deletes, names[4:8])
    assert all(n in w.objects.objects for n in names[4:8])
    assert "4 deletes after 4 in the last 60 min exceed --max-delete 5" in (
        w.status.last_error or ""
    )
    # A restart (new rooms over the same state) does not reset the window.
    again = Deletes(
        root=w.root,
        store=w.store,
        scope=Scope(FolderConfig(path=w.root, url="s3://bucket/p"), state_dir=tmp_path / "s"),
        status=w.status,
        max_delete=5,
        force=False,
        grace=0.1,
        wall=lambda: now[0],
    )
    assert again.refusal(2) is not None and again.refusal(1) is None
    now[0] += 3600
    slice_of(again, names[4:8])
    assert not any(n in w.objects.objects for n in names[4:8])


def test_directories_emptied_by_a_propagated_delete_are_removed(
    make_world: Callable[..., World],
) -> None:
    w = make_world(delete=True)
    for name in ("old/a.txt", "old/sub/b.txt", "busy/c.txt", "busy/d.txt", "keep.txt"):
        synced_file(w, name, name.encode())
    (w.root / "busy/.notes.swp").write_bytes(b"an ignored file still holds the directory")
    (w.root / "mine").mkdir()  # made empty on purpose by the user
    for name in ("old/a.txt", "old/sub/b.txt", "busy/c.txt", "busy/d.txt"):
        del w.objects.objects[name]  # deleted on the other side
    assert w.rooms.reconcile.run().passed.vetoed is None
    assert not (w.root / "old").exists()
    assert (w.root / "busy").is_dir() and (w.root / "mine").is_dir()
    assert (w.root / "keep.txt").exists()


# -- outage ---------------------------------------------------------------------------------


def test_outage_pauses_once_and_probes_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    answers = [False]
    held: list[str] = []
    released: list[bool] = []

    def probe() -> None:
        if not answers[0]:
            raise ConnectionRefusedError("refused")

    status = Status("f", store=None, metrics=None)
    outage = Outage(
        "f",
        status=status,
        probe=probe,
        hold=held.append,
        release=lambda: released.append(True),
        clock=lambda: now[0],
    )
    outage.down(ConnectionResetError("reset"))
    outage.down(ConnectionResetError("again"))  # every worker may say so; logged once
    assert outage.is_down and status.state == "paused"
    assert "S3 unreachable" in str(status.last_error) and len(held) == 1
    probed_at: list[float] = []
    while now[0] < 120:
        before = outage.probes
        assert outage.tick() is False
        if outage.probes > before:
            probed_at.append(now[0])
        now[0] += 0.5
    assert probed_at[:5] == [1.0, 3.0, 7.0, 15.0, 31.0]  # 1, 2, 4, 8, 16 s apart
    assert all(b - a <= 30.0 for a, b in itertools.pairwise(probed_at))
    answers[0] = True
    now[0] += 30
    assert outage.tick() is True
    assert not outage.is_down and status.state == "watching" and released == [True]
    assert outage.tick() is False  # up: no probes
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("watchsync")]
    assert sum("S3 unreachable" in m for m in lines) == 1
    assert sum("answers again" in m for m in lines) == 1


def test_a_pause_says_why_before_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever sees the folder paused (another thread, ``watchsync status``) can read why."""
    status = Status("f", store=None, metrics=None)
    seen: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        status, "publish", lambda force=False: seen.append((status.state, status.last_error))
    )
    status.pause("S3 unreachable: refused")
    assert seen and all(why is not None for state, why in seen if state == "paused")


def test_outage_counts_an_s3_error_as_an_answer() -> None:
    status = Status("f", store=None, metrics=None)
    outage = Outage("f", status=status, probe=lambda: None, clock=lambda: 10.0)
    assert no_answer(ConnectionRefusedError()) and not no_answer(FileNotFoundError())
    outage.down(ConnectionRefusedError())
    assert outage.tick() is False  # not due yet
    outage.clock = lambda: 11.0
    assert outage.tick() is True


# -- a write landing right after a download's rename is not taken for the download ----------


def test_download_record_does_not_absorb_a_write_right_after_it(
    make_world: Callable[..., World],
) -> None:
    """The user writes the file between the download's rename and the executor's stat: the
    state must keep what the download wrote, so the write is still seen and uploaded."""
    w = make_world()
    synced_file(w, "doc.txt", b"v1 synced")
    w.objects.put("doc.txt", b"v2 from S3")
    download = w.objects.download

    def then_user_writes(path: str, **kw: Any) -> Path:
        target = download(path, **kw)
        target.write_bytes(b"v3 the user")  # same size as v2, lands before the stat
        return target

    w.objects.download = then_user_writes  # type: ignore[method-assign]
    w.rooms.reconcile.run()
    w.objects.download = download  # type: ignore[method-assign]
    assert (w.root / "doc.txt").read_bytes() == b"v3 the user"
    w.rooms.reconcile.dirty.note(["doc.txt"])  # type: ignore[union-attr]  # as the watcher would
    w.rooms.reconcile.run()
    assert len(w.rooms.pending) == 1  # the write is seen: queued for the uploader
    assert w.rooms.uploads.process(Item("doc.txt")) == Settled()
    assert w.objects.objects["doc.txt"][0] == b"v3 the user"


def test_local_delete_keeps_an_append_landing_after_the_recheck(tmp_path: Path) -> None:
    """An append between the local delete's re-check and the unlink is not lost: the file
    stays (it changed, so the change beats the delete)."""
    objects = FakeObjects(tmp_path)
    target = tmp_path / "log.txt"
    target.write_bytes(b"v1")
    st = target.stat()
    delete_local = objects.delete_local

    def after_an_append(path: str) -> None:
        with (tmp_path / path).open("ab") as f:
            f.write(b"+ appended")
        delete_local(path)

    objects.delete_local = after_an_append  # type: ignore[method-assign]
    executor = Executor(objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool)
    executor.delete(
        [
            Action(
                Kind.DELETE_LOCAL,
                "log.txt",
                "deleted in S3",
                LocalEntry("log.txt", st.st_size, st.st_mtime_ns),
            )
        ]
    )
    assert target.read_bytes() == b"v1+ appended"
    assert [p.name for p in tmp_path.iterdir()] == ["log.txt"]


def test_uploads_file_renamed_over_with_the_same_size_and_mtime_is_sent(
    make_world: Callable[..., World],
) -> None:
    """Two same-size files written within the file system's time granularity carry the
    same mtime; one renamed over the other (an editor's save) is another file all the same."""
    w = make_world()
    (w.root / "c").mkdir()
    (w.root / "c/f1.txt").write_bytes(b"v-a")
    assert w.rooms.uploads.process(Item("c/f1.txt")) == Settled()
    st = (w.root / "c/f1.txt").stat()
    (w.root / "c/.save").write_bytes(b"v-b")
    os.utime(w.root / "c/.save", ns=(st.st_atime_ns, st.st_mtime_ns))  # the same tick
    os.replace(w.root / "c/.save", w.root / "c/f1.txt")
    assert w.rooms.uploads.process(Item("c/f1.txt")) == Settled()
    assert w.objects.objects["c/f1.txt"][0] == b"v-b"
    w.rooms.reconcile.run()
    assert len(w.rooms.pending) == 0 and w.objects.objects["c/f1.txt"][0] == b"v-b"


def test_uploads_file_moved_away_during_its_first_upload_is_deleted_in_s3(
    make_world: Callable[..., World],
) -> None:
    """A directory renamed while a file in it has its first upload in flight: the rescan of
    the vanished directory found nothing synced there yet, so the upload itself must hand
    the old key to the delete batch."""
    w = make_world(delete=True)
    synced_file(w, "keep.txt", b"k")
    (w.root / "a").mkdir()
    (w.root / "a/x.txt").write_bytes(b"x")
    upload = w.objects.upload

    def then_renamed(path: str, **kw: Any) -> Uploaded:
        up = upload(path, **kw)
        (w.root / "a").rename(w.root / "d")
        return up

    w.objects.upload = then_renamed  # type: ignore[method-assign]
    assert w.rooms.uploads.process(Item("a/x.txt")) == Settled()
    assert w.rooms.deletes.pending() == 1
    w.now[0] += 1.0
    w.rooms.deletes.run(w.rooms.deletes.batcher.ready(), w.rooms.executor)
    assert "a/x.txt" not in w.objects.objects and w.store.get("a/x.txt") is None


def test_uploads_rename_copies_only_the_version_synced(make_world: Callable[..., World]) -> None:
    """A rename's server-side copy is conditional on the source still being the version
    last synced: another writer's newer object there is not copied under the new name."""
    w = make_world()
    synced_file(w, "old.txt", b"mine")
    w.objects.put("old.txt", b"theirs, newer")
    (w.root / "old.txt").rename(w.root / "new.txt")
    assert w.rooms.uploads.process(Item("new.txt")) == Settled()
    assert w.objects.objects["new.txt"][0] == b"mine"
    assert w.objects.objects["old.txt"][0] == b"theirs, newer"


# -- the periodic pass from the state plus the watcher ----------------------------------------


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
        w.status.polling = True
    stats = w.rooms.reconcile.run()
    assert stats.walked is caught
    assert (stats.passed.planned == {Kind.UPLOAD: 1}) is caught


# -- the periodic pass without a listing ----------------------------------------------------


def _listings(w: World) -> int:
    return sum(1 for op, _ in w.objects.calls if op == "list")


def _fed_world(make_world: Callable[..., World], **overrides: Any) -> World:
    """A world whose feed was read once (as the runner's first tick does)."""
    w = make_world(feed_object=FakeFeedObject(), **overrides)
    assert w.rooms.feed is not None
    w.rooms.feed.poll()
    return w


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
        feed.conditional = False
    w.now[0] += 300.0
    stats = w.rooms.reconcile.run()
    assert stats.listed
    assert Kind.DOWNLOAD in stats.passed.planned


def test_a_listing_pass_that_failed_lists_again(make_world: Callable[..., World]) -> None:
    w = _fed_world(make_world)
    synced_file(w, "a.txt", b"v1")
    w.objects.put("a.txt", b"v2 before the agent started")
    w.objects.fail["a.txt"] = ConnectionError("cut")
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


def test_a_costly_listing_comes_less_often() -> None:
    """Listings stay under their share of a core: one costing 30 s of CPU (a huge tree)
    comes every 12,000 s, not every hour; a cheap one keeps the interval."""
    now = [0.0]
    listed = Listed(full_interval=3600.0, clock=lambda: now[0])
    listed.done(listed.take(), cost=30.0)
    now[0] = 3600.0
    assert listed.take() is None
    now[0] = 30.0 / LIST_BUDGET
    why = listed.take()
    assert why == "full list interval"
    listed.done(why, cost=1.0)
    now[0] += 3600.0
    assert listed.take() == "full list interval"


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

    def cut(*, for_download: bool) -> Iterator[Any]:
        raise ConnectionError("listing cut")
        yield

    w.objects.listing = cut  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        w.rooms.reconcile.run()
    w.objects.listing = listing  # type: ignore[method-assign]
    stats = w.rooms.reconcile.run()
    assert not stats.walked and stats.passed.planned == {Kind.UPLOAD: 1}


def test_changes_note_ready_paths_for_the_next_pass(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    w.rooms.reconcile.run()
    _silently_changed(w, "a.txt", b"v2")
    w.rooms.changes.ready(["a.txt"])
    taken = w.rooms.reconcile.dirty.take()  # type: ignore[union-attr]
    assert taken.full is None and taken.paths == {"a.txt"}


def test_changed_side_equals_a_walk_when_everything_is_reported(tmp_path: Path) -> None:
    """Nested reported directories, files under them, and a stale state: the stream is the
    walk's, sorted and without duplicates."""
    root = tmp_path / "root"
    for name in ("a-b", "a/x", "a/b/y", "a/b/c/z", "a0", "d/e", "~$tmp.docx"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    stale = [SyncedEntry(p, 99, 1, "e", 1) for p in ("a/b/gone", "a/x", "d/e", "old")]
    taken = Taken(None, frozenset({"a/b/y", "d/e", "old", "a-b"}), frozenset({"a", "a/b"}))
    got = list(changed_side(root, taken, stale, options=WalkOptions()))
    walked = {e.path: e for e in walk(root) if isinstance(e, LocalEntry)}
    assert [e.path for e in got] == ["a-b", "a/b/c/z", "a/b/y", "a/x", "d/e"]
    assert all(e == walked[e.path] for e in got)


def test_parked_path_is_looked_at_by_the_next_trusted_pass(
    make_world: Callable[..., World],
) -> None:
    from watchsync.errors import RemoteError

    w = make_world()
    w.rooms.reconcile.run()  # the first, full pass: nothing yet
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = RemoteError("AccessDenied")
    for _ in range(5):
        w.rooms.uploads.process(Item("a.txt"))  # parked at the fifth refusal
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
    assert w.rooms.uploads.process_many(items) == [Settled()] * len(names)
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
    assert w.rooms.uploads.process(Item("doc.txt")) == Settled()
    assert w.rooms.reconcile.dirty.take().paths == {"doc.txt"}  # type: ignore[union-attr]


# -- paths taken together ---------------------------------------------------------------------


def _commits(w: World) -> int:
    recorder = w.rooms.executor.recorder
    assert isinstance(recorder, StoreRecorder)
    return recorder.commits


def test_uploads_burst_is_sent_together_and_recorded_in_one_commit(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    names = [f"d/f{i}.txt" for i in range(6)]
    (w.root / "d").mkdir()
    for name in names:
        (w.root / name).write_bytes(name.encode())
    before = _commits(w)
    results = w.rooms.uploads.process_many([Item(n, "", absent=True) for n in names])
    assert results == [Settled()] * len(names)
    assert _commits(w) == before + 1
    for name in names:
        synced = w.store.get(name)
        assert synced is not None and synced.etag == w.objects.objects[name][1]
    assert w.store.counters()["uploaded_files"] == len(names)
    # Sent again unchanged: nothing goes out.
    calls = len(w.objects.calls)
    assert w.rooms.uploads.process_many([Item(n) for n in names]) == [Settled()] * len(names)
    assert len(w.objects.calls) == calls


def test_uploads_batch_takes_each_path_its_own_way(make_world: Callable[..., World]) -> None:
    """In one batch: a rename is copied server-side, a deleted file goes to the delete
    batch, a conflict keeps both versions, and only the plain new file is sent with the
    burst."""
    w = make_world(delete=True)
    synced_file(w, "old.txt", b"renamed content")
    synced_file(w, "gone.txt", b"g")
    synced_file(w, "doc.txt", b"v1")
    (w.root / "old.txt").rename(w.root / "new.txt")
    (w.root / "gone.txt").unlink()
    w.objects.put("doc.txt", b"v2 from elsewhere")
    (w.root / "doc.txt").write_bytes(b"v2 local")
    (w.root / "plain.txt").write_bytes(b"plain")
    items = [Item("new.txt"), Item("gone.txt"), Item("doc.txt"), Item("plain.txt")]
    results = w.rooms.uploads.process_many(items)
    assert results == [Settled(), Settled(), Conflict(), Settled()]
    assert ("copy", "new.txt") in w.objects.calls and ("upload", "new.txt") not in w.objects.calls
    assert w.rooms.deletes.pending() == 1
    assert w.objects.objects["plain.txt"][0] == b"plain"
    assert w.objects.objects["doc.txt"][0] == b"v2 local"
    assert any(".conflict-" in p for p in w.objects.objects)


def test_uploads_batch_failures_stay_with_their_paths(make_world: Callable[..., World]) -> None:
    """One path cut off, one losing a race to another writer: the others are recorded."""
    w = make_world()
    for name in ("a.txt", "b.txt", "c.txt"):
        (w.root / name).write_bytes(name.encode())
    w.objects.fail["a.txt"] = ConnectionError("cut")
    w.objects.put("b.txt", b"another writer got there first")
    results = w.rooms.uploads.process_many(
        [Item("a.txt", "", absent=True), Item("b.txt", "", absent=True), Item("c.txt")]
    )
    assert results == [Retry(0.5), Conflict(), Settled()]
    assert w.store.get("a.txt") is None
    assert w.objects.objects["c.txt"][0] == b"c.txt"
    synced = w.store.get("c.txt")
    assert synced is not None and synced.etag == w.objects.objects["c.txt"][1]
    copies = [p for p in w.objects.objects if p.startswith("b.conflict-")]
    assert len(copies) == 1 and w.objects.objects[copies[0]][0] == b"another writer got there first"


def test_uploads_batch_file_changed_while_sent_is_sent_again(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    for name in ("a.txt", "b.txt"):
        (w.root / name).write_bytes(b"first")
    upload = w.objects.upload
    changed: list[str] = []

    def then_changed(path: str, **kw: Any) -> Uploaded:
        up = upload(path, **kw)
        if path == "a.txt" and not changed:
            changed.append(path)
            (w.root / path).write_bytes(b"second, longer")
        return up

    w.objects.upload = then_changed  # type: ignore[method-assign]
    # Queued by a pass that saw no object: once the first send is recorded, the second is
    # conditional on it, not on there being no object (which would be a conflict with
    # itself).
    items = [Item("a.txt", "", absent=True), Item("b.txt", "", absent=True)]
    assert w.rooms.uploads.process_many(items) == [Settled()] * 2
    assert not [p for p in w.objects.objects if ".conflict-" in p]
    assert w.objects.objects["a.txt"][0] == b"second, longer"
    synced = w.store.get("a.txt")
    assert synced is not None and synced.size == len(b"second, longer")
    assert synced.etag == w.objects.objects["a.txt"][1]


def test_queue_hands_out_ready_paths_together() -> None:
    now = [0.0]
    queue = PathQueue(clock=lambda: now[0])
    for name in ("a", "b", "c"):
        queue.put(Item(name))
    queue.put(Item("later"), delay=5.0)
    stop = threading.Event()
    assert [i.path for i in queue.get_many(stop, 2)] == ["a", "b"]
    assert [i.path for i in queue.get_many(stop, 10)] == ["c"]  # not the delayed one
    now[0] = 5.0
    assert [i.path for i in queue.get_many(stop, 10)] == ["later"]
    assert queue.in_flight == 4


def test_reconcile_hands_a_path_the_uploader_holds_back_to_it(
    make_world: Callable[..., World],
) -> None:
    """A pass that lists while an upload is in flight sees the uploader's own PUT as a
    change in S3, beside the file's own change: no conflict copy, the path goes back to the
    uploader, which finds nothing left to do once its record is in."""
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    (w.root / "a.txt").write_bytes(b"v2, longer")
    w.rooms.pending.add([Item("a.txt")])
    item = w.rooms.pending.take()  # a worker has it in hand ...
    assert item is not None
    up = w.objects.upload("a.txt")  # ... its PUT went through, its record is not in yet
    w.rooms.reconcile.run()  # the first pass walks and lists
    assert not [p for p in w.objects.objects if ".conflict-" in p]
    assert not list(w.root.glob("*conflict*"))
    w.store.put(SyncedEntry("a.txt", up.size, up.mtime_ns, up.etag, T0, up.ino))  # recorded
    w.rooms.pending.settle("a.txt")
    again = w.rooms.pending.take()
    assert again is not None and again.path == "a.txt"
    uploads = len([c for c in w.objects.calls if c[0] == "upload"])
    assert w.rooms.uploads.process(again) == Settled()
    assert len([c for c in w.objects.calls if c[0] == "upload"]) == uploads
    assert w.store.counters().get("conflicts", 0) == 0


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
    rows = w.store.iter_sorted

    def read_then_sent(prefix: str = "", *, batch: int = 1000) -> Iterator[SyncedEntry]:
        yield from rows(prefix, batch=batch)  # no record of n.txt yet
        assert w.rooms.uploads.process(item) == Settled()  # sent and recorded meanwhile
        w.rooms.pending.settle("n.txt")

    monkeypatch.setattr(w.store, "iter_sorted", read_then_sent)
    w.rooms.reconcile.dirty.invalidate("the watcher overflowed")  # type: ignore[union-attr]
    stats = w.rooms.reconcile.run()
    assert stats.walked and not stats.listed and stats.passed.planned == {Kind.UPLOAD: 1}
    again = w.rooms.pending.take()
    assert again is not None and again.path == "n.txt"
    calls = len(w.objects.calls)
    assert w.rooms.uploads.process(again) == Settled()
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
    assert w.rooms.uploads.process(item) == Settled()
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
    assert stats.passed.failed == 1  # b: reported, left as it is
    assert "directory is in the way" in (w.status.last_error or "")
