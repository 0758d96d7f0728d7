"""Long uploads, outages, hard links and a full state disk, end to end: a real agent, real
files and inotify, a real SeaweedFS (behind the loopback proxy where the network is cut or
slowed).

Each test reproduces one way the agent went wrong with large or busy files and long
outages, in a small and slow form: the CPU a paused folder spends while a pass is due.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import assert_in_sync, folder_config, running_agent
from helpers import wait_until
from netproxy import NetProxy
from s3server import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "data"
# A paused folder sleeps between probes and status ticks; spinning took a whole core.
PAUSED_CPU_MAX = 0.1  # share of one core, over the measured window


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


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
