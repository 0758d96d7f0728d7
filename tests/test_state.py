"""StateStore: SQLite state of a folder pair."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import filelock
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchsync.core.errors import LockedError, WatchsyncError
from watchsync.core.model import SyncedEntry
from watchsync.state.journal import JournalEntry
from watchsync.state.store import Recorded, StateStore, list_stores, store_name

ROOT_URL = "s3://bucket/prefix"


def entry(path: str, size: int = 1) -> SyncedEntry:
    return SyncedEntry(path, size, size * 1000, f"etag-{size}", size * 2000)


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "folder"
    folder.mkdir()
    return folder


@pytest.fixture
def store(tmp_path: Path, root: Path) -> Iterator[StateStore]:
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        yield s


def test_open_creates_wal_db_named_by_pair(tmp_path: Path, root: Path) -> None:
    clock = iter([1000.0, 1001.0]).__next__
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL, clock=clock) as s:
        assert s.db_path.name == store_name(root, ROOT_URL) + ".db"
        s.lock()
        assert s.db_path.with_suffix(".lock").read_text().strip() == str(os.getpid())
        meta = s.status.meta()
        assert meta == {
            "local_root": str(root.resolve()),
            "url": ROOT_URL,
            "root_dev": str(root.stat().st_dev),
            "created": "1000.0",
        }
        assert integrity(s.db_path) == "ok"
    # Another URL or root is another database; reopening keeps the first meta.
    assert store_name(root, ROOT_URL) != store_name(root, ROOT_URL + "2")
    assert store_name(root, ROOT_URL) == store_name(root / "." / "x" / "..", ROOT_URL)
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        assert s.status.meta()["created"] == "1000.0"
    conn = sqlite3.connect(tmp_path / "state" / (store_name(root, ROOT_URL) + ".db"))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert list_stores(tmp_path / "state") == [
        tmp_path / "state" / (store_name(root, ROOT_URL) + ".db")
    ]
    assert list_stores(tmp_path / "missing") == []


def test_put_get_delete(store: StateStore) -> None:
    assert store.synced.get("a") is None
    store.synced.put_many([entry("a", 1)])
    store.synced.put_many([entry("a", 2)])
    assert store.synced.get("a") == entry("a", 2)
    assert store.synced.count() == 1
    assert store.synced.delete("a") is True
    assert store.synced.delete("a") is False
    assert store.synced.get("a") is None
    assert store.synced.put_many([]) == 0


def test_point_reads_see_what_was_committed(store: StateStore) -> None:
    """get / get_many / find_by_stat read through their own connection: they see every
    write committed before them, and run while a commit holds the writer's connection."""
    store.synced.put_many([entry("a", 1), entry("b", 2), entry("c", 3)])
    assert store.synced.get_many(["a", "c", "missing"]) == {"a": entry("a", 1), "c": entry("c", 3)}
    assert store.synced.get_many([]) == {}
    store.synced.put_many([entry("a", 4)])
    assert store.synced.get("a") == entry("a", 4)
    with store._db.transaction() as conn:  # a write under way, not committed yet
        conn.execute("DELETE FROM synced WHERE path = 'b'")
        assert store.synced.get("b") == entry("b", 2)
    assert store.synced.get("b") is None


def test_put_many_is_all_or_nothing(store: StateStore) -> None:
    bad = SyncedEntry("x\udcff", 1, 1, "", 1)  # not valid UTF-8: sqlite3 refuses it
    with pytest.raises(UnicodeEncodeError):
        store.synced.put_many([entry("ok1"), bad, entry("ok2")])
    assert store.synced.count() == 0


def test_paths_below_a_directory_are_ranges_not_like(store: StateStore) -> None:
    paths = ["a", "a b/x", "a%/x", "a-b/x", "a.b", "a/", "a/b", "a/b/c", "a/z", "a0", "a_/x", "ab"]
    store.synced.put_many(entry(p) for p in paths)
    assert [e.path for e in store.synced.iter_sorted("a")] == ["a/", "a/b", "a/b/c", "a/z"]
    assert [e.path for e in store.synced.iter_sorted("a/")] == ["a/", "a/b", "a/b/c", "a/z"]
    assert [e.path for e in store.synced.iter_sorted("a%")] == ["a%/x"]  # "%" is no wildcard
    assert [e.path for e in store.synced.iter_sorted("a_")] == ["a_/x"]  # nor is "_"
    assert store.synced.count_under("a") == 4 and store.synced.count_under("a_") == 1
    assert store.synced.count_under("") == store.synced.count() == len(paths)


ORDER_SAMPLE = [
    "a",
    "a-b",
    "a.b",
    "a/b",
    "a0",
    "aB",
    "a\u00e9",
    "a\uffff",
    "a\U0001f600",
    "z",
    "Z",
    "-",
    ".",
    "0",
    "/x",
    "\u00e9t\u00e9/x",
    "\u4e2d\u6587",
    "a b",
    "a\tb",
    "a~",
    "\U00010000",
]


def test_iter_sorted_matches_python_str_order(store: StateStore) -> None:
    # U+FFFF < U+10000 in code points (and UTF-8), but not in UTF-16 order.
    store.synced.put_many(entry(p) for p in reversed(ORDER_SAMPLE))
    got = [e.path for e in store.synced.iter_sorted(batch=3)]
    assert got == sorted(ORDER_SAMPLE)
    assert got == sorted(ORDER_SAMPLE, key=lambda s: s.encode("utf-8"))


paths_strategy = st.lists(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
        min_size=1,
        max_size=12,
    ),
    unique=True,
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(paths=paths_strategy)
def test_iter_sorted_order_property(store: StateStore, paths: list[str]) -> None:
    for old in store.synced.iter_sorted():
        store.synced.delete(old.path)
    store.synced.put_many(entry(p) for p in paths)
    assert [e.path for e in store.synced.iter_sorted(batch=7)] == sorted(paths)


def test_iter_sorted_streams_while_other_threads_write(store: StateStore) -> None:
    store.synced.put_many(entry(f"f{i:05d}") for i in range(3000))
    it = store.synced.iter_sorted(batch=100)
    first = next(it)
    assert first.path == "f00000"
    # Writes during the iteration neither block nor show up in its snapshot.
    writer = threading.Thread(
        target=lambda: store.synced.put_many(entry(f"g{i}") for i in range(50))
    )
    writer.start()
    writer.join(timeout=10)
    assert not writer.is_alive()
    store.synced.delete("f02999")
    rest = list(it)
    assert len(rest) == 2999
    assert rest[-1].path == "f02999"
    assert store.synced.count() == 3000 - 1 + 50


def _is_open(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return False
    return True


def test_iter_sorted_closed_early_releases_connection(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python 3.11's sqlite3 says nothing about a connection collected unclosed, so record
    # the connections the iterator opens and look at them directly.
    store.synced.put_many(entry(f"p{i}") for i in range(10))
    opened: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", recording_connect)
    try:
        it = store.synced.iter_sorted(batch=2)
        assert isinstance(it, Generator)  # closable, as its docstring promises
        assert next(it).path == "p0"
        assert len(opened) == 1, "iter_sorted reads through a connection of its own"
        assert _is_open(opened[0])
        it.close()
        assert not _is_open(opened[0]), "closing the iterator early leaves its connection open"
        assert store.synced.count() == 10  # the store's own connection is untouched
    finally:
        for conn in opened:
            conn.close()


def test_concurrent_writers_are_serialized(store: StateStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                store.synced.put_many([entry(f"t{n}/{i}")])
                op = store.journal.add("upload", f"t{n}/{i}")
                store.status.incr("uploaded_files")
                store.journal.done(op)
                _ = store.synced.get(f"t{n}/{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert store.synced.count() == 600
    assert store.journal.count() == 0
    assert store.status.counters()["uploaded_files"] == 600


def test_journal(tmp_path: Path, root: Path) -> None:
    now = [100.0]
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL, clock=lambda: now[0]) as s:
        assert s.journal.pending() == []
        assert s.journal.oldest_age(200.0) is None
        a = s.journal.add("upload", "a.txt")
        now[0] = 150.0
        b = s.journal.add("delete-remote", "b.txt", "etag=x")
        assert s.journal.pending() == [
            JournalEntry(a, "upload", "a.txt", "", 100.0),
            JournalEntry(b, "delete-remote", "b.txt", "etag=x", 150.0),
        ]
        assert s.journal.count() == 2
        assert s.journal.oldest_age(160.0) == 60.0
        s.journal.done(a)
        assert [j.id for j in s.journal.pending()] == [b]
        assert s.journal.oldest_age(160.0) == 10.0
    # The journal survives a restart.
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as s:
        assert [j.path for j in s.journal.pending()] == ["b.txt"]


def test_record_writes_entry_counters_and_journal_together(store: StateStore) -> None:
    ids = store.journal.add_many("sync", ["a", "b"])
    assert len(ids) == 2 and store.journal.count() == 2
    store.record_many(
        [
            Recorded(entry("a", 7), {"uploaded_files": 1, "uploaded_bytes": 7}, ids[0]),
            Recorded(entry("c", 2), {"uploaded_files": 1, "uploaded_bytes": 2}),
        ]
    )
    assert store.synced.get("a") == entry("a", 7) and store.synced.get("c") == entry("c", 2)
    assert store.status.counters()["uploaded_bytes"] == 9
    assert [j.path for j in store.journal.pending()] == ["b"]
    bad = Recorded(SyncedEntry("x\udcff", 1, 1, "", 1), {"uploaded_files": 1}, ids[1])
    with pytest.raises(UnicodeEncodeError):  # one bad row: nothing of the batch is written
        store.record_many([Recorded(entry("d"), {"uploaded_files": 1}), bad])
    assert store.synced.get("d") is None and store.status.counters()["uploaded_files"] == 2
    assert [j.path for j in store.journal.pending()] == ["b"]


def test_find_by_stat_finds_rename_candidates(store: StateStore) -> None:
    store.synced.put_many([SyncedEntry("old/name", 5, 123, "e", 9)])
    store.synced.put_many([SyncedEntry("other", 5, 124, "e", 9)])
    assert [e.path for e in store.synced.find_by_stat(5, 123)] == ["old/name"]
    assert store.synced.find_by_stat(6, 123) == []


def test_status_and_counters_visible_to_read_only_reader(store: StateStore) -> None:
    store.lock()
    store.status.set(state="watching", pid=1234, last_reconcile_duration=1.5, last_error=None)
    store.status.incr("uploaded_bytes", 100)
    store.status.incr("uploaded_bytes", 23)
    store.status.incr("custom")
    with StateStore.read_only(store.db_path) as reader:
        assert reader.status.fields() == {
            "last_error": None,
            "last_reconcile_duration": 1.5,
            "pid": 1234,
            "state": "watching",
        }
        counters = reader.status.counters()
        assert counters["uploaded_bytes"] == 123
        assert counters["custom"] == 1
        assert counters["deleted_local"] == 0
        # The reader sees later commits and cannot write.
        store.status.set(state="reconciling")
        assert reader.status.fields()["state"] == "reconciling"
        with pytest.raises(sqlite3.OperationalError):
            reader.status.set(state="x")
        assert reader.status.meta()["url"] == ROOT_URL
    # The writer was never blocked.
    store.synced.put_many([entry("after")])


def test_read_only_opens_cleanly_closed_db(tmp_path: Path, root: Path) -> None:
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as s:
        s.synced.put_many([entry("x")])
        path = s.db_path
    with StateStore.read_only(path) as reader:
        assert reader.synced.get("x") == entry("x")
        assert [e.path for e in reader.synced.iter_sorted()] == ["x"]
    with pytest.raises(WatchsyncError):
        StateStore.read_only(tmp_path / "s" / "nope.db")


def test_closed_store_refuses_use(store: StateStore) -> None:
    store.close()
    store.close()
    with pytest.raises(WatchsyncError):
        store.synced.get("a")


def test_lock_is_exclusive_and_names_holder(tmp_path: Path, root: Path) -> None:
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as first:
        first.lock()
        first.lock()  # idempotent
        with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as second:
            with pytest.raises(LockedError, match=rf"pid {os.getpid()}\b"):
                second.lock()
            # A status reader does not need the lock.
            with StateStore.read_only(second.db_path) as reader:
                assert reader.synced.count() == 0
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as third:
        third.lock()  # released on close


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    src = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )


def test_lock_released_when_holder_is_killed(tmp_path: Path, root: Path) -> None:
    child = _child(
        """
        import sys, time
        from pathlib import Path
        from watchsync.state.store import StateStore
        s = StateStore.open(Path(sys.argv[1]), local_root=Path(sys.argv[2]), url=sys.argv[3])
        s.lock()
        print("locked", flush=True)
        time.sleep(60)
        """,
        str(tmp_path / "s"),
        str(root),
        ROOT_URL,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as s:
            with pytest.raises(LockedError, match=rf"pid {child.pid}\b"):
                s.lock()
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            s.lock()
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


CRASH_WRITER = """
import sys
from pathlib import Path
from watchsync.core.model import SyncedEntry
from watchsync.state.store import StateStore
s = StateStore.open(Path(sys.argv[1]), local_root=Path(sys.argv[2]), url=sys.argv[3])
s.lock()
i = 0
while True:
    op = s.journal.add("upload", f"f{i:06d}")
    s.synced.put_many([SyncedEntry(f"f{i:06d}", i, i, "e", i)])
    s.journal.done(op)
    # A batch that must land all or nothing.
    s.synced.put_many(SyncedEntry(f"batch{i:06d}/{j:03d}", j, j, "e", j) for j in range(200))
    s.status.incr("uploaded_files")
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("kill_after", [5, 40])
def test_kill_9_mid_write_leaves_consistent_db(tmp_path: Path, root: Path, kill_after: int) -> None:
    child = _child(CRASH_WRITER, str(tmp_path / "s"), str(root), ROOT_URL)
    done = -1
    try:
        assert child.stdout is not None
        for _ in range(kill_after):
            done = int(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        for line in child.stdout:  # what it reported before dying
            done = int(line)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert done >= kill_after - 1
    with StateStore.open(tmp_path / "s", local_root=root, url=ROOT_URL) as s:
        s.lock()  # the dead writer's lock is gone
        assert integrity(s.db_path) == "ok"
        # Everything reported as committed is there.
        for i in range(done + 1):
            assert s.synced.get(f"f{i:06d}") == SyncedEntry(f"f{i:06d}", i, i, "e", i)
            assert len(list(s.synced.iter_sorted(f"batch{i:06d}"))) == 200
        # The interrupted iteration left at most one pending op, for the next file.
        pending = s.journal.pending()
        assert [j.path for j in pending] in ([], [f"f{done + 1:06d}"])
        # Batches are all or nothing, and no file beyond the next one exists.
        paths = [e.path for e in s.synced.iter_sorted()]
        batch_sizes: dict[str, int] = {}
        for p in paths:
            if p.startswith("batch"):
                key = p.split("/")[0]
                batch_sizes[key] = batch_sizes.get(key, 0) + 1
        assert set(batch_sizes.values()) <= {200}
        files = [p for p in paths if p.startswith("f")]
        assert len(files) in (done + 1, done + 2)
        assert s.status.counters()["uploaded_files"] in (done + 1, done + 2)


@pytest.mark.parametrize("mtime_ns", [2**63, 2**64 + 123_456_789, -(2**63) - 1, 2**63 - 1], ids=str)
def test_times_beyond_64_bits_are_stored_exactly(store: StateStore, mtime_ns: int) -> None:
    """A file dated after 2262 (or before 1678): its mtime_ns does not fit SQLite's INTEGER."""
    far = SyncedEntry("future.txt", 3, mtime_ns, "etag", mtime_ns + 1)
    store.synced.put_many([far])
    recorded = SyncedEntry("recorded.txt", 3, mtime_ns, "e2", 7)
    store.record_many([Recorded(recorded, counters={"uploaded_files": 1})])
    assert store.synced.get("future.txt") == far
    assert list(store.synced.iter_sorted()) == [far, recorded]
    found = store.synced.find_by_stat(3, mtime_ns)
    assert [e.path for e in found] == ["future.txt", "recorded.txt"]


def _damaged(tmp_path: Path, root: Path, how: str) -> Path:
    """The pair's database, damaged: garbage, or a real one cut in half."""
    db = tmp_path / "state" / (store_name(root, ROOT_URL) + ".db")
    if how == "garbage":
        db.parent.mkdir(parents=True)
        db.write_bytes(os.urandom(8192))
        return db
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        s.synced.put_many(entry(f"dir{i % 50}/file-{i:05}.txt", i) for i in range(3000))
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) // 2)
    return db


@pytest.mark.parametrize("how", ["garbage", "half-truncated"])
def test_corrupt_database_is_moved_aside_and_started_again(
    tmp_path: Path, root: Path, how: str
) -> None:
    db = _damaged(tmp_path, root, how)
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        assert s.recovered is not None and "corrupt" in s.recovered
        assert s.synced.count() == 0 and integrity(s.db_path) == "ok"
        aside = [p for p in db.parent.iterdir() if ".db.corrupt-" in p.name]
        assert len(aside) == 1 and s.status.meta()["recovered_from"] == str(aside[0])
        other = StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL)
        with other, pytest.raises(LockedError):  # moved aside under the pair's lock, kept
            other.lock()
        s.synced.put_many([entry("a")])
    assert list_stores(tmp_path / "state") == [db]
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        assert s.recovered is None and s.synced.get("a") == entry("a")


def test_corrupt_database_of_a_running_agent_is_not_touched(tmp_path: Path, root: Path) -> None:
    db = _damaged(tmp_path, root, "garbage")
    fd = os.open(db.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
    try:
        assert filelock.lock_descriptor(fd, blocking=False)
        with pytest.raises(LockedError):
            StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL)
        assert db.exists()
    finally:
        os.close(fd)


def test_database_removed_while_in_use_is_written_back(tmp_path: Path, root: Path) -> None:
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        s.lock()
        s.synced.put_many(entry(p) for p in ("a", "b"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{s.db_path}{suffix}").unlink(missing_ok=True)
        assert [e.path for e in s.synced.iter_sorted()] == ["a", "b"]
        s.synced.put_many([entry("c")])
        assert [e.path for e in s.synced.iter_sorted()] == ["a", "b", "c"]
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        assert s.synced.count() == 3  # durable again


def test_file_identity_is_kept_and_added_to_an_older_database(tmp_path: Path, root: Path) -> None:
    """The file's st_ino is stored; a database made before the column existed gets it (0,
    unknown, for its rows) and older writers, naming their columns, can still add rows."""
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        db = s.db_path
        s.synced.put_many([SyncedEntry("a", 1, 5, "e", 5, ino=42)])
        got = s.synced.get("a")
        assert got is not None and got.ino == 42
    conn = sqlite3.connect(db)
    conn.executescript(
        "CREATE TABLE old AS SELECT path, size, mtime_ns, etag, remote_mtime_ns FROM synced;"
        "DROP TABLE synced; ALTER TABLE old RENAME TO synced;"
    )
    conn.close()
    with StateStore.open(tmp_path / "state", local_root=root, url=ROOT_URL) as s:
        got = s.synced.get("a")
        assert got is not None and got.ino == 0 and got.size == 1
        s.synced.put_many([SyncedEntry("b", 2, 6, "f", 6, ino=43)])
        got = s.synced.get("b")
        assert got is not None and got.ino == 43
