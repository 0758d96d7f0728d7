"""``watchsync sync`` end to end: the real CLI against the real SeaweedFS server.

Every test runs ``watchsync.cli.main`` in-process (or ``python -m watchsync`` where a real
process is needed) and compares the final bucket with the folder by content hash.

Files are created with mtimes a day in the past, so that an upload's LastModified is always
later than the file and a second run has nothing to do (a file modified in the same second as
its upload would otherwise look newer than the object, as it does to ``aws s3 sync``).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import http.server
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from helpers import wait_until
from s3server import SeaweedServer

from watchsync.cli.main import main
from watchsync.s3.client import mtime_ns

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
DAY = 86_400
PAST = int(time.time()) - DAY  # whole seconds: far from any upload's LastModified
TMP_RE = re.compile(r"^\..+\.watchsync-tmp-[0-9a-f]+$")

# -- helpers -------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bucket_snapshot(s3: S3Client, bucket: str, prefix: str = "") -> dict[str, str]:
    """Every object under ``prefix`` as {path relative to the prefix: sha256 of its content}."""
    out: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            with contextlib.closing(body):
                out[obj["Key"][len(prefix) :]] = sha(body.read())
    return out


def tree_snapshot(path: Path, *, ignore_temp: bool = False) -> dict[str, str]:
    """Every regular file under ``path`` (symlinks followed) as {relative path: sha256}."""
    out: dict[str, str] = {}
    for dirpath, _dirs, names in os.walk(path, followlinks=True):
        for name in names:
            full = Path(dirpath, name)
            if ignore_temp and TMP_RE.match(name):
                continue
            if full.is_file():
                out[full.relative_to(path).as_posix()] = sha(full.read_bytes())
    return out


def make_tree(root: Path, files: Mapping[str, bytes], *, mtime: int = PAST) -> None:
    """Create ``files`` under ``root`` with their mtime and atime set to ``mtime``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        os.utime(f, (mtime, mtime))


def put_objects(s3: S3Client, bucket: str, objects: Mapping[str, bytes]) -> None:
    for key, data in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=data)


def last_modified(s3: S3Client, bucket: str, prefix: str = "") -> dict[str, int]:
    """LastModified of every object under ``prefix`` in nanoseconds, by relative path."""
    out: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) :]] = mtime_ns(obj["LastModified"])
    return out


def hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    return {k: sha(v) for k, v in files.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Run:
    """The outcome of one CLI run: exit code and stdout/stderr lines."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out.splitlines()
        self.err = err.splitlines()

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def sync(
    aws_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Any]:
    """``sync(*args)`` runs ``watchsync sync *args`` in-process and returns a :class:`Run`.

    It runs in ``tmp_path``, so local paths print as aws prints them, relative to the
    working directory: ``src/a.txt``, ``dst/a.txt``."""
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(*args: str) -> Run:
        capsys.readouterr()
        code = main(["sync", *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    yield run
    # main() points the root logger at the captured stderr: give the old handlers back.
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


@pytest.fixture
def dst(tmp_path: Path) -> Path:
    return tmp_path / "dst"


FILES = {
    "a.txt": b"alpha\n",
    "b/c.txt": b"charlie\n" * 100,
    "b/d/e.bin": os.urandom(3000),
    "empty": b"",
}

# -- upload / download basics ----------------------------------------------------------------


def test_upload_then_resync_is_a_noop(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    make_tree(src, FILES)
    first = sync(str(src), f"s3://{bucket}/p")
    assert first.code == 0, first
    assert first.err == []
    assert sorted(first.out) == sorted(f"upload: src/{k} to s3://{bucket}/p/{k}" for k in FILES)
    assert bucket_snapshot(s3, bucket, "p/") == tree_snapshot(src) == hashes(FILES)

    second = sync(str(src), f"s3://{bucket}/p")
    assert (second.code, second.out, second.err) == (0, [], [])


def test_download_then_resync_is_a_noop(sync: Any, s3: S3Client, bucket: str, dst: Path) -> None:
    put_objects(s3, bucket, {f"p/{k}": v for k, v in FILES.items()})
    first = sync(f"s3://{bucket}/p/", str(dst))
    assert first.code == 0, first
    assert sorted(first.out) == sorted(f"download: s3://{bucket}/p/{k} to dst/{k}" for k in FILES)
    assert tree_snapshot(dst) == bucket_snapshot(s3, bucket, "p/") == hashes(FILES)

    second = sync(f"s3://{bucket}/p/", str(dst))
    assert (second.code, second.out, second.err) == (0, [], [])


def test_round_trip_keeps_content_and_the_files_mtime(
    sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path
) -> None:
    """The upload keeps each file's mtime in its object's metadata; the download gives it
    back (objects without one get LastModified: tests/test_metadata.py)."""
    make_tree(src, FILES)
    assert sync(str(src), f"s3://{bucket}/rt").code == 0
    assert sync(f"s3://{bucket}/rt", str(dst)).code == 0
    # Before reading the files: a read may move atime (relatime).
    for rel in last_modified(s3, bucket, "rt/"):
        st = os.stat(dst / rel)
        assert st.st_mtime_ns == PAST * 10**9, rel
        assert st.st_atime_ns == PAST * 10**9, rel
    assert tree_snapshot(dst) == tree_snapshot(src) == bucket_snapshot(s3, bucket, "rt/")
    # Nothing to do in either direction afterwards.
    for args in ((str(dst), f"s3://{bucket}/rt"), (f"s3://{bucket}/rt", str(dst))):
        again = sync(*args)
        assert (again.code, again.out, again.err) == (0, [], []), args


def test_changed_files_are_uploaded_again(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    make_tree(src, {"same.txt": b"aaaa", "grown.txt": b"aaaa", "newer.txt": b"aaaa"})
    assert sync(str(src), f"s3://{bucket}").code == 0

    # Size change with an old mtime: uploaded because the size differs.
    make_tree(src, {"grown.txt": b"aaaaaaaa"})
    # Same size, new content, mtime after LastModified: uploaded because it is newer.
    make_tree(src, {"newer.txt": b"bbbb"}, mtime=int(time.time()) + DAY)
    # Same size, new content, mtime still before LastModified: aws leaves it (so do we).
    make_tree(src, {"same.txt": b"cccc"})

    run = sync(str(src), f"s3://{bucket}")
    assert run.code == 0, run
    assert sorted(run.out) == [
        f"upload: src/grown.txt to s3://{bucket}/grown.txt",
        f"upload: src/newer.txt to s3://{bucket}/newer.txt",
    ]
    assert bucket_snapshot(s3, bucket) == {
        "grown.txt": sha(b"aaaaaaaa"),
        "newer.txt": sha(b"bbbb"),
        "same.txt": sha(b"aaaa"),
    }


def test_download_rules_size_and_later_second(
    sync: Any, s3: S3Client, bucket: str, dst: Path
) -> None:
    put_objects(s3, bucket, {"size": b"remote-longer", "newer": b"RRRR", "older": b"RRRR"})
    make_tree(dst, {"size": b"short", "newer": b"LLLL"})  # a day before LastModified
    make_tree(dst, {"older": b"LLLL"}, mtime=int(time.time()) + DAY)  # after LastModified
    run = sync(f"s3://{bucket}", str(dst))
    assert run.code == 0, run
    # Same size, object in a later second: downloaded (aws-cli would not: a known difference).
    assert sorted(run.out) == [
        f"download: s3://{bucket}/newer to dst/newer",
        f"download: s3://{bucket}/size to dst/size",
    ]
    assert (dst / "older").read_bytes() == b"LLLL"
    assert (dst / "newer").read_bytes() == b"RRRR"


def test_names_with_special_characters_round_trip(
    sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path
) -> None:
    # No directory name is a prefix of a sibling followed by a char < '/' (SeaweedFS order).
    files = {
        "with space.txt": b"1",
        "ünïcødé/日本語.txt": b"2",
        "plus+sign": b"3",
        "percent%20and%.txt": b"4",
        "hash#tag": b"5",
        "amp&er=eq": b"6",
        "dir with space/q?uestion": b"7",
        "emoji-🎉": b"8",
    }
    make_tree(src, files)
    up = sync(str(src), f"s3://{bucket}/sp")
    assert up.code == 0, up
    assert f"upload: src/amp&er=eq to s3://{bucket}/sp/amp&er=eq" in up.out
    assert bucket_snapshot(s3, bucket, "sp/") == hashes(files)
    down = sync(f"s3://{bucket}/sp", str(dst))
    assert down.code == 0, down
    assert tree_snapshot(dst) == hashes(files)
    for args in ((str(src), f"s3://{bucket}/sp"), (f"s3://{bucket}/sp", str(dst))):
        again = sync(*args)
        assert (again.code, again.out, again.err) == (0, [], []), args


def test_nested_prefix(sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path) -> None:
    put_objects(s3, bucket, {"a/b/cother": b"sibling", "a/b/c/stale": b"old", "top": b"t"})
    make_tree(src, FILES)
    run = sync(str(src), f"s3://{bucket}/a/b/c", "--delete")
    assert run.code == 0, run
    assert f"delete: s3://{bucket}/a/b/c/stale" in run.out
    assert bucket_snapshot(s3, bucket, "a/b/c/") == hashes(FILES)
    # Nothing outside the prefix was touched.
    assert bucket_snapshot(s3, bucket, "a/b/cother") == {"": sha(b"sibling")}
    assert bucket_snapshot(s3, bucket, "top") == {"": sha(b"t")}

    down = sync(f"s3://{bucket}/a/b/c/", str(dst))
    assert down.code == 0, down
    assert tree_snapshot(dst) == hashes(FILES)


def test_relative_local_path_is_printed_as_aws_prints_it(
    sync: Any, s3: S3Client, bucket: str, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative to the working directory, whatever was typed (aws's relative_path)."""
    make_tree(src, {"x/y.txt": b"y"})
    monkeypatch.chdir(src.parent)
    run = sync("./src/", f"s3://{bucket}")
    assert run.out == [f"upload: src/x/y.txt to s3://{bucket}/x/y.txt"]
    assert bucket_snapshot(s3, bucket) == tree_snapshot(src)


def test_multipart_file_both_directions(
    sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path
) -> None:
    files = {"big.bin": os.urandom(9 * MiB), "small.txt": b"s"}
    make_tree(src, files)
    up = sync(str(src), f"s3://{bucket}/mp")
    assert up.code == 0, up
    assert "-" in s3.head_object(Bucket=bucket, Key="mp/big.bin")["ETag"]  # really multipart
    assert bucket_snapshot(s3, bucket, "mp/") == hashes(files)
    down = sync(f"s3://{bucket}/mp", str(dst))
    assert down.code == 0, down
    assert tree_snapshot(dst) == hashes(files)
    assert os.stat(dst / "big.bin").st_mtime_ns == PAST * 10**9  # the file's, kept
    assert sync(f"s3://{bucket}/mp", str(dst)).out == []
    assert sync(str(dst), f"s3://{bucket}/mp").out == []


# -- --delete ---------------------------------------------------------------------------------


def test_delete_upload_direction(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    put_objects(s3, bucket, {"p/gone.txt": b"g", "p/b/gone2": b"g", "other/keep": b"k"})
    make_tree(src, FILES)
    without = sync(str(src), f"s3://{bucket}/p")
    assert without.code == 0
    assert not [line for line in without.out if line.startswith("delete:")]
    assert set(bucket_snapshot(s3, bucket, "p/")) == {*FILES, "gone.txt", "b/gone2"}

    run = sync(str(src), f"s3://{bucket}/p", "--delete")
    assert run.code == 0, run
    assert sorted(run.out) == [
        f"delete: s3://{bucket}/p/b/gone2",
        f"delete: s3://{bucket}/p/gone.txt",
    ]
    assert bucket_snapshot(s3, bucket, "p/") == tree_snapshot(src)
    assert bucket_snapshot(s3, bucket, "other/") == {"keep": sha(b"k")}


def test_delete_download_direction(sync: Any, s3: S3Client, bucket: str, dst: Path) -> None:
    put_objects(s3, bucket, FILES)
    make_tree(dst, {"extra.txt": b"x", "b/extra2": b"y"})
    run = sync(f"s3://{bucket}", str(dst), "--delete")
    assert run.code == 0, run
    assert {"delete: dst/extra.txt", "delete: dst/b/extra2"} <= set(run.out)
    assert tree_snapshot(dst) == bucket_snapshot(s3, bucket) == hashes(FILES)


def test_delete_never_touches_excluded_paths(
    sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path
) -> None:
    put_objects(s3, bucket, {"x.log": b"remote log", "gone.txt": b"g", "logs/y.log": b"l"})
    make_tree(src, {"a.txt": b"a"})
    run = sync(str(src), f"s3://{bucket}", "--delete", "--exclude", "*.log")
    assert run.code == 0, run
    assert run.out.count(f"delete: s3://{bucket}/gone.txt") == 1
    assert bucket_snapshot(s3, bucket) == {
        "a.txt": sha(b"a"),
        "x.log": sha(b"remote log"),
        "logs/y.log": sha(b"l"),
    }

    make_tree(dst, {"local.log": b"mine", "sub/z.log": b"z", "stray": b"s"})
    down = sync(f"s3://{bucket}", str(dst), "--delete", "--exclude", "*.log")
    assert down.code == 0, down
    assert "delete: dst/stray" in down.out
    assert tree_snapshot(dst) == {
        "a.txt": sha(b"a"),
        "local.log": sha(b"mine"),
        "sub/z.log": sha(b"z"),
    }


def test_deletes_skipped_when_a_path_was_skipped(
    sync: Any, s3: S3Client, bucket: str, src: Path
) -> None:
    put_objects(s3, bucket, {"stale": b"keep me"})
    make_tree(src, {"ok.txt": b"ok"})
    os.mkfifo(src / "pipe")
    run = sync(str(src), f"s3://{bucket}", "--delete")
    assert run.code == 2, run  # aws: a file was skipped
    assert run.out == [f"upload: src/ok.txt to s3://{bucket}/ok.txt"]
    special = "File is character special device, block special device, FIFO, or socket."
    assert f"warning: Skipping file {src}/pipe. {special}" in run.err
    assert any("deletes not done" in line for line in run.err), run.err
    assert bucket_snapshot(s3, bucket) == {"ok.txt": sha(b"ok"), "stale": sha(b"keep me")}


def test_deletes_skipped_when_a_download_failed(
    sync: Any, s3: S3Client, bucket: str, dst: Path
) -> None:
    put_objects(s3, bucket, {"ok.txt": b"ok", "blocked/f": b"f"})
    make_tree(dst, {"stray": b"s"})
    (dst / "blocked").write_bytes(b"a file where a directory must go")
    run = sync(f"s3://{bucket}", str(dst), "--delete")
    assert run.code == 1, run
    assert f"download: s3://{bucket}/ok.txt to dst/ok.txt" in run.out
    assert any(line.startswith("download failed: ") for line in run.err), run.err
    assert (dst / "stray").read_bytes() == b"s"


# -- dry run and filters -----------------------------------------------------------------------


def test_dryrun_changes_nothing(sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path) -> None:
    put_objects(s3, bucket, {"stale": b"s", "both": b"remote"})
    make_tree(src, {"new.txt": b"n", "both": b"local-longer"})
    before_bucket = bucket_snapshot(s3, bucket)
    up = sync(str(src), f"s3://{bucket}", "--dryrun", "--delete")
    assert up.code == 0, up
    assert sorted(up.out) == [
        f"(dryrun) delete: s3://{bucket}/stale",
        f"(dryrun) upload: src/both to s3://{bucket}/both",
        f"(dryrun) upload: src/new.txt to s3://{bucket}/new.txt",
    ]
    assert bucket_snapshot(s3, bucket) == before_bucket

    make_tree(dst, {"extra": b"e"})
    before_tree = tree_snapshot(dst)
    down = sync(f"s3://{bucket}", str(dst), "--dryrun", "--delete")
    assert down.code == 0, down
    assert sorted(down.out) == [
        "(dryrun) delete: dst/extra",
        f"(dryrun) download: s3://{bucket}/both to dst/both",
        f"(dryrun) download: s3://{bucket}/stale to dst/stale",
    ]
    assert tree_snapshot(dst) == before_tree
    assert sorted(os.listdir(dst)) == ["extra"]


def test_dryrun_download_creates_no_destination(
    sync: Any, s3: S3Client, bucket: str, dst: Path
) -> None:
    put_objects(s3, bucket, {"a": b"a"})
    run = sync(f"s3://{bucket}", str(dst), "--dryrun")
    assert run.out == [f"(dryrun) download: s3://{bucket}/a to dst/a"]
    assert not dst.exists()


def test_filters_aws_semantics(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    make_tree(
        src,
        {
            "a.log": b"1",
            "deep/er/b.log": b"2",  # '*' crosses '/'
            "keep.log": b"3",
            "c.txt": b"4",
            "tmp/x.txt": b"5",
            "tmp/keep.txt": b"6",
        },
    )
    run = sync(
        str(src),
        f"s3://{bucket}",
        "--exclude",
        "*.log",
        "--include",
        "keep.log",
        "--exclude=tmp/*",
        "--include",
        "tmp/keep*",
    )
    assert run.code == 0, run
    assert set(bucket_snapshot(s3, bucket)) == {"keep.log", "c.txt", "tmp/keep.txt"}

    # Later wins: an exclude after the include takes the file out again.
    run2 = sync(str(src), f"s3://{bucket}/two", "--include", "*.log", "--exclude", "*")
    assert (run2.code, run2.out) == (0, [])
    assert bucket_snapshot(s3, bucket, "two/") == {}


def test_size_only(sync: Any, s3: S3Client, bucket: str, src: Path, dst: Path) -> None:
    make_tree(src, {"f": b"1111", "g": b"22"})
    assert sync(str(src), f"s3://{bucket}").code == 0
    make_tree(src, {"f": b"9999", "g": b"333"}, mtime=int(time.time()) + DAY)
    run = sync(str(src), f"s3://{bucket}", "--size-only")
    assert run.out == [f"upload: src/g to s3://{bucket}/g"]
    assert bucket_snapshot(s3, bucket) == {"f": sha(b"1111"), "g": sha(b"333")}

    # Download: same size, object a day newer than the file: --size-only leaves it.
    make_tree(dst, {"f": b"0000", "g": b"000"})
    run = sync(f"s3://{bucket}", str(dst), "--size-only")
    assert (run.code, run.out) == (0, [])
    assert (dst / "f").read_bytes() == b"0000"


def test_exact_timestamps_on_download(sync: Any, s3: S3Client, bucket: str, dst: Path) -> None:
    put_objects(s3, bucket, {"f": b"RRRR"})
    make_tree(dst, {"f": b"LLLL"}, mtime=int(time.time()) + DAY)  # local newer, same size
    plain = sync(f"s3://{bucket}", str(dst))
    assert (plain.code, plain.out) == (0, [])
    assert (dst / "f").read_bytes() == b"LLLL"

    exact = sync(f"s3://{bucket}", str(dst), "--exact-timestamps")
    assert exact.out == [f"download: s3://{bucket}/f to dst/f"]
    assert tree_snapshot(dst) == bucket_snapshot(s3, bucket)
    again = sync(f"s3://{bucket}", str(dst), "--exact-timestamps")
    assert (again.code, again.out) == (0, [])


def test_no_follow_symlinks(
    sync: Any, s3: S3Client, bucket: str, src: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    make_tree(outside, {"o.txt": b"o"})
    make_tree(src, {"real.txt": b"r"})
    (src / "link.txt").symlink_to(src / "real.txt")
    (src / "linkdir").symlink_to(outside, target_is_directory=True)

    run = sync(str(src), f"s3://{bucket}/nf", "--no-follow-symlinks")
    assert run.code == 0, run
    assert bucket_snapshot(s3, bucket, "nf/") == {"real.txt": sha(b"r")}

    run = sync(str(src), f"s3://{bucket}/f")
    assert run.code == 0, run
    assert bucket_snapshot(s3, bucket, "f/") == tree_snapshot(src)
    assert set(tree_snapshot(src)) == {"real.txt", "link.txt", "linkdir/o.txt"}


def test_content_type_sse_and_storage_class(
    sync: Any, s3: S3Client, bucket: str, src: Path
) -> None:
    make_tree(src, {"index.html": b"<p>hi</p>", "style.css": b"p{}", "data.unknownext": b"?"})
    run = sync(str(src), f"s3://{bucket}", "--sse", "AES256", "--storage-class", "STANDARD")
    assert run.code == 0, run
    assert bucket_snapshot(s3, bucket) == tree_snapshot(src)
    html = s3.head_object(Bucket=bucket, Key="index.html")
    assert html["ContentType"] == "text/html"
    assert s3.head_object(Bucket=bucket, Key="style.css")["ContentType"] == "text/css"
    # SeaweedFS echoes the encryption header; AWS S3 would as well.
    assert html.get("ServerSideEncryption") in (None, "AES256")


# -- skipped local paths ----------------------------------------------------------------------


def test_symlink_loop_broken_link_and_fifo_are_skipped(
    sync: Any, s3: S3Client, bucket: str, src: Path
) -> None:
    make_tree(src, {"ok.txt": b"ok", "d/inner.txt": b"i"})
    (src / "d" / "loop").symlink_to(src, target_is_directory=True)  # back to an ancestor
    (src / "self").symlink_to("self")  # ELOOP
    (src / "broken").symlink_to(src / "nowhere")
    os.mkfifo(src / "fifo")
    run = sync(str(src), f"s3://{bucket}")
    assert run.code == 2, run
    special = "File is character special device, block special device, FIFO, or socket."
    assert sorted(run.err) == sorted(
        [
            f"warning: Skipping file {src}/broken. File does not exist.",
            f"warning: Skipping file {src}/d/loop. Symlink loop.",
            f"warning: Skipping file {src}/fifo. {special}",
            f"warning: Skipping file {src}/self. File does not exist.",
        ]
    )
    assert bucket_snapshot(s3, bucket) == {"ok.txt": sha(b"ok"), "d/inner.txt": sha(b"i")}


def test_non_utf8_name_is_skipped(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    make_tree(src, {"ok.txt": b"ok"})
    with open(os.path.join(os.fsencode(src), b"bad\xff.txt"), "wb") as f:
        f.write(b"x")
    run = sync(str(src), f"s3://{bucket}")
    assert run.code == 2, run
    assert len(run.err) == 1 and run.err[0].startswith("warning: Skipping file "), run.err
    assert "UTF-8" in run.err[0]
    assert bucket_snapshot(s3, bucket) == {"ok.txt": sha(b"ok")}


def _without_file_permission_bypass() -> list[str] | None:
    """A command prefix that makes permission bits apply to us, or None if impossible.

    As root, mode 000 does not stop reads.  The interpreter lives under /root (mode 700), so
    switching to ``nobody`` would lock the child out of Python itself; instead the child
    keeps uid 0 but loses the capabilities that bypass file permissions.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_unreadable_file_and_dir_are_skipped_and_block_deletes(
    s3: S3Client, bucket: str, s3server: SeaweedServer, aws_env: dict[str, str]
) -> None:
    prefix = _without_file_permission_bypass()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    put_objects(s3, bucket, {"stale": b"keep me"})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        make_tree(src, {"ok.txt": b"ok", "secret.txt": b"s", "locked/inner.txt": b"i"})
        (src / "secret.txt").chmod(0)
        (src / "locked").chmod(0)
        try:
            proc = subprocess.run(
                [
                    *prefix,
                    sys.executable,
                    "-m",
                    "watchsync",
                    "sync",
                    str(src),
                    f"s3://{bucket}",
                    "--delete",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                cwd=tmp,
            )
        finally:
            (src / "locked").chmod(0o755)
    assert proc.returncode == 2, proc  # aws: skipped, nothing failed
    err = proc.stderr.splitlines()
    assert f"warning: Skipping file {src}/locked. File/Directory is not readable." in err
    assert f"warning: Skipping file {src}/secret.txt. File/Directory is not readable." in err
    assert any("deletes not done" in line for line in err), err
    assert proc.stdout.splitlines() == [f"upload: src/ok.txt to s3://{bucket}/ok.txt"]
    assert bucket_snapshot(s3, bucket) == {"ok.txt": sha(b"ok"), "stale": sha(b"keep me")}


# -- downloads never write outside the destination ------------------------------------------


class ListingRewriter:
    """An HTTP proxy to the S3 server that renames keys in ListObjects responses.

    SeaweedFS refuses keys with '.' or '..' segments, strips a leading '/' and collapses
    '//', so such keys cannot be stored; a hostile or buggy S3 server could still list them.
    The proxy forwards every request byte for byte (the Host header is the proxy's, so the
    signatures stay valid) and swaps placeholder keys for the hostile ones in listings.
    """

    def __init__(self, target_port: int, renames: Mapping[str, str]) -> None:
        self.renames = dict(renames)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", target_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out_headers = resp.getheaders()
                finally:
                    conn.close()
                if self.command == "GET" and "list-type=2" in self.path:
                    data = outer.rewrite(data)
                self.send_response(resp.status)
                for k, v in out_headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="listing-rewriter", daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def rewrite(self, data: bytes) -> bytes:
        text = data.decode()
        for placeholder, key in self.renames.items():
            # botocore asks for EncodingType=url and decodes keys with unquote_plus.
            text = text.replace(
                f"<Key>{placeholder}</Key>", f"<Key>{urllib.parse.quote(key, safe='')}</Key>"
            )
        return text.encode()

    def __enter__(self) -> ListingRewriter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


HOSTILE_KEYS = {
    "../evil": "File references a parent directory.",
    "a/../../evil": "File references a parent directory.",
    "x/..": "File references a parent directory.",
    "/abs": "absolute path",
    "ok/./x": "'.' segment",
    "d//e": "empty or '.' segment",
    "nul\x00key": "control characters",
}


def test_traversal_keys_are_skipped(
    sync: Any, s3: S3Client, bucket: str, s3server: SeaweedServer, tmp_path: Path
) -> None:
    # What SeaweedFS itself does with them: refused, or stored under a harmless key.
    for key in ("../evil", "a/../../evil", "ok/./x"):
        with pytest.raises(ClientError, match="InvalidRequest"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"evil")
    put_objects(s3, bucket, {"/abs": b"evil", "d//e": b"evil"})
    assert set(bucket_snapshot(s3, bucket)) == {"abs", "d/e"}  # normalised by SeaweedFS
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "abs"}, {"Key": "d/e"}]})
    put_objects(s3, bucket, {"good.txt": b"good"})
    placeholders = {f"placeholder{i}": key for i, key in enumerate(HOSTILE_KEYS)}
    put_objects(s3, bucket, dict.fromkeys(placeholders, b"evil"))

    dst = tmp_path / "deep" / "er" / "dst"
    before_parent = sorted(p.name for p in tmp_path.parent.iterdir())
    assert not Path("/abs").exists()
    with ListingRewriter(s3server.port, placeholders) as proxy:
        run = sync(f"s3://{bucket}", str(dst), "--endpoint-url", proxy.endpoint)
    assert run.code == 2, run
    assert run.out == [f"download: s3://{bucket}/good.txt to deep/er/dst/good.txt"]
    # One warning line per key (the newline in a key must not split the line).
    assert len(run.err) == len(HOSTILE_KEYS), run.err
    assert all(line.startswith("warning: Skipping file ") for line in run.err)
    for key, why in HOSTILE_KEYS.items():
        shown = key.replace("\x00", "\\x00").replace("\n", "\\n")
        # A '..' key is named as aws names it, by itself; the others by their URL.
        where = shown if ".." in key.split("/") else f"s3://{bucket}/{shown}"
        head = f"warning: Skipping file {where}. "
        mine = [line for line in run.err if line.startswith(head)]
        assert len(mine) == 1 and why in mine[0], (key, run.err)
    assert tree_snapshot(dst) == {"good.txt": sha(b"good")}
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == before_parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in (tmp_path / "deep" / "er").iterdir()) == ["dst"]
    assert not Path("/abs").exists()


def test_download_through_symlink_out_of_destination_is_refused(
    sync: Any, s3: S3Client, bucket: str, tmp_path: Path, dst: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dst.mkdir()
    (dst / "link").symlink_to(outside, target_is_directory=True)
    put_objects(s3, bucket, {"link/x.txt": b"x", "link/sub/y": b"y", "fine.txt": b"f"})
    run = sync(f"s3://{bucket}", str(dst))
    assert run.code == 1, run
    assert run.out == [f"download: s3://{bucket}/fine.txt to dst/fine.txt"]
    assert any("link/x.txt" in line and "outside the destination" in line for line in run.err)
    assert list(outside.iterdir()) == []


# -- interrupted download -------------------------------------------------------------------


def test_interrupted_download_leaves_only_a_temp_file(
    s3: S3Client, bucket: str, aws_env: dict[str, str], dst: Path, sync: Any
) -> None:
    data = os.urandom(6 * MiB)
    put_objects(s3, bucket, {"big.bin": data})
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchsync", "sync", "--bwlimit", "1M", f"s3://{bucket}", str(dst)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def partial() -> list[Path]:
            if not dst.is_dir():
                return []
            return [p for p in dst.iterdir() if TMP_RE.match(p.name) and p.stat().st_size > MiB]

        wait_until(partial, timeout=30, message="a partial temp file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-way, not finished
    names = [p.name for p in dst.iterdir()]
    assert "big.bin" not in names
    assert names and all(TMP_RE.match(n) for n in names), names
    assert all(n.startswith(".big.bin.watchsync-tmp-") for n in names)

    rerun = sync(f"s3://{bucket}", str(dst))
    assert rerun.code == 0, rerun
    assert rerun.out == [f"download: s3://{bucket}/big.bin to dst/big.bin"]
    assert tree_snapshot(dst, ignore_temp=True) == {"big.bin": sha(data)}
    # The leftover temp file is never synced anywhere.
    up = sync(str(dst), f"s3://{bucket}", "--delete")
    assert (up.code, up.out) == (0, [])


# -- usage, configuration and connection errors ------------------------------------------------


NO_BUCKET = (
    "fatal error: An error occurred (NoSuchBucket) when calling the ListObjectsV2 operation: "
    "The specified bucket does not exist"
)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{tmp}", "{tmp}/other"], 255, "watchsync: error: sync needs one local directory"),
        (["s3://{bucket}/a", "s3://{bucket}/b"], 255, "watchsync: error: sync between two S3"),
        (["{tmp}/missing", "s3://{bucket}"], 255, "watchsync: error: source directory"),
        (["{tmp}", "s3://no-such-bucket-watchsync"], 1, NO_BUCKET),
        (["s3://no-such-bucket-watchsync", "{tmp}/d"], 1, NO_BUCKET),
        (
            ["{tmp}", "s3://{bucket}", "--endpoint-url", "http://127.0.0.1:{port}"],
            1,
            'fatal error: Could not connect to the endpoint URL: "http://127.0.0.1:{port}/',
        ),
        (["{tmp}", "s3://BAD_bucket"], 255, "watchsync: error: invalid bucket name"),
    ],
)
def test_errors_are_one_line_with_aws_exit_codes(
    sync: Any, bucket: str, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    """aws's codes: 255 when the command cannot start, 1 when S3 ends it (its words)."""
    port = free_port()
    argv = [a.format(tmp=tmp_path, bucket=bucket, port=port) for a in args]
    run = sync(*argv)
    assert run.code == code, run
    assert run.out == []
    assert len(run.err) == 1, run.err
    assert run.err[0].startswith(message.format(port=port)), run.err


# -- checksums --------------------------------------------------------------------------------


def crc32c(data: bytes) -> str:
    """S3's base64 CRC32C of ``data``."""
    import base64

    from awscrt import checksums

    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("native", ["1", "0"])
def test_uploads_carry_a_full_object_crc32c(
    sync: Any,
    s3: S3Client,
    bucket: str,
    src: Path,
    dst: Path,
    native: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small files (native client or boto3) and multipart ones: S3 stores and checked a
    CRC32C of the whole object; downloads verify it and the bytes round-trip."""
    monkeypatch.setenv("WATCHSYNC_NATIVE", native)
    files = {"small.txt": b"small" * 100, "big.bin": os.urandom(9 * MiB)}
    make_tree(src, files)
    assert sync(str(src), f"s3://{bucket}/c").code == 0
    for name, data in files.items():
        head = s3.head_object(Bucket=bucket, Key=f"c/{name}", ChecksumMode="ENABLED")
        assert head.get("ChecksumCRC32C") == crc32c(data), (name, head)
    big = s3.head_object(Bucket=bucket, Key="c/big.bin", ChecksumMode="ENABLED")
    assert big.get("ChecksumType") == "FULL_OBJECT"
    down = sync(f"s3://{bucket}/c", str(dst))
    assert down.code == 0, down
    assert tree_snapshot(dst) == hashes(files)


def test_no_checksum_sends_none(sync: Any, s3: S3Client, bucket: str, src: Path) -> None:
    make_tree(src, {"a.txt": b"a" * 10})
    assert sync(str(src), f"s3://{bucket}", "--no-checksum").code == 0
    head = s3.head_object(Bucket=bucket, Key="a.txt", ChecksumMode="ENABLED")
    assert "ChecksumCRC32C" not in head


# -- failing fast ---------------------------------------------------------------------------


def test_endpoint_gone_mid_sync_stops_the_run_with_one_line(
    s3server: SeaweedServer, s3: S3Client, bucket: str, aws_env: dict[str, str], src: Path
) -> None:
    """The link dies after some uploads: the run stops with exit 1 and one ``fatal error``
    line saying the endpoint is gone, instead of failing the remaining files one at a time."""
    from netproxy import NetProxy

    make_tree(src, {f"d{i % 20}/f{i}.txt": b"x" * 10 for i in range(1500)})
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        proxy.delay(0.02)  # slow enough that the cut comes mid-run
        endpoint = ["--endpoint-url", proxy.endpoint]
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchsync", "sync", str(src), f"s3://{bucket}", *endpoint],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(
                lambda: s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) >= 20,
                timeout=30,
                message="the first uploads",
            )
            proxy.cut()
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    lines = err.splitlines()
    assert proc.returncode == 1, lines[-5:]  # aws's code for a run S3 ended
    assert lines[-1].startswith("fatal error: "), lines[-5:]
    # botocore's words when it made the last attempt, ours when the native client did
    assert "Could not connect to the endpoint URL" in lines[-1] or "stopped answering" in lines[-1]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] < 1500  # really cut mid-run
    assert len(lines) < 200, f"{len(lines)} lines"


# -- silent damage (issue 8) -----------------------------------------------------------------


def test_folder_marker_objects_are_ignored(sync: Any, s3: S3Client, bucket: str, dst: Path) -> None:
    """Zero-byte ``p/`` and ``p/sub/`` (what S3 consoles create) are nothing, as for aws:
    no warning, exit 0, and the deletes still run."""
    put_objects(s3, bucket, {"p/": b"", "p/sub/": b"", "p/sub/a.txt": b"a"})
    make_tree(dst, {"extra.txt": b"not in the source"})
    run = sync(f"s3://{bucket}/p", str(dst), "--delete")
    assert run.code == 0, run
    assert run.err == []
    assert sorted(run.out) == [
        "delete: dst/extra.txt",
        f"download: s3://{bucket}/p/sub/a.txt to dst/sub/a.txt",
    ]
    assert tree_snapshot(dst) == hashes({"sub/a.txt": b"a"})


def test_delete_never_goes_through_a_symlinked_directory(
    sync: Any, s3: S3Client, bucket: str, dst: Path
) -> None:
    """``dl/alias -> sub``: ``alias/f.txt`` is ``sub/f.txt``, a file in the source."""
    put_objects(s3, bucket, {"sub/f.txt": b"keep me"})
    make_tree(dst, {"sub/f.txt": b"keep me", "old.txt": b"gone from the source"})
    (dst / "alias").symlink_to("sub", target_is_directory=True)
    sync(f"s3://{bucket}", str(dst), "--delete")  # downloads sub/f.txt (newer in S3)
    run = sync(f"s3://{bucket}", str(dst), "--delete")
    assert (dst / "sub/f.txt").read_bytes() == b"keep me"
    assert not (dst / "old.txt").exists()
    assert run.code == 1, run
    assert any("alias/f.txt" in line and "symlink" in line for line in run.err), run


def _open_here(path: Path) -> bool:
    """Whether this process has ``path`` open (the upload is reading it)."""
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd) == str(path):
                return True
    return False


@pytest.mark.parametrize("keeps_growing", [False, True], ids=["grows-once", "keeps-growing"])
def test_file_growing_during_upload_is_sent_again_or_reported(
    sync: Any, s3: S3Client, bucket: str, src: Path, keeps_growing: bool
) -> None:
    """A file appended to while it is uploaded never ends up in S3 as a silent prefix."""
    log = src / "grow.log"
    log.write_bytes(os.urandom(9 * 1024 * 1024))  # multipart
    done = threading.Event()

    def writer() -> None:
        wait_until(lambda: _open_here(log) or done.is_set(), timeout=30, interval=0.001)
        while not done.is_set():
            with log.open("ab") as f:
                f.write(os.urandom(64 * 1024))
            if not keeps_growing:
                return
            done.wait(0.02)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        run = sync(str(src), f"s3://{bucket}/p", "--bwlimit", "30M")
    finally:
        done.set()
        thread.join()
    if keeps_growing:
        assert run.code == 1, run
        # Reported either way: the file kept changing after the re-sends, or the server
        # refused a body that no longer matched the checksum computed before sending.
        assert any(
            "grow.log" in line and ("kept changing" in line or "BadDigest" in line)
            for line in run.err
        ), run
    else:
        assert run.code == 0, run
        assert bucket_snapshot(s3, bucket, "p/") == {"grow.log": sha(log.read_bytes())}
