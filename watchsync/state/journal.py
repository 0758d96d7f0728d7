"""The write-ahead journal: work recorded before it runs and removed once it is done.

A path is journaled before it is queued or downloaded, and its entry is closed in the same
transaction that records the result, so a crash at any point leaves unfinished work in the
journal, never work recorded but not done.  Remote deletes are not journaled: the synced
row is dropped only after S3 confirmed the delete, so a delete cut short is planned again
by the next reconcile.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from watchsync.state.db import Database

_INSERT = "INSERT INTO journal(kind, path, detail, created) VALUES (?, ?, ?, ?)"
_DELETE = "DELETE FROM journal WHERE id = ?"


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An operation recorded before it ran and not yet marked done, e.g. after a crash."""

    id: int
    kind: str
    path: str
    detail: str
    created: float  # wall clock (seconds since the epoch)


class Journal:
    """The journal of one database; ``clock`` dates the entries (wall time).

    >>> import tempfile
    >>> from pathlib import Path
    >>> from watchsync.state.store import StateStore
    >>> with tempfile.TemporaryDirectory() as d, StateStore.open(
    ...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix", clock=lambda: 100.0
    ... ) as store:
    ...     op = store.journal.add("upload", "a/b.txt")
    ...     print(store.journal.pending()[0].path, store.journal.oldest_age(now=130.0))
    ...     store.journal.done(op)
    ...     print(store.journal.count())
    a/b.txt 30.0
    0
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    def add(self, kind: str, path: str, detail: str = "") -> int:
        """Record an operation before it runs; returns its id for :meth:`done`."""
        with self._db.transaction(durable=False) as conn:
            cursor = conn.execute(_INSERT, (kind, path, detail, self._clock()))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def add_many(self, kind: str, paths: Sequence[str]) -> list[int]:
        """:meth:`add` for many paths in one transaction."""
        ids: list[int] = []
        now = self._clock()
        with self._db.transaction(durable=False) as conn:
            for path in paths:
                cursor = conn.execute(_INSERT, (kind, path, "", now))
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def done(self, entry_id: int) -> None:
        """Remove a finished (or abandoned) operation from the journal."""
        with self._db.transaction() as conn:
            conn.execute(_DELETE, (entry_id,))

    def done_in(self, conn: sqlite3.Connection, entry_ids: Iterable[int]) -> None:
        """:meth:`done` inside a transaction already open on ``conn``."""
        conn.executemany(_DELETE, [(i,) for i in entry_ids])

    def done_later(self, entry_id: int) -> None:
        """:meth:`done` without a commit of its own: the removal rides on the next write
        transaction.  For entries whose work is already durable elsewhere (a recorded
        transfer, a path found in step): a crash before that commit only makes the next
        start look at the path once more."""
        self._db.later(_DELETE, (entry_id,))

    def flush(self) -> None:
        """Commit the removals :meth:`done_later` is holding now, not with the next write
        (an idle agent has none)."""
        self._db.flush()

    def pending(self) -> list[JournalEntry]:
        """Operations recorded but not done, oldest first."""
        self._db.flush()
        rows = self._db.query("SELECT id, kind, path, detail, created FROM journal ORDER BY id")
        return [JournalEntry(int(i), str(k), str(p), str(d), float(c)) for i, k, p, d, c in rows]

    def count(self) -> int:
        """How many operations are pending."""
        self._db.flush()
        return int(self._db.query("SELECT count(*) FROM journal")[0][0])

    def oldest_age(self, now: float) -> float | None:
        """Seconds since the oldest pending operation was recorded; None if none is."""
        self._db.flush()
        value = self._db.query("SELECT min(created) FROM journal")[0][0]
        return None if value is None else now - float(value)
