"""A reconcile pass's progress (agent/progress.py): its numbers, which status reads, an INFO
line every few seconds while a pass lasts, and the live display on a terminal."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import FakeObjects
from world import World, synced_file

from watchsync.agent.progress import PassProgress, PassWatch
from watchsync.core.model import Action, Kind, LocalEntry, RemoteEntry, RemoteRow, Skipped


class Clock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _files(n: int) -> list[LocalEntry]:
    return [LocalEntry(f"f{i:04d}", 1, 0) for i in range(n)]


def test_a_long_pass_says_where_it_is_every_five_seconds(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    watch = PassWatch("docs", every=5.0, clock=clock, wall=lambda: 0.0)
    caplog.set_level(logging.INFO, logger="watchsync.agent.progress")
    for _entry in watch.local(_files(60)):
        clock.now += 0.5  # a slow disk: 2 files a second, the last one at 29.5 s
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5, lines  # at 5, 10, ... 25 s
    assert lines[0] == "reconcile: docs under way for 5s: 11 local files scanned (2/s), " \
        "0 objects listed, 0 actions planned"  # fmt: skip
    assert caplog.records[0].folder == "docs"  # type: ignore[attr-defined]


def test_a_quick_pass_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    watch = PassWatch("docs", every=5.0, clock=clock)
    caplog.set_level(logging.INFO, logger="watchsync.agent.progress")
    for _entry in watch.local(_files(1000)):
        clock.now += 0.001
    watch.finish()
    assert caplog.records == [] and watch.numbers.scanned == 1000


def test_each_side_and_the_plan_are_counted() -> None:
    watch = PassWatch("docs", clock=Clock())
    watch.listed(1)
    watch.listed(1)  # two pages of one
    plan = [Action(Kind.UPLOAD, "a", "new"), Action(Kind.UPLOAD, "b", "new"),
            Action(Kind.DOWNLOAD, "c", "new")]  # fmt: skip
    assert list(watch.plan(plan)) == plan
    seen = watch.snapshot()
    assert (seen.listed, seen.planned, seen.kinds) == (2, 3, {"upload": 2, "download": 1})
    seen.kinds["upload"] = 99  # a copy: a reader on another thread cannot disturb the pass
    assert watch.numbers.kinds["upload"] == 2


def test_the_live_display_is_fed_five_times_a_second_then_ended() -> None:
    clock = Clock()
    shown: list[tuple[str, int, int, bool]] = []
    watch = PassWatch("docs", clock=clock, show=lambda *a: shown.append(a))
    for _entry in watch.local(_files(100)):
        clock.now += 0.01  # one second in all
    watch.finish()
    assert 5 <= len(shown) <= 7
    assert shown[-1] == ("docs", 100, 0, True)


class _SlowListing(FakeObjects):
    """A bucket whose listing takes a second an object (a huge prefix, a slow link); it
    looks at the pass's progress halfway, as ``watchsync status`` would."""

    world: World
    seen: list[PassProgress | None]

    def listing(
        self, *, for_download: bool, on_read: Callable[[int], None] | None = None
    ) -> Iterator[RemoteEntry | Skipped]:
        for n, entry in enumerate(super().listing(for_download=for_download, on_read=on_read)):
            self.world.now[0] += 1.0
            if n == 15:
                self.seen.append(self.world.rooms.reconcile.progress())
            yield entry


def test_the_first_pass_of_a_large_tree_logs_and_shows_its_progress(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    w = make_world(bucket=_SlowListing)
    assert isinstance(w.objects, _SlowListing)
    w.objects.world, w.objects.seen = w, []
    for i in range(30):
        w.objects.put(f"remote-{i:02d}", b"r")
    for i in range(5):
        (w.root / f"local-{i}").write_bytes(b"l")
    assert w.rooms.reconcile.progress() is None  # no pass yet
    caplog.set_level(logging.INFO, logger="watchsync.agent.progress")
    w.rooms.reconcile.run()
    lines = [r.getMessage() for r in caplog.records if "under way" in r.getMessage()]
    assert len(lines) == 6, lines  # 30 s of listing, a line every 5 s
    [halfway] = w.objects.seen
    assert halfway is not None and not halfway.finished and halfway.listed == 15
    done = w.rooms.reconcile.progress()
    assert done is not None and done.finished
    assert (done.scanned, done.listed, done.planned) == (5, 30, 35)
    assert done.kinds == {"download": 30, "upload": 5}
    assert done.as_dict()["kinds"] == {"download": 30, "upload": 5}


class _SortedListing(FakeObjects):
    """A server that does not keep S3's key order: its listing is read whole, page by page
    (a second a page), and sorted before its first row comes out; the pass's progress is
    looked at when that first row does."""

    world: World
    seen: list[PassProgress | None]

    def listing_pages(
        self, on_read: Callable[[int], None] | None = None
    ) -> Iterator[list[RemoteRow | Skipped]]:
        rows: list[RemoteRow | Skipped] = [
            (e.path, e.size, e.mtime_ns, e.etag)
            for e in FakeObjects.listing(self, for_download=True)
            if isinstance(e, RemoteEntry)
        ]
        for i in range(0, len(rows), 10):
            self.world.now[0] += 1.0
            if on_read is not None:
                on_read(len(rows[i : i + 10]))
        self.seen.append(self.world.rooms.reconcile.progress())
        yield from (rows[i : i + 10] for i in range(0, len(rows), 10))

    def listing(
        self, *, for_download: bool, on_read: Callable[[int], None] | None = None
    ) -> Iterator[RemoteEntry | Skipped]:
        entries = list(super().listing(for_download=for_download))
        for i in range(0, len(entries), 10):
            self.world.now[0] += 1.0
            if on_read is not None:
                on_read(len(entries[i : i + 10]))
        self.seen.append(self.world.rooms.reconcile.progress())
        yield from entries


@pytest.mark.parametrize("first", [True, False], ids=["first-pass", "listing-pass"])
def test_a_sorted_listing_counts_its_objects_as_its_pages_are_read(
    make_world: Callable[..., World], first: bool
) -> None:
    w = make_world(bucket=_SortedListing)
    assert isinstance(w.objects, _SortedListing)
    w.objects.world, w.objects.seen = w, []
    for i in range(30):
        if first:
            w.objects.put(f"remote-{i:02d}", b"r")
        else:
            synced_file(w, f"f{i:02d}", b"x")
    if not first:  # a later pass: the listing's rows against the state's, the folder trusted
        w.rooms.reconcile.run()
        w.objects.seen.clear()
        w.now[0] += 3600.0
    stats = w.rooms.reconcile.run()
    assert stats.listed and stats.walked is first
    [first_row] = w.objects.seen
    assert first_row is not None and not first_row.finished and first_row.listed == 30
    done = w.rooms.reconcile.progress()
    assert done is not None and done.finished and done.listed == 30


def test_status_numbers_are_plain_values(tmp_path: Path) -> None:
    numbers = PassProgress("docs", 1.5, scanned=2, kinds={"upload": 1}).as_dict()
    assert numbers == {"started": 1.5, "scanned": 2, "listed": 0, "planned": 0,
                       "kinds": {"upload": 1}, "finished": False}  # fmt: skip
