"""The local walk on real temporary trees: S3 key order, what is skipped and why."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from watchsync.core.model import LocalEntry, Skipped
from watchsync.fs import tempfiles
from watchsync.fs.walk import WalkOptions, walk

Scandir = Callable[[str], Iterator[os.DirEntry[str]]]


def make(root: Path, *paths: str) -> None:
    """Create files (content = their path) under ``root``."""
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(p)


def files(entries: list[LocalEntry | Skipped]) -> list[str]:
    return [e.path for e in entries if isinstance(e, LocalEntry)]


def skipped(entries: list[LocalEntry | Skipped]) -> list[tuple[str, str]]:
    return [(e.path, e.reason) for e in entries if isinstance(e, Skipped)]


def test_s3_key_order(tmp_path: Path) -> None:
    names = ["a0", "a/x", "a.b", "a-b", "a/y/z", "a/y-", "b", "A", "é", "a/x0"]
    make(tmp_path, *names)
    got = files(list(walk(tmp_path)))
    assert got == ["A", "a-b", "a.b", "a/x", "a/x0", "a/y-", "a/y/z", "a0", "b", "é"]
    assert got == sorted(names)
    assert sorted(got, key=lambda p: p.encode()) == got  # UTF-8 byte order, as S3 lists


def test_entries_carry_size_and_mtime(tmp_path: Path) -> None:
    make(tmp_path, "d/f")
    os.utime(tmp_path / "d/f", ns=(1, 1_700_000_000_123_456_789))
    assert list(walk(tmp_path)) == [LocalEntry("d/f", 3, 1_700_000_000_123_456_789)]


def test_start_walks_a_subtree(tmp_path: Path) -> None:
    make(tmp_path, "a/b/c", "a/d", "e")
    assert files(list(walk(tmp_path, start="a/b"))) == ["a/b/c"]
    assert list(walk(tmp_path, start="missing")) == []


def test_missing_root_is_empty(tmp_path: Path) -> None:
    assert list(walk(tmp_path / "nope")) == []


def test_symlink_loop_is_skipped_not_recursed(tmp_path: Path) -> None:
    make(tmp_path, "d/f")
    (tmp_path / "d/up").symlink_to("..")
    (tmp_path / "d/self").symlink_to("self")  # ELOOP when stat'd
    got = list(walk(tmp_path))
    assert files(got) == ["d/f"]
    assert skipped(got) == [("d/self", "symlink loop"), ("d/up", "symlink loop")]


def test_symlinks_followed_by_default(tmp_path: Path) -> None:
    make(tmp_path, "real/f", "target")
    (tmp_path / "link-dir").symlink_to("real")
    (tmp_path / "link-file").symlink_to("target")
    got = list(walk(tmp_path))
    assert files(got) == ["link-dir/f", "link-file", "real/f", "target"]
    assert LocalEntry("link-file", 6, (tmp_path / "target").stat().st_mtime_ns) in got


def test_no_follow_symlinks_leaves_links_out(tmp_path: Path) -> None:
    make(tmp_path, "real/f", "target")
    (tmp_path / "link-dir").symlink_to("real")
    (tmp_path / "link-file").symlink_to("target")
    (tmp_path / "broken").symlink_to("nowhere")
    got = list(walk(tmp_path, options=WalkOptions(follow_symlinks=False)))
    assert got == [
        LocalEntry("real/f", 6, (tmp_path / "real/f").stat().st_mtime_ns),
        LocalEntry("target", 6, (tmp_path / "target").stat().st_mtime_ns),
    ]


def test_broken_symlink_is_skipped(tmp_path: Path) -> None:
    make(tmp_path, "ok")
    (tmp_path / "broken").symlink_to("nowhere")
    got = list(walk(tmp_path))
    assert files(got) == ["ok"]
    assert skipped(got) == [("broken", "broken symlink")]


def test_fifo_is_skipped(tmp_path: Path) -> None:
    make(tmp_path, "ok")
    os.mkfifo(tmp_path / "pipe")
    got = list(walk(tmp_path))
    assert files(got) == ["ok"]
    assert skipped(got) == [("pipe", "not a regular file (FIFO)")]


def test_non_utf8_name_is_skipped_with_printable_path(tmp_path: Path) -> None:
    make(tmp_path, "dir/ok")
    try:
        fd = os.open(os.path.join(os.fsencode(tmp_path), b"dir", b"\xff"), os.O_CREAT | os.O_WRONLY)
    except OSError as exc:  # some file systems refuse non-UTF-8 names
        if exc.errno in (errno.EILSEQ, errno.EINVAL):
            pytest.skip("file system refuses non-UTF-8 names")
        raise
    os.close(fd)
    got = list(walk(tmp_path))
    assert files(got) == ["dir/ok"]
    [(path, reason)] = skipped(got)
    assert reason == "name is not valid UTF-8"
    assert path == "dir/\\xff"
    assert path.isprintable()
    path.encode("utf-8")  # no surrogates left: safe to print and log


def test_own_temp_files_are_left_out(tmp_path: Path) -> None:
    make(tmp_path, "a.txt", "d/b", "d/" + tempfiles.temp_name("b", "0123abcd"))
    make(tmp_path, tempfiles.temp_name("a.txt", "4567cdef"))
    assert sorted(os.listdir(tmp_path / "d")) == sorted(["b", tempfiles.temp_name("b", "0123abcd")])
    assert files(list(walk(tmp_path))) == ["a.txt", "d/b"]


def test_vanishing_siblings_are_tolerated(tmp_path: Path) -> None:
    """A file and a directory deleted after their parent was listed are silently left out."""
    make(tmp_path, "a", "gone-dir/x", "gone-file", "z")

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        with os.scandir(path) as it:
            entries = list(it)
        if path == os.fspath(tmp_path):
            shutil.rmtree(tmp_path / "gone-dir")
            (tmp_path / "gone-file").unlink()
        return iter(entries)

    got = list(walk(tmp_path, scandir=scandir))
    assert got == [e for e in got if isinstance(e, LocalEntry)]
    assert files(got) == ["a", "z"]


def test_directory_vanishing_before_listing_is_tolerated(tmp_path: Path) -> None:
    make(tmp_path, "a", "d/x", "z")

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if path.endswith("/d"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return os.scandir(path)

    assert list(walk(tmp_path, scandir=scandir)) == list(
        e for e in walk(tmp_path) if e.path != "d/x"
    )


def test_unreadable_directory_is_skipped(tmp_path: Path) -> None:
    make(tmp_path, "a", "locked/x", "z")

    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        if path.endswith("/locked"):
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return os.scandir(path)

    got = list(walk(tmp_path, scandir=scandir))
    assert files(got) == ["a", "z"]
    assert skipped(got) == [("locked", "directory is not readable: Permission denied")]


def test_unreadable_root_is_skipped(tmp_path: Path) -> None:
    def scandir(path: str) -> Iterator[os.DirEntry[str]]:
        raise PermissionError(errno.EACCES, "Permission denied", path)

    assert list(walk(tmp_path, scandir=scandir)) == [
        Skipped(".", "directory is not readable: Permission denied")
    ]


def test_prune_skips_subtrees(tmp_path: Path) -> None:
    make(tmp_path, "a/keep", "a/skip/x", "skip/y", "skipfile", "z/skip/w")
    asked: list[str] = []

    def prune(rel: str) -> bool:
        asked.append(rel)
        return rel.endswith("skip")

    got = files(list(walk(tmp_path, options=WalkOptions(prune=prune))))
    assert got == ["a/keep", "skipfile"]
    assert asked == ["a", "a/skip", "skip", "z", "z/skip"]  # directories only, in key order


# -- temp files: names that fit, recognised exactly, leftovers removed ------------------------


@pytest.mark.parametrize(
    "name", ["é" * 116, "名" * 84, "a" * 255, "ok.txt"], ids=["2-byte", "3-byte", "ascii", "short"]
)
def test_temp_name_fits_in_255_bytes(tmp_path: Path, name: str) -> None:
    tmp = tempfiles.temp_name(name, "0123abcd")
    assert len(tmp.encode()) <= 255 and tempfiles.is_temp_name(tmp)
    (tmp_path / tmp).write_bytes(b"")  # the file system takes it
    assert files(list(walk(tmp_path))) == []


def test_user_file_named_like_a_temp_file_is_synced(tmp_path: Path) -> None:
    make(tmp_path, ".a.txt.watchsync-tmp-1234", "d/.x.watchsync-tmp-zz")
    assert files(list(walk(tmp_path))) == [".a.txt.watchsync-tmp-1234", "d/.x.watchsync-tmp-zz"]


def test_remove_temp_files_removes_leftovers_of_dead_writers_only(tmp_path: Path) -> None:
    gone_pid = 0x7FFFFFFF  # above any pid_max: no such process
    live_pid = os.getppid()
    make(
        tmp_path,
        tempfiles.temp_name("a.bin", "0123abcd", pid=gone_pid),
        "d/" + tempfiles.temp_name("b.bin", "89abcdef", pid=os.getpid()),
        tempfiles.temp_name("c.bin", "01010101", pid=live_pid),
        ".user.watchsync-tmp-1234",
        ".old.bin.watchsync-tmp-0a1b2c3d",  # an older version's: no pid, surely dead
        "keep.txt",
    )
    assert tempfiles.remove_temp_files(tmp_path) == 3
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted(
        [
            ".user.watchsync-tmp-1234",
            "keep.txt",
            tempfiles.temp_name("c.bin", "01010101", pid=live_pid),
        ]
    )


def test_remove_temp_files_removes_a_dead_volume_probe_whole(tmp_path: Path) -> None:
    """The volume probe writes in a directory under our temporary-name form: one left by
    a process killed meanwhile goes whole; a live one's stays, and neither is walked."""
    dead = tempfiles.temp_name("volume-probe", "0123abcd", pid=0x7FFFFFFF)
    live = tempfiles.temp_name("volume-probe", "89abcdef", pid=os.getppid())
    make(tmp_path, f"{dead}/Probe", f"{dead}/n:n", f"{live}/Probe", "keep.txt")
    tempfiles.remove_temp_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == sorted([live, "keep.txt"])
    assert files(list(walk(tmp_path))) == ["keep.txt"]
