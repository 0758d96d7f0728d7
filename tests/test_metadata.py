"""A file's mtime (always) and mode (with ``--keep-mode``) kept in its object's metadata in
rclone's format, restored on download, and used by the size/mtime rules: on the native,
boto3 and multipart paths, with ``sync`` and the agent, against the real SeaweedFS server.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agent_helpers import counters, folder_config, running_agent, wait_idle
from s3server import SeaweedServer

from watchsync.s3.client import mtime_ns
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.transfer import open_transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
JAN2 = 1_577_923_200_123_456_789  # 2020-01-02 00:00:00.123456789 UTC, in ns
UMASK = os.umask(0o022)
os.umask(UMASK)


def _file(root: Path, rel: str, data: bytes, *, mode: int, mtime: int) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, ns=(mtime, mtime))
    return path


def _looks(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_mtime_ns


@pytest.mark.parametrize("client", ["native", "boto3"])
def test_mtime_and_mode_survive_a_round_trip(
    client: str,
    sync_cli: Any,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if client == "boto3":
        monkeypatch.setenv("WATCHSYNC_NATIVE", "0")
    src, url = tmp_path / "src", f"s3://{bucket}/p"
    files = {
        "bin/tool.sh": (b"#!/bin/sh\necho hi\n", 0o755),  # -rwxr-xr-x 2020-01-02
        "big.bin": (os.urandom(9 * MiB), 0o750),  # multipart
        "notes.txt": (b"notes\n", 0o640),
    }
    for rel, (data, mode) in files.items():
        _file(src, rel, data, mode=mode, mtime=JAN2)
    assert sync_cli(str(src), url, "--keep-mode")[0] == 0

    head = s3.head_object(Bucket=bucket, Key="p/bin/tool.sh")["Metadata"]
    assert head == {"mtime": "1577923200.123456789", "mode": "100755"}  # rclone's format
    assert s3.head_object(Bucket=bucket, Key="p/big.bin")["Metadata"]["mode"] == "100750"

    kept, plain = tmp_path / "kept", tmp_path / "plain"
    assert sync_cli(url, str(kept), "--keep-mode")[0] == 0
    assert sync_cli(url, str(plain))[0] == 0
    for rel, (_data, mode) in files.items():
        assert _looks(kept / rel) == (mode, JAN2), rel
        assert _looks(plain / rel) == (0o666 & ~UMASK, JAN2), rel  # mtime always, mode opt-in

    # The kept mtimes say both sides are current, though LastModified is years later.
    assert sync_cli(url, str(kept), "--keep-mode") == (0, [])
    assert sync_cli(str(kept), url, "--keep-mode") == (0, [])


def test_mode_is_not_kept_unless_asked(
    sync_cli: Any, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    _file(tmp_path / "src", "tool.sh", b"x", mode=0o755, mtime=JAN2)
    assert sync_cli(str(tmp_path / "src"), f"s3://{bucket}")[0] == 0
    assert s3.head_object(Bucket=bucket, Key="tool.sh")["Metadata"] == {
        "mtime": "1577923200.123456789"
    }


def test_an_rclone_written_objects_mtime_is_honoured(
    sync_cli: Any, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    """rclone's own header (``X-Amz-Meta-Mtime``, seconds with up to nine decimals)."""
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"v1", Metadata={"Mtime": "1577923200.5"})
    dst = tmp_path / "dst"
    assert sync_cli(f"s3://{bucket}", str(dst))[0] == 0
    assert (dst / "doc.txt").stat().st_mtime_ns == 1_577_923_200_500_000_000
    # rclone writes a same-size version of an older file (LastModified newer than the local
    # file, the kept mtime older): LastModified alone would download it, the kept mtime not.
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"v2", Metadata={"Mtime": "1577923100"})
    assert sync_cli(f"s3://{bucket}", str(dst)) == (0, [])
    # ... and a newer one is downloaded, taking its kept mtime.
    s3.put_object(Bucket=bucket, Key="doc.txt", Body=b"v3", Metadata={"Mtime": "1577923300"})
    code, out = sync_cli(f"s3://{bucket}", str(dst))
    assert code == 0 and len(out) == 1 and out[0].startswith("download: ")
    assert (dst / "doc.txt").read_bytes() == b"v3"
    assert (dst / "doc.txt").stat().st_mtime_ns == 1_577_923_300 * 10**9


def test_objects_of_other_tools_behave_as_before(
    sync_cli: Any, s3: S3Client, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"aws wrote this")
    dst = tmp_path / "dst"
    assert sync_cli(f"s3://{bucket}", str(dst))[0] == 0
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"][0]["LastModified"]
    assert (dst / "a.txt").stat().st_mtime_ns == mtime_ns(listed)  # LastModified, as aws
    assert sync_cli(f"s3://{bucket}", str(dst)) == (0, [])


def test_a_file_dated_in_the_future_is_sent_once(
    sync_cli: Any, bucket: str, tmp_path: Path
) -> None:
    """aws re-sends it on every run (its mtime stays newer than LastModified); the kept
    mtime says the object already holds it."""
    later = (int(time.time()) + 86_400) * 10**9
    _file(tmp_path / "src", "future.txt", b"from tomorrow", mode=0o644, mtime=later)
    code, out = sync_cli(str(tmp_path / "src"), f"s3://{bucket}")
    assert code == 0 and len(out) == 1
    assert sync_cli(str(tmp_path / "src"), f"s3://{bucket}") == (0, [])


def test_the_agent_restores_a_kept_mtime_and_does_not_send_the_file_back(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    aws_env: dict[str, str],
) -> None:
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"from rclone",
                  Metadata={"Mtime": "1577923200.25"})  # fmt: skip
    root, state = tmp_path / "folder", tmp_path / "state"
    root.mkdir()
    cfg = folder_config(root, f"s3://{bucket}/p", s3server.endpoint)
    with running_agent(cfg, state) as agent:
        wait_idle(agent)
        assert (root / "doc.txt").stat().st_mtime_ns == 1_577_923_200_250_000_000
    etag = s3.head_object(Bucket=bucket, Key="p/doc.txt")["ETag"]
    # A restart walks the folder whole: a state that did not record the kept mtime would
    # read the file as changed here and send it back.
    with running_agent(cfg, state) as agent:
        wait_idle(agent)
        assert counters(agent).get("uploaded_files", 0) == 0
    assert s3.head_object(Bucket=bucket, Key="p/doc.txt")["ETag"] == etag


def test_a_renames_server_side_copy_keeps_the_files_mtime(
    s3: S3Client, bucket: str, tmp_path: Path, aws_env: dict[str, str]
) -> None:
    """A copy that sets a new Content-Type replaces the source's metadata: it carries the
    renamed file's own mtime (and mode under keep_mode)."""
    _file(tmp_path, "old.txt", b"text", mode=0o600, mtime=JAN2)
    where = S3Url.parse(f"s3://{bucket}/p")
    with open_transfer(S3Settings(keep_mode=True), where, tmp_path) as transfer:
        transfer.upload("old.txt")
        os.rename(tmp_path / "old.txt", tmp_path / "new.md")
        transfer.copy("old.txt", "new.md")
    kept = s3.head_object(Bucket=bucket, Key="p/new.md")
    assert kept["ContentType"] == "text/markdown"
    assert kept["Metadata"] == {"mtime": "1577923200.123456789", "mode": "100600"}
