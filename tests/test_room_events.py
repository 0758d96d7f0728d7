"""The agent's events room: what the executor's outcomes become in the log and the status."""

from __future__ import annotations

import logging

import pytest

from watchsync.agent.effects import AgentEvents
from watchsync.agent.metrics import FolderMetrics, Metrics
from watchsync.agent.status import Status
from watchsync.core.errors import FileError, StillChanging
from watchsync.core.model import Action, Kind
from watchsync.s3.location import S3Url


def _events() -> tuple[AgentEvents, Status]:
    metrics = FolderMetrics(Metrics(), "f")
    status = Status("f", store=None, metrics=metrics)
    where = S3Url.parse("s3://bkt/p")
    return AgentEvents("f", where, status=status, metrics=metrics), status


def test_a_file_still_being_written_is_said_at_info_and_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="watchsync")
    events, status = _events()
    events.failed(Action(Kind.UPLOAD, "app.log", "changed"), StillChanging("app.log"))
    assert status.last_error is None and status.state == "starting"
    said = "folder f: app.log: kept changing while it was uploaded; will try again later"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, said)]


def test_a_file_that_cannot_be_read_is_a_warning_kept_as_the_last_error() -> None:
    events, status = _events()
    events.failed(Action(Kind.UPLOAD, "x", "new"), FileError("x", "permission denied"))
    assert status.last_error == "x: permission denied" and status.state == "starting"
