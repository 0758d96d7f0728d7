"""The folder's root room: a root that is another directory is met as a new folder (both
versions kept, nothing deleted) until a person accepts it; one that looks unmounted or lacks
its marker is waited for; the folder's marker found elsewhere is the same folder."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from world import World, synced_file

from watchsync.agent.folder_root import MARKER, FolderRoot, read_marker
from watchsync.core.model import Action, Kind
from watchsync.core.plan import RootVerdict

NAMES = [f"f{i:02}.txt" for i in range(20)]


def _synced_tree(make_world: Callable[..., World], **overrides: object) -> World:
    w = make_world(delete=True, **overrides)
    for name in NAMES:
        synced_file(w, name, name.encode())
    assert w.rooms.root.check() in (RootVerdict.FIRST, RootVerdict.SAME)  # as at start
    return w


def _replace_root(w: World, tmp_path: Path, *files: str) -> None:
    """``mv ROOT ROOT.old; mkdir ROOT`` with ``files`` in it."""
    w.root.rename(tmp_path / "root.old")
    w.root.mkdir()
    for name in files:
        (w.root / name).write_text(f"unrelated {name}")


def test_a_directory_replaced_while_stopped_is_a_new_folder_until_accepted(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    w = _synced_tree(make_world)
    _replace_root(w, tmp_path, "only.txt")
    again = make_world(delete=True, bucket=lambda _root: w.objects)  # a restart
    stats = again.rooms.reconcile.run()
    while len(again.rooms.pending):  # the uploads the pass queued
        item = again.rooms.pending.take()
        assert item is not None
        again.rooms.uploader.process(item)
        again.rooms.pending.settle(item.path)
    # Met as on a first run: S3's files come here, the new one goes there, nothing is deleted.
    assert stats.passed.vetoed is None
    assert sorted(again.objects.objects) == sorted([*NAMES, "only.txt"])
    assert sorted(p.name for p in again.root.iterdir()) == sorted([*NAMES, "only.txt"])
    why = again.status.last_error or ""
    assert "is another directory than the one synced" in why and "ctl deletes approve" in why
    (batch,) = again.rooms.refused.batches()
    # Deletes in it wait for the person's word.
    (again.root / "f00.txt").unlink()
    again.rooms.dirty.note(["f00.txt"])
    assert again.rooms.reconcile.run().passed.vetoed is not None
    assert "f00.txt" in again.objects.objects
    assert again.rooms.refused.approve(batch.id) is not None  # accepted as the folder
    assert again.rooms.root.check() is RootVerdict.SAME
    again.rooms.dirty.note(["f00.txt"])
    assert again.rooms.reconcile.run().passed.vetoed is None
    assert "f00.txt" not in again.objects.objects


def test_a_root_swapped_for_a_symlink_holds_the_deletes_of_a_pass_planned_before(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    """The root repointed while a pass runs: the deletes it planned from the other tree are
    held when they come to run (the root is looked at again then)."""
    w = _synced_tree(make_world)
    other = tmp_path / "other"
    other.mkdir()
    (other / "only.txt").write_text("unrelated")
    w.root.rename(tmp_path / "root.old")
    w.root.symlink_to(other, target_is_directory=True)
    actions = [Action(Kind.DELETE_REMOTE, n, "deleted locally") for n in NAMES]
    why = w.rooms.guards.refusal(actions)
    assert why is not None and "another directory" in why
    assert sorted(w.objects.objects) == NAMES


def test_force_delete_accepts_another_directory_at_once(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    """Under ``--force-delete`` the other directory is met as a new folder (nothing synced
    with the old one is deleted on its account) and accepted: its own deletes then run."""
    w = _synced_tree(make_world, force_delete=True)
    _replace_root(w, tmp_path, "only.txt")
    assert w.rooms.root.check() is RootVerdict.NEW
    assert w.rooms.root.check() is RootVerdict.SAME and w.rooms.root.holding() is None
    assert w.store.synced.count() == 0  # the old directory's files: met again, not deleted
    assert w.rooms.refused.batches() == []


def test_an_empty_other_directory_looks_unmounted_and_is_waited_for(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    w = _synced_tree(make_world)
    _replace_root(w, tmp_path)
    assert w.rooms.root.check() is RootVerdict.WAIT
    assert w.store.synced.count() == len(NAMES)  # nothing forgotten: it may come back
    (tmp_path / "root").rmdir()
    (tmp_path / "root.old").rename(w.root)
    assert w.rooms.root.check() is RootVerdict.SAME


def test_the_marker_names_the_folder_wherever_it_is(
    make_world: Callable[..., World], tmp_path: Path
) -> None:
    """With ``folder_marker``: the folder copied to another directory (a new disk) is the
    same folder; a directory without the marker is waited for, not synced."""
    w = _synced_tree(make_world, folder_marker=True)
    folder_id = read_marker(w.root)
    assert folder_id and (w.root / MARKER).is_file()
    shutil.copytree(w.root, tmp_path / "copy")
    w.root.rename(tmp_path / "root.old")
    (tmp_path / "copy").rename(w.root)
    assert w.rooms.root.check() is RootVerdict.MOVED
    assert w.rooms.root.check() is RootVerdict.SAME
    assert w.store.synced.count() == len(NAMES)  # the same folder: nothing forgotten
    w.rooms.reconcile.run()
    assert MARKER not in w.objects.objects  # the marker is never synced
    (tmp_path / "second").mkdir()
    w.root.rename(tmp_path / "second/root.old")
    w.root.mkdir()
    (w.root / "a.txt").write_text("another disk")
    assert w.rooms.root.check() is RootVerdict.WAIT
    assert "lacks the folder's marker" in (w.rooms.root.reason() or "")


def test_a_dead_mount_that_stays_mounted_is_waited_for_and_holds_every_delete(
    make_world: Callable[..., World],
) -> None:
    """A FUSE daemon killed under its mount point: every look at the root answers "Transport
    endpoint is not connected".  Nothing is synced or deleted, nothing is forgotten, and once
    it answers again the folder is its own."""
    w = _synced_tree(make_world)
    answers = True

    def stat_root(path: Path) -> os.stat_result:
        if not answers:
            raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), str(path))
        return os.stat(path)

    root = FolderRoot(
        "docs",
        root=w.root,
        store=w.store,
        status=w.status,
        refused=w.rooms.refused,
        marker=False,
        force=False,
        ignored=lambda _name, _is_dir: False,
        stat_root=stat_root,
    )
    assert root.check() is RootVerdict.SAME
    answers = False
    assert root.check() is RootVerdict.WAIT and root.waiting()
    # Said as what it is (there, not answering), not as a disk not mounted yet.
    assert root.holding() == f"folder {w.root} is unavailable (Transport endpoint is not connected)"
    said = root.waiting_text("disappeared")
    assert "is unavailable (Transport endpoint is not connected): a dead mount" in said
    assert "not mounted yet" not in said
    assert w.store.synced.count() == len(NAMES)
    answers = True
    assert root.check() is RootVerdict.SAME and root.holding() is None
    # Gone altogether (unmounted, its mount point removed): missing, as before.
    w.root.rename(w.root.with_name("elsewhere"))
    assert root.check() is RootVerdict.WAIT
    assert root.holding() == f"folder {w.root} is missing"
    assert "disappeared (a disk not mounted yet?)" in root.waiting_text("disappeared")
