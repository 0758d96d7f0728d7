"""What ``watchsync status`` shows of a folder pair: the status fields the agent publishes,
the counters it adds to, and the meta values recorded when the database was created."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from watchsync.state.db import Database

StatusValue = str | float | int | None

COUNTERS = (
    "uploaded_files",
    "uploaded_bytes",
    "downloaded_files",
    "downloaded_bytes",
    "deleted_remote",
    "deleted_local",
    "errors",
    "conflicts",
    "copied_files",
)

_ADD = (
    "INSERT INTO counters(name, value) VALUES (?, ?) "
    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)


class StatusRecords:
    """Status fields, counters and meta of one database.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from watchsync.state.store import StateStore
    >>> with tempfile.TemporaryDirectory() as d, StateStore.open(
    ...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix"
    ... ) as store:
    ...     store.status.set(state="watching", pid=42)
    ...     store.status.incr("uploaded_bytes", 12)
    ...     print(store.status.fields(), store.status.counters()["uploaded_bytes"])
    ...     print(store.status.meta()["url"])
    {'pid': 42, 'state': 'watching'} 12
    s3://bucket/prefix
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def set(self, **fields: StatusValue) -> None:
        """Set status fields, e.g. ``set(state="watching", pid=os.getpid())``."""
        if not fields:
            return
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO status(key, value) VALUES (?, ?)", fields.items()
            )

    def fields(self) -> dict[str, StatusValue]:
        """All status fields as last set."""
        result: dict[str, StatusValue] = {}
        for key, value in self._db.query("SELECT key, value FROM status ORDER BY key"):
            assert value is None or isinstance(value, str | int | float)
            result[str(key)] = value
        return result

    def incr(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter, e.g. ``incr("uploaded_bytes", size)``."""
        with self._db.transaction() as conn:
            self.add_in(conn, [(counter, n)])

    def add_in(self, conn: sqlite3.Connection, amounts: Iterable[tuple[str, int]]) -> None:
        """Add to counters inside a transaction already open on ``conn``."""
        conn.executemany(_ADD, amounts)

    def counters(self) -> dict[str, int]:
        """All counters; the well-known ones are present (0) even before first use."""
        result = dict.fromkeys(COUNTERS, 0)
        for name, value in self._db.query("SELECT name, value FROM counters"):
            result[str(name)] = int(value)
        return result

    def meta(self) -> dict[str, str]:
        """What was recorded at creation: local_root, url, root_dev, created (and
        recovered_from after a corrupt database was moved aside)."""
        return {str(k): str(v) for k, v in self._db.query("SELECT key, value FROM meta")}

    def set_meta(self, key: str, value: str) -> None:
        """Record one meta value (e.g. the root's device once it exists)."""
        with self._db.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
