"""Robustness end to end, against the real SeaweedFS: partial downloads left by a stopped or
killed run are removed, keys named like our temp files sync like any other, the agent keeps
going with a corrupt or vanished state database, and far-future file times are stored."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from agent_helpers import (
    AgentProcess,
    assert_in_sync,
    bucket_listing,
    folder_config,
    running_agent,
    state_db,
    wait_idle,
)
from helpers import wait_until

from watchsync.cli.main import main
from watchsync.fs import tempfiles

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PREFIX = "data"
DEAD_PID = 0x7FFFFFFF  # above any pid_max: no such process
USER_KEY = ".notes.txt.watchsync-tmp-1234"  # a user's file that merely looks like ours


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


@pytest.fixture
def sync(
    aws_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Any]:
    """``sync(*args)`` runs ``watchsync sync *args`` in-process: (exit code, stdout lines).
    It runs in ``tmp_path``, so the folder's files print as ``folder/NAME``, as aws prints
    them."""
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger()
    saved = logger.handlers[:], logger.level

    def run(*args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        code = main(["sync", *args])
        return code, capsys.readouterr().out.splitlines()

    yield run
    logger.handlers[:], level = saved
    logger.setLevel(level)


def temp_files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if tempfiles.temp_owner(p.name) is not None
    )


def partial_download(root: Path) -> bool:
    return any(
        tempfiles.temp_owner(p.name) is not None and p.stat().st_size > MiB
        for p in root.rglob("*")
        if p.is_file()
    )


# -- watchsync sync ----------------------------------------------------------------------------


def test_sync_removes_leftovers_and_syncs_a_key_named_like_a_temp_file(
    s3: S3Client, bucket: str, root: Path, sync: Any
) -> None:
    leftover = root / "sub" / tempfiles.temp_name("big.bin", "0123abcd", pid=DEAD_PID)
    leftover.parent.mkdir()
    leftover.write_bytes(b"half a download")
    s3.put_object(Bucket=bucket, Key=USER_KEY, Body=b"mine")
    code, out = sync(f"s3://{bucket}", str(root))
    assert code == 0 and out == [f"download: s3://{bucket}/{USER_KEY} to folder/{USER_KEY}"]
    assert (root / USER_KEY).read_bytes() == b"mine"
    assert temp_files(root) == []
    assert sync(f"s3://{bucket}", str(root)) == (0, [])  # not downloaded again
    assert sync(str(root), f"s3://{bucket}") == (0, [])  # nor uploaded


def test_sync_sigterm_mid_download_leaves_no_partial_file(
    s3: S3Client, bucket: str, aws_env: dict[str, str], root: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(6 * MiB))
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchsync", "sync", "--bwlimit", "1M", f"s3://{bucket}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: partial_download(root), timeout=30, message="a partial temp file")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.listdir(root) == []


# -- the agent ---------------------------------------------------------------------------------


def test_agent_removes_leftovers_and_syncs_a_file_named_like_a_temp_file(
    root: Path, tmp_path: Path, s3: S3Client, bucket: str, aws_env: dict[str, str], s3server: Any
) -> None:
    url = f"s3://{bucket}/{PREFIX}"
    (root / tempfiles.temp_name("a.bin", "89abcdef", pid=DEAD_PID)).write_bytes(b"half")
    (root / USER_KEY).write_bytes(b"mine")
    cfg = folder_config(root, url, s3server.endpoint)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_idle(agent)
        assert temp_files(root) == []
        assert sorted(bucket_listing(s3, bucket, PREFIX)) == [USER_KEY]
        assert_in_sync(s3, bucket, PREFIX, root)


def test_agent_sigterm_mid_download_leaves_no_partial_file(
    root: Path, tmp_path: Path, s3: S3Client, bucket: str, aws_env: dict[str, str], s3server: Any
) -> None:
    url = f"s3://{bucket}/{PREFIX}"
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/big.bin", Body=os.urandom(6 * MiB))
    agent = AgentProcess(
        root,
        url,
        tmp_path / "state",
        env=dict(aws_env),
        endpoint=s3server.endpoint,
        log=tmp_path / "agent.log",
        extra=["--bwlimit", "1M", "--drain-timeout", "1"],
    )
    with agent:
        wait_until(lambda: partial_download(root), timeout=30, message="a partial temp file")
        agent.signal(signal.SIGTERM)
        agent.wait(30)
    assert temp_files(root) == [], agent.log_text()
    assert not (root / "big.bin").exists()
    assert state_db(tmp_path / "state", root, url).exists()


def test_agent_starts_again_after_a_corrupt_state_database(
    root: Path, tmp_path: Path, s3: S3Client, bucket: str, aws_env: dict[str, str], s3server: Any
) -> None:
    url = f"s3://{bucket}/{PREFIX}"
    db = state_db(tmp_path / "state", root, url)
    db.parent.mkdir()
    db.write_bytes(b"\x00garbage after a power cut" * 300)
    (root / "local.txt").write_bytes(b"here")
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/remote.txt", Body=b"there")
    cfg = folder_config(root, url, s3server.endpoint, delete=True)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_idle(agent)
        assert "corrupt" in (agent.last_error or "") and "no deletes" in (agent.last_error or "")
        assert (root / "remote.txt").read_bytes() == b"there"
        assert_in_sync(s3, bucket, PREFIX, root)
        assert [p.name for p in db.parent.iterdir() if ".corrupt-" in p.name]
        status = agent.store_().status.fields()
        assert "corrupt" in str(status.get("last_error"))


def test_agent_goes_on_when_its_state_database_is_removed(
    root: Path, tmp_path: Path, s3: S3Client, bucket: str, aws_env: dict[str, str], s3server: Any
) -> None:
    url = f"s3://{bucket}/{PREFIX}"
    (root / "a.txt").write_bytes(b"a")
    cfg = folder_config(root, url, s3server.endpoint)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_idle(agent)
        db = state_db(tmp_path / "state", root, url)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/b.txt", Body=b"b")
        before = agent.reconciles
        agent.request_reconcile()
        wait_until(lambda: agent.reconciles > before, timeout=30, message="a reconcile")
        wait_until(lambda: (root / "b.txt").exists(), timeout=30, message="b.txt downloaded")
        assert db.exists()
        assert_in_sync(s3, bucket, PREFIX, root)


def test_agent_directory_replaced_by_a_file_does_not_spin(
    root: Path, tmp_path: Path, s3: S3Client, bucket: str, aws_env: dict[str, str], s3server: Any
) -> None:
    """SeaweedFS refuses ``PUT d`` with If-None-Match (412) while HEAD says 404, even once
    ``d/x`` is gone (its filer keeps the directory name): the file is sent without the
    condition once HEAD confirms there is no object, the delete of ``d/x`` is not stalled,
    and the two sides converge."""
    url = f"s3://{bucket}/{PREFIX}"
    (root / "d").mkdir()
    (root / "d" / "x").write_bytes(b"x")
    cfg = folder_config(root, url, s3server.endpoint, delete=True)
    with running_agent(cfg, tmp_path / "state") as agent:
        wait_idle(agent)
        assert sorted(bucket_listing(s3, bucket, PREFIX)) == ["d/x"]
        (root / "d" / "x").unlink()
        (root / "d").rmdir()
        (root / "d").write_bytes(b"a file now")
        wait_until(
            lambda: sorted(bucket_listing(s3, bucket, PREFIX)) == ["d"],
            timeout=60,
            message="d/x deleted and d uploaded",
        )
        wait_idle(agent)
        body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}/d")["Body"].read()
        assert body == b"a file now"
