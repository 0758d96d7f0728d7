"""The agent as a service: a real ``watchsync watch --config`` subprocess against SeaweedFS.

SIGHUP reload, ``status``, ``/metrics``, fault isolation between folders, sd_notify,
JSON logs, ``check``, ``--bwlimit`` and flag/env precedence.  Every wait polls a condition
with a deadline; the JSON log tells when the agent did something.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from helpers import wait_until
from s3server import SeaweedServer
from service_helpers import (
    STARTUP,
    SYNC,
    Agent,
    agent_env,
    dirs,
    free_port,
    key_exists,
    metric,
    scrape,
    spawn,
    status_json,
    stays_false,
    toml_str,
    wait_for_key,
    watching,
    write_config,
)

from watchsync.cli.agent_commands import agent_config
from watchsync.cli.main import build_parser

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["dirs", "spawn"]  # fixtures

# -- reload ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["sighup", "reload-command"])
def test_sighup_adds_and_removes_folders(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
    how: str,
) -> None:
    """SIGHUP, or where there is none (Windows; WATCHSYNC_PORTABLE=1 here) ``watchsync
    reload``, re-reads the file."""
    one, two, state = dirs
    cfg = tmp_path / "config.toml"
    one_url, two_url = f"s3://{bucket}/one", f"s3://{bucket}/two"
    write_config(cfg, state_dir=state, endpoint=s3server.endpoint, folders=[(one, one_url)])
    env = agent_env(s3server, tmp_path, **({"WATCHSYNC_PORTABLE": "1"} if how != "sighup" else {}))
    agent = spawn("watch", "--config", str(cfg), env=env)

    def reload() -> None:
        if how == "sighup":
            agent.signal(signal.SIGHUP)
        else:
            out = run_cli("reload", "--config", str(cfg), env=env)
            assert out.returncode == 0 and "reload requested" in out.stdout, out
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "first reconcile")
    (one / "a.txt").write_text("a")
    wait_for_key(s3, bucket, "one/a.txt")

    # Add a folder.
    write_config(
        cfg,
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, one_url), (two, two_url)],
    )
    reload()
    wait_until(lambda: watching(agent, 2), STARTUP, 0.1, "the added folder's reconcile")
    (two / "b.txt").write_text("b")
    wait_for_key(s3, bucket, "two/b.txt")

    # Remove the first one: it stops syncing, the second goes on.
    reloads = agent.count(lambda r: r.get("event") == "reload")
    write_config(cfg, state_dir=state, endpoint=s3server.endpoint, folders=[(two, two_url)])
    reload()
    wait_until(
        lambda: agent.count(lambda r: r.get("event") == "reload") > reloads,
        SYNC,
        0.1,
        "the reload to finish",
    )
    (one / "gone.txt").write_text("not synced any more")
    (two / "c.txt").write_text("c")
    wait_for_key(s3, bucket, "two/c.txt")
    assert stays_false(lambda: key_exists(s3, bucket, "one/gone.txt"), 2.0)
    assert agent.alive()
    assert agent.stop() == 0


def test_sighup_with_invalid_file_keeps_running_config(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, _two, state = dirs
    cfg = tmp_path / "config.toml"
    write_config(
        cfg, state_dir=state, endpoint=s3server.endpoint, folders=[(one, f"s3://{bucket}/one")]
    )
    agent = spawn("watch", "--config", str(cfg))
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "first reconcile")

    cfg.write_text(cfg.read_text() + "\nno_such_key = 1\n")
    agent.signal(signal.SIGHUP)
    keeping = wait_until(
        lambda: [r for r in agent.records() if "keeping the running" in r["message"]],
        SYNC,
        0.1,
        "the reload error",
    )
    assert len(keeping) == 1 and keeping[0]["level"] == "error"
    assert "no_such_key" in keeping[0]["message"]
    (one / "still.txt").write_text("still syncing")
    wait_for_key(s3, bucket, "one/still.txt")
    assert agent.stop() == 0


# -- status ----------------------------------------------------------------------------------


def test_status_while_running_and_after_stop(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, two, state = dirs
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one"), (two, f"s3://{bucket}/two")],
    )
    env = agent_env(s3server, tmp_path)
    agent = spawn("watch", "--config", str(cfg))
    wait_until(lambda: watching(agent, 2), STARTUP, 0.1, "first reconciles")

    def all_watching() -> dict[str, dict[str, Any]] | None:
        rows = status_json(cfg, env)
        ok = len(rows) == 2 and all(
            r["state"] == "watching" and r["running"] for r in rows.values()
        )
        return rows if ok else None

    rows = wait_until(all_watching, SYNC, 0.2, "both folders watching")
    assert rows is not None  # wait_until returns a truthy value
    assert set(rows) == {str(one), str(two)}
    for row in rows.values():
        assert row["pid"] == agent.proc.pid
        assert row["last_reconcile_at"] is not None
        assert row["last_error"] is None
        assert row["totals"]["uploaded_files"] == 0
        assert {"pending", "in_flight", "oldest_pending_seconds"} <= set(row)

    for i in range(3):
        (one / f"f{i}.txt").write_text(f"file {i}")
    wait_until(
        lambda: status_json(cfg, env)[str(one)]["totals"]["uploaded_files"] == 3,
        SYNC,
        0.2,
        "uploaded totals",
    )
    rows = status_json(cfg, env)
    assert rows[str(one)]["totals"]["uploaded_bytes"] == len("file 0") * 3
    assert rows[str(two)]["totals"]["uploaded_files"] == 0

    # The text form works too.
    text = subprocess.run(
        [sys.executable, "-m", "watchsync", "status", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "watching" in text and "3 uploaded" in text

    assert agent.stop() == 0
    rows = status_json(cfg, env)
    assert {r["state"] for r in rows.values()} == {"stopped"}
    assert not any(r["running"] for r in rows.values())
    assert rows[str(one)]["totals"]["uploaded_files"] == 3
    # --state-dir alone lists the same databases.
    by_dir = subprocess.run(
        [sys.executable, "-m", "watchsync", "status", "--json", "--state-dir", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert by_dir.returncode == 3  # not running
    assert {r["folder"] for r in json.loads(by_dir.stdout)["folders"]} == {str(one), str(two)}


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_endpoint_counts_transfers(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, _two, state = dirs
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one")],
    )
    port = free_port()
    agent = spawn("watch", "--config", str(cfg), "--metrics-addr", f"127.0.0.1:{port}")
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "first reconcile")
    before = scrape(port)
    assert metric(before, "watchsync_queue_depth") is not None
    assert (metric(before, "watchsync_last_reconcile_timestamp_seconds") or 0) > 0
    assert metric(before, "watchsync_last_reconcile_duration_seconds") is not None
    up_before = metric(before, "watchsync_files_transferred_total", direction="up") or 0

    for i in range(4):
        (one / f"m{i}.bin").write_bytes(b"x" * 1000)
    after = wait_until(
        lambda: (
            s
            if (metric(s := scrape(port), "watchsync_files_transferred_total", direction="up") or 0)
            >= up_before + 4
            else None
        ),
        SYNC,
        0.2,
        "files transferred up",
    )
    assert after is not None  # wait_until returns a truthy value
    assert (metric(after, "watchsync_bytes_transferred_total", direction="up") or 0) >= 4000
    assert metric(after, "watchsync_queue_depth") is not None
    assert agent.stop() == 0
    with pytest.raises(OSError):
        scrape(port)


# -- fault isolation -------------------------------------------------------------------------


def test_missing_bucket_and_missing_folder_do_not_stop_the_others(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, two, state = dirs
    later = tmp_path / "later"  # does not exist yet
    missing_bucket = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[
            (one, f"s3://{bucket}/one"),
            (two, f"s3://{missing_bucket}/two"),
            (later, f"s3://{bucket}/later"),
        ],
    )
    env = agent_env(s3server, tmp_path)
    # Before the start, so only the (failing) reconcile sees bad.txt: SeaweedFS, unlike AWS,
    # would create the missing bucket on a PutObject.
    (one / "good.txt").write_text("good")
    (two / "bad.txt").write_text("bad")
    agent = spawn("watch", "--config", str(cfg))
    wait_for_key(s3, bucket, "one/good.txt", STARTUP)

    def faults() -> dict[str, dict[str, Any]] | None:
        rows = status_json(cfg, env)
        ok = (
            rows.get(str(two), {}).get("state") == "error"
            and rows.get(str(later), {}).get("state") == "paused"
        )
        return rows if ok else None

    rows = wait_until(faults, SYNC, 0.2, "error for the bad bucket, paused for the missing dir")
    assert rows is not None  # wait_until returns a truthy value
    assert "NoSuchBucket" in (rows[str(two)]["last_error"] or "")
    assert str(later) in (rows[str(later)]["last_error"] or "")
    assert rows[str(one)]["state"] == "watching"
    assert all(r["running"] for r in rows.values())

    # The good folder keeps syncing; the missing one starts once it exists.
    (one / "more.txt").write_text("more")
    wait_for_key(s3, bucket, "one/more.txt")
    later.mkdir()
    (later / "late.txt").write_text("late")
    wait_for_key(s3, bucket, "later/late.txt")
    wait_until(
        lambda: status_json(cfg, env)[str(later)]["state"] == "watching",
        SYNC,
        0.2,
        "the late folder watching",
    )
    assert agent.stop() == 0


def test_folder_that_cannot_start_does_not_stop_the_others(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    """A state database of a newer watchsync makes one folder's start fail; the other one
    syncs.  (A corrupt one no longer does: it is moved aside.)"""
    import sqlite3

    from watchsync.state.store import store_name

    one, two, state = dirs
    state.mkdir()
    two_url = f"s3://{bucket}/two"
    newer = sqlite3.connect(state / (store_name(two, two_url) + ".db"))
    newer.execute("PRAGMA user_version=99")
    newer.close()
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one"), (two, two_url)],
    )
    env = agent_env(s3server, tmp_path)
    agent = spawn("watch", "--config", str(cfg))
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "the good folder's reconcile")
    (one / "ok.txt").write_text("ok")
    wait_for_key(s3, bucket, "one/ok.txt")
    errors = [r for r in agent.records() if r["level"] == "error" and r.get("folder")]
    assert errors, agent.text()
    rows = status_json(cfg, env)
    assert rows[str(one)]["state"] == "watching"
    assert rows[str(two)]["state"] == "error"
    assert rows[str(two)]["last_error"]
    assert agent.alive()
    assert agent.stop() == 0


# -- sd_notify -------------------------------------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket as systemd would listen on (short path: sun_path is 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="wsn", dir="/tmp") as tmp:
        path = str(Path(tmp) / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(0.2)
            yield sock, path


def test_sd_notify_ready_status_watchdog_stopping(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    one, _two, state = dirs
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one")],
    )
    env = agent_env(s3server, tmp_path, NOTIFY_SOCKET=path, WATCHDOG_USEC="2000000")
    agent = spawn("watch", "--config", str(cfg), env=env)
    messages: list[str] = []

    def receive_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"no {what} in {messages}\n{agent.text()}"
            with contextlib.suppress(TimeoutError):
                messages.extend(sock.recv(4096).decode().splitlines())

    receive_until(lambda: "READY=1" in messages, STARTUP, "READY=1")
    # READY=1 comes once the folder is watched, i.e. the first reconcile has begun.
    assert any(r["message"].startswith("watch: ") for r in agent.records())
    receive_until(lambda: any(m.startswith("STATUS=") for m in messages), 10, "STATUS=")
    status = next(m for m in messages if m.startswith("STATUS="))
    assert "folder" in status and "\n" not in status
    pings = messages.count("WATCHDOG=1")
    receive_until(lambda: messages.count("WATCHDOG=1") >= pings + 3, 10, "WATCHDOG=1 pings")

    agent.signal(signal.SIGTERM)
    receive_until(lambda: "STOPPING=1" in messages, 30, "STOPPING=1")
    assert agent.proc.wait(30) == 0
    assert messages.index("READY=1") < messages.index("STOPPING=1")


# -- logs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True], ids=["info", "debug"])
def test_json_logs_carry_fields_and_no_secrets(
    debug: bool,
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, _two, state = dirs
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one")],
        extra="log_format = 'text'",  # the flag beats the file
    )
    cfg.write_text(cfg.read_text().replace("log_format = 'json'\n", ""))
    debug_flag = ["--debug"] if debug else []  # botocore logs requests at DEBUG
    agent = spawn(*debug_flag, "watch", "--config", str(cfg), "--log-format", "json")
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "first reconcile")
    (one / "doc.txt").write_bytes(b"0123456789")
    wait_for_key(s3, bucket, "one/doc.txt")
    wait_until(
        lambda: agent.count(lambda r: r.get("event") == "upload"), SYNC, 0.1, "upload log line"
    )
    assert agent.stop() == 0

    text = agent.text()
    lines = text.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for rec in records:
        assert {"time", "level", "message"} <= set(rec), rec
    upload = next(r for r in records if r.get("event") == "upload")
    assert upload["path"] == "doc.txt"
    assert upload["bytes"] == 10
    assert upload["folder"]
    assert any(r.get("event") == "reconcile" and "duration" in r for r in records)
    assert s3server.secret_key not in text
    assert not re.search(r"Signature=[0-9a-f]{8}", text), "a request signature was logged"
    assert not re.search(rf"Credential={s3server.access_key}/", text), "an access key id was logged"


# -- check -----------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchsync", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_good_bad_bucket_and_bad_config(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
) -> None:
    one, two, state = dirs
    missing = f"no-such-bucket-{uuid.uuid4().hex[:12]}"
    env = agent_env(s3server, tmp_path)
    good = write_config(
        tmp_path / "good.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one")],
    )
    r = run_cli("check", "--config", str(good), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("ok")

    bad = write_config(
        tmp_path / "bad.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one"), (two, f"s3://{missing}/x")],
    )
    r = run_cli("check", "--config", str(bad), env=env)
    assert r.returncode != 0
    fail = [line for line in r.stdout.splitlines() if "FAIL" in line]
    assert len(fail) == 1 and "NoSuchBucket" in fail[0] and str(two) in fail[0], r.stdout
    # The check did not create the bucket on the way (SeaweedFS would on a PutObject).
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=missing)

    broken = tmp_path / "broken.toml"
    broken.write_text(good.read_text() + "\nbogus_key = 1\n")
    r = run_cli("check", "--config", str(broken), env=env)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "bogus_key" in r.stderr and "unknown key" in r.stderr


# -- bwlimit ---------------------------------------------------------------------------------


def test_bwlimit_caps_upload_rate(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    dirs: tuple[Path, Path, Path],
    spawn: Callable[..., Agent],
) -> None:
    one, _two, state = dirs
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(one, f"s3://{bucket}/one")],
    )
    agent = spawn("watch", "--config", str(cfg), "--bwlimit", "200K")
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "first reconcile")
    started = time.monotonic()
    (one / "big.bin").write_bytes(os.urandom(1024 * 1024))
    wait_for_key(s3, bucket, "one/big.bin", 120)
    elapsed = time.monotonic() - started
    # 1 MiB at 200 KiB/s is 5 s; the lower bound is what the feature promises.
    assert elapsed >= 3.0, f"1 MiB uploaded in {elapsed:.1f}s despite --bwlimit 200K"
    assert agent.stop() == 0


# -- precedence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, None, 0.25),  # the file
        (None, "0.75", 0.75),  # env beats the file
        ("1.5", "0.75", 1.5),  # the flag beats env
    ],
)
def test_debounce_precedence_flag_env_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    env: str | None,
    expected: float,
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"debounce = 0.25\n[[folder]]\npath = {toml_str(str(tmp_path))}\nurl = 's3://b-1/p'\n"
    )
    for name in [n for n in os.environ if n.startswith("WATCHSYNC_")]:
        monkeypatch.delenv(name)
    if env is not None:
        monkeypatch.setenv("WATCHSYNC_DEBOUNCE", env)
    argv = ["watch", "--config", str(cfg)] + (["--debounce", flag] if flag else [])
    args = build_parser().parse_args(argv)
    config = agent_config(args, argv)
    assert [f.debounce for f in config.folders] == [expected]
