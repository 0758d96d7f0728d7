"""The outage room: a pause, probes with back-off, an S3 error counted as an answer."""

from __future__ import annotations

import itertools

import pytest
from fakes import cut, refused

from watchsync.agent.outage import Outage, no_answer
from watchsync.agent.status import Status


def test_outage_pauses_once_and_probes_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    answers = [False]
    held: list[str] = []
    released: list[bool] = []

    def probe() -> None:
        if not answers[0]:
            raise cut("refused")

    status = Status("f", store=None, metrics=None)
    outage = Outage(
        "f",
        status=status,
        probe=probe,
        hold=held.append,
        release=lambda: released.append(True),
        clock=lambda: now[0],
    )
    outage.down(cut("reset"))
    outage.down(cut("again"))  # every worker may say so; logged once
    assert outage.is_down and status.state == "paused"
    assert "S3 unreachable" in str(status.last_error) and len(held) == 1
    probed_at: list[float] = []
    while now[0] < 120:
        before = outage.probes
        assert outage.tick() is False
        if outage.probes > before:
            probed_at.append(now[0])
        now[0] += 0.5
    assert probed_at[:5] == [1.0, 3.0, 7.0, 15.0, 31.0]  # 1, 2, 4, 8, 16 s apart
    assert all(b - a <= 30.0 for a, b in itertools.pairwise(probed_at))
    answers[0] = True
    now[0] += 30
    assert outage.tick() is True
    assert not outage.is_down and status.state == "watching" and released == [True]
    assert outage.tick() is False  # up: no probes
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("watchsync")]
    assert sum("S3 unreachable" in m for m in lines) == 1
    assert sum("answers again" in m for m in lines) == 1


def test_a_pause_says_why_before_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever sees the folder paused (another thread, ``watchsync status``) can read why."""
    status = Status("f", store=None, metrics=None)
    seen: list[tuple[str, str | None]] = []
    monkeypatch.setattr(
        status, "publish", lambda force=False: seen.append((status.state, status.last_error))
    )
    status.pause("S3 unreachable: refused")
    assert seen and all(why is not None for state, why in seen if state == "paused")


def test_outage_counts_an_s3_error_as_an_answer() -> None:
    status = Status("f", store=None, metrics=None)
    outage = Outage("f", status=status, probe=lambda: None, clock=lambda: 10.0)
    assert no_answer(cut()) and not no_answer(refused()) and not no_answer(FileNotFoundError())
    outage.down(cut())
    assert outage.tick() is False  # not due yet
    outage.clock = lambda: 11.0
    assert outage.tick() is True
