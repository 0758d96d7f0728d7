"""Long uploads, outages, hard links and a full state disk, end to end: a real agent, real
files and inotify, a real SeaweedFS (behind the loopback proxy where the network is cut or
slowed).

Each test reproduces one way the agent went wrong with large or busy files and long
outages, in a small and slow form (a file of a few MiB at 512 KiB/s, a pass that lists the
prefix every half second): the CPU a paused folder spends while a pass is due; a conflict
copy deleted while its upload still ran; a file sent again by every pass during its upload;
a file appended without pause, in S3 about once a minute.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import (
    assert_in_sync,
    bucket_listing,
    bucket_snapshot,
    counters,
    folder_config,
    running_agent,
    tree_snapshot,
    wait_idle,
)
from helpers import wait_until
from netproxy import NetProxy
from s3server import SeaweedServer

from watchsync.agent.config import FolderConfig, S3Settings
from watchsync.agent.folder import Folder

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "data"
# A paused folder sleeps between probes and status ticks; spinning took a whole core.
PAUSED_CPU_MAX = 0.1  # share of one core, over the measured window
RATE = 512 * 1024  # --bwlimit of the slow tests: bytes/s, uploads and downloads together
MIB = 1024 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    """The server's endpoint, with the AWS environment (credentials) pointing at it."""
    return s3server.endpoint


def _cpu_share(seconds: float) -> float:
    """The share of one core this process (the agent's threads) spends over ``seconds``."""
    cpu, wall = time.process_time(), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return (time.process_time() - cpu) / (time.monotonic() - wall)


def test_a_paused_folder_with_a_pass_due_sleeps(
    root: Path,
    state_dir: Path,
    bucket: str,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
) -> None:
    """A periodic pass that falls due while S3 does not answer (or while a person paused
    the folder) waits for the pause to end; the runner sleeps until the next probe or
    status tick instead of turning with no wait at all."""
    url = f"s3://{bucket}/{PREFIX}"
    (root / "a.txt").write_text("a")
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        cfg = folder_config(root, url, proxy.endpoint, reconcile_interval=0.5)
        with running_agent(cfg, state_dir) as agent:
            assert_in_sync(s3, bucket, PREFIX, root)
            proxy.cut()
            (root / "b.txt").write_text("b")  # sent, found unreachable: paused
            wait_until(lambda: agent.state == "paused", timeout=20, message="the pause")
            time.sleep(1.0)  # the periodic pass falls due during the cut
            share = _cpu_share(3.0)
            assert share < PAUSED_CPU_MAX, f"paused by an outage: {share:.0%} of a core"
            proxy.restore()
            assert_in_sync(s3, bucket, PREFIX, root, timeout=60)

            agent.steering.pause()
            time.sleep(1.0)  # a pass falls due while paused by a person
            share = _cpu_share(3.0)
            assert share < PAUSED_CPU_MAX, f"paused by ctl: {share:.0%} of a core"
            agent.steering.resume()
            (root / "c.txt").write_text("c")
            assert_in_sync(s3, bucket, PREFIX, root, timeout=30)


def _slow(
    root: Path, url: str, endpoint: str, *, rate: int = RATE, **overrides: object
) -> FolderConfig:
    """A folder whose transfers go at ``rate`` and whose passes (each half second) list the
    prefix: passes run while a transfer of a few MiB is on the wire."""
    s3 = S3Settings(endpoint_url=endpoint, max_concurrency=8, bwlimit=rate)
    return folder_config(root, url, endpoint, s3=s3, reconcile_interval=0.5, **overrides)


def _body(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_large_conflict_copy_survives_the_passes_during_its_upload(
    root: Path, state_dir: Path, bucket: str, endpoint: str, s3: S3Client
) -> None:
    """The file and its object both replaced: the S3 version is kept as a conflict copy,
    downloaded then uploaded (seconds each).  The passes meanwhile list a copy that is not
    in S3 yet: it is pending, not deleted in S3 (before, recorded at its download, it was
    deleted here, then in S3 too: the S3 side's edit was gone everywhere)."""
    url = f"s3://{bucket}/{PREFIX}"
    size = 3 * MIB // 2
    (root / "doc.bin").write_bytes(os.urandom(size))
    theirs, mine = os.urandom(size), os.urandom(size)
    with running_agent(_slow(root, url, endpoint, delete=True), state_dir) as agent:
        assert_in_sync(s3, bucket, PREFIX, root, timeout=60)
        agent.steering.pause()  # both edits land before the agent looks
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/doc.bin", Body=theirs)
        (root / "doc.bin").write_bytes(mine)
        wait_until(lambda: agent.pending_count() > 0, timeout=10, message="the edit queued")
        agent.steering.resume()
        [copy] = wait_until(
            lambda: [p.name for p in root.glob("doc.conflict-*")],
            timeout=30,
            message="the conflict copy's download",
        )
        wait_until(
            lambda: f"{copy}" in bucket_listing(s3, bucket, PREFIX),
            timeout=60,
            message="the conflict copy's upload",
        )
        passes = agent.reconciles
        wait_until(lambda: agent.reconciles >= passes + 3, timeout=30, message="three passes")
        wait_idle(agent)
        assert (root / copy).read_bytes() == theirs
        assert _body(s3, bucket, f"{PREFIX}/{copy}") == theirs
        assert (root / "doc.bin").read_bytes() == mine
        assert_in_sync(s3, bucket, PREFIX, root, timeout=30)


def _sent_while(
    proxy: NetProxy, agent: Folder, s3: S3Client, bucket: str, path: Path, write: Callable[[], None]
) -> int:
    """Bytes sent to S3 from ``write()`` until the file is in S3 at its final size, the
    folder idle and three more passes over."""
    before = proxy.sent
    write()
    size = path.stat().st_size
    wait_until(
        lambda: bucket_listing(s3, bucket, PREFIX).get(path.name, {}).get("Size") == size,
        timeout=60,
        message="the file in S3",
    )
    passes = agent.reconciles
    wait_until(lambda: agent.reconciles >= passes + 3, timeout=30, message="three passes")
    wait_idle(agent)
    return proxy.sent - before


def test_a_large_new_file_is_sent_once_while_passes_list_it(
    root: Path,
    state_dir: Path,
    bucket: str,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
) -> None:
    """A new file large enough to go in parts, with passes listing every half second while
    it is on the wire: each pass sees it neither synced nor in S3, and leaves it to its
    upload (before, each queued it again "only if absent": every part was sent a second
    time, refused on completion)."""
    url = f"s3://{bucket}/{PREFIX}"
    size = 9 * MIB  # two parts
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        cfg = _slow(root, url, proxy.endpoint, rate=4 * RATE)
        with running_agent(cfg, state_dir) as agent:
            path = root / "new.bin"
            sent = _sent_while(proxy, agent, s3, bucket, path, lambda: _write(path, size))
            assert sent < 3 * size // 2, f"{sent / size:.1f} times the file was sent"
            assert agent.last_error is None
            assert bucket_snapshot(s3, bucket, PREFIX) == tree_snapshot(root)


def test_a_file_appended_while_it_is_sent_is_sent_once_more(
    root: Path,
    state_dir: Path,
    bucket: str,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
) -> None:
    """A file appended to while it is sent (in one request): the request carries the size
    stat'ed, no byte more (before, the appended bytes went on the wire after the body and
    the server refused the connection's next request, 400, parked for 30 s); the change is
    one more send, conditional on the object just stored: no conflict, no error."""
    url = f"s3://{bucket}/{PREFIX}"
    size = 2 * MIB
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        cfg = _slow(root, url, proxy.endpoint)
        with running_agent(cfg, state_dir) as agent:
            path = root / "grows.bin"

            def write_then_append() -> None:
                before = proxy.sent
                _write(path, size)
                wait_until(lambda: proxy.sent - before > size // 4, timeout=30, message="sent")
                with path.open("ab") as f:
                    f.write(b"appended while it was sent")

            sent = _sent_while(proxy, agent, s3, bucket, path, write_then_append)
            assert sent < 5 * size // 2, f"{sent / size:.1f} times the file was sent"
            assert counters(agent).get("uploaded_files") == 2
            assert counters(agent).get("conflicts", 0) == 0
            assert not list(root.glob("*.conflict-*"))
            assert agent.last_error is None  # no request refused on the way
            assert_in_sync(s3, bucket, PREFIX, root, timeout=30)


def _write(path: Path, size: int) -> None:
    path.write_bytes(os.urandom(size))


def test_a_file_appended_without_pause_reaches_s3_at_a_steady_cadence(
    root: Path, state_dir: Path, bucket: str, endpoint: str, s3: S3Client
) -> None:
    """A log appended every 20 ms never goes quiet for the (default) debounce: S3 follows it
    every few seconds while it grows (before, about once a minute)."""
    url = f"s3://{bucket}/{PREFIX}"
    stop = threading.Event()

    def append() -> None:
        with (root / "app.log").open("a") as f:
            while not stop.is_set():
                f.write("a line of the log\n")
                f.flush()
                stop.wait(0.02)

    cfg = folder_config(root, url, endpoint, debounce=0.5)  # far above the writes' pauses
    with running_agent(cfg, state_dir) as agent:
        writer = threading.Thread(target=append)
        writer.start()
        sizes: set[int] = set()
        try:

            def versions() -> int:
                size = bucket_listing(s3, bucket, PREFIX).get("app.log", {}).get("Size")
                if size is not None:
                    sizes.add(size)
                return len(sizes)

            wait_until(lambda: versions() >= 3, timeout=20, message="three versions in S3")
            assert writer.is_alive()  # all while the file kept growing
        finally:
            stop.set()
            writer.join()
        assert_in_sync(s3, bucket, PREFIX, root, timeout=30)
        wait_idle(agent)
        assert agent.last_error is None


def test_a_backlog_caught_in_a_server_freeze_is_sent_once(
    root: Path,
    state_dir: Path,
    bucket: str,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
) -> None:
    """The server stops answering (SIGSTOP) with a backlog of uploads queued and passes
    due every second; the requests it holds are stored once it goes on, their answers
    long lost.  Each file is sent again only where its own answer was lost, and told and
    counted once (before, every pass during the catch-up planned the files still being
    sent, each sent a second time: about twice the bytes, twice the lines)."""
    url = f"s3://{bucket}/{PREFIX}"
    count, size = 120, 64 * 1024
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        s3s = S3Settings(
            endpoint_url=proxy.endpoint,
            max_concurrency=8,
            bwlimit=2 * MIB,  # a backlog forms
            read_timeout=2,
            connect_timeout=2,
        )
        cfg = folder_config(root, url, proxy.endpoint, s3=s3s, reconcile_interval=1.0)
        with running_agent(cfg, state_dir) as agent:
            before = proxy.sent
            for i in range(count):
                (root / f"f{i:03}.bin").write_bytes(os.urandom(size))
            wait_until(lambda: agent.pending_count() > count // 4, timeout=10, message="backlog")
            os.killpg(s3server.pid, signal.SIGSTOP)
            try:
                time.sleep(5)  # the freeze: longer than two read timeouts
            finally:
                os.killpg(s3server.pid, signal.SIGCONT)
            assert_in_sync(s3, bucket, PREFIX, root, timeout=120)
            wait_idle(agent)
            sent = proxy.sent - before
            assert counters(agent)["uploaded_files"] == count
            assert sent < 1.4 * count * size, f"{sent / (count * size):.2f} times the backlog"


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory on a tmpfs of its own, 2 MiB, so that it can be filled."""
    path = tmp_path / "small-state"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_state_disk_is_said_in_one_line_and_shown(
    root: Path,
    small_state_dir: Path,
    bucket: str,
    endpoint: str,
    s3: S3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state's disk fills up while files change: the agent says so in clear lines,
    with no traceback, shows the error, and once there is space again every change made
    meanwhile reaches S3 (before, a traceback for every batch of ready paths and every
    failed pass)."""
    url = f"s3://{bucket}/{PREFIX}"
    cfg = folder_config(root, url, endpoint, reconcile_interval=1.0)
    with running_agent(cfg, small_state_dir) as agent:
        filler = small_state_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as f:
            f.write(bytes(MIB * 2))
        for i in range(20):
            (root / f"f{i:02}.txt").write_text(f"file {i} " * 100)
        wait_until(lambda: agent.state == "error", timeout=30, message="the error shown")
        assert "space on the state's disk" in (agent.last_error or "")
        filler.unlink()
        assert_in_sync(s3, bucket, PREFIX, root, timeout=60)
        wait_until(lambda: agent.state == "watching", timeout=30, message="the error cleared")
    full = [r for r in caplog.records if "disk is full" in r.getMessage() or r.exc_info]
    assert full, "the full disk was said"
    assert not [r for r in full if r.exc_info], "no traceback"
