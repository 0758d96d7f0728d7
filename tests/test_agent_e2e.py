"""End-to-end tests of the watch agent: real files, real inotify, a real SeaweedFS.

Most tests run a :class:`Folder` in-process with a tiny debounce; crash and signal
tests run ``python -m watchsync watch`` as a real process.  Each ends by checking that the
bucket holds exactly the folder (keys and content hashes).

Each test runs on the OS's own paths (``native``: inotify here); those in :data:`PORTABLE`
run again on the paths macOS and Windows take (``portable``: ``WATCHSYNC_PORTABLE=1``, see
watchsync/fs/platform.py: watchdog's generic observer, no ``/proc``, no SIGHUP, no ``pread``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import (
    AgentProcess,
    assert_in_sync,
    bucket_listing,
    bucket_snapshot,
    counters,
    folder_config,
    read_state,
    running_agent,
    tree_snapshot,
    wait_idle,
)
from helpers import wait_until
from netproxy import NetProxy
from s3server import SeaweedServer

from watchsync.agent.folder import Folder
from watchsync.core.errors import LockedError
from watchsync.core.model import Mode

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "data"
CONFLICT_RE = re.compile(r"^(?P<stem>.+)\.conflict-\d{8}-\d{6}(?:-\d+)?(?P<ext>\.[^.]+)?$")


# Run again on the portable paths, each for what the switch changes under it. The switch
# (watchsync/fs/platform.py) swaps only the observer (watchdog's own for the tracking inotify
# reader), the mount scan (a walk comparing st_dev for /proc/self/mountinfo), the reload
# signal (a request file for SIGHUP) and pread (a seek and a read under a lock). So: every
# kind of local change the observer must report, the agent's own writes it must not echo,
# the root and a mounted disk going, a symlink, and a real process's signals. The state lock
# (filelock: no fcntl) and file identity (st_dev, st_ino) take the same code on every OS, but
# are where macOS and Windows differ most: the lock test and the hard-link test run too.
# The others decide from S3 listings, the state and the plan, which the switch does not
# touch: on the portable paths they only took time. read_at without pread and a burst
# through the generic observer are in test_platform, the reload request file in
# test_service_e2e.
PORTABLE = {
    "test_create_modify_append": "created, rewritten and appended files",
    "test_a_touch_with_unchanged_content_sends_nothing": "an attribute-only change",
    "test_a_hard_linked_file_edited_through_one_name_updates_both_objects": "one inode, two names",
    "test_rename_file_uses_server_side_copy": "a file's move, both names",
    "test_rename_directory": "a directory's move",
    "test_delete_file": "a file's removal",
    "test_delete_directory": "a subtree's removal",
    "test_editor_atomic_save": "swap files, backups by rename, a rename over the file",
    "test_no_follow_symlinks_is_honoured": "a symlink created while watching",
    "test_downloaded_file_does_not_bounce_back": "the agent's own writes, not sent back",
    "test_root_removed_and_restored_deletes_nothing": "the root itself removed and restored",
    "test_type_change_converges_on_both_sides": "a file replaced by a directory and back",
    "test_directory_gone_empty_below_the_root_deletes_nothing": "the mount scan without /proc",
    "test_second_agent_on_same_pair_refuses": "the state lock, in-process and from a process",
    "test_sigterm_exits_zero_within_drain_time": "a real process: no SIGHUP, SIGTERM drains",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the native paths; those in :data:`PORTABLE` on the portable ones too."""
    paths = ["native", "portable"] if metafunc.function.__name__ in PORTABLE else ["native"]
    metafunc.parametrize("platform_paths", paths, indirect=True)


@pytest.fixture(autouse=True)
def platform_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The OS's own paths (inotify here), or the portable ones macOS and Windows take
    (agents started as processes inherit the environment)."""
    if request.param == "portable":
        monkeypatch.setenv("WATCHSYNC_PORTABLE", "1")
    return str(request.param)


def test_the_names_run_twice_are_tests_here() -> None:
    """A renamed test must not leave the portable run silently."""
    assert set(PORTABLE) <= {name for name in globals() if name.startswith("test_")}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def url(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    """The server's endpoint, with the AWS environment (credentials) pointing at it."""
    return s3server.endpoint


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def key(rel: str) -> str:
    return f"{PREFIX}/{rel}"


def put(s3: S3Client, bucket: str, rel: str, data: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key(rel), Body=data)


def get(s3: S3Client, bucket: str, rel: str) -> bytes:
    body = s3.get_object(Bucket=bucket, Key=key(rel))["Body"]
    try:
        return body.read()
    finally:
        body.close()


def has_object(s3: S3Client, bucket: str, rel: str) -> bool:
    return rel in bucket_listing(s3, bucket, PREFIX)


def object_is(s3: S3Client, bucket: str, rel: str, data: bytes) -> bool:
    return has_object(s3, bucket, rel) and get(s3, bucket, rel) == data


# -- local changes -------------------------------------------------------------------------


def test_create_modify_append(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        write(root / "a.txt", "first")
        write(root / "sub/dir/b.bin", os.urandom(3000))
        wait_until(lambda: object_is(s3, bucket, "a.txt", b"first"), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)

        write(root / "a.txt", "second version")  # modify (truncate + write)
        wait_until(lambda: object_is(s3, bucket, "a.txt", b"second version"), timeout=15)

        with open(root / "a.txt", "a") as f:  # append in several writes
            for i in range(5):
                f.write(f" +{i}")
                f.flush()
        expected = b"second version +0 +1 +2 +3 +4"
        wait_until(lambda: object_is(s3, bucket, "a.txt", expected), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)
        wait_idle(agent)
        assert counters(agent)["errors"] == 0


def test_a_touch_with_unchanged_content_sends_nothing(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """``touch`` of synced files, to now or to an earlier time: the bytes are those last
    synced (the recorded ETag says so), so nothing is sent again."""
    for i in range(20):
        write(root / f"t{i:02}.txt", f"file {i}")
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root, timeout=15)
        wait_idle(agent)
        sent = counters(agent)["uploaded_files"]
        for i, path in enumerate(sorted(root.iterdir())):
            when = time.time() + (60 if i % 2 else -86400)
            os.utime(path, (when, when))
        # The same size, other bytes: sent; reported after the touches, so once it is in
        # S3 and the agent idle, the touches were looked at too.
        write(root / "t00.txt", "FILE 0")
        wait_until(lambda: object_is(s3, bucket, "t00.txt", b"FILE 0"), timeout=15)
        wait_idle(agent)
        assert counters(agent)["uploaded_files"] == sent + 1
        assert counters(agent)["errors"] == 0
        assert_in_sync(s3, bucket, PREFIX, root)


def test_a_hard_linked_file_edited_through_one_name_updates_both_objects(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """The watcher reports a write only under the name it went through; the other name's
    object follows within the debounce, not at the next full walk (a day away here)."""
    write(root / "a.txt", "first")
    (root / "other").mkdir()
    os.link(root / "a.txt", root / "other" / "b.txt")
    with running_agent(folder_config(root, url, endpoint), state_dir):
        assert_in_sync(s3, bucket, PREFIX, root, timeout=15)
        with open(root / "a.txt", "a") as f:
            f.write(", then more")
        wait_until(lambda: object_is(s3, bucket, "other/b.txt", b"first, then more"), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
def test_rename_file_uses_server_side_copy(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str, delete: bool
) -> None:
    data = os.urandom(50_000)
    write(root / "old name.dat", data)
    with running_agent(folder_config(root, url, endpoint, delete=delete), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        uploaded = counters(agent)["uploaded_files"]
        (root / "old name.dat").rename(root / "new name.dat")
        wait_until(lambda: object_is(s3, bucket, "new name.dat", data), timeout=15)
        if delete:
            assert_in_sync(s3, bucket, PREFIX, root)
        else:
            wait_idle(agent)
            assert get(s3, bucket, "old name.dat") == data  # kept without --delete
        wait_idle(agent)
        c = counters(agent)
        assert c["copied_files"] == 1
        assert c["uploaded_files"] == uploaded  # copied server-side, not uploaded again
    if not delete:
        s3.delete_object(Bucket=bucket, Key=key("old name.dat"))
    assert_in_sync(s3, bucket, PREFIX, root)


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
def test_rename_directory(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str, delete: bool
) -> None:
    for i in range(12):
        write(root / f"photos/2023/img{i:02d}.jpg", os.urandom(1000 + i))
    write(root / "photos/readme.txt", "r")
    with running_agent(folder_config(root, url, endpoint, delete=delete), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        old = set(bucket_listing(s3, bucket, PREFIX))
        (root / "photos").rename(root / "pictures")
        new = {k.replace("photos/", "pictures/", 1) for k in old}
        wait_until(lambda: new <= set(bucket_listing(s3, bucket, PREFIX)), timeout=20)
        if delete:
            assert_in_sync(s3, bucket, PREFIX, root)
        else:
            wait_idle(agent)
            assert set(bucket_listing(s3, bucket, PREFIX)) == old | new
        wait_idle(agent)
        assert counters(agent)["copied_files"] == len(old)
    if not delete:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key(k)} for k in old]})
    assert_in_sync(s3, bucket, PREFIX, root)


@pytest.mark.parametrize("delete", [True, False], ids=["delete", "keep"])
def test_delete_file(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str, delete: bool
) -> None:
    write(root / "keep.txt", "k")
    write(root / "gone.txt", "g")
    with running_agent(folder_config(root, url, endpoint, delete=delete), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        (root / "gone.txt").unlink()
        if delete:
            wait_until(lambda: not has_object(s3, bucket, "gone.txt"), timeout=15)
            wait_until(lambda: counters(agent)["deleted_remote"] == 1, timeout=10)
        else:
            # A later file's upload proves the delete event was processed meanwhile.
            write(root / "marker.txt", "m")
            wait_until(lambda: has_object(s3, bucket, "marker.txt"), timeout=15)
            wait_idle(agent)
            assert has_object(s3, bucket, "gone.txt")
            assert counters(agent)["deleted_remote"] == 0
    if not delete:
        s3.delete_object(Bucket=bucket, Key=key("gone.txt"))
    assert_in_sync(s3, bucket, PREFIX, root)


def test_delete_directory(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "keep.txt", "k")
    for i in range(20):
        write(root / f"tree/d{i % 3}/f{i}.txt", f"file {i}")
    # Most of the folder: past the share cap (see test_guards_e2e), turned off here.
    cfg = folder_config(root, url, endpoint, delete=True, max_delete_percent=100)
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        shutil.rmtree(root / "tree")
        assert_in_sync(s3, bucket, PREFIX, root, timeout=20)
        wait_until(lambda: counters(agent)["deleted_remote"] == 20, timeout=10)
        assert agent.store_().synced.count() == 1


def test_editor_atomic_save(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "notes.txt", "v1")
    write(root / "doc.md", "d1")
    with running_agent(folder_config(root, url, endpoint, delete=True), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        for n in range(3):
            # vim: swap file, the 4913 probe, backup by rename, write the new file, clean up.
            write(root / ".notes.txt.swp", os.urandom(4096))
            write(root / "4913", "")
            (root / "4913").unlink()
            (root / "notes.txt").rename(root / "notes.txt~")
            write(root / "notes.txt", f"v{n + 2}")
            (root / "notes.txt~").unlink()
            (root / ".notes.txt.swp").unlink()
            # Other editors: write a temporary file and rename it over the original.
            write(root / f".doc.md.tmp{n}", f"d{n + 2}")
            os.replace(root / f".doc.md.tmp{n}", root / "doc.md")
        wait_until(lambda: object_is(s3, bucket, "notes.txt", b"v4"), timeout=15)
        wait_until(lambda: object_is(s3, bucket, "doc.md", b"d4"), timeout=15)
        wait_idle(agent)
        assert set(bucket_listing(s3, bucket, PREFIX)) == {"notes.txt", "doc.md"}
        assert counters(agent)["deleted_remote"] == 0
        assert_in_sync(s3, bucket, PREFIX, root)


def test_burst_of_2000_files_converges(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    cfg = folder_config(root, url, endpoint, upload_workers=8)
    with running_agent(cfg, state_dir) as agent:
        t0 = time.monotonic()
        for i in range(2000):
            write(root / f"burst/d{i % 20:02d}/f{i:04d}.txt", f"content of file {i}\n" * (i % 7))
        assert_in_sync(s3, bucket, PREFIX, root, timeout=90)
        elapsed = time.monotonic() - t0
        wait_idle(agent)
        c = counters(agent)
        assert c["errors"] == 0
        assert 2000 <= c["uploaded_files"] <= 2000 + cfg.upload_workers
        pending = agent.store_().journal.pending()
        assert not pending, pending
    print(f"burst of 2000 files converged in {elapsed:.1f}s")


# -- S3-side changes -----------------------------------------------------------------------


def test_s3_side_add_change_delete_picked_up_by_reconcile(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "changed.txt", "local v1")
    write(root / "deleted.txt", "will go")
    write(root / "deleted-but-edited.txt", "will be edited")
    cfg = folder_config(
        root, url, endpoint, delete=True, reconcile_interval=1.0, full_list_interval=0.0
    )
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        uploaded = counters(agent)["uploaded_files"]
        put(s3, bucket, "added/new.txt", b"from s3")
        put(s3, bucket, "changed.txt", b"s3 v2")
        s3.delete_object(Bucket=bucket, Key=key("deleted.txt"))
        s3.delete_object(Bucket=bucket, Key=key("deleted-but-edited.txt"))
        write(root / "deleted-but-edited.txt", "edited locally: a change beats a delete")
        wait_until(lambda: (root / "added/new.txt").is_file(), timeout=15)
        wait_until(lambda: (root / "changed.txt").read_bytes() == b"s3 v2", timeout=15)
        wait_until(lambda: not (root / "deleted.txt").exists(), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)
        assert get(s3, bucket, "deleted-but-edited.txt").startswith(b"edited locally")
        wait_idle(agent)
        c = counters(agent)
        assert c["downloaded_files"] == 2
        assert c["deleted_local"] == 1
        # Only the edited file went up: nothing the agent downloaded bounced back.
        assert c["uploaded_files"] == uploaded + 1


def test_s3_side_delete_without_delete_flag_keeps_local_file(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "a.txt", "a")
    cfg = folder_config(root, url, endpoint, reconcile_interval=1.0, full_list_interval=0.0)
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        s3.delete_object(Bucket=bucket, Key=key("a.txt"))
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles >= reconciles + 2, timeout=15)
        assert (root / "a.txt").read_text() == "a"
        assert counters(agent)["deleted_local"] == 0
        # Without --delete the file is simply missing in S3, so it goes up again.
        assert_in_sync(s3, bucket, PREFIX, root)


def test_downloaded_file_does_not_bounce_back(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "local.txt", "l")
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        wait_idle(agent)
        before = counters(agent)
        etag_before = bucket_listing(s3, bucket, PREFIX)["local.txt"]["ETag"]
        put(s3, bucket, "remote.txt", os.urandom(2000))
        put(s3, bucket, "local.txt", b"changed in s3")
        agent.request_reconcile()
        wait_until(lambda: (root / "remote.txt").is_file(), timeout=15)
        wait_until(lambda: (root / "local.txt").read_bytes() == b"changed in s3", timeout=15)
        # Let the watcher see the downloads land and the uploaders look at them.
        wait_idle(agent)
        agent.request_reconcile()
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles > reconciles, timeout=15)
        wait_idle(agent)
        after = counters(agent)
        assert after["downloaded_files"] == before["downloaded_files"] + 2
        assert after["uploaded_files"] == before["uploaded_files"]
        assert after["conflicts"] == 0
        assert bucket_listing(s3, bucket, PREFIX)["local.txt"]["ETag"] != etag_before
        assert_in_sync(s3, bucket, PREFIX, root)


def _conflict_files(names: list[str], stem: str, ext: str) -> list[str]:
    found = []
    for name in names:
        m = CONFLICT_RE.match(name)
        if m and m.group("stem") == stem and (m.group("ext") or "") == ext:
            found.append(name)
    return found


def test_conflict_changed_on_both_sides_while_stopped(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "report.txt", "base")
    cfg = folder_config(root, url, endpoint)
    with running_agent(cfg, state_dir):
        assert_in_sync(s3, bucket, PREFIX, root)
    write(root / "report.txt", "local edit")
    put(s3, bucket, "report.txt", b"s3 edit, longer")
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: _conflict_files(os.listdir(root), "report", ".txt"), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)
        (conflict,) = _conflict_files(os.listdir(root), "report", ".txt")
        assert (root / "report.txt").read_text() == "local edit"
        assert (root / conflict).read_text() == "s3 edit, longer"
        assert get(s3, bucket, conflict) == b"s3 edit, longer"
        wait_idle(agent)
        assert counters(agent)["conflicts"] == 1


def test_conflict_s3_changed_while_local_edit_uploads(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """The watcher path: the upload's conditional write finds someone else's version."""
    write(root / "notes", "base")
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        put(s3, bucket, "notes", b"s3 edit")
        write(root / "notes", "local edit")
        wait_until(lambda: _conflict_files(os.listdir(root), "notes", ""), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)
        (conflict,) = _conflict_files(os.listdir(root), "notes", "")
        assert (root / "notes").read_text() == "local edit"
        assert (root / conflict).read_text() == "s3 edit"
        wait_idle(agent)
        assert counters(agent)["conflicts"] == 1


# -- directions ----------------------------------------------------------------------------


def test_push_mode_never_writes_locally(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "mine.txt", "m")
    write(root / "shared.txt", "shared v1")
    put(s3, bucket, "theirs.txt", b"only in s3")
    cfg = folder_config(
        root,
        url,
        endpoint,
        direction=Mode.PUSH,
        delete=True,
        reconcile_interval=1.0,
        full_list_interval=0.0,
    )
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: has_object(s3, bucket, "shared.txt"), timeout=15)
        wait_idle(agent)
        local_before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*")}
        put(s3, bucket, "shared.txt", b"changed in s3")
        put(s3, bucket, "more-theirs.txt", b"x")
        s3.delete_object(Bucket=bucket, Key=key("mine.txt"))
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles >= reconciles + 2, timeout=15)
        wait_idle(agent)
        assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*")} == local_before
        c = counters(agent)
        assert c["downloaded_files"] == 0 and c["deleted_local"] == 0
        # A deleted object is pushed again; local changes still go up.
        wait_until(lambda: has_object(s3, bucket, "mine.txt"), timeout=15)
        write(root / "new.txt", "n")
        wait_until(lambda: has_object(s3, bucket, "new.txt"), timeout=15)
    foreign = {"theirs.txt", "more-theirs.txt"}
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key(k)} for k in foreign]})
    # shared.txt was changed only in S3: push leaves it, so put the local version back.
    s3.put_object(Bucket=bucket, Key=key("shared.txt"), Body=(root / "shared.txt").read_bytes())
    assert_in_sync(s3, bucket, PREFIX, root)


def test_pull_mode_never_writes_to_s3(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    put(s3, bucket, "remote.txt", b"r1")
    put(s3, bucket, "dir/remote2.txt", b"r2")
    write(root / "local-only.txt", "never uploaded")
    cfg = folder_config(
        root,
        url,
        endpoint,
        direction=Mode.PULL,
        delete=True,
        reconcile_interval=1.0,
        full_list_interval=0.0,
    )
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: (root / "dir/remote2.txt").is_file(), timeout=15)
        before = {k: v["ETag"] for k, v in bucket_listing(s3, bucket, PREFIX).items()}
        write(root / "local-new.txt", "new")
        write(root / "remote.txt", "edited locally")
        (root / "dir/remote2.txt").unlink()
        put(s3, bucket, "later.txt", b"later")
        wait_until(lambda: (root / "later.txt").is_file(), timeout=15)
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles >= reconciles + 2, timeout=15)
        wait_idle(agent)
        after = {k: v["ETag"] for k, v in bucket_listing(s3, bucket, PREFIX).items()}
        assert after == {**before, "later.txt": after["later.txt"]}
        assert counters(agent)["uploaded_files"] == 0
        assert counters(agent)["deleted_remote"] == 0
    # A file deleted here comes back; a local edit stays local (S3 unchanged).
    assert (root / "dir/remote2.txt").read_bytes() == b"r2"
    assert (root / "remote.txt").read_bytes() == b"edited locally"
    assert get(s3, bucket, "remote.txt") == b"r1"
    local_only = {"local-only.txt", "local-new.txt", "remote.txt"}
    assert_in_sync(s3, bucket, PREFIX, root, exclude=lambda rel: rel in local_only)


# -- ignore rules --------------------------------------------------------------------------


def test_ignore_file_respected(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / ".watchsyncignore", "*.log\nbuild/\n")
    write(root / "keep.txt", "k")
    write(root / "app.log", "noise")
    write(root / "build/out.o", "obj")
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        write(root / "more.log", "noise")
        write(root / "build/deeper/x.o", "obj")
        write(root / "src/main.c", "int main;")
        write(root / ".main.c.swp", "swap")  # built-in editor pattern
        wait_until(lambda: has_object(s3, bucket, "src/main.c"), timeout=15)
        # A new rule applies at once, without a restart.
        write(root / ".watchsyncignore", "*.log\nbuild/\nsecret*\n")
        wait_until(lambda: object_is(s3, bucket, ".watchsyncignore", b"*.log\nbuild/\nsecret*\n"))
        write(root / "secret.txt", "s")
        write(root / "public.txt", "p")
        wait_until(lambda: has_object(s3, bucket, "public.txt"), timeout=15)
        wait_idle(agent)
        assert set(bucket_listing(s3, bucket, PREFIX)) == {
            ".watchsyncignore",
            "keep.txt",
            "src/main.c",
            "public.txt",
        }
    ignored = re.compile(r"(\.log|\.swp|^secret.*)$|^build/")
    assert_in_sync(s3, bucket, PREFIX, root, exclude=lambda rel: bool(ignored.search(rel)))


# -- guards --------------------------------------------------------------------------------


def test_max_delete_refuses_and_records_error(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    for i in range(8):
        write(root / f"f{i}.txt", str(i))
    write(root / "keep.txt", "k")
    cfg = folder_config(root, url, endpoint, delete=True, max_delete=5)
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        for i in range(8):
            (root / f"f{i}.txt").unlink()
        wait_until(
            lambda: "max-delete" in str(agent.store_().status.fields().get("last_error") or ""),
            timeout=15,
        )
        wait_idle(agent)
        assert len(bucket_listing(s3, bucket, PREFIX)) == 9
        assert counters(agent)["deleted_remote"] == 0
        agent.request_reconcile()  # the reconcile refuses too
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles > reconciles, timeout=15)
        assert len(bucket_listing(s3, bucket, PREFIX)) == 9
    status, _ = read_state(state_dir, root, url)
    assert "8 deletes exceed --max-delete 5" in str(status["last_error"])
    for i in range(8):
        s3.delete_object(Bucket=bucket, Key=key(f"f{i}.txt"))
    assert_in_sync(s3, bucket, PREFIX, root)


def test_failed_transfer_vetoes_the_passes_deletes(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pass with a failed transfer deletes nothing (as ``watchsync sync``), until a pass
    runs clean."""
    caplog.set_level(logging.INFO, logger="watchsync")
    write(root / "gone.txt", "deleted while the agent was stopped")
    write(root / "keep.txt", "k")
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir):
        assert_in_sync(s3, bucket, PREFIX, root)
    (root / "gone.txt").unlink()
    (tmp_path / "elsewhere").mkdir()
    (root / "out").symlink_to(tmp_path / "elsewhere")  # a download through it must fail
    put(s3, bucket, "out/f.txt", b"cannot land")
    with running_agent(cfg, state_dir) as agent:
        assert "delete: refused 1 deletes" in caplog.text
        assert has_object(s3, bucket, "gone.txt")
        (root / "out").unlink()
        agent.request_reconcile()
        wait_until(lambda: not has_object(s3, bucket, "gone.txt"), timeout=30)
        assert (root / "out/f.txt").read_bytes() == b"cannot land"


def test_no_follow_symlinks_is_honoured(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "real.txt", "real")
    write(root / "sub/inner.txt", "inner")
    (root / "link.txt").symlink_to(root / "real.txt")
    (root / "linkdir").symlink_to(root / "sub", target_is_directory=True)
    cfg = folder_config(root, url, endpoint, follow_symlinks=False)
    with running_agent(cfg, state_dir) as agent:
        (root / "link2.txt").symlink_to(root / "real.txt")
        write(root / "after.txt", "after")
        wait_until(lambda: has_object(s3, bucket, "after.txt"), timeout=20)
        wait_idle(agent)
        assert sorted(bucket_listing(s3, bucket, PREFIX)) == [
            "after.txt",
            "real.txt",
            "sub/inner.txt",
        ]


def test_root_removed_and_restored_deletes_nothing(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    for i in range(10):
        write(root / f"d{i % 2}/f{i}.txt", f"file {i}")
    cfg = folder_config(
        root, url, endpoint, delete=True, reconcile_interval=1.0, full_list_interval=0.0
    )
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        backup = tmp_path / "backup"
        shutil.copytree(root, backup)
        objects = bucket_listing(s3, bucket, PREFIX)
        shutil.rmtree(root)
        wait_until(lambda: agent.state == "paused" or agent.state == "error", timeout=15)
        # Give the delete batcher and a reconcile the chance to do the wrong thing.
        wait_until(lambda: "delete: refused" in caplog.text, timeout=15)
        assert bucket_listing(s3, bucket, PREFIX).keys() == objects.keys()
        shutil.copytree(backup, root)
        write(root / "after.txt", "written after the restore")
        assert_in_sync(s3, bucket, PREFIX, root, timeout=30)
        wait_idle(agent)
        assert counters(agent)["deleted_remote"] == 0
        listing = bucket_listing(s3, bucket, PREFIX)
        for rel, obj in objects.items():
            assert listing[rel]["ETag"] == obj["ETag"]


def test_second_agent_on_same_pair_refuses(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    write(root / "a.txt", "a")
    cfg = folder_config(root, url, endpoint)
    with running_agent(cfg, state_dir):
        second = Folder(cfg, state_dir=state_dir)
        with pytest.raises(LockedError, match=r"pid \d+"):
            second.start()
        second.join(0)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "watchsync",
                "watch",
                str(root),
                url,
                "--endpoint-url",
                endpoint,
                "--state-dir",
                str(state_dir),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "another watchsync agent" in proc.stderr
        assert_in_sync(s3, bucket, PREFIX, root)


# -- polling -------------------------------------------------------------------------------


def test_force_polling_still_syncs(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    write(root / "a.txt", "a")
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir, force_polling=True) as agent:
        assert agent.polling
        assert agent.store_().status.fields()["polling"] == 1
        write(root / "b/c.txt", "c")
        write(root / "a.txt", "a2")
        assert_in_sync(s3, bucket, PREFIX, root, timeout=20)
        (root / "a.txt").unlink()
        assert_in_sync(s3, bucket, PREFIX, root, timeout=20)


INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")


def _watches_in_use() -> int:
    total = 0
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        with contextlib.suppress(OSError):
            total += fdinfo.read_text().count("inotify wd:")
    return total


@contextlib.contextmanager
def lowered_watch_limit(value: int) -> Iterator[None]:
    try:
        old = INOTIFY_WATCHES.read_text()
        INOTIFY_WATCHES.write_text(f"{value}\n")
    except OSError as exc:
        pytest.skip(f"cannot write {INOTIFY_WATCHES} ({exc}); needs root and a writable /proc/sys")
    try:
        yield
    finally:
        INOTIFY_WATCHES.write_text(old)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
def test_watch_limit_falls_back_to_polling(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    for i in range(30):
        write(root / f"d{i:02d}/f.txt", str(i))
    cfg = folder_config(root, url, endpoint)
    agent = Folder(cfg, state_dir=state_dir)
    try:
        # Keep the lowered limit only until the agent has chosen its watcher.
        with lowered_watch_limit(_watches_in_use() + 5):
            agent.start()
            wait_until(agent.ready.is_set, timeout=30)
        assert agent.polling
        wait_until(lambda: agent.reconciles >= 1, timeout=30)
        assert_in_sync(s3, bucket, PREFIX, root)
        write(root / "d07/new.txt", "new")
        write(root / "d29/f.txt", "changed")
        assert_in_sync(s3, bucket, PREFIX, root, timeout=20)
    finally:
        agent.stop()
        assert agent.join(15)


# -- network trouble -----------------------------------------------------------------------


def test_s3_unreachable_pauses_probes_and_resumes(
    root: Path,
    state_dir: Path,
    bucket: str,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An endpoint plainly gone pauses the folder: one probe at a time (not every path
    retrying), one line when it goes and one when it is back, then the queued paths go out
    and a reconcile runs."""
    caplog.set_level(logging.INFO, logger="watchsync")
    url = f"s3://{bucket}/{PREFIX}"
    write(root / "before.txt", "b")
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        cfg = folder_config(root, url, proxy.endpoint, delete=True)
        with running_agent(cfg, state_dir) as agent:
            assert_in_sync(s3, bucket, PREFIX, root)
            proxy.cut()
            write(root / "during/a.txt", "a")
            write(root / "before.txt", "b2")
            write(root / "during/b.txt", os.urandom(10_000))
            for i in range(20):
                write(root / f"during/many/{i}.txt", f"{i}")
            wait_until(lambda: agent.state == "paused", timeout=20, message="the pause")
            assert "S3 unreachable" in str(agent.last_error)
            wait_until(
                lambda: read_state(state_dir, root, url)[0].get("state") == "paused",
                timeout=10,
                message="`watchsync status` to show the pause",
            )
            agent.request_reconcile()  # asked for during the outage: it waits for the end
            requests, lines = proxy.accepted, len(caplog.records)
            cut_until = time.monotonic() + 5
            while time.monotonic() < cut_until:  # the outage lasts a few seconds
                assert all(t.is_alive() for t in agent._threads if "upload" in t.name)
                assert not has_object(s3, bucket, "during/a.txt")
                agent.stop_event.wait(0.2)
            # Probes 1, 2 and 4 s apart; before, each path and the feed retried on its own.
            assert proxy.accepted - requests <= 5
            assert [
                r.getMessage() for r in caplog.records[lines:] if r.levelno >= logging.WARNING
            ] == []
            assert get(s3, bucket, "before.txt") == b"b"
            passes = agent.reconciles
            proxy.restore()
            assert_in_sync(s3, bucket, PREFIX, root, timeout=60)
            wait_until(lambda: agent.reconciles > passes, timeout=30, message="a reconcile")
            wait_idle(agent)
            assert agent.state == "watching"
    gone = [r for r in caplog.records if "S3 unreachable" in r.getMessage()]
    back = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(gone) == 1, [r.getMessage() for r in gone]
    assert len(back) == 1


# -- real processes: signals and crashes -----------------------------------------------------


def _proc_env(aws_env: dict[str, str]) -> dict[str, str]:
    return dict(aws_env)


def test_sigterm_exits_zero_within_drain_time(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    aws_env: dict[str, str],
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
) -> None:
    write(root / "a.txt", "a")
    agent = AgentProcess(
        root,
        url,
        state_dir,
        env=_proc_env(aws_env),
        endpoint=endpoint,
        log=tmp_path / "agent.log",
        extra=["--drain-timeout", "5"],
    )
    with agent:
        agent.wait_ready()
        for i in range(50):
            write(root / f"b/{i}.txt", str(i))
        t0 = time.monotonic()
        agent.signal(signal.SIGTERM)
        code = agent.wait(timeout=5 + 10)
        took = time.monotonic() - t0
        assert code == 0, agent.log_text()
        assert took < 5 + 5, f"took {took:.1f}s to stop"
        assert "watch: stopped" in agent.log_text()
    status, _ = read_state(state_dir, root, url)
    assert status["state"] == "stopped"
    # Whatever was left pending is picked up by the next run.
    with AgentProcess(
        root, url, state_dir, env=_proc_env(aws_env), endpoint=endpoint, log=tmp_path / "2.log"
    ) as again:
        again.wait_ready()
        assert_in_sync(s3, bucket, PREFIX, root)


def test_kill_9_during_burst_then_restart_converges(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    aws_env: dict[str, str],
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
) -> None:
    early, burst = 100, 500  # killed at 150 uploads, the early ones included: mid-burst
    for i in range(early):
        write(root / f"early/{i:03d}.txt", f"early {i}")
    log = tmp_path / "agent.log"
    first = AgentProcess(root, url, state_dir, env=_proc_env(aws_env), endpoint=endpoint, log=log)
    with first:
        first.wait_ready()
        assert_in_sync(s3, bucket, PREFIX, root)
        synced_before = bucket_listing(s3, bucket, PREFIX)
        for i in range(burst):
            write(root / f"burst/{i % 10}/{i:04d}.txt", f"burst {i}\n" * (i % 5 + 1))
        wait_until(
            lambda: first.state()[1].get("uploaded_files", 0) >= 150,
            timeout=60,
            interval=0.01,
            message="the burst to be partly uploaded",
        )
        first.signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
    _, c_killed = read_state(state_dir, root, url)
    assert c_killed["uploaded_files"] < early + burst, "the kill came too late to test anything"
    with AgentProcess(
        root, url, state_dir, env=_proc_env(aws_env), endpoint=endpoint, log=log
    ) as second:
        second.wait_ready()
        assert_in_sync(s3, bucket, PREFIX, root, timeout=60)
        wait_until(
            lambda: second.state()[0].get("pending") == 0, timeout=30, message="nothing pending"
        )
        _, c = second.state()
    listing = bucket_listing(s3, bucket, PREFIX)
    for rel, obj in synced_before.items():
        assert listing[rel]["LastModified"] == obj["LastModified"], rel
        assert listing[rel]["ETag"] == obj["ETag"], rel
    # Nothing went up twice, except what was in flight at the kill (at most the workers).
    assert c["uploaded_files"] <= early + burst + 8, c
    assert bucket_snapshot(s3, bucket, PREFIX) == tree_snapshot(root)


# -- lost versions and silent damage (issue 8) ---------------------------------------------


def test_names_with_tab_cr_lf_round_trip_and_are_never_deleted(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """A macOS ``Icon\r``: uploaded, listed back, and never read as deleted in S3."""
    names = ["Icon\r", "tab\tname.txt", "line\nbreak.txt", "plain.txt"]
    for name in names:
        write(root / name, f"content of {name!r}")
    cfg = folder_config(
        root, url, endpoint, delete=True, reconcile_interval=0.5, full_list_interval=0.0
    )
    with running_agent(cfg, state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root)
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles >= reconciles + 2, timeout=15)
        wait_idle(agent)
        assert sorted(os.listdir(root)) == sorted(names)
        assert counters(agent)["deleted_local"] == 0
        # Such names do not hold back the deletes of a pass either.
        s3.delete_object(Bucket=bucket, Key=key("plain.txt"))
        # The delete's hard link aside (kept until the file is known unchanged) goes a
        # moment after the name does.
        wait_until(lambda: sorted(os.listdir(root)) == sorted(names[:-1]), timeout=15)
        # And a change to such a file still goes up.
        write(root / "Icon\r", "new icon")
        wait_until(lambda: object_is(s3, bucket, "Icon\r", b"new icon"), timeout=15)
    assert_in_sync(s3, bucket, PREFIX, root)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def test_pull_mode_never_overwrites_a_local_edit_without_a_copy(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """Under ``pull`` a local edit stays until S3 changes the path; then the local version
    moves to a conflict copy and S3's takes the name."""
    put(s3, bucket, "doc.txt", b"v1 from s3")
    put(s3, bucket, "new.txt", b"from s3")
    write(root / "new.txt", "never synced, local")  # first meeting, other content
    cfg = folder_config(
        root, url, endpoint, direction=Mode.PULL, reconcile_interval=0.5, full_list_interval=0.0
    )
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: (root / "doc.txt").is_file(), timeout=15)
        write(root / "doc.txt", "local edit")
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles >= reconciles + 2, timeout=15)
        assert (root / "doc.txt").read_text() == "local edit"
        put(s3, bucket, "doc.txt", b"v2 from s3")
        # The local version moves aside first, so the name is briefly missing.
        wait_until(lambda: _read_or_none(root / "doc.txt") == b"v2 from s3", timeout=15)
        wait_idle(agent)
    names = os.listdir(root)
    (doc_copy,) = _conflict_files(names, "doc", ".txt")
    assert (root / doc_copy).read_text() == "local edit"
    assert (root / "new.txt").read_bytes() == b"from s3"
    (new_copy,) = _conflict_files(names, "new", ".txt")
    assert (root / new_copy).read_text() == "never synced, local"
    assert get(s3, bucket, "doc.txt") == b"v2 from s3"  # pull never writes S3
    assert not _conflict_files(list(bucket_listing(s3, bucket, PREFIX)), "doc", ".txt")


def test_first_meeting_same_size_other_content_keeps_both(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """Never synced, same size on both sides, other bytes: the newer time is no proof of
    the wanted version, so both are kept (equal bytes are only recorded)."""
    put(s3, bucket, "same.txt", b"AAAA from s3")
    put(s3, bucket, "equal.txt", b"equal bytes")
    write(root / "same.txt", "BBBB local!!")  # same size, newer
    write(root / "equal.txt", "equal bytes")
    future = time.time() + 3600
    os.utime(root / "same.txt", (future, future))
    with running_agent(folder_config(root, url, endpoint), state_dir) as agent:
        wait_until(lambda: _conflict_files(os.listdir(root), "same", ".txt"), timeout=15)
        assert_in_sync(s3, bucket, PREFIX, root)
        wait_idle(agent)
        assert counters(agent)["conflicts"] == 1
        assert counters(agent)["uploaded_files"] == 2  # the copy, and the local file at its key
    (copy,) = _conflict_files(os.listdir(root), "same", ".txt")
    assert (root / "same.txt").read_bytes() == b"BBBB local!!"
    assert (root / copy).read_bytes() == b"AAAA from s3"
    assert not _conflict_files(os.listdir(root), "equal", ".txt")


# -- issue 8: wrong deletes ------------------------------------------------------------------


def test_directory_gone_empty_below_the_root_deletes_nothing(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``photos/`` is a disk mounted below the root; unmounted while the agent was stopped,
    it is an empty directory.  The restart must not delete its 50 backups from S3."""
    caplog.set_level(logging.INFO, logger="watchsync")
    for i in range(50):
        write(root / f"photos/{i // 10}/p{i:02}.jpg", f"photo {i}")
    write(root / "notes.txt", "n")
    # The directory's own guard alone: the share cap (test_guards_e2e) is off.
    cfg = folder_config(
        root, url, endpoint, delete=True, direction=Mode.PUSH, max_delete_percent=100
    )
    with running_agent(cfg, state_dir):
        assert_in_sync(s3, bucket, PREFIX, root)
    for sub in list((root / "photos").iterdir()):
        shutil.rmtree(sub)  # what is left of an unmounted disk: its empty mount point
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: "directory photos is empty while 50 files" in caplog.text, timeout=15)
        wait_idle(agent)
        assert len(bucket_listing(s3, bucket, f"{PREFIX}/photos")) == 50
        assert counters(agent)["deleted_remote"] == 0
        # Deleting on purpose, the directory included, goes through.
        (root / "photos").rmdir()
        agent.request_reconcile()
        wait_until(lambda: not bucket_listing(s3, bucket, f"{PREFIX}/photos"), timeout=15)
    assert_in_sync(s3, bucket, PREFIX, root)


def test_directory_rename_reaches_the_other_folder_without_the_old_directory(
    tmp_path: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """A renames ``docs/`` to ``papers/``; B gets ``papers/`` and loses the emptied ``docs/``.
    B's own empty directory stays."""
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        write(a / f"docs/sub/d{i}.txt", f"doc {i}")
    b.mkdir()
    (b / "mine").mkdir()
    cfg_a = folder_config(a, url, endpoint, delete=True)
    cfg_b = folder_config(
        b, url, endpoint, delete=True, reconcile_interval=0.5, full_list_interval=0.0
    )
    with (
        running_agent(cfg_a, tmp_path / "sa") as agent_a,
        running_agent(cfg_b, tmp_path / "sb"),
    ):
        wait_idle(agent_a)
        wait_until(lambda: tree_snapshot(b) == tree_snapshot(a), timeout=20)
        (a / "docs").rename(a / "papers")
        wait_idle(agent_a)
        wait_until(
            lambda: (b / "papers/sub/d2.txt").exists() and not (b / "docs").exists(),
            timeout=20,
            message="B to have papers/ and no docs/",
        )
        assert (b / "mine").is_dir()
    assert tree_snapshot(a) == tree_snapshot(b) == bucket_snapshot(s3, bucket, PREFIX)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("file-to-dir", id="file-replaced-by-directory"),
        pytest.param("dir-to-file", id="directory-replaced-by-file"),
    ],
)
def test_type_change_converges_on_both_sides(
    tmp_path: Path, url: str, endpoint: str, s3: S3Client, bucket: str, change: str
) -> None:
    """A replaces a file by a directory of the same name (or the reverse): A's watcher and
    B's reconcile both end with the new shape, and so does the bucket."""
    a, b = tmp_path / "a", tmp_path / "b"
    if change == "file-to-dir":
        write(a / "d", "a file")
    else:
        write(a / "d/inner.txt", "a file in a directory")
        write(a / "d/sub/deeper.txt", "deeper")
    write(a / "other.txt", "o")
    b.mkdir()
    cfg_a = folder_config(a, url, endpoint, delete=True)
    cfg_b = folder_config(
        b, url, endpoint, delete=True, reconcile_interval=0.5, full_list_interval=0.0
    )
    with (
        running_agent(cfg_a, tmp_path / "sa") as agent_a,
        running_agent(cfg_b, tmp_path / "sb") as agent_b,
    ):
        wait_idle(agent_a)
        wait_until(lambda: tree_snapshot(b) == tree_snapshot(a), timeout=20)
        if change == "file-to-dir":
            (a / "d").unlink()
            write(a / "d/x.txt", "now a directory")
            want = {"d/x.txt", "other.txt"}
        else:
            shutil.rmtree(a / "d")
            write(a / "d", "now a file")
            want = {"d", "other.txt"}
        wait_until(
            lambda: set(tree_snapshot(b)) == want == set(bucket_snapshot(s3, bucket, PREFIX)),
            timeout=20,
            message="B and the bucket to have the new shape",
        )
        wait_idle(agent_a)
        wait_idle(agent_b)
        assert tree_snapshot(a) == tree_snapshot(b) == bucket_snapshot(s3, bucket, PREFIX)
        for agent in (agent_a, agent_b):
            assert not agent.store_().status.fields().get("last_error"), agent.cfg.name


def test_file_and_directory_keys_together_are_reported_and_the_rest_synced(
    root: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """S3 keys ``c`` and ``c/b`` cannot both be files here: one lands, the other is reported
    once (not every pass), and everything else (a download, a delete) still happens."""
    caplog.set_level(logging.INFO, logger="watchsync")
    write(root / "old.txt", "deleted in S3 later")
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir):
        assert_in_sync(s3, bucket, PREFIX, root)
    put(s3, bucket, "c", b"a file c")
    put(s3, bucket, "c/b", b"a file in directory c")
    put(s3, bucket, "z.txt", b"z")
    s3.delete_object(Bucket=bucket, Key=key("old.txt"))
    with running_agent(cfg, state_dir) as agent:
        assert (root / "z.txt").read_bytes() == b"z"
        assert not (root / "old.txt").exists()
        assert (root / "c").is_file() or (root / "c/b").is_file()
        agent.request_reconcile()
        wait_until(lambda: agent.reconciles >= 2, timeout=15)
        wait_idle(agent)
    reports = [r for r in caplog.records if "S3 has both a file and a directory" in r.getMessage()]
    assert len(reports) == 1, [r.getMessage() for r in reports]  # once, not every pass


# -- the periodic pass without a full walk ------------------------------------------------------


def test_change_the_watcher_missed_is_caught_after_an_overflow(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """Periodic passes trust the watcher and the state; a change inotify never reports (here
    under a followed symlink to a directory outside the folder) waits for a full walk, and
    an overflow forces one, without a listing of the prefix (listings here only hourly:
    by default each pass would list)."""
    outside = tmp_path / "outside"
    write(outside / "f.txt", "v1")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    cfg = folder_config(root, url, endpoint, reconcile_interval=0.2, full_list_interval=3600)
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: s3_has(s3, bucket, "linked/f.txt", b"v1"), timeout=15)
        passes = agent.reconciles  # a pass looks again at a path until it is recorded
        wait_until(lambda: agent.reconciles >= passes + 2, timeout=15)
        write(outside / "f.txt", "v2, behind the symlink")
        passes = agent.reconciles
        wait_until(lambda: agent.reconciles >= passes + 3, timeout=15)
        assert get(s3, bucket, "linked/f.txt") == b"v1"  # the trusted passes did not see it
        listings = agent.reconcile.listings
        agent.watcher._on_overflow()
        wait_until(lambda: s3_has(s3, bucket, "linked/f.txt", b"v2, behind the symlink"))
        # Only local events were lost: the walk found the change, S3 was not listed for it.
        assert agent.reconcile.listings == listings


def s3_has(s3: S3Client, bucket: str, path: str, body: bytes) -> bool:
    try:
        return get(s3, bucket, path) == body
    except s3.exceptions.NoSuchKey:
        return False


def test_other_writers_reach_the_folder_at_the_reconcile_interval(
    s3: S3Client, bucket: str, tmp_path: Path, aws_env: dict[str, str], s3server: SeaweedServer
) -> None:
    """Default settings but ``--reconcile-interval 1``: an object another client writes,
    overwrites with other bytes of the same size and deletes reaches the folder by the
    periodic listing (no feed entry names it), well before the hour of the old listing.
    (1 s, not the 3 s measured in docs/performance.md: the same three round trips, sooner.)"""
    root = tmp_path / "folder"
    root.mkdir()
    for i in range(20):
        (root / f"f{i:02d}.txt").write_bytes(b"x" * 16)
    with AgentProcess(
        root,
        f"s3://{bucket}/p",
        tmp_path / "state",
        env=_proc_env(aws_env),
        endpoint=s3server.endpoint,
        log=tmp_path / "agent.log",
        extra=["--delete", "--reconcile-interval", "1"],
    ) as agent:
        agent.wait_ready()
        f = root / "other.txt"
        s3.put_object(Bucket=bucket, Key="p/other.txt", Body=b"A" * 32)
        wait_until(lambda: f.exists() and f.read_bytes() == b"A" * 32, timeout=60)
        s3.put_object(Bucket=bucket, Key="p/other.txt", Body=b"B" * 32)
        wait_until(lambda: f.read_bytes() == b"B" * 32, timeout=60)
        s3.delete_object(Bucket=bucket, Key="p/other.txt")
        wait_until(lambda: not f.exists(), timeout=60)
        assert "S3 side: listed, full list interval" in agent.log_text()
