"""Group commit of finished transfers: many transfers, one transaction, and a caller returns
only once its own record is committed."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

from watchsync.agent.effects import StoreRecorder
from watchsync.core.model import SyncedEntry
from watchsync.state.store import Recorded, StateStore


class SlowStore(StateStore):
    """A store whose first commit waits until released (a slow fsync)."""

    release: threading.Event
    commits: list[int]

    def record_many(self, items: Sequence[Recorded]) -> None:
        first = not self.commits
        self.commits.append(len(items))
        if first:
            self.release.wait(10)
        super().record_many(items)


def open_slow(tmp_path: Path) -> SlowStore:
    store: Any = StateStore.open(tmp_path / "state", local_root=tmp_path, url="s3://b/p")
    store.__class__ = SlowStore
    store.release, store.commits = threading.Event(), []
    assert isinstance(store, SlowStore)
    return store


def entry(i: int) -> SyncedEntry:
    return SyncedEntry(f"f{i:02}", i, 1_000 + i, f"e{i}", 2_000 + i)


def test_transfers_finishing_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    store = open_slow(tmp_path)
    try:
        recorder = StoreRecorder(store)
        ids = store.journal.add_many("upload", [entry(i).path for i in range(10)])
        returned: list[int] = []

        def finish(i: int) -> None:
            recorder.synced(entry(i), counters={"uploaded_files": 1}, journal_id=ids[i])
            returned.append(i)

        threads = [threading.Thread(target=finish, args=(0,))]
        threads[0].start()
        wait_until(lambda: store.commits == [1], timeout=5, message="the first commit")
        threads += [threading.Thread(target=finish, args=(i,)) for i in range(1, 10)]
        for t in threads[1:]:
            t.start()
        wait_until(lambda: len(recorder._queue) == 9, timeout=5, message="nine waiting")
        assert returned == []  # nobody returns before its record is committed
        store.release.set()
        for t in threads:
            t.join(10)
        assert store.commits == [1, 9] and recorder.commits == 2
        assert sorted(returned) == list(range(10))
        assert [e.path for e in store.synced.iter_sorted()] == [entry(i).path for i in range(10)]
        assert store.synced.get("f03") == entry(3)
        assert store.journal.count() == 0
        assert store.status.counters()["uploaded_files"] == 10
    finally:
        store.close()


def test_a_failed_group_commit_fails_every_caller_in_it(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state", local_root=tmp_path, url="s3://b/p")
    recorder = StoreRecorder(store)
    recorder.synced(entry(1))
    store.close()
    with pytest.raises(Exception, match="closed"):
        recorder.synced(entry(2))
