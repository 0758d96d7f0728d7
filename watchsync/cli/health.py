"""``watchsync status`` exit codes, for scripts and health checks.

0: every folder is served and syncing (starting, reconciling or watching).  Otherwise the
most serious of: 3 not running (a folder no agent serves: stopped, never started; LSB's
"program is not running"), 5 error (refused deletes, a failed pass, a folder that cannot
start or whose state cannot be read), 4 paused (S3 unreachable, the folder missing, or
paused with ``watchsync ctl pause``).  2 stays a usage or configuration error, as for every
command.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EXIT_HEALTHY = 0
EXIT_NOT_RUNNING = 3
EXIT_PAUSED = 4
EXIT_ERROR = 5

_SYNCING = frozenset({"starting", "reconciling", "watching"})


def folder_health(row: Mapping[str, Any]) -> int:
    """The exit code one folder's status row calls for.

    >>> folder_health({"state": "watching", "running": True})
    0
    >>> folder_health({"state": "paused", "running": True}), folder_health({"state": "stopped"})
    (4, 3)
    """
    state = row.get("state")
    if state == "error":  # in error, or its state cannot be read
        return EXIT_ERROR
    if not row.get("running"):
        return EXIT_NOT_RUNNING
    if state == "paused":
        return EXIT_PAUSED
    return EXIT_HEALTHY if state in _SYNCING else EXIT_ERROR


def verdict(rows: Iterable[Mapping[str, Any]]) -> int:
    """The exit code of ``watchsync status`` for these rows (none: not running).

    >>> verdict([{"state": "watching", "running": True}, {"state": "paused", "running": True}])
    4
    >>> verdict([])
    3
    """
    codes = {folder_health(row) for row in rows} or {EXIT_NOT_RUNNING}
    for code in (EXIT_NOT_RUNNING, EXIT_ERROR, EXIT_PAUSED):
        if code in codes:
            return code
    return EXIT_HEALTHY
