"""The watcher: ignore rules, debouncing, and real inotify/polling observers."""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import wait_until
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from watchsync.core.filters import IgnoreRules, default_ignores
from watchsync.core.model import Skipped
from watchsync.fs import platform
from watchsync.fs.debounce import KEEPS_CHANGING_EVERY, Debouncer, DebounceThread, is_dir_mark
from watchsync.fs.watcher import (
    ChangeHandler,
    OverflowEvent,
    RootGoneEvent,
    coalesce_touches,
    start_observer,
)

# -- ignore rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "is_dir", "ignored"),
    [
        (".notes.txt.swp", False, True),
        ("sub/.notes.txt.swx", False, True),
        ("notes.txt~", False, True),
        (".#notes.txt", False, True),
        ("sub/4913", False, True),
        ("49130", False, False),
        (".goutputstream-ABC123", False, True),
        (".DS_Store", False, True),
        ("~$report.docx", False, True),
        (".~lock.report.odt#", False, True),
        (".photo.jpg.watchsync-tmp-0a1b2c3d00001234", False, True),
        (".photo.jpg.watchsync-tmp-1234", False, False),  # a user file named like one
        ("photo.jpg", False, False),
        ("notes.tmp", False, False),  # not clearly temporary: users keep .tmp files
        ("a~b", False, False),
    ],
)
def test_default_ignores(path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules(default_ignores()).matches(path, is_dir) is ignored


def test_state_dir_inside_root_is_ignored(tmp_path: Path) -> None:
    patterns = default_ignores(tmp_path, state_dir=tmp_path / "my state[1]")
    rules = IgnoreRules(patterns)
    assert rules.matches("my state[1]", is_dir=True)
    assert rules.matches("my state[1]/x.db")
    assert not rules.matches("my state1/x.db")
    assert not rules.matches("sub/my state[1]/x.db")  # anchored at the root
    assert default_ignores(tmp_path, state_dir=tmp_path.parent / "elsewhere") == default_ignores()


def test_ignore_file_gitignore_syntax_and_parents(tmp_path: Path) -> None:
    (tmp_path / ".watchsyncignore").write_text(
        "# comment\n*.log\nbuild/\n/top-only.txt\n!keep.log\nnode_modules\n"
    )
    rules = IgnoreRules.load(tmp_path)
    assert rules.matches("x.log")
    assert rules.matches("deep/er/x.log")
    assert not rules.matches("keep.log")
    assert rules.matches("build", is_dir=True)
    assert not rules.matches("build")  # a file named build is not the build/ directory
    assert rules.matches("build/out/x.o")
    assert rules.matches("src/build/x.o")
    assert rules.matches("top-only.txt")
    assert not rules.matches("sub/top-only.txt")
    assert rules.matches("a/node_modules/pkg/index.js")
    assert rules.matches(".x.swp")  # defaults still apply
    assert not rules.matches("src/main.py")
    assert not rules.matches("")


def test_ignore_file_missing_and_reload(tmp_path: Path) -> None:
    rules = IgnoreRules.load(tmp_path, tmp_path / "custom-ignore")
    assert not rules.matches("a.bak")
    (tmp_path / "custom-ignore").write_text("*.bak\n")
    assert not rules.matches("a.bak")
    assert rules.reload().matches("a.bak")


# -- debouncer (fake clock) ----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_debouncer_coalesces_and_waits_for_quiet() -> None:
    clock = FakeClock()
    d = Debouncer(1.0, max_wait=None, clock=clock)
    assert d.next_deadline() is None
    for _ in range(5):
        d.touch("a.txt")
        clock.now += 0.5  # never quiet for a whole second
        assert d.due(clock.now) == []
    d.touch("b.txt")
    assert d.next_deadline() == pytest.approx(103.0)  # a.txt: last touch at 102.0
    assert d.pending() == 2
    assert d.due(103.0) == ["a.txt"]
    assert d.due(103.5) == ["b.txt"]
    assert d.due(1000.0) == []
    assert d.next_deadline() is None


def test_debouncer_close_after_write_shortcut_and_reopen() -> None:
    clock = FakeClock()
    d = Debouncer(2.0, clock=clock)
    assert d.close_delay == 0.05
    d.touch("a.txt")
    d.touch("a.txt", closed=True)
    assert d.next_deadline() == pytest.approx(100.05)
    # The editor reopens and writes again: back to the full quiet period.
    d.touch("a.txt")
    assert d.due(100.1) == []
    assert d.next_deadline() == pytest.approx(102.0)
    d.touch("a.txt", closed=True)
    assert d.due(100.05) == ["a.txt"]


def test_debouncer_max_wait_and_dirs_and_flush() -> None:
    clock = FakeClock()
    d = Debouncer(1.0, max_wait=3.0, clock=clock)
    for _ in range(10):
        d.touch("log.txt")
        clock.now += 0.5
        if d.due(clock.now):
            break
    assert clock.now == pytest.approx(103.0)  # released after max_wait despite the writes
    d.touch("photos", is_dir=True)
    d.touch("photos")  # a file named photos replaced by a dir: both kept apart
    assert d.flush() == ["photos", "photos/"]
    assert is_dir_mark("photos/") and not is_dir_mark("photos")
    assert d.pending() == 0


def test_a_path_that_never_goes_quiet_is_handed_on_every_few_seconds() -> None:
    """A log appended every 20 ms at the agent's debounce: handed on at a steady cadence,
    not once a minute (the file reached S3 up to 58 s behind)."""
    clock = FakeClock()
    d = Debouncer(0.5, clock=clock)
    released: list[float] = []
    for _ in range(1000):  # 20 s of writes
        d.touch("log.txt")
        clock.now += 0.02
        if d.due(clock.now):
            released.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise([100.0, *released])]
    assert len(released) >= 8 and max(gaps) <= KEEPS_CHANGING_EVERY + 0.05, gaps
    slow = Debouncer(5.0, clock=clock)  # a longer --debounce is still waited out
    slow.touch("a.txt")
    assert slow.due(clock.now + 4.9) == [] and slow.due(clock.now + 5.0) == ["a.txt"]


def test_debouncer_is_thread_safe() -> None:
    d = Debouncer(0.0)
    ready: list[str] = []

    def touch(n: int) -> None:
        for i in range(500):
            d.touch(f"{n}/{i}")
            ready.extend(d.due(time.monotonic()))

    threads = [threading.Thread(target=touch, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ready.extend(d.due(time.monotonic() + 1))
    assert sorted(ready) == sorted(f"{n}/{i}" for n in range(4) for i in range(500))


# -- debounce thread -------------------------------------------------------------------------


@contextlib.contextmanager
def running(thread: DebounceThread) -> Iterator[DebounceThread]:
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()
        thread.join(timeout=5)
        assert not thread.is_alive()


def test_debounce_thread_delivers_outside_lock_and_stops_on_event() -> None:
    d = Debouncer(0.05)
    got: list[list[str]] = []

    def on_ready(paths: list[str]) -> None:
        d.touch("from-callback")  # would deadlock if called under the debouncer's lock
        got.append(paths)

    stop = threading.Event()
    thread = DebounceThread(d, on_ready, stop)
    thread.start()
    try:
        d.touch("a")
        d.touch("b")
        wait_until(lambda: ["a", "b"] in got, timeout=5)
        wait_until(lambda: ["from-callback"] in got, timeout=5)
    finally:
        started = time.monotonic()
        stop.set()  # only the event, as a signal handler would
        thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < thread.stop_poll + 0.5


def test_debounce_thread_survives_callback_errors(caplog: pytest.LogCaptureFixture) -> None:
    d = Debouncer(0.01)
    got: list[str] = []

    def on_ready(paths: list[str]) -> None:
        if "bad" in paths:
            raise RuntimeError("boom")
        got.extend(paths)

    with running(DebounceThread(d, on_ready, threading.Event())):
        d.touch("bad")
        wait_until(lambda: "watch: on_ready failed" in caplog.text, timeout=5)
        d.touch("good")
        wait_until(lambda: got == ["good"], timeout=5)


def test_debounce_thread_idle_cpu_is_near_zero() -> None:
    d = Debouncer(0.05)
    with running(DebounceThread(d, lambda _p: None, threading.Event())) as thread:
        native = thread.native_id
        assert native is not None
        start = _thread_cpu(native)
        time.sleep(1.0)
        used = _thread_cpu(native) - start
    assert used < 0.05


def _thread_cpu(native_id: int) -> float:
    """CPU seconds used by a thread of this process (Linux /proc)."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


# -- real observers ----------------------------------------------------------------------------


#: Name prefix of the sentinel directories :func:`barrier` creates at the watched root.
BARRIER_PREFIX = ".barrier-"


def is_barrier(path: str) -> bool:
    """Whether a ready path is one of :func:`barrier`'s sentinels (``".barrier-1/"``)."""
    return path.startswith(BARRIER_PREFIX)


@dataclass
class Watcher:
    root: Path
    handler: ChangeHandler
    observer: BaseObserver
    polling: bool
    ready: list[str] = field(default_factory=list)  # everything reported, sentinels included
    overflows: list[int] = field(default_factory=list)
    roots_gone: list[int] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    ignore_changes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    barriers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def ready_paths(self) -> list[str]:
        """A copy of ``ready``: every path reported, barrier sentinels included."""
        with self.lock:
            return list(self.ready)

    def reported(self) -> list[str]:
        """The ready paths in the order reported, without barrier sentinels."""
        return [p for p in self.ready_paths() if not is_barrier(p)]

    def seen(self) -> set[str]:
        return set(self.reported())

    def count(self, path: str) -> int:
        return self.reported().count(path)

    def clear(self) -> None:
        with self.lock:
            self.ready.clear()


WatcherFactory = Callable[..., Watcher]


@pytest.fixture
def make_watcher(tmp_path: Path) -> Iterator[WatcherFactory]:
    stops: list[Callable[[], None]] = []

    def make(
        *,
        debounce: float = 0.1,
        force_polling: bool = False,
        observer_factory: Callable[[], BaseObserver] | None = None,
        close_delay: float | None = None,
    ) -> Watcher:
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        debouncer = Debouncer(debounce, close_delay=close_delay)
        holder: list[Watcher] = []

        def record(paths: list[str]) -> None:
            with holder[0].lock:
                holder[0].ready.extend(paths)

        handler = ChangeHandler(
            root,
            debouncer,
            ignore=IgnoreRules.load(root),
            on_overflow=lambda: holder[0].overflows.append(1),
            on_root_gone=lambda: holder[0].roots_gone.append(1),
            on_skipped=lambda s: holder[0].skipped.append(s),
            on_ignore_changed=lambda: holder[0].ignore_changes.append(1),
        )
        observer, polling = start_observer(
            root,
            handler,
            force_polling=force_polling,
            polling_interval=0.05,
            observer_factory=observer_factory,
        )
        watcher = Watcher(root, handler, observer, polling)
        holder.append(watcher)
        thread = DebounceThread(debouncer, record, threading.Event())
        thread.start()

        def stop_all() -> None:
            thread.stop()
            observer.stop()
            observer.join(timeout=10)
            thread.join(timeout=10)
            assert not observer.is_alive() and not thread.is_alive()

        stops.append(stop_all)
        return watcher

    try:
        yield make
    finally:
        for stop in stops:
            stop()


def barrier(w: Watcher, *, timeout: float = 10) -> None:
    """Return once the watcher has handled every event caused by what the test did before.

    Call it before asserting that something did *not* happen (a path not reported, or not
    twice).  It creates a sentinel directory at the root and waits until the watcher reports
    it ready; by then everything the earlier actions caused has been reported too:

    * Order: the handler sees events in the order they happened (inotify: one kernel queue
      per observer, read by one thread, which dispatches each event as it reads it), so
      every earlier path was touched before the sentinel.
    * Debounce: a directory event never takes the close-after-write shortcut, so the sentinel
      is due a full ``debounce`` after its touch (``max_wait`` if that is smaller), while an
      earlier path is due at most ``debounce`` after its last touch (``close_delay`` is not
      longer, as asserted below) and ``max_wait`` after its first: never after the sentinel.
      The debounce thread releases all paths due by then together, in one ``on_ready`` call,
      after the earlier calls returned: once the sentinel is in ``ready``, so is every
      earlier path.
    * Polling: events come from snapshot diffs.  The first snapshot that lists the sentinel
      listed the root (and then its subdirectories) after the test's actions, so its diff
      holds whatever of them earlier diffs did not.  Within one diff, though, the sentinel's
      ``DirCreatedEvent`` is queued before e.g. any ``DirMovedEvent``.  So a second
      sentinel follows, created once the first is reported: it can only appear in a later
      snapshot, whose events are queued after all of the first one's.
    """
    assert w.handler.debouncer.close_delay <= w.handler.debouncer.debounce
    for _ in range(2 if w.polling else 1):
        _sentinel_reported(w, timeout)


def _sentinel_reported(w: Watcher, timeout: float) -> None:
    """Create the next sentinel directory and wait until the watcher reports it ready."""
    name = f"{BARRIER_PREFIX}{next(w.barriers)}"
    assert not w.handler.ignore.matches(name, is_dir=True)
    (w.root / name).mkdir()
    wait_until(lambda: name + "/" in w.ready_paths(), timeout, message=f"{name}/ ready")


class EventLog(FileSystemEventHandler):
    """Records the paths of the raw watchdog events it is dispatched."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._paths: list[str] = []

    def dispatch(self, event: FileSystemEvent) -> None:
        with self._lock:
            self._paths.append(os.fsdecode(event.src_path))

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._paths)


def watch_probe(w: Watcher, directory: Path) -> tuple[Path, EventLog]:
    """A second watch, on ``directory`` outside the root, on ``w``'s observer: its events
    are dispatched in the same order as the root's (inotify: by the one reader thread of
    the same inotify instance; polling: through the observer's one queue)."""
    directory.mkdir()
    log = EventLog()
    w.observer.schedule(log, str(directory), recursive=False)
    return directory, log


def barrier_after_root_gone(w: Watcher, probe: tuple[Path, EventLog]) -> None:
    """:func:`barrier` for a watcher whose root is gone (no sentinel can be made in it):
    return once every event the root's removal caused has been dispatched to the handler.

    Those come from two producers.  The root's emitter sends its ``DirDeletedEvent`` and
    then stops itself (inotify: ``IN_DELETE_SELF``; polling: the snapshot fails), so wait
    until it has stopped.  With inotify, the reader thread also dispatches a
    ``RootGoneEvent`` while it handles the kernel's ``IN_DELETE_SELF``, before it reads any
    later kernel event — such as the one for a sentinel file created in the probe's
    directory now.  Once the probe's handler got the sentinel's event, everything before it
    was dispatched (inotify: by that one thread; polling: through the observer's FIFO queue).
    """
    directory, log = probe
    root_emitters = [e for e in w.observer.emitters if Path(e.watch.path) != directory]
    assert root_emitters
    wait_until(
        lambda: not any(e.is_alive() for e in root_emitters),
        timeout=10,
        message="the root's emitter stopped",
    )
    sentinel = directory / f"{BARRIER_PREFIX}{next(w.barriers)}"
    sentinel.touch()
    wait_until(lambda: str(sentinel) in log.paths(), timeout=10, message="probe sentinel seen")


# On Linux these run, and fail if the tracking observer is missing (test_dependencies.py says
# why); only another OS, or the portable defaults forced, skips them.
needs_inotify = pytest.mark.skipif(not platform.linux(), reason="needs Linux inotify")


@needs_inotify
def test_uses_inotify_by_default(make_watcher: WatcherFactory) -> None:
    w = make_watcher()
    assert w.polling is False
    assert type(w.observer).__name__ == "TrackingInotifyObserver"


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_burst_of_writes_is_one_ready_path(
    make_watcher: WatcherFactory, force_polling: bool
) -> None:
    w = make_watcher(debounce=0.3, force_polling=force_polling, close_delay=0.3)
    target = w.root / "a.txt"
    for i in range(20):
        with target.open("a") as f:
            f.write(f"line {i}\n")
        time.sleep(0.005)
    wait_until(lambda: "a.txt" in w.seen(), timeout=5, message="a.txt ready")
    barrier(w)
    assert w.reported() == ["a.txt"]


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_new_mtime_alone_is_reported(make_watcher: WatcherFactory, force_polling: bool) -> None:
    """``touch`` or a restored backup changes only the mtime: by the sync rules that can be
    a change to send, so the path is reported like a write."""
    w = make_watcher(force_polling=force_polling)
    target = w.root / "a.txt"
    target.write_text("same bytes")
    wait_until(lambda: "a.txt" in w.seen(), timeout=5, message="a.txt written")
    barrier(w)
    w.clear()
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns - 3_600 * 10**9))
    wait_until(lambda: "a.txt" in w.seen(), timeout=5, message="a.txt's new mtime reported")


@needs_inotify
def test_close_after_write_shortcuts_the_debounce(make_watcher: WatcherFactory) -> None:
    w = make_watcher(debounce=5.0)
    started = time.monotonic()
    (w.root / "doc.txt").write_text("hello")
    wait_until(lambda: "doc.txt" in w.seen(), timeout=3, message="doc.txt ready early")
    assert time.monotonic() - started < 2.0


@needs_inotify
def test_burst_written_in_place_skips_the_debounce(make_watcher: WatcherFactory) -> None:
    """Many files written at once land in the same reads: each file's create and modify
    events are folded into its close, which still cuts the debounce short."""
    w = make_watcher(debounce=30.0)
    for i in range(300):
        (w.root / f"f{i:03d}.bin").write_bytes(b"x" * 100)
    names = {f"f{i:03d}.bin" for i in range(300)}
    wait_until(lambda: names <= set(w.seen()), timeout=10, message="every file ready early")


IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE = 0x2, 0x4, 0x8, 0x100
IN_DELETE, IN_MOVED_FROM, IN_MOVED_TO, IN_IGNORED, IN_ISDIR = 0x200, 0x40, 0x80, 0x8000, 0x40000000


@pytest.mark.parametrize(
    ("events", "kept"),
    [
        # A file written in place: only its close.
        ([(1, IN_CREATE, 0, b"a"), (1, IN_MODIFY, 0, b"a"), (1, IN_CLOSE_WRITE, 0, b"a")], [2]),
        # Written again after the close: the last modify, not the close, decides.
        ([(1, IN_CLOSE_WRITE, 0, b"a"), (1, IN_MODIFY, 0, b"a")], [1]),
        # Other files and directories are their own runs.
        ([(1, IN_MODIFY, 0, b"a"), (1, IN_MODIFY, 0, b"b"), (2, IN_MODIFY, 0, b"a")], [0, 1, 2]),
        # A directory's events are all kept (its watch follows them).
        ([(1, IN_CREATE | IN_ISDIR, 0, b"d"), (1, IN_ATTRIB | IN_ISDIR, 0, b"d")], [0, 1]),
        # A move or delete of the name ends its run: what came before still counts.
        (
            [
                (1, IN_MODIFY, 0, b"a"),
                (1, IN_MOVED_FROM, 9, b"a"),
                (1, IN_CREATE, 0, b"a"),
                (1, IN_CLOSE_WRITE, 0, b"a"),
                (1, IN_DELETE, 0, b"a"),
            ],
            [0, 1, 3, 4],
        ),
        # An event about a watched directory itself starts every run over.
        ([(1, IN_MODIFY, 0, b"a"), (1, IN_IGNORED, 0, b""), (1, IN_MODIFY, 0, b"a")], [0, 1, 2]),
        ([(1, IN_ATTRIB, 0, b"a"), (1, IN_MOVED_TO, 3, b"b"), (1, IN_ATTRIB, 0, b"a")], [1, 2]),
    ],
)
def test_coalesce_touches(events: list[tuple[int, int, int, bytes]], kept: list[int]) -> None:
    assert coalesce_touches(events) == [events[i] for i in kept]


@needs_inotify
def test_vim_style_atomic_save_reports_only_the_real_file(make_watcher: WatcherFactory) -> None:
    w = make_watcher(debounce=0.2)
    root = w.root
    (root / "notes.txt").write_text("v1")
    wait_until(lambda: "notes.txt" in w.seen(), timeout=5)
    w.clear()
    # vim: swap file, writability probe, backup, then write; gedit-style temp + rename.
    (root / ".notes.txt.swp").write_bytes(b"swap")
    (root / "4913").write_bytes(b"")
    (root / "4913").unlink()
    os.rename(root / "notes.txt", root / "notes.txt~")
    (root / "notes.txt").write_text("v2")
    (root / "notes.txt~").unlink()
    (root / ".goutputstream-XYZ12").write_text("v3")
    os.rename(root / ".goutputstream-XYZ12", root / "notes.txt")
    (root / ".notes.txt.swp").unlink()
    wait_until(lambda: "notes.txt" in w.seen(), timeout=5)
    barrier(w)
    assert w.seen() == {"notes.txt"}
    assert (root / "notes.txt").read_text() == "v3"


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_directory_rename_reports_both_dirs(
    make_watcher: WatcherFactory, force_polling: bool
) -> None:
    if not force_polling and not platform.linux():
        pytest.skip("needs Linux inotify")
    w = make_watcher(debounce=0.1, force_polling=force_polling)
    (w.root / "d1" / "sub").mkdir(parents=True)
    for i in range(5):
        (w.root / "d1" / "sub" / f"f{i}").write_text(str(i))
    wait_until(lambda: "d1/" in w.seen(), timeout=5)
    barrier(w)
    w.clear()
    os.rename(w.root / "d1", w.root / "d2")
    wait_until(lambda: {"d1/", "d2/"} <= w.seen(), timeout=5, message="both dirs ready")
    barrier(w)
    if not force_polling:
        # inotify: one move event; the children are left to the subtree rescan (watchdog's
        # synthetic events for the moved-out subdirectories are not passed on).
        assert w.seen() == {"d1/", "d2/"}
    # Files created in the moved directory are still watched at their new place.
    w.clear()
    (w.root / "d2" / "sub" / "new.txt").write_text("x")
    wait_until(lambda: "d2/sub/new.txt" in w.seen(), timeout=5)


@needs_inotify
def test_ignore_file_patterns_and_reload(make_watcher: WatcherFactory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / ".watchsyncignore").write_text("*.log\nbuild/\n")
    w = make_watcher(debounce=0.1)
    (root / "x.log").write_text("log")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("obj")
    (root / "keep.txt").write_text("keep")
    wait_until(lambda: "keep.txt" in w.seen(), timeout=5)
    barrier(w)
    assert w.seen() == {"keep.txt"}
    # Editing the ignore file reloads the rules (and tells the agent to rescan).
    (root / ".watchsyncignore").write_text("*.log\nbuild/\n*.txt\n")
    wait_until(lambda: w.ignore_changes, timeout=5)
    wait_until(lambda: ".watchsyncignore" in w.seen(), timeout=5)
    (root / "other.txt").write_text("now ignored")
    (root / "data.csv").write_text("1,2")
    wait_until(lambda: "data.csv" in w.seen(), timeout=5)
    barrier(w)
    assert "other.txt" not in w.seen()


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_root_removal_triggers_on_root_gone(
    make_watcher: WatcherFactory, tmp_path: Path, force_polling: bool
) -> None:
    if not force_polling and not platform.linux():
        pytest.skip("needs Linux inotify")
    w = make_watcher(force_polling=force_polling)
    probe = watch_probe(w, tmp_path / "probe")
    (w.root / "f.txt").write_text("x")
    (w.root / "d").mkdir()
    wait_until(lambda: "f.txt" in w.seen(), timeout=5)
    for p in (w.root / "f.txt", w.root / "d"):
        p.rmdir() if p.is_dir() else p.unlink()
    w.root.rmdir()
    wait_until(lambda: w.roots_gone, timeout=5, message="on_root_gone")
    barrier_after_root_gone(w, probe)
    assert w.roots_gone == [1]


@pytest.mark.parametrize("force_polling", [False, True], ids=["inotify", "polling"])
def test_root_moved_away_triggers_on_root_gone(
    make_watcher: WatcherFactory, tmp_path: Path, force_polling: bool
) -> None:
    if not force_polling and not platform.linux():
        pytest.skip("needs Linux inotify")
    w = make_watcher(force_polling=force_polling)
    os.rename(w.root, tmp_path / "moved")
    wait_until(lambda: w.roots_gone, timeout=5, message="on_root_gone")


def test_overflow_event_calls_on_overflow(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    d = Debouncer(0.1)
    handler = ChangeHandler(
        tmp_path,
        d,
        on_overflow=lambda: calls.append("overflow"),
        on_root_gone=lambda: calls.append("gone"),
    )
    handler.dispatch(OverflowEvent(str(tmp_path)))
    handler.dispatch(RootGoneEvent(str(tmp_path)))
    handler.dispatch(RootGoneEvent(str(tmp_path)))
    assert calls == ["overflow", "gone"]
    assert "watch: events were lost" in caplog.text
    assert d.pending() == 0


def test_non_utf8_names_are_skipped_once(make_watcher: WatcherFactory) -> None:
    w = make_watcher(debounce=0.1)
    bad = os.fsencode(w.root) + b"/caf\xe9.txt"
    with open(bad, "wb") as f:
        f.write(b"x")
    with open(bad, "ab") as f:
        f.write(b"y")
    (w.root / "ok.txt").write_text("ok")
    wait_until(lambda: "ok.txt" in w.seen(), timeout=5)
    barrier(w)
    assert w.seen() == {"ok.txt"}
    assert w.skipped == [Skipped("caf\\xe9.txt", "path is not valid UTF-8")]


# -- inotify fallback ------------------------------------------------------------------------


class FailingObserver(PollingObserver):
    """A native observer stand-in that fails like inotify at its limits."""

    def __init__(self, err: int, *, at: str) -> None:
        if at == "init":
            raise OSError(err, os.strerror(err))
        super().__init__(timeout=0.05)
        self.err = err
        self.at = at

    def start(self) -> None:
        if self.at == "start":
            raise OSError(self.err, os.strerror(self.err))
        super().start()


@pytest.mark.parametrize("at", ["init", "start"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EMFILE])
def test_falls_back_to_polling_at_inotify_limits(
    make_watcher: WatcherFactory, caplog: pytest.LogCaptureFixture, err: int, at: str
) -> None:
    w = make_watcher(observer_factory=lambda: FailingObserver(err, at=at))
    assert w.polling is True
    assert type(w.observer) is PollingObserver
    assert "watch: inotify unavailable (" in caplog.text
    assert "falling back to polling" in caplog.text
    assert "sysctl -w fs.inotify.max_user_watches=524288" in caplog.text
    (w.root / "p.txt").write_text("x")
    wait_until(lambda: "p.txt" in w.seen(), timeout=5)


def test_other_observer_errors_are_raised(tmp_path: Path) -> None:
    handler = FileSystemEventHandler()
    with pytest.raises(PermissionError):
        start_observer(
            tmp_path, handler, observer_factory=lambda: FailingObserver(errno.EACCES, at="start")
        )
    with pytest.raises(FileNotFoundError):
        start_observer(tmp_path / "missing", handler)


# -- real kernel limits (we are root in the sandbox; skipped where /proc/sys is read-only) ----

INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")


@contextlib.contextmanager
def sysctl(name: str, value: int) -> Iterator[int]:
    """Temporarily set an inotify sysctl; skips the test if it cannot be written."""
    path = INOTIFY_SYSCTL / name
    try:
        old = int(path.read_text())
        path.write_text(f"{value}\n")
    except OSError as exc:
        pytest.skip(f"cannot write {path} ({exc}); needs root and a writable /proc/sys")
    try:
        yield old
    finally:
        path.write_text(f"{old}\n")


def _watches_in_use() -> int:
    """inotify watches held by all processes we can see (they share the per-user limit)."""
    total = 0
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        with contextlib.suppress(OSError):
            total += fdinfo.read_text().count("inotify wd:")
    return total


@needs_inotify
def test_real_watch_limit_falls_back_to_polling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "tree"
    for i in range(40):
        (root / f"d{i:02d}").mkdir(parents=True)
    handler = ChangeHandler(root, Debouncer(0.05))
    # Keep the lowered limit for as short as possible: other processes share it.
    with sysctl("max_user_watches", _watches_in_use() + 3):
        observer, polling = start_observer(root, handler, polling_interval=0.05)
    try:
        assert polling is True
        assert "watch: inotify unavailable (" in caplog.text
        assert "inotify watch limit reached" in caplog.text
    finally:
        observer.stop()
        observer.join(timeout=10)


@needs_inotify
def test_real_queue_overflow_calls_on_overflow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    root = tmp_path / "tree"
    root.mkdir()
    overflows: list[int] = []
    debouncer = Debouncer(0.05)
    handler = ChangeHandler(root, debouncer, on_overflow=lambda: overflows.append(1))

    def tiny_queue_observer() -> BaseObserver:
        from watchsync.fs.watcher import TrackingInotifyObserver

        # The queue size is fixed when the inotify instance is created.
        with sysctl("max_queued_events", 16):
            return TrackingInotifyObserver()

    observer, polling = start_observer(root, handler, observer_factory=tiny_queue_observer)
    try:
        assert polling is False
        # The reader takes this lock before each read: held, it reads nothing while the
        # burst is written, so the kernel's queue overflows for sure.
        with observer._inotify_fd._lock:  # type: ignore[attr-defined]
            for i in range(200):
                fd = os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY)
                os.close(fd)
        wait_until(lambda: overflows, timeout=5, message="on_overflow after IN_Q_OVERFLOW")
        # Watching goes on after the overflow.
        # The tiny queue may overflow again while the burst drains, losing one event: keep
        # writing until an event gets through.
        debouncer.flush()

        def written_and_seen() -> bool:
            with open(root / "after.txt", "a") as f:
                f.write("x")
            return "after.txt" in debouncer.flush()

        wait_until(written_and_seen, timeout=10, interval=0.1)
    finally:
        observer.stop()
        observer.join(timeout=10)
