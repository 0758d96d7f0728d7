"""Logs for journald and for people: priorities the journal can filter on, the folder named
on action lines, no conflict reported that did not happen, an upload told and counted once,
a missing bucket and a missing folder said plainly (the folder's warning repeated)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_helpers import folder_config
from helpers import wait_until
from s3server import SeaweedServer
from service_helpers import agent_env
from world import World

from watchsync.agent.folder import Folder
from watchsync.core.model import Condition, Item

MISSING = "does not exist (a disk not mounted yet?); waiting for it"


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    return s3server.endpoint


def test_under_journald_lines_carry_their_priority_and_no_time(
    s3server: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    with log.open("wb") as stream:
        st = os.fstat(stream.fileno())
        env = agent_env(s3server, tmp_path) | {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "watchsync",
                "watch",
                str(tmp_path / "not-mounted"),
                f"s3://{bucket}/p",
                "--endpoint-url",
                s3server.endpoint,
                "--state-dir",
                str(tmp_path / "state"),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stream,
        )
        try:
            wait_until(lambda: MISSING in log.read_text(), 30, 0.1, "the missing folder's line")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    lines = log.read_text().splitlines()
    assert lines and all(re.match(r"<[0-7]>[A-Z]+ watchsync", line) for line in lines), lines
    [warning] = [line for line in lines if MISSING in line]
    assert warning.startswith("<4>WARNING ")
    assert any(line.startswith("<6>INFO ") for line in lines)


def test_without_journald_lines_keep_their_time(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "watchsync", "watch", "--config", str(tmp_path / "none.toml")],
        env={**os.environ, "JOURNAL_STREAM": "1:2"},  # another file than this stderr
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and not done.stderr.startswith("<")


def test_a_missing_folder_is_said_plainly_and_again_while_it_stays_missing(
    tmp_path: Path, bucket: str, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    root = tmp_path / "disk"
    cfg = folder_config(root, f"s3://{bucket}/p", endpoint)
    # A second of this clock is a thousand: the reminder is due at every tick of the runner.
    agent = Folder(cfg, state_dir=tmp_path / "state", clock=lambda: time.monotonic() * 1000)
    agent.start()
    try:

        def said() -> int:
            return sum(
                1
                for r in caplog.records
                if MISSING in r.getMessage() and r.levelno == logging.WARNING
            )

        wait_until(lambda: said() >= 3, 30, 0.05, "the warning, repeated")
        assert agent.state == "paused"
        root.mkdir()
        wait_until(lambda: agent.reconciles >= 1, 60, 0.05, "the folder, once mounted")
    finally:
        agent.stop()
        assert agent.join(15)


def test_a_missing_bucket_is_first_said_as_a_warning(
    tmp_path: Path, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    root = tmp_path / "docs"
    root.mkdir()
    cfg = folder_config(root, f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/p", endpoint)
    agent = Folder(cfg, state_dir=tmp_path / "state")
    agent.start()
    try:
        wait_until(lambda: agent.state == "error", 30, 0.05, "the folder in error")
    finally:
        agent.stop()
        assert agent.join(15)
    first = next(r for r in caplog.records if "NoSuchBucket" in r.getMessage())
    assert first.levelno >= logging.WARNING, first.getMessage()
    assert "does the bucket exist" in first.getMessage() or first.levelno == logging.ERROR


# -- the rooms' lines ---------------------------------------------------------------------


def test_action_lines_name_their_folder(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    w = make_world()
    (w.root / "a.txt").write_text("a")
    w.rooms.reconcile.run()
    w.rooms.uploader.process_many(_queued(w))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("upload: ")]
    assert line == f"upload: {w.status.name}: a.txt"


def _queued(w: World) -> list[Item]:
    items: list[Item] = []
    while len(w.rooms.pending) and (item := w.rooms.pending.take()) is not None:
        items.append(item)
    return items


def test_identical_files_adopted_are_not_reported_as_conflicts(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    w = make_world()
    for name in ("a.txt", "b.txt"):
        (w.root / name).write_text(name)  # the same bytes on both sides, never synced
        w.objects.put(name, name.encode())
    stats = w.rooms.reconcile.run()
    assert stats.passed.describe() == "identical 2 (recorded)"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reconcile:")]
    assert "conflict" not in line and "identical 2 (recorded)" in line
    assert w.store.status.counters()["conflicts"] == 0


def test_an_upload_is_counted_once_when_a_second_send_finds_it_stored(
    make_world: Callable[..., World], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    w = make_world()
    (w.root / "a.txt").write_text("a")
    executor = w.rooms.executor
    executor.upload("a.txt", Condition.ABSENT)
    # A stale plan (made before the upload was recorded) sends it again "only if absent":
    # the object holds these bytes and the state records it, so nothing more is counted.
    executor.upload("a.txt", Condition.ABSENT)
    assert w.store.status.counters()["uploaded_files"] == 1
    metrics = w.status.metrics
    assert metrics is not None
    sent = metrics.m.registry.get_sample_value(
        "watchsync_files_transferred_total", {"folder": w.status.name, "direction": "up"}
    )
    assert sent == 1
    assert sum(1 for r in caplog.records if r.getMessage().startswith("upload: ")) == 1
    # Stored, but its answer lost (not recorded): counted once, when it is found stored.
    (w.root / "b.txt").write_text("b")
    w.objects.put("b.txt", b"b")
    executor.upload("b.txt", Condition.ABSENT)
    assert w.store.status.counters()["uploaded_files"] == 2
