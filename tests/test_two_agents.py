"""Two machines on one prefix: two real :class:`Folder` agents in-process, on two folders
and one SeaweedFS prefix.  What one agent writes must never destroy a version the other
wrote and has not seen yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import (
    assert_in_sync,
    bucket_snapshot,
    counters,
    folder_config,
    running_agent,
    sha256_bytes,
    tree_snapshot,
    wait_idle,
)
from helpers import wait_until
from s3server import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "shared"


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    return s3server.endpoint


@pytest.fixture
def url(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


def folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


def get(s3: S3Client, bucket: str, rel: str) -> bytes | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/{rel}")["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    try:
        return body.read()
    finally:
        body.close()


def test_stale_delete_never_kills_a_newer_edit(
    tmp_path: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """B edits ``a04.txt`` and uploads it; A, which has not seen that edit, deletes its copy.
    A's delete is conditional on the ETag it synced: it loses, and B's edit comes to A."""
    a, b = folders(tmp_path)
    for n in range(1, 6):
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/a0{n}.txt", Body=b"v1")
    cfg_a = folder_config(a, url, endpoint, delete=True)
    cfg_b = folder_config(b, url, endpoint, delete=True)
    with (
        running_agent(cfg_a, tmp_path / "state-a") as agent_a,
        running_agent(cfg_b, tmp_path / "state-b") as agent_b,
    ):
        wait_until(lambda: (a / "a04.txt").is_file() and (b / "a04.txt").is_file(), timeout=15)
        (b / "a04.txt").write_bytes(b"v2: B's edit")
        wait_until(lambda: get(s3, bucket, "a04.txt") == b"v2: B's edit", timeout=15)
        wait_idle(agent_b)
        (a / "a04.txt").unlink()  # A has not reconciled since B's edit
        wait_until(lambda: (a / "a04.txt").is_file(), timeout=15, message="B's edit at A")
        assert (a / "a04.txt").read_bytes() == b"v2: B's edit"
        wait_idle(agent_a)
        assert counters(agent_a)["deleted_remote"] == 0
        # B's next pass keeps its file: the object is still there.
        agent_b.request_reconcile()
        reconciles = agent_b.reconciles
        wait_until(lambda: agent_b.reconciles > reconciles, timeout=15)
        wait_idle(agent_b)
        assert (b / "a04.txt").read_bytes() == b"v2: B's edit"
    assert get(s3, bucket, "a04.txt") == b"v2: B's edit"
    assert tree_snapshot(a) == tree_snapshot(b) == bucket_snapshot(s3, bucket, PREFIX)
    assert bucket_snapshot(s3, bucket, PREFIX)["a04.txt"] == sha256_bytes(b"v2: B's edit")


def test_unchanged_object_is_still_deleted(
    tmp_path: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """The condition holds when nobody wrote meanwhile: the delete reaches both sides."""
    a, b = folders(tmp_path)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/gone.txt", Body=b"old")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/keep.txt", Body=b"keep")
    cfg_a = folder_config(a, url, endpoint, delete=True)
    cfg_b = folder_config(
        b, url, endpoint, delete=True, reconcile_interval=0.5, full_list_interval=0.0
    )
    with (
        running_agent(cfg_a, tmp_path / "state-a") as agent_a,
        running_agent(cfg_b, tmp_path / "state-b"),
    ):
        wait_until(lambda: (b / "gone.txt").is_file() and (a / "gone.txt").is_file(), timeout=15)
        (a / "gone.txt").unlink()
        wait_until(lambda: get(s3, bucket, "gone.txt") is None, timeout=15)
        wait_until(lambda: not (b / "gone.txt").exists(), timeout=15)
        wait_idle(agent_a)
        assert counters(agent_a)["deleted_remote"] == 1
    assert_in_sync(s3, bucket, PREFIX, a)
    assert sorted(os.listdir(b)) == ["keep.txt"]


def test_large_file_changed_on_both_sides_keeps_both(
    tmp_path: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """Multipart uploads are conditional too: A's upload of its edit finds B's version
    (not the one A synced) and keeps both instead of overwriting it."""
    a, b = folders(tmp_path)
    size = 9 * 1024 * 1024  # multipart
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/big.bin", Body=b"0" * size)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/other.txt", Body=b"o")
    cfg_a = folder_config(a, url, endpoint)
    cfg_b = folder_config(b, url, endpoint)
    theirs, mine = os.urandom(size), os.urandom(size + 1)
    with (
        running_agent(cfg_a, tmp_path / "state-a") as agent_a,
        running_agent(cfg_b, tmp_path / "state-b") as agent_b,
    ):
        wait_until(lambda: (a / "big.bin").is_file() and (b / "big.bin").is_file(), timeout=15)
        (b / "big.bin").write_bytes(theirs)
        wait_until(lambda: get(s3, bucket, "big.bin") == theirs, timeout=30)
        wait_idle(agent_b)
        (a / "big.bin").write_bytes(mine)  # A has not seen B's version
        wait_until(lambda: len(os.listdir(a)) == 3, timeout=30, message="a conflict copy at A")
        wait_idle(agent_a)
        assert counters(agent_a)["conflicts"] == 1
    (copy,) = [n for n in os.listdir(a) if ".conflict-" in n]
    assert (a / "big.bin").read_bytes() == mine
    assert (a / copy).read_bytes() == theirs
    assert get(s3, bucket, "big.bin") == mine
    assert get(s3, bucket, copy) == theirs
