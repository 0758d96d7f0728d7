"""The list schedule room: when a pass lists the prefix."""

from __future__ import annotations

from watchsync.agent.list_schedule import LIST_BUDGET, ListSchedule


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
