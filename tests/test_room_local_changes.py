"""The local-changes room: what the watcher reported, noted for the next pass."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from world import (
    World,
    _drain,
    _silently_changed,
    synced_file,
)

from watchsync.agent.local_changes import Taken
from watchsync.agent.reconcile import changed_side
from watchsync.core.model import LocalEntry, SyncedEntry
from watchsync.fs.walk import WalkOptions, walk


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


def test_a_write_through_one_name_of_a_hard_linked_file_queues_the_others(
    make_world: Callable[..., World],
) -> None:
    """inotify reports a write only under the name it went through: the other names of the
    file (its inode linked more than once) are queued and noted with it, not left stale in
    S3 until the next full walk.  A file with one name costs one lstat and nothing more."""
    w = make_world()
    synced_file(w, "a.txt", b"v1")
    os.link(w.root / "a.txt", w.root / "sub-b.txt")
    st = (w.root / "a.txt").stat()
    w.store.synced.put_many([SyncedEntry("sub-b.txt", st.st_size, st.st_mtime_ns, "e", 1)])
    synced_file(w, "alone.txt", b"v1")  # same size, one name: not queued
    w.rooms.reconcile.run()
    _drain(w)
    with (w.root / "sub-b.txt").open("r+b") as f:
        f.write(b"v2")  # through the second name
    os.utime(w.root / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    w.rooms.changes.ready(["sub-b.txt"])
    assert sorted(_drain(w)) == ["a.txt", "sub-b.txt"]
    taken = w.rooms.reconcile.dirty.take()  # type: ignore[union-attr]
    assert taken.paths == {"a.txt", "sub-b.txt"}
