"""``watchsync status``, the metrics and the logs tell one story: pending counts that go back
to 0, state gauges an alert can use, refused deletes counted, exit codes a health check can
use, and the state of a service found from its configuration file."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_helpers import folder_config, state_db, wait_idle
from helpers import wait_until
from prometheus_client import CollectorRegistry
from s3server import SeaweedServer
from service_helpers import (
    STARTUP,
    SYNC,
    Agent,
    agent_env,
    spawn,
    status_answer,
    watching,
    write_config,
)

from watchsync.agent.folder import Folder
from watchsync.agent.metrics import Metrics
from watchsync.cli.agent_commands import folder_status

__all__ = ["spawn"]  # fixtures

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    return s3server.endpoint


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_pending_goes_back_to_zero_after_an_upload_on_an_idle_agent(
    tmp_path: Path, bucket: str, endpoint: str
) -> None:
    root, state = tmp_path / "folder", tmp_path / "state"
    root.mkdir()
    url = f"s3://{bucket}/data"
    cfg = folder_config(root, url, endpoint)
    registry = CollectorRegistry()
    agent = Folder(cfg, state_dir=state, metrics=Metrics(registry).folder(cfg.name))
    agent.start()
    try:
        wait_until(lambda: agent.reconciles >= 1, 60, 0.05, "the first reconcile")
        (root / "one.txt").write_text("one")
        wait_until(
            lambda: agent.store_().status.counters()["uploaded_files"] == 1, 20, 0.05, "the upload"
        )
        wait_idle(agent)
        db = state_db(state, root, url)

        def settled() -> bool:
            row = folder_status(db, time.time())
            depth = _sample(registry, "watchsync_queue_depth", folder=cfg.name)
            return row["pending"] == 0 and row["oldest_pending_seconds"] is None and depth == 0

        # The agent publishes once a second; nothing else is written meanwhile.
        wait_until(settled, 5, 0.1, "status and metrics to say nothing is pending")
        row = folder_status(db, time.time())
        assert row["running"] and row["in_flight"] == 0
    finally:
        agent.stop()
        assert agent.join(15)


# -- a service: exit codes, and its state found from its config -------------------------------


def _directive(unit: Path, key: str) -> str:
    [line] = [ln for ln in unit.read_text().splitlines() if ln.startswith(f"{key}=")]
    return line.partition("=")[2]


def test_status_config_finds_a_unit_started_agent_and_exits_as_it_is(
    s3server: SeaweedServer, bucket: str, tmp_path: Path, spawn: Callable[..., Agent]
) -> None:
    # The configuration as install-service writes it names the unit's state directory ...
    staged = tmp_path / "staged"
    subprocess.run(
        [str(REPO / "scripts/install-service"), "--prefix", str(staged), "--no-venv"],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        check=True,
        timeout=60,
    )
    unit = REPO / "systemd/watchsync.service"
    installed = (staged / "etc/watchsync/config.toml").read_text().splitlines()
    var_lib = f"/var/lib/{_directive(unit, 'StateDirectory')}"
    assert f'state_dir = "{var_lib}"' in installed
    # ... and the unit starts the agent with that file alone, as systemd would (here the
    # state directory is a temporary one, and STATE_DIRECTORY says so, as systemd sets it).
    here = tmp_path / "var-lib-watchsync"
    root = tmp_path / "docs"
    root.mkdir()
    cfg = tmp_path / "config.toml"
    state_line = next(ln for ln in installed if ln.startswith("state_dir"))
    cfg.write_text(
        "\n".join(
            [
                state_line.replace(var_lib, str(here)),
                f'endpoint_url = "{s3server.endpoint}"',
                "debounce = 0.1",
                "log_format = 'json'",
                "[[folder]]",
                'name = "docs"',
                f'path = "{root}"',
                f'url = "s3://{bucket}/docs"',
            ]
        )
        + "\n"
    )
    argv = shlex.split(_directive(unit, "ExecStart"))
    assert argv[0].endswith("/bin/watchsync")
    args = [str(cfg) if a == "/etc/watchsync/config.toml" else a for a in argv[1:]]
    env = agent_env(s3server, tmp_path)
    agent = spawn(*args, env=env | {"STATE_DIRECTORY": str(here)})
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "the first reconcile")

    # An admin's shell (no STATE_DIRECTORY) finds it from the config file.
    code, answer = status_answer(cfg, env)
    [row] = answer["folders"]
    assert (code, row["state"], row["running"], row["name"]) == (0, "watching", True, "docs")
    assert row["pid"] == agent.proc.pid and Path(row["state_db"]).parent == here
    text = subprocess.run(
        [sys.executable, "-m", "watchsync", "status", "--config", str(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert text.startswith(f"docs: {root} <-> s3://{bucket}/docs\n")

    # Paused: exit 4, and the state says since when and why.
    ctl = [sys.executable, "-m", "watchsync", "ctl", "--config", str(cfg)]
    subprocess.run([*ctl, "pause"], env=env, check=True, capture_output=True, timeout=60)
    code, answer = status_answer(cfg, env)
    [row] = answer["folders"]
    assert code == 4 and row["state"] == "paused" and "control channel" in row["state_reason"]
    assert row["state_since"] is not None
    subprocess.run([*ctl, "resume"], env=env, check=True, capture_output=True, timeout=60)
    wait_until(lambda: status_answer(cfg, env)[0] == 0, SYNC, 0.2, "healthy again")

    # Not running: exit 3.
    assert agent.stop() == 0
    code, answer = status_answer(cfg, env)
    assert code == 3 and answer["folders"][0]["state"] == "stopped"


def test_status_exits_5_while_a_folder_is_in_error(
    s3server: SeaweedServer, tmp_path: Path, spawn: Callable[..., Agent]
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("a")
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=tmp_path / "state",
        endpoint=s3server.endpoint,
        folders=[(root, f"s3://no-such-bucket-{uuid.uuid4().hex[:12]}/docs")],
    )
    env = agent_env(s3server, tmp_path)
    spawn("watch", "--config", str(cfg))
    wait_until(lambda: status_answer(cfg, env)[0] == 5, SYNC, 0.2, "the folder in error")
    code, answer = status_answer(cfg, env)
    assert code == answer["exit_code"] == 5 and answer["folders"][0]["state"] == "error"
