"""The uploader room: a queued path looked at, planned and acted on, alone or in a batch."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from fakes import FakeObjects, cut, lost, refused
from world import (
    World,
    _commits,
    synced_file,
)

from watchsync.agent.uploader import Conflict, Retry, Settled
from watchsync.core.model import Condition, Item
from watchsync.s3.transfer import Uploaded


def test_uploads_new_file_is_sent_and_recorded(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"hello")
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()
    assert w.objects.objects["a.txt"][0] == b"hello"
    synced = w.store.synced.get("a.txt")
    assert synced is not None and synced.etag == w.objects.objects["a.txt"][1]
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()  # unchanged: nothing sent
    assert [c for c in w.objects.calls if c[0] == "upload"] == [("upload", "a.txt")]


def test_uploads_transient_errors_back_off_per_path(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = cut()
    delays = [w.rooms.uploader.process(Item("a.txt")) for _ in range(4)]
    assert delays == [Retry(0.5), Retry(1.0), Retry(2.0), Retry(4.0)]
    assert "S3 unreachable" in (w.status.last_error or "")
    del w.objects.fail["a.txt"]
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()
    w.objects.fail["a.txt"] = cut("cut again")
    assert w.rooms.uploader.process(Item("a.txt", attempt=0)) == Settled()  # unchanged


def test_uploads_lost_race_keeps_both_versions(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "doc.txt", b"v1")
    w.objects.put("doc.txt", b"v2 from elsewhere")  # S3 changed
    (w.root / "doc.txt").write_bytes(b"v2 local edit")  # and so did the file
    assert w.rooms.uploader.process(Item("doc.txt")) == Conflict()
    copies = [p for p in w.objects.objects if ".conflict-" in p]
    assert len(copies) == 1
    assert w.objects.objects[copies[0]][0] == b"v2 from elsewhere"
    assert (w.root / copies[0]).read_bytes() == b"v2 from elsewhere"
    assert w.objects.objects["doc.txt"][0] == b"v2 local edit"
    assert w.store.status.counters()["conflicts"] == 1


def test_uploads_rename_is_a_server_side_copy(make_world: Callable[..., World]) -> None:
    w = make_world()
    synced_file(w, "old.txt", b"content")
    (w.root / "old.txt").rename(w.root / "new.txt")
    assert w.rooms.uploader.process(Item("new.txt")) == Settled()
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
    assert w.rooms.uploader.process(Item("new.txt")) == Settled()
    assert ("copy", "new.txt") not in w.objects.calls
    assert w.objects.objects["new.txt"][0] == b"bbbb"


def test_uploads_local_delete_goes_to_the_batch(make_world: Callable[..., World]) -> None:
    w = make_world(delete=True)
    synced_file(w, "a.txt", b"a")
    synced_file(w, "keep.txt", b"k")
    (w.root / "a.txt").unlink()
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()
    assert w.rooms.guards.pending() == 1 and "a.txt" in w.objects.objects
    w.now[0] += 1.0  # the batch's grace period is over
    batch = w.rooms.guards.batcher.ready()
    w.rooms.guards.run(batch, w.rooms.executor)
    assert "a.txt" not in w.objects.objects and w.store.synced.get("a.txt") is None


class RefusingObjects(FakeObjects):
    """SeaweedFS with a directory where a file now is: PUT If-None-Match gives 412, HEAD 404."""

    def upload(
        self, path: str, *, key: str | None = None, condition: Condition | None = None
    ) -> Uploaded:
        if path == "d" and condition is not None and condition.absent:
            self.calls.append(("upload", path))
            raise lost(path)
        return super().upload(path, key=key, condition=condition)


def test_uploads_refused_create_with_no_object_is_sent_once(
    make_world: Callable[..., World],
) -> None:
    """A filer-backed server refuses "only if absent" for a former directory name although
    HEAD finds no object: the file is sent without the condition, once, not retried in a
    loop."""
    w = make_world(bucket=RefusingObjects)
    objects = w.objects
    (w.root / "d").write_bytes(b"a file where a directory was")
    assert w.rooms.uploader.process(Item("d", absent=True)) == Settled()
    assert isinstance(objects, FakeObjects)
    assert objects.objects["d"][0] == b"a file where a directory was"
    assert len([c for c in objects.calls if c[0] == "upload"]) == 2  # refused, then sent


def test_uploads_permanent_refusal_is_parked(make_world: Callable[..., World]) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = refused()
    results = [w.rooms.uploader.process(Item("a.txt")) for _ in range(5)]
    assert [type(r) for r in results] == [Retry] * 4 + [Settled]
    assert "parked" in (w.status.last_error or "")


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
    assert w.rooms.uploader.process(Item("future.txt", absent=True)) == Settled()
    synced = w.store.synced.get("future.txt")
    assert synced is not None and synced.mtime_ns == far
    assert w.rooms.uploader.process(Item("future.txt")) == Settled()  # unchanged: not sent again
    assert [c for c in w.objects.calls if c[0] == "upload"] == [("upload", "future.txt")]


def test_uploads_file_renamed_over_with_the_same_size_and_mtime_is_sent(
    make_world: Callable[..., World],
) -> None:
    """Two same-size files written within the file system's time granularity carry the
    same mtime; one renamed over the other (an editor's save) is another file all the same."""
    w = make_world()
    (w.root / "c").mkdir()
    (w.root / "c/f1.txt").write_bytes(b"v-a")
    assert w.rooms.uploader.process(Item("c/f1.txt")) == Settled()
    st = (w.root / "c/f1.txt").stat()
    (w.root / "c/.save").write_bytes(b"v-b")
    os.utime(w.root / "c/.save", ns=(st.st_atime_ns, st.st_mtime_ns))  # the same tick
    os.replace(w.root / "c/.save", w.root / "c/f1.txt")
    assert w.rooms.uploader.process(Item("c/f1.txt")) == Settled()
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
    assert w.rooms.uploader.process(Item("a/x.txt")) == Settled()
    assert w.rooms.guards.pending() == 1
    w.now[0] += 1.0
    w.rooms.guards.run(w.rooms.guards.batcher.ready(), w.rooms.executor)
    assert "a/x.txt" not in w.objects.objects and w.store.synced.get("a/x.txt") is None


def test_uploads_rename_copies_only_the_version_synced(make_world: Callable[..., World]) -> None:
    """A rename's server-side copy is conditional on the source still being the version
    last synced: another writer's newer object there is not copied under the new name."""
    w = make_world()
    synced_file(w, "old.txt", b"mine")
    w.objects.put("old.txt", b"theirs, newer")
    (w.root / "old.txt").rename(w.root / "new.txt")
    assert w.rooms.uploader.process(Item("new.txt")) == Settled()
    assert w.objects.objects["new.txt"][0] == b"mine"
    assert w.objects.objects["old.txt"][0] == b"theirs, newer"


def test_uploads_burst_is_sent_together_and_recorded_in_one_commit(
    make_world: Callable[..., World],
) -> None:
    w = make_world()
    names = [f"d/f{i}.txt" for i in range(6)]
    (w.root / "d").mkdir()
    for name in names:
        (w.root / name).write_bytes(name.encode())
    before = _commits(w)
    results = w.rooms.uploader.process_many([Item(n, "", absent=True) for n in names])
    assert results == [Settled()] * len(names)
    assert _commits(w) == before + 1
    for name in names:
        synced = w.store.synced.get(name)
        assert synced is not None and synced.etag == w.objects.objects[name][1]
    assert w.store.status.counters()["uploaded_files"] == len(names)
    # Sent again unchanged: nothing goes out.
    calls = len(w.objects.calls)
    assert w.rooms.uploader.process_many([Item(n) for n in names]) == [Settled()] * len(names)
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
    results = w.rooms.uploader.process_many(items)
    assert results == [Settled(), Settled(), Conflict(), Settled()]
    assert ("copy", "new.txt") in w.objects.calls and ("upload", "new.txt") not in w.objects.calls
    assert w.rooms.guards.pending() == 1
    assert w.objects.objects["plain.txt"][0] == b"plain"
    assert w.objects.objects["doc.txt"][0] == b"v2 local"
    assert any(".conflict-" in p for p in w.objects.objects)


def test_uploads_batch_failures_stay_with_their_paths(make_world: Callable[..., World]) -> None:
    """One path cut off, one losing a race to another writer: the others are recorded."""
    w = make_world()
    for name in ("a.txt", "b.txt", "c.txt"):
        (w.root / name).write_bytes(name.encode())
    w.objects.fail["a.txt"] = cut()
    w.objects.put("b.txt", b"another writer got there first")
    results = w.rooms.uploader.process_many(
        [Item("a.txt", "", absent=True), Item("b.txt", "", absent=True), Item("c.txt")]
    )
    assert results == [Retry(0.5), Conflict(), Settled()]
    assert w.store.synced.get("a.txt") is None
    assert w.objects.objects["c.txt"][0] == b"c.txt"
    synced = w.store.synced.get("c.txt")
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
    assert w.rooms.uploader.process_many(items) == [Settled()] * 2
    assert not [p for p in w.objects.objects if ".conflict-" in p]
    assert w.objects.objects["a.txt"][0] == b"second, longer"
    synced = w.store.synced.get("a.txt")
    assert synced is not None and synced.size == len(b"second, longer")
    assert synced.etag == w.objects.objects["a.txt"][1]


def test_a_conflict_copy_being_uploaded_is_pending_not_deleted_in_s3(
    make_world: Callable[..., World],
) -> None:
    """The S3 version kept as a conflict copy is synced only once its upload has landed: a
    pass that lists meanwhile sees a file neither synced nor in S3, in flight, and leaves it
    alone (before, recorded at its download, it was taken for a file deleted in S3 and
    deleted here while its upload still ran)."""
    w = make_world(delete=True)
    synced_file(w, "doc.txt", b"v1")
    w.objects.put("doc.txt", b"v2 from elsewhere")  # S3 changed
    (w.root / "doc.txt").write_bytes(b"v2 local edit")  # and so did the file
    passes: list[dict[Any, int]] = []
    w.objects.on_wire[".conflict-"] = lambda: passes.append(w.rooms.reconcile.run().passed.planned)
    w.rooms.pending.add([Item("doc.txt")])
    item = w.rooms.pending.take()  # a worker has it in hand
    assert item is not None
    assert w.rooms.uploader.process(item) == Conflict()
    w.rooms.pending.settle(item.path)
    assert passes == [{}]  # the pass during the copy's upload planned nothing
    [copy] = [p for p in w.objects.objects if ".conflict-" in p]
    assert (w.root / copy).read_bytes() == b"v2 from elsewhere"
    assert w.objects.objects[copy][0] == b"v2 from elsewhere"
    assert w.objects.objects["doc.txt"][0] == b"v2 local edit"
    assert w.rooms.reconcile.run().passed.planned == {}  # both synced now
    # The watcher's report of the copy, handed in while it was sent, finds it synced.
    assert w.rooms.uploader.process(Item(copy)) == Settled()
    assert [c for c in w.objects.calls if c == ("upload", copy)] == [("upload", copy)]


def test_a_path_being_sent_is_not_queued_again_by_a_pass(
    make_world: Callable[..., World],
) -> None:
    """A pass during the upload of a new file leaves it to its worker; the file's change
    during the send (reported by the watcher) is one more send, conditional on the object
    just stored: two uploads, no third one "only if absent" from the pass's stale view."""
    w = make_world()
    w.rooms.reconcile.run()

    def meanwhile() -> None:
        w.rooms.reconcile.run()  # lists: no object yet, no record
        with (w.root / "new.bin").open("ab") as f:
            f.write(b" and more")  # appended during the send
        w.rooms.changes.ready(["new.bin"])  # the watcher reports it

    w.objects.on_wire["new.bin"] = meanwhile
    (w.root / "new.bin").write_bytes(b"a new file")
    w.rooms.changes.ready(["new.bin"])
    item = w.rooms.pending.take()
    assert item is not None
    assert w.rooms.uploader.process(item) == Settled()  # sent, changed, sent again
    w.rooms.pending.settle(item.path)
    again = w.rooms.pending.take()  # the watcher's report, from the state alone
    assert again == Item("new.bin")
    assert w.rooms.uploader.process(again) == Settled()
    w.rooms.pending.settle(again.path)
    assert w.rooms.pending.idle()
    assert [c for c in w.objects.calls if c[0] == "upload"] == [("upload", "new.bin")] * 2
    assert w.objects.objects["new.bin"][0] == b"a new file and more"
    assert w.store.status.counters().get("conflicts", 0) == 0


def test_the_uploader_waits_for_a_path_the_executor_is_sending(
    make_world: Callable[..., World],
) -> None:
    """A path held in flight by another sender is looked at again shortly, quietly (not a
    retry in the metrics, no error): one sender for a path at a time."""
    w = make_world()
    (w.root / "a.txt").write_bytes(b"a")
    with w.rooms.executor.sending.hold(["a.txt"]):
        assert w.rooms.uploader.process(Item("a.txt")) == Retry(1.0, counted=False)
        assert w.rooms.uploader.process_many([Item("a.txt"), Item("b.txt")])[0] == Retry(
            1.0, counted=False
        )
    assert w.objects.calls == [] and w.status.last_error is None
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()
    assert w.objects.objects["a.txt"][0] == b"a"


def test_a_touch_with_unchanged_content_sends_nothing(make_world: Callable[..., World]) -> None:
    """A file touched to a later time, or back to an earlier one, holds the bytes of the
    object last synced (its hash against the recorded ETag): only its new stat is recorded.
    Another write of the same size is sent."""
    w = make_world()
    synced_file(w, "a.txt", b"same bytes")
    synced_file(w, "b.txt", b"same bytes")
    st = (w.root / "a.txt").stat()
    os.utime(w.root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9 * 3600))
    os.utime(w.root / "b.txt", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9 * 3600))
    results = w.rooms.uploader.process_many([Item("a.txt", reported=True), Item("b.txt")])
    assert results == [Settled(), Settled()]
    assert [c for c in w.objects.calls if c[0] == "upload"] == []
    for path in ("a.txt", "b.txt"):
        synced = w.store.synced.get(path)
        now = (w.root / path).stat()
        assert synced is not None and synced.mtime_ns == now.st_mtime_ns
    assert w.store.status.counters().get("uploaded_files", 0) == 0
    (w.root / "a.txt").write_bytes(b"SAME BYTES")  # the size as synced, other bytes
    assert w.rooms.uploader.process(Item("a.txt")) == Settled()
    assert w.objects.objects["a.txt"][0] == b"SAME BYTES"
