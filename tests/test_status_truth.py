"""``watchsync status``, the metrics and the logs tell one story: pending counts that go back
to 0, state gauges an alert can use, refused deletes counted, exit codes a health check can
use, and the state of a service found from its configuration file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from agent_helpers import folder_config, state_db, wait_idle
from helpers import wait_until
from prometheus_client import CollectorRegistry
from s3server import SeaweedServer

from watchsync.agent.folder import Folder
from watchsync.agent.metrics import Metrics
from watchsync.cli.agent_commands import folder_status


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
