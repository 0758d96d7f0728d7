"""The change feed between agents: the room alone over an in-memory object with S3's
conditional rules, wired to two folders' rooms over one fake bucket, and end to end with two
real agents on one SeaweedFS prefix."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agent_helpers import bucket_listing, folder_config, running_agent, tree_snapshot
from fakes import FakeFeedObject, FakeObjects, InlinePool
from helpers import wait_until
from prometheus_client import CollectorRegistry

from watchsync.agent.config import FolderConfig
from watchsync.agent.feed import FEED_KEY, Feed
from watchsync.agent.list_schedule import RECHECK_BACKOFF, RECHECK_TRIES
from watchsync.agent.metrics import Metrics
from watchsync.agent.scope import Scope
from watchsync.agent.status import Status
from watchsync.agent.wiring import Rooms, wire
from watchsync.core.errors import Failure, FailureKind
from watchsync.core.filters import is_reserved
from watchsync.core.model import Item, Kind
from watchsync.engine.executor import PassStats
from watchsync.state.store import StateStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Agent:
    """A feed whose applied paths and full-reconcile requests are kept."""

    def __init__(self, obj: FakeFeedObject, now: list[float], **kwargs: Any) -> None:
        self.named: list[list[str]] = []
        self.fulls = 0
        self.feed = Feed(
            "f",
            obj=obj,
            named=lambda paths: self.named.append(list(paths)),
            full=self._full,
            clock=lambda: now[0],
            wall=lambda: now[0],
            **kwargs,
        )

    def _full(self) -> None:
        self.fulls += 1


@pytest.fixture
def now() -> list[float]:
    return [1_800_000_000.0]


def test_feed_carries_changes_to_the_other_agent_only(now: list[float]) -> None:
    obj = FakeFeedObject()
    a, b = Agent(obj, now), Agent(obj, now)
    b.feed.tick()  # no feed yet
    a.feed.note("x.txt")
    a.feed.note("d/y.txt")
    a.feed.tick()
    now[0] += 1
    b.feed.tick()
    assert b.named == [["d/y.txt", "x.txt"]]
    now[0] += 1
    a.feed.tick()
    assert a.named == [] and a.fulls == b.fulls == 0  # its own entry is not handed back


def test_idle_poll_is_one_conditional_get_answered_304(now: list[float]) -> None:
    obj = FakeFeedObject()
    a, b = Agent(obj, now), Agent(obj, now)
    a.feed.note("x.txt")
    a.feed.tick()
    b.feed.tick()
    obj.calls.clear()
    for _ in range(5):
        now[0] += 1
        b.feed.tick()
        b.feed.tick()  # within the poll interval: no request
    assert obj.calls == ["get-304"] * 5


def test_many_writers_never_lose_an_entry(now: list[float]) -> None:
    obj = FakeFeedObject()
    a, b, c = Agent(obj, now), Agent(obj, now), Agent(obj, now)
    c.feed.note("seed")
    c.feed.tick()
    for agent in (a, b):
        agent.feed.tick()  # all hold the same version
    a.feed.note("from-a")
    b.feed.note("from-b")
    a.feed.publish()
    b.feed.publish()  # loses the race on If-Match, reads a's entry, then wins
    assert obj.calls.count("put-412") == 1
    assert b.named == [["seed"], ["from-a"]]
    now[0] += 1
    c.feed.tick()
    assert c.named == [["from-a", "from-b"]]
    assert [e["seq"] for e in obj.doc()["entries"]] == [1, 2, 3]


def test_old_entries_are_compacted_and_a_reader_left_behind_reconciles(
    now: list[float],
) -> None:
    obj = FakeFeedObject()
    a = Agent(obj, now, max_entries=3)
    b = Agent(obj, now)
    a.feed.note("p0")
    a.feed.tick()
    b.feed.tick()
    assert b.named == [["p0"]]
    for i in range(1, 6):  # b is offline while five more entries are written
        now[0] += 1
        a.feed.note(f"p{i}")
        a.feed.tick()
    assert [e["seq"] for e in obj.doc()["entries"]] == [4, 5, 6]
    now[0] += 1
    b.feed.tick()
    assert b.fulls == 1 and b.named == [["p0"]]  # a full reconcile instead of a gap
    a.feed.note("p6")
    a.feed.tick()
    now[0] += 1
    b.feed.tick()
    assert b.named == [["p0"], ["p6"]] and b.fulls == 1  # and it follows on from there


def test_entries_past_the_retention_are_dropped(now: list[float]) -> None:
    obj = FakeFeedObject()
    a = Agent(obj, now, retention=60.0)
    a.feed.note("old")
    a.feed.tick()
    now[0] += 61
    a.feed.note("new")
    a.feed.tick()
    assert [e["paths"] for e in obj.doc()["entries"]] == [["new"]]


def test_entries_of_newer_or_corrupt_agents_are_ignored_with_a_warning(
    now: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    obj = FakeFeedObject()
    a, b = Agent(obj, now), Agent(obj, now)
    a.feed.note("first")
    a.feed.tick()
    b.feed.tick()
    doc = obj.doc()
    at = now[0]
    doc["entries"] += [
        {"v": 2, "seq": 2, "writer": "w2", "at": at, "paths": ["new-format"], "extra": 1},
        {"v": 1, "seq": 3, "writer": "w3", "at": at, "paths": "not-a-list"},
        {"v": 1, "seq": 4, "writer": "w4", "at": at, "paths": ["../escape"]},
        {"v": 1, "seq": 5, "writer": "w5", "at": at, "paths": ["good.txt"]},
    ]
    obj.body = json.dumps(doc).encode()
    now[0] += 1
    with caplog.at_level(logging.WARNING, logger="watchsync.agent.feed"):
        b.feed.tick()
    assert b.named == [["first"], ["good.txt"]] and b.fulls == 0
    text = caplog.text
    assert "ignoring entry 2: written by a newer agent" in text
    assert "ignoring entry 3: corrupt" in text and "ignoring entry 4: corrupt" in text
    # A writer keeps the newer agent's entry as it is.
    a.feed.note("second")
    a.feed.tick()
    kept = [e for e in obj.doc()["entries"] if e["seq"] == 2]
    assert kept and kept[0]["extra"] == 1


def test_a_corrupt_feed_is_ignored_then_replaced(
    now: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    obj = FakeFeedObject()
    a, b = Agent(obj, now), Agent(obj, now)
    a.feed.note("x")
    a.feed.tick()
    b.feed.tick()
    obj.body = b"\x00garbage"
    now[0] += 1
    with caplog.at_level(logging.WARNING, logger="watchsync.agent.feed"):
        b.feed.tick()
    assert "ignoring the feed object: corrupt" in caplog.text
    assert b.named == [["x"]] and b.fulls == 0
    a.feed.note("y")
    a.feed.tick()  # a writer starts a new feed (a new epoch) over the corrupt one
    now[0] += 1
    b.feed.tick()
    assert b.fulls == 1  # what happened meanwhile is unknown: a full reconcile


def test_a_feed_of_a_newer_agent_is_never_overwritten(
    now: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    obj = FakeFeedObject()
    newer = json.dumps({"format": 2, "epoch": "e", "entries": []}).encode()
    obj.body = newer
    a = Agent(obj, now)
    a.feed.note("x")
    with caplog.at_level(logging.WARNING, logger="watchsync.agent.feed"):
        a.feed.tick()
    assert obj.body == newer
    assert "written by a newer agent" in caplog.text


def test_a_large_change_asks_for_a_full_reconcile(now: list[float]) -> None:
    obj = FakeFeedObject()
    a, b = Agent(obj, now), Agent(obj, now)
    b.feed.tick()
    for i in range(1001):
        a.feed.note(f"f{i:04}")
    a.feed.tick()
    now[0] += 1
    b.feed.tick()
    assert b.fulls == 1 and b.named == []
    assert len(obj.body or b"") < 1000  # the paths are not carried


# -- two folders' rooms over one fake bucket ---------------------------------------------------


@pytest.fixture
def two_folders(
    tmp_path: Path, now: list[float]
) -> Iterator[Callable[..., tuple[Rooms, Rooms, FakeObjects]]]:
    stores: list[StateStore] = []

    def make(**overrides: Any) -> tuple[Rooms, Rooms, FakeObjects]:
        obj = FakeFeedObject()
        shared: FakeObjects | None = None
        out: list[Rooms] = []
        for name in ("a", "b"):
            root = tmp_path / name
            root.mkdir()
            cfg = FolderConfig(path=root, url="s3://bucket/p", debounce=0.1, **overrides)
            store = StateStore.open(tmp_path / f"state-{name}", local_root=root, url=cfg.url)
            stores.append(store)
            store.status.set_meta("root_dev", str(os.stat(root).st_dev))
            metrics = Metrics(registry=CollectorRegistry()).folder(cfg.name)
            objects = FakeObjects(root)
            if shared is None:
                shared = objects
            else:
                objects.objects = shared.objects  # one bucket
            out.append(
                wire(
                    cfg,
                    store=store,
                    transfer=objects,
                    scope=Scope(cfg, state_dir=tmp_path / f"state-{name}"),
                    status=Status(cfg.name, store=store, metrics=metrics),
                    metrics=metrics,
                    stop=threading.Event(),
                    on_skip=lambda _s: None,
                    pool=InlinePool,
                    clock=lambda: now[0],
                    feed_object=obj,
                )
            )
        assert shared is not None
        return out[0], out[1], shared

    yield make
    for store in stores:
        store.close()


def _hear(rooms: Rooms) -> PassStats | None:
    """One tick of the runner's feed work: poll, then re-check what others named."""
    assert rooms.feed is not None
    rooms.feed.poll()
    return rooms.reconcile.recheck()


def test_rooms_an_upload_on_a_is_downloaded_by_b_through_the_planner(
    two_folders: Callable[..., tuple[Rooms, Rooms, FakeObjects]], tmp_path: Path
) -> None:
    a, b, bucket = two_folders()
    assert a.feed is not None and b.feed is not None
    _hear(b)
    (tmp_path / "a" / "doc.txt").write_bytes(b"v1")
    a.uploader.process(Item("doc.txt"))
    a.feed.tick()
    _hear(b)
    assert (tmp_path / "b" / "doc.txt").read_bytes() == b"v1"
    synced = b.executor.recorder.store.synced.get("doc.txt")  # type: ignore[attr-defined]
    assert synced is not None and synced.etag == bucket.objects["doc.txt"][1]
    b.feed.tick()
    assert isinstance(obj := a.feed.obj, FakeFeedObject)
    assert obj.calls.count("put") == 1  # a's upload; b's download is not published back


def test_rooms_a_delete_on_a_deletes_on_b(
    two_folders: Callable[..., tuple[Rooms, Rooms, FakeObjects]], tmp_path: Path
) -> None:
    a, b, _bucket = two_folders(delete=True)
    assert a.feed is not None and b.feed is not None
    for name in ("doc.txt", "keep.txt"):
        (tmp_path / "a" / name).write_bytes(name.encode())
        a.uploader.process(Item(name))
    a.feed.tick()
    _hear(b)
    assert sorted(os.listdir(tmp_path / "b")) == ["doc.txt", "keep.txt"]
    (tmp_path / "a" / "doc.txt").unlink()
    a.uploader.process(Item("doc.txt"))
    a.guards.run(a.guards.batcher.ready() or ["doc.txt"], a.executor)
    a.feed.tick()
    _hear(b)
    assert sorted(os.listdir(tmp_path / "b")) == ["keep.txt"]


def _b_cannot_download_a_s_file(
    two_folders: Callable[..., tuple[Rooms, Rooms, FakeObjects]], tmp_path: Path
) -> tuple[Rooms, FakeObjects]:
    """Folder a uploads doc.txt and publishes it; folder b (its first pass done, so later
    passes trust the feed) is refused its download with an ordinary error, not an outage."""
    a, b, _bucket = two_folders()
    assert a.feed is not None and b.feed is not None
    b.reconcile.run()
    (tmp_path / "a" / "doc.txt").write_bytes(b"v1")
    a.uploader.process(Item("doc.txt"))
    a.feed.tick()
    b_objects = b.executor.transfer
    assert isinstance(b_objects, FakeObjects)
    b_objects.refuse[("download", "doc.txt")] = Failure(
        FailureKind.TRANSIENT, "InternalError", "try again"
    )
    return b, b_objects


@pytest.mark.parametrize("later", ["tick", "pass"])
def test_rooms_a_failed_recheck_is_still_owed_and_tried_again(
    two_folders: Callable[..., tuple[Rooms, Rooms, FakeObjects]],
    tmp_path: Path,
    now: list[float],
    later: str,
) -> None:
    """A re-check whose download fails with an ordinary error (not an outage) follows a
    pass's failure rules: the path stays owed, and a later tick (after a wait) or a later
    pass tries it again, though that pass trusts the feed and the watcher."""
    b, b_objects = _b_cannot_download_a_s_file(two_folders, tmp_path)
    failed = _hear(b)
    assert failed is not None and failed.failed == 1
    assert not (tmp_path / "b" / "doc.txt").exists()
    assert b.reconcile.recheck() is None  # owed, but not due again at once
    del b_objects.refuse[("download", "doc.txt")]
    now[0] += RECHECK_BACKOFF[0]
    if later == "tick":
        again = b.reconcile.recheck()
        assert again is not None and again.planned == {Kind.DOWNLOAD: 1}
    else:
        stats = b.reconcile.run()
        assert not stats.listed and stats.passed.planned == {Kind.DOWNLOAD: 1}
    assert (tmp_path / "b" / "doc.txt").read_bytes() == b"v1"
    assert b.listed.owed() == frozenset()  # paid


def test_rooms_a_recheck_that_keeps_failing_is_left_to_a_listing(
    two_folders: Callable[..., tuple[Rooms, Rooms, FakeObjects]],
    tmp_path: Path,
    now: list[float],
) -> None:
    """After repeated failure the path is no longer chased alone: the next pass lists the
    prefix (and, as any pass, plans the download again)."""
    b, b_objects = _b_cannot_download_a_s_file(two_folders, tmp_path)
    assert b.feed is not None
    b.feed.poll()
    for _ in range(RECHECK_TRIES):
        failed = b.reconcile.recheck()
        assert failed is not None and failed.failed == 1
        now[0] += RECHECK_BACKOFF[1]
    assert b.reconcile.recheck() is None and b.listed.owed() == frozenset()
    del b_objects.refuse[("download", "doc.txt")]
    stats = b.reconcile.run()
    assert stats.listed and stats.passed.planned == {Kind.DOWNLOAD: 1}
    assert (tmp_path / "b" / "doc.txt").read_bytes() == b"v1"


# -- end to end: two real agents on one prefix ------------------------------------------------


def test_two_agents_hear_each_other_through_the_feed(
    tmp_path: Path, s3: S3Client, bucket: str, s3server: Any, aws_env: dict[str, str]
) -> None:
    url = f"s3://{bucket}/shared"
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
    cfgs = [folder_config(r, url, s3server.endpoint, delete=True) for r in roots]
    with (
        running_agent(cfgs[0], tmp_path / "state-a") as agent_a,
        running_agent(cfgs[1], tmp_path / "state-b") as agent_b,
    ):
        (roots[0] / "notes.txt").write_text("from a")
        wait_until(
            lambda: (
                (roots[1] / "notes.txt").exists()
                and (roots[1] / "notes.txt").read_text() == "from a"
            ),
            timeout=10,
            message="a's edit on b (reconcile interval: an hour)",
        )
        (roots[1] / "notes.txt").write_text("edited on b")
        wait_until(
            lambda: (roots[0] / "notes.txt").read_text() == "edited on b",
            timeout=10,
            message="b's edit on a",
        )
        (roots[0] / "sub").mkdir()
        (roots[0] / "sub" / "new.txt").write_text("n")
        wait_until(lambda: (roots[1] / "sub" / "new.txt").exists(), timeout=10, message="new")
        (roots[0] / "sub" / "new.txt").rename(roots[0] / "renamed.txt")
        wait_until(
            lambda: (
                (roots[1] / "renamed.txt").exists() and not (roots[1] / "sub" / "new.txt").exists()
            ),
            timeout=10,
            message="the rename on b",
        )
        (roots[1] / "notes.txt").unlink()
        wait_until(
            lambda: not (roots[0] / "notes.txt").exists(), timeout=10, message="b's delete on a"
        )
        assert agent_a.reconciles == 1 and agent_b.reconciles == 1  # no full pass did it
        # The feed lives in the bucket, but never as a file on either side.
        assert FEED_KEY in bucket_listing(s3, bucket, "shared", reserved=True)
        for root in roots:
            assert not (root / ".watchsync").exists()
        assert tree_snapshot(roots[0]) == tree_snapshot(roots[1])


def test_periodic_passes_between_listings_trust_the_feed(
    tmp_path: Path, s3: S3Client, bucket: str, s3server: Any, aws_env: dict[str, str]
) -> None:
    """Passes every 0.2 s, a listing an hour: the other agent's edits arrive through the
    feed, and no pass after the first lists the prefix.  A write made straight to S3 (no
    feed entry) waits for the listing, as documented."""
    url = f"s3://{bucket}/trusting"
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
    cfgs = [
        folder_config(r, url, s3server.endpoint, reconcile_interval=0.2, full_list_interval=3600)
        for r in roots
    ]
    with (
        running_agent(cfgs[0], tmp_path / "state-a") as agent_a,
        running_agent(cfgs[1], tmp_path / "state-b") as agent_b,
    ):
        (roots[0] / "doc.txt").write_text("v1 from a")
        wait_until(
            lambda: (
                (roots[1] / "doc.txt").exists()
                and (roots[1] / "doc.txt").read_text() == "v1 from a"
            ),
            timeout=10,
            message="a's file on b",
        )
        s3.put_object(Bucket=bucket, Key="trusting/other-tool.txt", Body=b"from the console")
        passes = agent_b.reconciles
        wait_until(lambda: agent_b.reconciles >= passes + 5, timeout=10, message="more passes")
        assert not (roots[1] / "other-tool.txt").exists()  # waits for the hourly listing
        assert agent_a.reconcile.listings == 1 and agent_b.reconcile.listings == 1


def test_sync_never_lists_copies_or_deletes_the_reserved_key_space(
    tmp_path: Path, s3: S3Client, bucket: str, s3server: Any, aws_env: dict[str, str]
) -> None:
    from watchsync.cli.main import main

    s3.put_object(Bucket=bucket, Key="p/" + FEED_KEY, Body=b"{}")
    s3.put_object(Bucket=bucket, Key="p/old.txt", Body=b"old")
    src = tmp_path / "src"
    (src / ".watchsync").mkdir(parents=True)
    (src / ".watchsync" / "local.json").write_text("{}")
    (src / "a.txt").write_text("a")
    ep = ["--endpoint-url", s3server.endpoint, "--delete", "--no-progress"]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert main(["sync", str(src), f"s3://{bucket}/p", *ep]) == 0
        assert sorted(bucket_listing(s3, bucket, "p", reserved=True)) == [FEED_KEY, "a.txt"]
        dst = tmp_path / "dst"
        (dst / ".watchsync").mkdir(parents=True)
        (dst / ".watchsync" / "mine").write_text("x")
        assert main(["sync", f"s3://{bucket}/p", str(dst), *ep]) == 0
        mine = tree_snapshot(dst, exclude=is_reserved)
        assert mine == tree_snapshot(src, exclude=is_reserved) == {"a.txt": mine["a.txt"]}
        assert (dst / ".watchsync" / "mine").exists()
        assert not (dst / FEED_KEY).exists()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
