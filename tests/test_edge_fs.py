"""Folders on SD cards and USB disks: exFAT and FAT (whole- and two-second timestamps, no
ctime, no hard links, names that ignore case and refuse ``:*?"<>|``), mounted through FUSE
where this machine can and simulated through the volume seam everywhere (tests/edgefs.py),
against the real SeaweedFS.  Plus the edits a POSIX disk shows only in its ctime
(``touch -r``, ``cp -p``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import bucket_listing, counters, folder_config, running_agent, wait_idle
from edgefs import (
    EXFAT,
    Edge,
    card_mounted,
    daemon_of,
    edge_folder,
    edge_params,
    mounted,
    why_no_fuse,
)
from fakes import InlinePool, RecordedEvents
from helpers import wait_until
from s3server import SeaweedServer
from world import World, synced_file, upload_queued

from watchsync.agent.config import FolderConfig, S3Settings
from watchsync.agent.effects import SkipLog
from watchsync.agent.folder import Folder
from watchsync.agent.status import State
from watchsync.cli import sync_command
from watchsync.cli.main import main
from watchsync.core.errors import Deferred, FileError
from watchsync.core.filters import RESERVED_DIR
from watchsync.core.model import Action, Item, Kind, SyncedEntry, Volume
from watchsync.engine.executor import Executor, Outcome
from watchsync.engine.policy import ExecPolicy
from watchsync.engine.reporting import NullRecorder, Veto
from watchsync.fs.tempfiles import TMP_MARKER
from watchsync.fs.volume import FolderVolume, probe
from watchsync.fs.walk import stat_entry
from watchsync.s3.location import S3Url
from watchsync.s3.transfer import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S = 10**9
T0 = 1_700_000_000 * S
NO_LINKS = Volume(hard_links=False)


@pytest.fixture(params=edge_params("exfat", "fat"))
def edge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Edge]:
    kind, real = request.param
    with edge_folder(kind, real, tmp_path) as folder:
        yield folder


@pytest.fixture(params=edge_params("exfat"))
def exfat(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Edge]:
    kind, real = request.param
    with edge_folder(kind, real, tmp_path) as folder:
        yield folder


def _no_temp_left(root: Path) -> None:
    left = [f"{d}/{n}" for d, _s, names in os.walk(root) for n in names if TMP_MARKER in n]
    assert not left, f"temporary files left: {left}"


# ---------------------------------------------------------------------------- the probe


@pytest.mark.parametrize("kind", ["exfat", "fat"])
def test_the_probe_learns_what_a_real_card_keeps(kind: str, tmp_path: Path) -> None:
    why = why_no_fuse(kind)
    if why:
        pytest.skip(f"real {kind}: {why}")
    with edge_folder(kind, True, tmp_path) as card:
        assert card.volume.now == card.expected
        assert os.listdir(card.root) == []  # the probe's files are gone


def test_the_probe_of_this_disk_and_of_a_missing_folder(tmp_path: Path) -> None:
    assert probe(tmp_path) == Volume()  # the tests' own disk: ext4, tmpfs, ...
    assert probe(tmp_path / "missing") == Volume()
    assert os.listdir(tmp_path) == []


def test_a_stuck_card_fails_the_operation_instead_of_hanging_the_tests(tmp_path: Path) -> None:
    """fusefat has hung: a mount outliving its deadline is ended (its daemon killed), so
    what waits on it fails instead of hanging the run."""
    why = why_no_fuse("exfat")
    if why:
        pytest.skip(f"real exfat: {why}")
    outcome: list[BaseException | None] = []

    def create() -> None:
        try:
            (mnt / "never-looked-up").write_bytes(b"x")
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    with mounted("exfat", tmp_path, deadline=2.0) as mnt:
        daemon = daemon_of(mnt)
        assert daemon is not None
        os.kill(daemon, signal.SIGSTOP)  # stuck: every request waits on it
        waiter = threading.Thread(target=create)
        waiter.start()
        waiter.join(timeout=60)
        assert not waiter.is_alive(), "the write still hangs past the mount's deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)
    assert not os.path.ismount(mnt)


# ------------------------------------------------------- downloads without hard links


def _executor(transfer: Transfer, volume: FolderVolume, events: RecordedEvents) -> Executor:
    return Executor(
        transfer,
        recorder=NullRecorder(),
        events=events,
        pool=InlinePool,
        policy=ExecPolicy.AGENT,
        conflict_name=lambda _p: "doc.conflict-1.txt",
        volume=volume,
    )


def test_an_s3_change_replaces_a_file_on_a_volume_without_hard_links(
    edge: Edge, s3: S3Client, bucket: str
) -> None:
    """link() fails with EPERM there: the file is renamed aside and compared instead, and
    the download is not thrown away."""
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (edge.root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(edge.root, "doc.txt")
    events = RecordedEvents()
    with Transfer(s3, S3Url(bucket, "p/"), edge.root, volume=edge.volume) as transfer:
        remote = transfer.head("doc.txt")
        action = Action(Kind.DOWNLOAD, "doc.txt", "remote changed", local, remote)
        assert _executor(transfer, edge.volume, events).apply(action) is Outcome.DONE
    assert (edge.root / "doc.txt").read_bytes() == b"newer in S3"
    assert sorted(os.listdir(edge.root)) == ["doc.txt"]
    assert not [e for e in events.seen if e[0] == "conflict"]


def test_a_local_edit_during_a_download_is_kept_without_hard_links(
    edge: Edge, s3: S3Client, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (edge.root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(edge.root, "doc.txt")
    events = RecordedEvents()
    with Transfer(s3, S3Url(bucket, "p/"), edge.root, volume=edge.volume) as transfer:
        fetch = transfer.downloads._get

        def get_then_edit(key: str, tmp: Path, etag: str) -> Mapping[str, str]:
            kept = fetch(key, tmp, etag)
            (edge.root / "doc.txt").write_bytes(b"edited during the download")  # whole file
            return kept

        transfer.downloads._get = get_then_edit  # type: ignore[method-assign]
        remote = transfer.head("doc.txt")
        action = Action(Kind.DOWNLOAD, "doc.txt", "remote changed", local, remote)
        assert _executor(transfer, edge.volume, events).apply(action) is Outcome.DONE
    assert (edge.root / "doc.txt").read_bytes() == b"newer in S3"
    assert (edge.root / "doc.conflict-1.txt").read_bytes() == b"edited during the download"
    assert sorted(os.listdir(edge.root)) == ["doc.conflict-1.txt", "doc.txt"]


class _Refusing(FolderVolume):
    """A volume whose rename into place fails the first ``times`` times (link() is asked
    right before it): EIO, as a failing card says it."""

    def __init__(self, root: Path, times: int) -> None:
        super().__init__(root, fixed=Volume())
        self.times = times

    def link(self, src: Path, dst: Path) -> None:
        if self.times:
            self.times -= 1
            raise OSError(5, "Input/output error")
        super().link(src, dst)


def test_a_failed_rename_into_place_keeps_the_download_and_backs_off(
    s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """The bytes are fetched once; the rename alone is tried again, only once its backoff
    is over (never in a tight loop), and the temporary file is kept meanwhile."""
    root = tmp_path / "folder"
    root.mkdir()
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(root, "doc.txt")
    volume = _Refusing(root, times=2)
    gets: list[str] = []
    now = [0.0]
    with Transfer(s3, S3Url(bucket, "p/"), root, volume=volume) as transfer:
        s3.meta.events.register("before-call.s3.GetObject", lambda **_kw: gets.append("get"))
        transfer.downloads.clock = lambda: now[0]
        remote = transfer.head("doc.txt")
        assert remote is not None
        action = Action(Kind.DOWNLOAD, "doc.txt", "remote changed", local, remote)
        executor = _executor(transfer, volume, RecordedEvents())
        with pytest.raises(FileError, match=r"cannot be renamed into place .*renaming again in 2s"):
            executor.apply(action)
        assert len([n for n in os.listdir(root) if TMP_MARKER in n]) == 1  # kept
        with pytest.raises(Deferred):
            executor.apply(action)  # within the backoff: nothing tried at all
        now[0] += 2.0
        with pytest.raises(FileError, match="renaming again in 4s"):
            executor.apply(action)
        now[0] += 4.0
        assert executor.apply(action) is Outcome.DONE
    assert len(gets) == 1
    assert (root / "doc.txt").read_bytes() == b"newer in S3"
    _no_temp_left(root)


# ------------------------------------------------------------ names that ignore case


@pytest.mark.parametrize(
    ("held", "key", "copy"),
    [
        ("Photo.JPG", "photo.jpg", "photo (case conflict).jpg"),
        ("Dir/a.txt", "dir/b.txt", "dir (case conflict)/b.txt"),
    ],
    ids=["same-name", "same-directory"],
)
def test_a_key_the_folder_holds_under_another_case_is_kept_under_a_case_conflict_name(
    edge: Edge, s3: S3Client, bucket: str, held: str, key: str, copy: str
) -> None:
    """Finding: with S3 holding ``Photo.JPG`` and ``photo.jpg``, the download of the second
    landed on the first (whose bytes the object then took); ``dir/b.txt`` landed in
    ``Dir/`` and came back as a new key ``Dir/b.txt``.  Both versions are kept: the second
    under a case-conflict name, downloaded once (the next pass finds it current)."""
    s3.put_object(Bucket=bucket, Key=f"p/{held}", Body=b"the file held")
    s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"the other key")
    (edge.root / held).parent.mkdir(exist_ok=True)
    (edge.root / held).write_bytes(b"the file held")
    events = RecordedEvents()
    with Transfer(s3, S3Url(bucket, "p/"), edge.root, volume=edge.volume) as transfer:
        remote = transfer.head(key)
        action = Action(Kind.DOWNLOAD, key, "new", None, remote)
        executor = _executor(transfer, edge.volume, events)
        assert executor.apply(action) is Outcome.DONE
        assert executor.apply(action) is Outcome.CURRENT  # the next pass: nothing to do
        assert _executor(transfer, edge.volume, events).apply(action) is Outcome.CURRENT
        s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"the other key, changed")
        assert executor.apply(Action(Kind.DOWNLOAD, key, "new", None, transfer.head(key))) is (
            Outcome.DONE
        )
    assert (edge.root / held).read_bytes() == b"the file held"
    assert (edge.root / copy).read_bytes() == b"the other key, changed"
    top = held.split("/")[0]
    assert sorted(os.listdir(edge.root)) == sorted([top, copy.split("/")[0]])
    if "/" in held:
        assert os.listdir(edge.root / top) == ["a.txt"]
    said = [("skipped", key), ("finished", copy)]
    assert events.seen == said + said
    _no_temp_left(edge.root)


def test_two_keys_that_differ_in_case_downloading_side_by_side_keep_both(
    edge: Edge, s3: S3Client, bucket: str
) -> None:
    """A first pull of ``Photo.JPG`` and ``photo.jpg``: side by side, neither download finds
    the other on disk yet (both wrote one file; the agent then saw a conflict and sent the
    copies back).  The first queued owns the name until it ends; the other is kept aside."""
    for key, body in (("Photo.JPG", b"upper"), ("photo.jpg", b"lower")):
        s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=body)
    events = RecordedEvents()
    with Transfer(s3, S3Url(bucket, "p/"), edge.root, volume=edge.volume) as transfer:
        upper, lower = (
            Action(Kind.DOWNLOAD, k, "new", None, transfer.head(k))
            for k in ("Photo.JPG", "photo.jpg")
        )
        executor = _executor(transfer, edge.volume, events)
        executor.case_clashes.claim(upper)  # queued first, still on its way
        executor.case_clashes.claim(lower)
        assert executor.apply(lower) is Outcome.DONE
        executor.case_clashes.release(lower)
        assert executor.apply(upper) is Outcome.DONE
        executor.case_clashes.release(upper)
    assert sorted(os.listdir(edge.root)) == ["Photo.JPG", "photo (case conflict).jpg"]
    assert (edge.root / "Photo.JPG").read_bytes() == b"upper"
    assert (edge.root / "photo (case conflict).jpg").read_bytes() == b"lower"


def test_sync_skips_a_key_the_folder_holds_under_another_case(
    edge: Edge, s3: S3Client, bucket: str
) -> None:
    """``sync`` has no ignore rules to leave a case-conflict copy alone (a later upload
    would send it as a new key): it skips the key, as before."""
    s3.put_object(Bucket=bucket, Key="p/photo.jpg", Body=b"the other key")
    (edge.root / "Photo.JPG").write_bytes(b"the file held")
    events = RecordedEvents()
    with Transfer(s3, S3Url(bucket, "p/"), edge.root, volume=edge.volume) as transfer:
        action = Action(Kind.DOWNLOAD, "photo.jpg", "new", None, transfer.head("photo.jpg"))
        executor = Executor(transfer, recorder=NullRecorder(), events=events, volume=edge.volume)
        assert executor.apply(action) is Outcome.SKIPPED
    assert os.listdir(edge.root) == ["Photo.JPG"]
    assert (edge.root / "Photo.JPG").read_bytes() == b"the file held"


def test_a_case_clash_is_kept_once_and_never_sent_back_by_the_agent(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """The planner asks for the download every pass: S3's version is kept once under its
    case-conflict name and said once; the copy is never uploaded as a new key nor deleted,
    and the clash is neither a failure (which would hold back the pass's deletes) nor a
    delete."""
    w = make_world(
        delete=True,
        volume=lambda root: FolderVolume(root, fixed=EXFAT),
        on_skip=SkipLog("docs"),
    )
    synced_file(w, "Photo.JPG", b"the file held")
    synced_file(w, "old.txt", b"deleted in S3")
    del w.objects.objects["old.txt"]
    w.objects.put("photo.jpg", b"the other key")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            w.rooms.reconcile.run()
    said = [r.getMessage() for r in caplog.records if "ignores case" in r.getMessage()]
    assert said == [
        "skip: photo.jpg: the folder holds Photo.JPG, and its file system ignores case: "
        "kept as photo (case conflict).jpg"
    ]
    copy = w.root / "photo (case conflict).jpg"
    assert sorted(os.listdir(w.root)) == ["Photo.JPG", copy.name]  # old.txt deleted
    assert copy.read_bytes() == b"the other key"
    assert sorted(w.objects.objects) == ["Photo.JPG", "photo.jpg"]
    assert w.objects.objects["photo.jpg"][0] == b"the other key"
    # The copy edited, or S3's key deleted: still never sent, never deleted.
    copy.write_bytes(b"edited copy")
    del w.objects.objects["photo.jpg"]
    for _ in range(2):
        w.rooms.reconcile.run()
    assert sorted(w.objects.objects) == ["Photo.JPG"]
    assert copy.read_bytes() == b"edited copy"


# ------------------------------------------------------- names the file system refuses


def test_a_key_the_folder_cannot_name_is_skipped_once_and_left_in_s3(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: ``:``, ``?``, ... failed each download (``No such file or directory``,
    ``Operation not permitted``) every pass.  A clear skip, said once; never a delete."""
    w = make_world(
        delete=True, volume=lambda root: FolderVolume(root, fixed=EXFAT), on_skip=SkipLog("d")
    )
    for key in ("a:b.txt", "dir?/c.txt", "ok.txt"):
        w.objects.put(key, b"from S3")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            w.rooms.reconcile.run()
    said = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("skip:"))
    assert said == [
        "skip: a:b.txt: the folder's file system refuses : in a name",
        "skip: dir?/c.txt: the folder's file system refuses ? in a name",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert os.listdir(w.root) == ["ok.txt"]
    assert sorted(w.objects.objects) == ["a:b.txt", "dir?/c.txt", "ok.txt"]


def _main(*argv: str) -> int:
    """The command line's exit code; main() points the root logger at the captured stderr,
    which is put back after."""
    root, saved = logging.getLogger(), logging.getLogger().handlers[:]
    try:
        return main(list(argv))
    finally:
        root.handlers[:] = saved


def test_sync_to_a_card_skips_the_keys_it_cannot_name(
    card: Edge,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``sync s3://... card/``: the keys the card cannot name are skipped with a warning
    (and exit 2, as aws for a skipped file), the rest arrive."""
    for key in ("a:b.txt", "q?.txt", "ok.txt"):
        s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"from S3")
    code = _main("sync", f"s3://{bucket}/p", str(card.root))
    out = capsys.readouterr()
    assert code == 2, out
    assert os.listdir(card.root) == ["ok.txt"]
    warnings = sorted(line for line in out.err.splitlines() if "Skipping" in line)
    assert warnings == [
        f"warning: Skipping file s3://{bucket}/p/a:b.txt. The folder's file system refuses : "
        "in a name.",
        f"warning: Skipping file s3://{bucket}/p/q?.txt. The folder's file system refuses ? "
        "in a name.",
    ]
    assert "failed" not in out.err


def test_sync_delete_from_a_card_says_why_it_deletes_a_key_the_card_cannot_name(
    exfat: Edge,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``sync card/ s3://... --delete`` deletes a key no file on the card could have, as aws
    does, and its line says so (the source's disk was never probed: the reason was lost)."""
    if not exfat.real:
        monkeypatch.setattr(sync_command, "FolderVolume", lambda root: exfat.volume)
    for key in ("a:b.txt", "gone.txt"):
        s3.put_object(Bucket=bucket, Key=f"p/{key}", Body=b"in S3 only")
    (exfat.root / "ok.txt").write_bytes(b"on the card")
    code = _main("sync", str(exfat.root), f"s3://{bucket}/p", "--delete")
    out = capsys.readouterr()
    assert code == 0, out
    assert sorted(line for line in out.out.splitlines() if line.startswith("delete:")) == [
        f"delete: s3://{bucket}/p/a:b.txt (the folder's file system refuses : in a name, so "
        "no file there can have it)",
        f"delete: s3://{bucket}/p/gone.txt",
    ]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="p/").get("Contents", [])
    assert [o["Key"] for o in listed] == ["p/ok.txt"]


# ----------------------------------------------------------- local deletes without links


class _WrittenBeforeTheLink(FolderVolume):
    """A volume without hard links where the user writes the file just before the agent's
    link attempt, after its re-check: the late edit a delete must not take with it."""

    def link(self, src: Path, dst: Path) -> None:
        src.write_bytes(b"written at the last moment")
        super().link(src, dst)


def test_a_delete_without_hard_links_keeps_a_late_write_and_says_so_once(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    w = make_world(delete=True, volume=lambda root: _WrittenBeforeTheLink(root, fixed=NO_LINKS))
    synced_file(w, "keep.txt", b"kept")  # S3's listing is not empty: that holds every delete
    for name in ("a.txt", "b.txt", "c.txt"):
        synced_file(w, name, b"synced")
        del w.objects.objects[name]  # deleted in S3
    os.utime(w.root / "c.txt")  # ... and c.txt edited here: kept by the planner itself
    with caplog.at_level(logging.INFO):
        w.rooms.reconcile.run()
    assert (w.root / "a.txt").read_bytes() == b"written at the last moment"
    assert (w.root / "b.txt").read_bytes() == b"written at the last moment"
    assert not [n for n in os.listdir(w.root) if ".conflict-" in n or TMP_MARKER in n]
    said = [r.getMessage() for r in caplog.records if "no hard links" in r.getMessage()]
    assert len(said) == 1 and "renamed aside" in said[0]
    assert sum("changed while it was deleted" in r.getMessage() for r in caplog.records) == 2


def test_a_delete_without_hard_links_deletes_an_unchanged_file(
    make_world: Callable[..., World],
) -> None:
    w = make_world(delete=True, volume=lambda root: FolderVolume(root, fixed=NO_LINKS))
    synced_file(w, "keep.txt", b"kept")  # S3's listing is not empty: that holds every delete
    synced_file(w, "a.txt", b"synced")
    del w.objects.objects["a.txt"]
    w.rooms.reconcile.run()
    assert os.listdir(w.root) == ["keep.txt"]
    assert w.store.synced.get("a.txt") is None


# -------------------------------------------- edits that keep the size and the mtime


def _uploaded(w: World, path: str, body: bytes) -> None:
    """A file on both sides, recorded as its upload records it (identity and ctime too)."""
    synced_file(w, path, body, identity=True)


def _touch_back(path: Path, body: bytes) -> None:
    """``touch -r``: new bytes of the same size, the old mtime put back."""
    st = path.stat()
    path.write_bytes(body)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _cp_p(path: Path, body: bytes) -> None:
    """``cp -p other path`` over it, ``other`` as big and as old as ``path`` was."""
    other = path.with_name("other")
    other.write_bytes(body)
    shutil.copystat(path, other)
    shutil.copy2(other, path)  # into the same inode, with other's mtime
    other.unlink()


@pytest.mark.parametrize("edit", [_touch_back, _cp_p], ids=["touch-r", "cp-p"])
@pytest.mark.parametrize("reported", [True, False], ids=["watcher", "full-walk"])
def test_an_edit_that_keeps_size_and_mtime_is_uploaded_on_a_posix_disk(
    make_world: Callable[..., World], edit: Callable[[Path, bytes], None], reported: bool
) -> None:
    """Only the ctime moved: the watcher's report and a full walk both see it."""
    w = make_world()
    _uploaded(w, "a.txt", b"version 1")
    before = (w.root / "a.txt").stat()
    edit(w.root / "a.txt", b"version 2")
    after = (w.root / "a.txt").stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino
    )  # fmt: skip
    if reported:
        w.rooms.uploader.process(Item("a.txt", reported=True))
    else:
        w.rooms.reconcile.run()
        upload_queued(w)
    assert w.objects.objects["a.txt"][0] == b"version 2"


def test_a_chmod_alone_is_compared_not_sent(make_world: Callable[..., World]) -> None:
    w = make_world()
    _uploaded(w, "a.txt", b"version 1")
    os.chmod(w.root / "a.txt", 0o600)
    w.rooms.uploader.process(Item("a.txt", reported=True))
    assert not [c for c in w.objects.calls if c[0] == "upload"]
    w.rooms.executor.recorder.flush()  # records are batched
    synced = w.store.synced.get("a.txt")
    assert synced is not None and synced.ctime_ns == (w.root / "a.txt").stat().st_ctime_ns


def test_a_rewrite_within_the_clock_tick_is_uploaded_on_exfat(
    make_world: Callable[..., World],
) -> None:
    """exFAT (simulated): same size, the same whole second, no ctime of its own; the watcher
    saw the write, so the content is compared with the object last synced."""
    w = make_world(volume=lambda root: FolderVolume(root, fixed=EXFAT))
    _uploaded(w, "a.txt", b"version 1")
    os.utime(w.root / "a.txt", ns=(T0, T0))  # exFAT keeps whole seconds
    _uploaded_again_as_is(w, "a.txt")
    _touch_back(w.root / "a.txt", b"version 2")  # the same second: the same mtime
    w.rooms.reconcile.run()  # a walk cannot tell (no ctime there)
    upload_queued(w)
    assert w.objects.objects["a.txt"][0] == b"version 1"
    w.rooms.uploader.process(Item("a.txt", reported=True))
    assert w.objects.objects["a.txt"][0] == b"version 2"
    uploads = len([c for c in w.objects.calls if c[0] == "upload"])
    w.rooms.uploader.process(Item("a.txt", reported=True))  # our own upload's echo
    assert len([c for c in w.objects.calls if c[0] == "upload"]) == uploads


def _uploaded_again_as_is(w: World, path: str) -> None:
    """Record the file as it is now as synced (its object unchanged)."""
    syn = w.store.synced.get(path)
    assert syn is not None
    st = (w.root / path).stat()
    w.store.synced.put_many(
        [SyncedEntry(path, st.st_size, st.st_mtime_ns, syn.etag, syn.remote_mtime_ns, st.st_ino,
                     st.st_ctime_ns)]
    )  # fmt: skip


# ------------------------------------------------ a real agent on a real card (FUSE)


@pytest.fixture(params=[p for p in edge_params("exfat", "fat") if "fuse" in str(p.id)])  # type: ignore[attr-defined]
def card(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Edge]:
    """A real exFAT or FAT card (skipped where it cannot be mounted)."""
    kind, real = request.param
    with edge_folder(kind, real, tmp_path) as folder:
        yield folder


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    return s3server.endpoint


def _cfg(card: Edge, bucket: str, endpoint: str, **overrides: object) -> FolderConfig:
    """Passes every half second, each listing the prefix; FAT one transfer at a time
    (fusefat has hung under parallel downloads)."""
    one = card.kind == "fat"
    options: dict[str, object] = {
        "delete": True,
        "reconcile_interval": 0.5,
        "full_list_interval": 0.5,
        "upload_workers": 1 if one else 4,
        "s3": S3Settings(endpoint_url=endpoint, max_concurrency=1 if one else 4),
    }
    options.update(overrides)
    return folder_config(card.root, f"s3://{bucket}/p", endpoint, **options)


def _body(s3: S3Client, bucket: str, rel: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=f"p/{rel}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def _local(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def test_agent_on_a_card_receives_s3_changes_to_its_files(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """Finding: no hard links there, the finished download was thrown away and fetched
    again every pass; the change never arrived."""
    (card.root / "doc.txt").write_bytes(b"version 1")
    with running_agent(_cfg(card, bucket, endpoint), tmp_path / "state") as agent:
        wait_until(lambda: _body(s3, bucket, "doc.txt") == b"version 1", timeout=30)
        s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"version 2, from elsewhere")
        wait_until(
            # Without hard links the old file is renamed aside for a moment: missing then.
            lambda: _local(card.root / "doc.txt") == b"version 2, from elsewhere",
            timeout=30,
            message="the S3 change to arrive",
        )
        passes = agent.reconciles
        wait_until(lambda: agent.reconciles >= passes + 3, timeout=30)
        wait_idle(agent)
        assert counters(agent).get("downloaded_files") == 1
        assert _body(s3, bucket, "doc.txt") == b"version 2, from elsewhere"
    assert sorted(os.listdir(card.root)) == ["doc.txt"]


def test_agent_on_a_card_deletes_and_says_once_how_it_keeps_late_writes(
    card: Edge,
    s3: S3Client,
    bucket: str,
    endpoint: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("a.txt", "b.txt"):
        (card.root / name).write_bytes(name.encode())
    (card.root / "keep.txt").write_bytes(b"keep")
    with (
        caplog.at_level(logging.INFO),
        running_agent(_cfg(card, bucket, endpoint), tmp_path / "state") as agent,
    ):
        wait_until(lambda: _body(s3, bucket, "b.txt") == b"b.txt", timeout=30)
        wait_idle(agent)
        for name in ("a.txt", "b.txt"):
            s3.delete_object(Bucket=bucket, Key=f"p/{name}")
            wait_until(lambda n=name: not (card.root / n).exists(), timeout=30)  # type: ignore[misc]
    said = [r.getMessage() for r in caplog.records if "delete: no hard links" in r.getMessage()]
    assert len(said) == 1 and "renamed aside before it is deleted" in said[0]
    assert sorted(os.listdir(card.root)) == ["keep.txt"]


def test_agent_on_a_card_uploads_a_rewrite_within_the_clock_tick(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """Finding: the same size and the same (whole- or two-second) mtime, no ctime: judged
    unchanged although the watcher saw the write; S3 kept the old bytes for ever."""
    doc = card.root / "doc.txt"
    doc.write_bytes(b"version 1")
    with running_agent(_cfg(card, bucket, endpoint), tmp_path / "state") as agent:
        wait_until(lambda: _body(s3, bucket, "doc.txt") == b"version 1", timeout=30)
        wait_idle(agent)
        st = doc.stat()
        doc.write_bytes(b"version 2")  # fusefat keeps the mtime of a rewrite as it was
        os.utime(doc, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r: the same tick
        wait_until(
            lambda: _body(s3, bucket, "doc.txt") == b"version 2",
            timeout=30,
            message="the rewrite to be uploaded",
        )


def test_agent_on_a_card_does_not_send_back_what_it_pulled(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """Finding: on FAT, after a first pull, every file was uploaded again once (its time
    rounded, or reset by the rename)."""
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"p/f{n}.txt", Body=f"file {n}".encode())
    _pull_and_send_nothing_back(card, s3, bucket, endpoint, tmp_path, files=3)


def _pull_and_send_nothing_back(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path, *, files: int
) -> None:
    """An agent pulls the prefix onto the card (``files`` files), three more passes walk
    and list it, and S3 holds exactly what it held: nothing uploaded."""
    before = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    cfg = _cfg(card, bucket, endpoint, full_walk_interval=0.5)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_until(lambda: len(os.listdir(card.root)) == files, timeout=30)
        passes = agent.reconciles
        wait_until(lambda: agent.reconciles >= passes + 3, timeout=30)
        wait_idle(agent)
        assert counters(agent).get("uploaded_files", 0) == 0
        assert counters(agent).get("downloaded_files") == files
    after = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {k: v for k, v in after.items() if "/.watchsync/" not in k} == before


def test_agent_on_a_card_keeps_two_keys_that_differ_in_case_and_sends_neither_back(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """Finding: with S3 holding ``Photo.JPG`` and ``photo.jpg``, one object took the
    other's bytes.  A first pull keeps both (the second under its case-conflict name, once)
    and the watcher, the walks and the listings send nothing back."""
    s3.put_object(Bucket=bucket, Key="p/Photo.JPG", Body=b"upper")
    s3.put_object(Bucket=bucket, Key="p/photo.jpg", Body=b"lower")
    _pull_and_send_nothing_back(card, s3, bucket, endpoint, tmp_path, files=2)
    got = {name: (card.root / name).read_bytes() for name in os.listdir(card.root)}
    assert sorted(got.values()) == [b"lower", b"upper"]
    copy = next(n for n in got if "(case conflict)" in n)
    assert got[copy] == (b"lower" if copy.startswith("photo") else b"upper")


@pytest.mark.parametrize("walks", [False, True], ids=["watcher", "walks"])
def test_agent_on_a_card_makes_a_case_only_rename_one_rename_in_s3(
    card: Edge, s3: S3Client, bucket: str, endpoint: str, tmp_path: Path, walks: bool
) -> None:
    """Finding: after ``mv Report.txt report.txt`` both keys stayed in S3 for ever: a
    lookup of ``Report.txt`` still found the file, so its delete was planned and dropped
    on every walk.  Now the new key is written once (a server-side copy where the rename is
    paired, an upload where a walk or the uploader meets the new name first) and the old
    key deleted."""
    (card.root / "Report.txt").write_bytes(b"the report")
    cfg = _cfg(card, bucket, endpoint, full_walk_interval=0.5 if walks else 3600)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_until(lambda: _body(s3, bucket, "Report.txt") == b"the report", timeout=30)
        wait_idle(agent)
        os.rename(card.root / "Report.txt", card.root / "report.txt")
        wait_until(
            lambda: (
                _body(s3, bucket, "report.txt") == b"the report"
                and _body(s3, bucket, "Report.txt") is None
            ),
            timeout=30,
            message="the rename to reach S3",
        )
        passes = agent.reconciles
        wait_until(lambda: agent.reconciles >= passes + 3, timeout=30)
        wait_idle(agent)
        assert _body(s3, bucket, "Report.txt") is None
        # The rename's bytes cross once: a server-side copy where the pass pairs the two
        # names, or one upload of the new one where the uploader takes the new name first
        # (fusefat under load); never both keys kept.
        c = counters(agent)
        assert c.get("copied_files", 0) + c.get("uploaded_files", 0) - 1 == 1
    assert os.listdir(card.root) == ["report.txt"]


# ------------------------------------------------------- quiet when safe, loud when not


def test_a_file_and_directory_collision_is_a_stable_state_said_once(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: S3 holding ``a`` and ``a/b`` never converged: every pass failed the
    download of ``a`` again, reported it, and was looked at again whole."""
    w = make_world(delete=True)
    w.objects.put("a/b", b"a file in directory a")
    w.objects.put("a", b"a file a")
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            w.rooms.reconcile.run()
    said = [r for r in caplog.records if "S3 has both a file and a directory" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert (w.root / "a").read_bytes() == b"a file a"  # the first key kept, the other said
    assert "S3 has both a file and a directory" in (w.status.last_error or "")


def test_deletes_held_back_pass_after_pass_are_said_when_that_changes(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: a directory that could not be read gave ``ERROR ... refused 1 deletes``
    every pass (every 3 s at a short interval)."""
    w = make_world(delete=True)
    events = w.rooms.executor.events
    with caplog.at_level(logging.INFO):
        for count in (1, 1, 1, 2, 2):
            events.vetoed(Veto(count, 0, 1, False, scoped=True))
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert [m.split(": refused ")[1][:9] for m in said] == ["1 deletes", "2 deletes"]


# ----------------------------------------------------------- a card whose daemon dies

_DEAD = 4.0  # s the dead mount stays mounted while the agent watches it


def _holds_for(seconds: float, what: Callable[[], bool], message: str) -> None:
    """``what`` stays true for ``seconds`` (looked at ten times a second: cheap, so the
    test's own CPU is next to nothing)."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        assert what(), message
        time.sleep(0.1)  # the period under test, not a wait for something to happen


def _keys(s3: S3Client, bucket: str) -> dict[str, str]:
    return {k: v["ETag"] for k, v in bucket_listing(s3, bucket, "p").items() if not _reserved(k)}


def _reserved(rel: str) -> bool:
    return rel.startswith(f"{RESERVED_DIR}/")


def _card_cfg(root: Path, bucket: str, endpoint: str, *, marker: bool) -> FolderConfig:
    """Walks and listings an hour apart: a change that reaches S3 within seconds was heard
    by the watcher."""
    return folder_config(
        root,
        f"s3://{bucket}/p",
        endpoint,
        delete=True,
        reconcile_interval=3600.0,
        full_walk_interval=3600.0,
        full_list_interval=3600.0,
        folder_marker=marker,
    )


def _card_in_s3(s3: S3Client, bucket: str, root: Path, agent: Folder) -> dict[str, str]:
    """Three files written on the card reach S3; the keys and ETags S3 then holds."""
    for name in ("doc.txt", "keep.txt", "sub/deep.txt"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(f"{name}, version 1".encode())
    wait_until(lambda: len(_keys(s3, bucket)) == 3, timeout=30, message="3 uploads")
    wait_idle(agent)
    return _keys(s3, bucket)


def _needs_exfat() -> None:
    why = why_no_fuse("exfat")
    if why:
        pytest.skip(f"real exfat: {why}")


def _heard_once_back(
    s3: S3Client, bucket: str, root: Path, agent: Folder, before: dict[str, str], passes: int
) -> None:
    """The card put back has one pass more than ``passes`` (the rescan) and is watched: a
    file created and a file edited on it reach S3 within seconds, with no other pass; S3
    lost nothing, the card neither."""
    wait_until(
        lambda: agent.reconciles > passes and agent.state is State.WATCHING,
        timeout=30,
        message="the rescan once the card is back",
    )
    (root / "new.txt").write_bytes(b"created after the card came back")
    (root / "doc.txt").write_bytes(b"doc.txt, edited after the card came back")
    wait_until(
        lambda: (
            _body(s3, bucket, "new.txt") == b"created after the card came back"
            and _body(s3, bucket, "doc.txt") == b"doc.txt, edited after the card came back"
        ),
        timeout=30,
        message="the new and the edited file to reach S3 (the watcher's doing)",
    )
    wait_idle(agent)
    assert agent.reconciles == passes + 1  # no pass explains the uploads
    after = _keys(s3, bucket)
    unchanged = {k: v for k, v in before.items() if k != "doc.txt"}
    assert sorted(after) == sorted([*before, "new.txt"])
    assert {k: v for k, v in after.items() if k in unchanged} == unchanged
    assert counters(agent).get("deleted_remote", 0) == 0
    assert counters(agent).get("deleted_local", 0) == 0
    assert {n for n in os.listdir(root) if n != RESERVED_DIR} == {
        "doc.txt",
        "keep.txt",
        "new.txt",
        "sub",
    }
    assert (root / "sub/deep.txt").read_bytes() == b"sub/deep.txt, version 1"


@pytest.mark.parametrize(
    "new_device",
    [False, True],
    ids=["same-device", "new-device-marked"],
)
def test_a_card_whose_fuse_daemon_dies_is_waited_for_then_watched_again_once_back(
    s3: S3Client,
    bucket: str,
    endpoint: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    new_device: bool,
) -> None:
    """The folder is an exFAT card's mount point; its FUSE daemon is killed (``kill -9``)
    while the agent watches it, and the dead mount ("Transport endpoint is not connected")
    stays mounted a while: nothing is deleted anywhere, the agent says once that the folder
    is unavailable and does not spin.  The dead mount is then unmounted lazily and the same
    card mounted again at the same point by a new daemon: the agent watches it again and
    rescans, so a file created and a file edited afterwards reach S3 at once (walks and
    listings are an hour apart: only the watcher can explain them), and S3 loses nothing.

    Put back on the same loop device the card shows the device and inode recorded; on
    another one (``new_device``) it shows a new device id, and the folder's marker says it
    is the same folder."""
    _needs_exfat()
    with card_mounted("exfat", tmp_path) as card:
        root = card.mnt
        cfg = _card_cfg(root, bucket, endpoint, marker=new_device)
        with caplog.at_level(logging.INFO), running_agent(cfg, tmp_path / "state") as agent:
            before = _card_in_s3(s3, bucket, root, agent)
            card.kill()
            wait_until(
                lambda: agent.state is State.PAUSED,
                timeout=30,
                message="the agent to pause on the dead mount",
            )
            cpu = time.process_time()
            _holds_for(
                _DEAD,
                lambda: agent.state is State.PAUSED,
                "the agent left its pause while the mount is dead",
            )
            spent = time.process_time() - cpu
            assert spent < 0.5, f"{spent:.2f}s of CPU in {_DEAD}s on a dead mount: spinning?"
            said = agent.status.reason or ""
            assert "unavailable" in said and "Transport endpoint is not connected" in said, said
            warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len([r for r in warned if "unavailable" in r.getMessage()]) == 1, [
                r.getMessage() for r in warned
            ]
            assert _keys(s3, bucket) == before

            card.unmount_lazily()  # the mount point shows the empty directory under it
            card.mount(new_device=new_device)
            passes = agent.reconciles
            _heard_once_back(s3, bucket, root, agent, before, passes)


def test_a_card_put_back_at_once_after_its_daemon_died_is_watched_again(
    s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """The dead mount unmounted and the card mounted again at once, within the agent's tick
    (the same device and inode): the watches on the dead mount hear the unmount, so the
    agent watches the new mount and rescans."""
    _needs_exfat()
    with card_mounted("exfat", tmp_path) as card:
        root = card.mnt
        with running_agent(
            _card_cfg(root, bucket, endpoint, marker=False), tmp_path / "state"
        ) as agent:
            before = _card_in_s3(s3, bucket, root, agent)
            passes = agent.reconciles
            card.kill()
            card.unmount_lazily()
            card.mount()
            _heard_once_back(s3, bucket, root, agent, before, passes)


def test_an_agent_started_on_a_dead_card_waits_for_it_and_syncs_once_it_is_back(
    s3: S3Client, bucket: str, endpoint: str, tmp_path: Path
) -> None:
    """A restart (a reboot, the service manager) while the card's FUSE daemon is dead: the
    first look at the folder fails with "Transport endpoint is not connected".  The agent
    waits, saying why, and deletes nothing; the card mounted again, it syncs and watches."""
    _needs_exfat()
    with card_mounted("exfat", tmp_path) as card:
        root = card.mnt
        cfg = _card_cfg(root, bucket, endpoint, marker=False)
        with running_agent(cfg, tmp_path / "state") as agent:
            before = _card_in_s3(s3, bucket, root, agent)
        card.kill()
        with running_agent(cfg, tmp_path / "state", wait_ready=False) as agent:
            wait_until(
                lambda: agent.state is State.PAUSED,
                timeout=30,
                message="the agent to wait for the dead card",
            )
            said = agent.status.reason or ""
            assert "unavailable (Transport endpoint is not connected)" in said, said
            assert agent.reconciles == 0 and _keys(s3, bucket) == before
            card.unmount_lazily()
            card.mount()
            _heard_once_back(s3, bucket, root, agent, before, 0)
