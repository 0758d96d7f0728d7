"""The upload queue room: coalescing, delays and the write-ahead journal."""

from __future__ import annotations

import threading
from collections.abc import Callable

from world import (
    World,
)

from watchsync.agent.upload_queue import PathQueue
from watchsync.core.model import Item


def test_pending_journal_entry_lives_until_settled(make_world: Callable[..., World]) -> None:
    w = make_world()
    pending = w.rooms.pending
    pending.add([Item("a.txt"), Item("b.txt"), Item("a.txt")])
    assert sorted(e.path for e in w.store.journal.pending()) == ["a.txt", "b.txt"]
    item = pending.take()
    assert item is not None
    pending.add([Item(item.path)])  # a new event while a worker holds the path
    pending.settle(item.path)
    assert item.path in [e.path for e in w.store.journal.pending()]  # still owed a look
    rest = [pending.take(), pending.take()]
    assert sorted(i.path for i in rest if i is not None) == ["a.txt", "b.txt"]
    for i in rest:
        assert i is not None
        pending.settle(i.path)
    assert w.store.journal.pending() == [] and pending.idle()


def test_pending_resume_keeps_one_entry_per_path(make_world: Callable[..., World]) -> None:
    w = make_world()
    w.store.journal.add_many("sync", ["a.txt", "a.txt", "b.swp"])
    w.rooms.pending.resume(w.store.journal.pending())
    assert [e.path for e in w.store.journal.pending()] == ["a.txt"]  # b.swp is ignored
    assert len(w.rooms.pending) == 1


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
