"""The executor (engine) without a server: the delete veto, re-checks before acting, conditional
remote deletes, a write landing after a download or delete."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeObjects, InlinePool, RecordedEvents, cut, failure
from world import (
    World,
    synced_file,
)

from watchsync.agent.uploader import Settled
from watchsync.core.errors import Failure, FailureKind
from watchsync.core.model import Action, Condition, Item, Kind, LocalEntry, Skipped, SyncedEntry
from watchsync.engine.executor import Executor, Outcome, Skips
from watchsync.engine.policy import NOTHING_SEEN, ExecPolicy, Seen
from watchsync.engine.reporting import NullRecorder
from watchsync.s3.capabilities import Capabilities
from watchsync.s3.downloads import Downloaded
from watchsync.s3.transfer import Uploaded


class Refuse:
    def __init__(self, why: str | None) -> None:
        self.why = why
        self.seen: list[Seen] = []

    def refusal(self, deletes: Iterable[Action], *, seen: Seen = NOTHING_SEEN) -> str | None:
        self.seen.append(seen)
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
        objects.fail["a.txt"] = cut()
    events = RecordedEvents()
    executor = Executor(
        objects, recorder=NullRecorder(), events=events, guards=Refuse(refusal), pool=InlinePool
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


class IgnoresConditions(FakeObjects):
    """A server that ignores a delete's ETag condition: only the check before protects."""

    def delete_remote(
        self, paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None
    ) -> list[tuple[str, Failure]]:
        return super().delete_remote(paths)


class RejectsConditions(FakeObjects):
    """A server that refuses a delete's ETag condition (NotImplemented)."""

    def delete_remote(
        self, paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None
    ) -> list[tuple[str, Failure]]:
        if conditions:
            raise Failure(FailureKind.UNSUPPORTED, "NotImplemented", "NotImplemented: delete")
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
        policy=ExecPolicy.AGENT,
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

    def racing(paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None) -> Any:
        objects.put("a.txt", b"v2 just now")
        return delete(paths, conditions=conditions)

    objects.delete_remote = racing  # type: ignore[method-assign]
    executor = Executor(
        objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool,
        policy=ExecPolicy.AGENT,
    )  # fmt: skip
    syn = SyncedEntry("a.txt", 2, 0, old.etag, old.mtime_ns)
    executor.delete([Action(Kind.DELETE_REMOTE, "a.txt", "deleted locally", synced=syn)])
    assert objects.objects["a.txt"][0] == b"v2 just now"
    assert (tmp_path / "a.txt").read_bytes() == b"v2 just now"


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


def test_download_record_does_not_absorb_a_write_right_after_it(
    make_world: Callable[..., World],
) -> None:
    """The user writes the file between the download's rename and the executor's stat: the
    state must keep what the download wrote, so the write is still seen and uploaded."""
    w = make_world()
    synced_file(w, "doc.txt", b"v1 synced")
    w.objects.put("doc.txt", b"v2 from S3")
    download = w.objects.download

    def then_user_writes(path: str, **kw: Any) -> Downloaded:
        written = download(path, **kw)
        written.path.write_bytes(b"v3 the user")  # same size as v2, lands before the stat
        return written

    w.objects.download = then_user_writes  # type: ignore[method-assign]
    w.rooms.reconcile.run()
    w.objects.download = download  # type: ignore[method-assign]
    assert (w.root / "doc.txt").read_bytes() == b"v3 the user"
    w.rooms.reconcile.dirty.note(["doc.txt"])  # type: ignore[union-attr]  # as the watcher would
    w.rooms.reconcile.run()
    assert len(w.rooms.pending) == 1  # the write is seen: queued for the uploader
    assert w.rooms.uploader.process(Item("doc.txt")) == Settled()
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


def test_a_file_replaced_by_one_of_the_same_size_and_time_is_not_what_was_planned(
    tmp_path: Path,
) -> None:
    """Another file renamed over the planned one carries its size and mtime; only its
    inode tells it apart.  A download over it, or its delete, waits for the next look."""
    objects = FakeObjects(tmp_path)
    objects.put("doc.txt", b"v2 from S3")
    target = tmp_path / "doc.txt"
    target.write_bytes(b"v1 seen")
    st = target.stat()
    planned = LocalEntry("doc.txt", st.st_size, st.st_mtime_ns, st.st_ino)
    other = tmp_path / "other.txt"
    other.write_bytes(b"v1 user")  # same size
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, target)  # a new inode at the path
    executor = Executor(objects, recorder=NullRecorder(), events=RecordedEvents(), pool=InlinePool)
    down = Action(Kind.DOWNLOAD, "doc.txt", "remote changed", planned, objects.entry("doc.txt"))
    assert executor.apply(down) is Outcome.STALE
    executor.delete([Action(Kind.DELETE_LOCAL, "doc.txt", "deleted in S3", planned)])
    assert target.read_bytes() == b"v1 user"


class RefusesConditionalWrites(FakeObjects):
    """A server that answers NotImplemented to any conditional write or copy."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refusals = 0

    def upload(
        self, path: str, *, key: str | None = None, condition: Condition | None = None
    ) -> Uploaded:
        if condition is not None:
            self.refusals += 1
            raise failure(FailureKind.UNSUPPORTED, "NotImplemented", path)
        return super().upload(path, key=key)

    def copy(self, src_path: str, dst_path: str, *, condition: Condition | None = None) -> str:
        if condition is not None:
            self.refusals += 1
            raise failure(FailureKind.UNSUPPORTED, "NotImplemented", src_path)
        return super().copy(src_path, dst_path)


def test_a_refused_feature_is_learnt_once_for_every_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One refusal teaches the executor (and whoever shares what the server takes): later
    uploads and copies go without a condition, and the warning is logged once."""
    objects = RefusesConditionalWrites(tmp_path)
    server = Capabilities()
    executor = Executor(
        objects,
        recorder=NullRecorder(),
        events=RecordedEvents(),
        policy=ExecPolicy.AGENT,
        server=server,
        pool=InlinePool,
    )
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes(name.encode())
        local = LocalEntry(name, 5, (tmp_path / name).stat().st_mtime_ns)
        executor.apply(Action(Kind.UPLOAD, name, "new", local, condition=Condition.ABSENT))
    (tmp_path / "c.txt").write_bytes(b"a.txt")  # a.txt renamed
    st = (tmp_path / "c.txt").stat()
    old = SyncedEntry("a.txt", 5, st.st_mtime_ns, objects.objects["a.txt"][1], 0)
    rename = Action(
        Kind.COPY, "c.txt", "renamed", LocalEntry("c.txt", 5, st.st_mtime_ns), synced=old
    )
    assert executor.apply(rename) is Outcome.DONE
    assert sorted(objects.objects) == ["a.txt", "b.txt", "c.txt"]
    assert objects.refusals == 1 and not server.conditional_writes
    assert caplog.text.count("rejects conditional writes") == 1


def test_executor_tells_the_guards_what_the_pass_saw_once_the_plan_is_read(
    tmp_path: Path,
) -> None:
    """The guards judge a pass's deletes with what it saw of each side (an empty listing
    while files were synced holds every local delete): counted as the plan streamed by."""
    objects = FakeObjects(tmp_path)
    objects.put("gone.txt", b"g")
    guards = Refuse(None)
    executor = Executor(
        objects, recorder=NullRecorder(), events=RecordedEvents(), guards=guards, pool=InlinePool
    )
    read: list[str] = []

    def plan() -> Iterable[Action]:
        read.append("a")
        yield Action(Kind.DELETE_REMOTE, "gone.txt", "not in source")
        read.append("b")

    executor.run(plan(), seen=lambda: Seen(walked=len(read), listed=0))
    assert guards.seen == [Seen(walked=2, listed=0)]
