"""The list schedule room: when a pass lists the prefix."""

from __future__ import annotations

import logging

import pytest

from watchsync.agent.list_schedule import LIST_BUDGET, RECHECK_BACKOFF, ListSchedule


def test_a_costly_listing_comes_less_often() -> None:
    """Listings stay under their share of a core: one costing 30 s of CPU (a huge tree)
    comes every 12,000 s, not every hour; a cheap one keeps the interval."""
    now = [0.0]
    listed = ListSchedule(full_interval=3600.0, clock=lambda: now[0])
    listed.done(listed.take(), cost=30.0)
    now[0] = 3600.0
    assert listed.take() is None
    now[0] = 30.0 / LIST_BUDGET
    why = listed.take()
    assert why == "full list interval"
    listed.done(why, cost=1.0)
    now[0] += 3600.0
    assert listed.take() == "full list interval"


def test_by_default_the_interval_is_the_reconcile_interval() -> None:
    now = [0.0]
    listed = ListSchedule(full_interval=3.0, clock=lambda: now[0])
    listed.done(listed.take(), cost=0.001)
    now[0] = 3.0
    assert listed.take() == "full list interval"
    assert listed.stretched() is None


def test_a_stretch_is_logged_when_it_starts_moves_and_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listing costing 2 % of a core every 3 s comes every 12 s (the budget's 0.5 %);
    status shows :meth:`stretched`, the log says when it starts, moves and ends."""
    now = [0.0]
    listed = ListSchedule(full_interval=3.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="watchsync.agent.list_schedule"):
        listed.done(listed.take(), cost=0.06)
        now[0] = 3.0
        assert listed.take() is None
        now[0] = 12.0
        why = listed.take()
        assert why == "full list interval"
        listed.done(why, cost=0.061)  # within a quarter: not said again
        assert listed.stretched() == (
            "every 12s instead of 3s: a listing costs 0.06s of CPU, over 0.5% of a core"
        )
        now[0] = 30.0
        listed.done(listed.take(), cost=0.001)
        assert listed.stretched() is None
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "reconcile: the prefix is listed every 12s instead of 3s: a listing costs 0.06s of "
        "CPU, over 0.5% of a core",
        "reconcile: the prefix is listed every 3s again",
    ]


def test_paths_the_feed_named_are_owed_until_rechecked_or_listed() -> None:
    """A named path stays owed until a re-check of it succeeded; a failed one waits before
    it is due again; a listing looks at every path named before it."""
    now = [0.0]
    listed = ListSchedule(full_interval=3600.0, clock=lambda: now[0])
    listed.done(listed.take())
    listed.note(["a", "b"])
    assert listed.owed() == {"a", "b"}
    listed.rechecked(["a"], ok=True)
    listed.rechecked(["b"], ok=False)
    assert listed.owed() == frozenset()
    now[0] += RECHECK_BACKOFF[0]
    assert listed.owed() == {"b"}
    listed.invalidate("the change feed missed entries")
    why = listed.take()
    assert why == "the change feed missed entries"
    listed.done(why)
    assert listed.owed() == frozenset()
