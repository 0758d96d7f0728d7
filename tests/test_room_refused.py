"""The refused deletes room: a refusal kept with its paths, approved once or given up, and
the state gauges an alert reads (paused, error, refused deletes)."""

from __future__ import annotations

from collections.abc import Callable

from fakes import cut
from prometheus_client import CollectorRegistry
from world import World, synced_file

from watchsync.agent.outage import Outage
from watchsync.agent.status import State, Status


def _registry(w: World) -> CollectorRegistry:
    metrics = w.status.metrics
    assert metrics is not None
    return metrics.m.registry


def _gauge(w: World, name: str, **labels: str) -> float | None:
    return _registry(w).get_sample_value(name, {"folder": w.status.name, **labels})


def _three_deleted_locally(make_world: Callable[..., World]) -> World:
    w = make_world(delete=True, max_delete=2)
    for name in ("a.txt", "b.txt", "c.txt"):
        synced_file(w, name, b"x")
    synced_file(w, "keep.txt", b"k")
    for name in ("a.txt", "b.txt", "c.txt"):
        (w.root / name).unlink()
    return w


def test_a_refused_pass_is_kept_shown_and_counted(make_world: Callable[..., World]) -> None:
    w = _three_deleted_locally(make_world)
    w.status.set(State.WATCHING)
    assert _gauge(w, "watchsync_folder_up") == 1
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is not None
    [batch] = w.rooms.refused.batches()
    assert batch.remote == ("a.txt", "b.txt", "c.txt") and batch.local == ()
    assert "3 deletes exceed --max-delete 2" in batch.why
    # The refusal tells how to decide, and every view of the folder says so.
    assert f"watchsync ctl deletes approve {batch.id}" in (w.status.last_error or "")
    assert "--force-delete" not in (w.status.last_error or "")
    assert w.status.state is State.ERROR
    assert _gauge(w, "watchsync_folder_up") == 0
    assert _gauge(w, "watchsync_folder_state", state="error") == 1
    assert _gauge(w, "watchsync_folder_state", state="watching") == 0
    assert _gauge(w, "watchsync_errors_total", kind="delete_refused") == 1
    assert _gauge(w, "watchsync_deletes_refused") == 3
    assert w.store.status.fields()["refused_deletes"] == 3
    # Refused again by the next pass: the same batch, counted again as an error.
    w.rooms.reconcile.run()
    assert [b.id for b in w.rooms.refused.batches()] == [batch.id]
    assert _gauge(w, "watchsync_errors_total", kind="delete_refused") == 2


def test_an_approved_batch_runs_once(make_world: Callable[..., World]) -> None:
    asked: list[bool] = []
    w = _three_deleted_locally(make_world)
    w.rooms.reconcile.run()
    [batch] = w.rooms.refused.batches()
    assert w.rooms.refused.approve("nope") is None
    w.rooms.refused.on_approved = lambda b: asked.append(True)  # the folder would rescan
    assert w.rooms.refused.approve(batch.id) == batch
    assert asked == [True] and _gauge(w, "watchsync_deletes_refused") == 0
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is None
    assert not {"a.txt", "b.txt", "c.txt"} & set(w.objects.objects)
    assert "keep.txt" in w.objects.objects
    assert w.rooms.refused.batches() == []
    # The approval was spent: three more deletes are refused again.
    for name in ("d.txt", "e.txt", "f.txt"):
        synced_file(w, name, b"x")
        (w.root / name).unlink()
    assert w.rooms.reconcile.dirty is not None
    w.rooms.reconcile.dirty.invalidate("the watcher is not running in a room test")
    assert w.rooms.reconcile.run().passed.vetoed is not None


def test_a_rejected_batch_brings_the_files_back(make_world: Callable[..., World]) -> None:
    w = _three_deleted_locally(make_world)
    w.rooms.reconcile.run()
    [batch] = w.rooms.refused.batches()
    assert w.rooms.refused.reject(batch.id) == batch
    assert w.store.synced.get("a.txt") is None  # forgotten: the object is new to the next pass
    stats = w.rooms.reconcile.run()
    assert stats.passed.vetoed is None
    assert {"a.txt", "b.txt", "c.txt"} <= set(w.objects.objects)
    assert all((w.root / name).read_bytes() == b"x" for name in ("a.txt", "b.txt", "c.txt"))
    assert w.rooms.refused.batches() == [] and _gauge(w, "watchsync_deletes_refused") == 0


def test_the_watchers_batch_is_kept_and_approved_through_the_delete_thread(
    make_world: Callable[..., World],
) -> None:
    w = _three_deleted_locally(make_world)
    names = ["a.txt", "b.txt", "c.txt"]
    w.rooms.guards.run(names, w.rooms.executor)
    [batch] = w.rooms.refused.batches()
    assert batch.origin == "watch" and batch.remote == tuple(names)
    assert "delete: refused 3 deletes in S3" in (w.status.last_error or "")
    w.rooms.refused.approve(batch.id)
    assert w.rooms.guards.pending() == 3  # handed to the delete thread's next batch
    w.now[0] += 10
    again = w.rooms.guards.batcher.ready()
    w.rooms.guards.run(again, w.rooms.executor)
    assert not set(names) & set(w.objects.objects)


def test_pause_and_resume_move_the_state_gauges() -> None:
    registry = CollectorRegistry()
    from watchsync.agent.metrics import Metrics

    wall = [1000.0]
    status = Status("f", store=None, metrics=Metrics(registry).folder("f"), wall=lambda: wall[0])

    def gauge(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"folder": "f", **labels})

    answers = [False]

    def probe() -> None:
        if not answers[0]:
            raise cut("refused")

    now = [0.0]
    outage = Outage("f", status=status, probe=probe, clock=lambda: now[0])
    status.set(State.WATCHING)
    assert gauge("watchsync_folder_up") == 1
    wall[0] = 1234.0
    outage.down(cut("reset"))
    assert gauge("watchsync_folder_up") == 0
    assert gauge("watchsync_folder_state", state="paused") == 1
    assert gauge("watchsync_folder_state_since_timestamp_seconds") == 1234.0
    assert status.reason is not None and "S3 unreachable" in status.reason
    answers[0] = True
    now[0] = 60.0
    wall[0] = 1300.0
    assert outage.tick() is True
    assert gauge("watchsync_folder_up") == 1
    assert gauge("watchsync_folder_state", state="paused") == 0
    assert gauge("watchsync_folder_state", state="watching") == 1
    assert gauge("watchsync_folder_state_since_timestamp_seconds") == 1300.0
    assert status.reason is None
