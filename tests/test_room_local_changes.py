"""The local-changes room: what the watcher reported, noted for the next pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from world import (
    World,
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
