"""What was last synced: one row per path, the local file and the object as they were then.

The rows are kept in the order of Python ``str`` (SQLite's BINARY collation on UTF-8 is
code point order), so a reconcile merges them with the walk and the listing in one pass.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import sqlite3
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import cast

from watchsync.core.model import SyncedEntry, SyncedRow
from watchsync.state.db import Database, Row

_COLUMNS = "path, size, mtime_ns, etag, remote_mtime_ns, ino, ctime_ns"
_SELECT = f"SELECT {_COLUMNS} FROM synced"
_UPSERT = f"INSERT OR REPLACE INTO synced({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"


class SyncedRows:
    """The synced rows of one database.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from watchsync.state.store import StateStore
    >>> with tempfile.TemporaryDirectory() as d, StateStore.open(
    ...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix"
    ... ) as store:
    ...     store.synced.put_many([SyncedEntry("a/b.txt", 12, 1_000, "etag", 2_000)])
    ...     print(store.synced.get("a/b.txt").size, store.synced.count_under("a"))
    ...     print([e.path for e in store.synced.iter_sorted()], store.synced.get("nope"))
    1
    12 1
    ['a/b.txt'] None
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, path: str) -> SyncedEntry | None:
        """The entry last synced for ``path``, or None."""
        rows = self._db.read(f"{_SELECT} WHERE path = ?", (path,))
        return _entry(rows[0]) if rows else None

    def get_many(self, paths: Sequence[str]) -> dict[str, SyncedEntry]:
        """The entries last synced for ``paths`` (at most 500), by path; missing ones left out."""
        if not paths:
            return {}
        rows = self._db.read(
            f"{_SELECT} WHERE path IN ({','.join('?' * len(paths))})", tuple(paths)
        )
        return {entry.path: entry for entry in map(_entry, rows)}

    def find_by_stat(self, size: int, mtime_ns: int) -> list[SyncedEntry]:
        """Synced entries with exactly this size and mtime (rename candidates)."""
        rows = self._db.read(
            f"{_SELECT} WHERE size = ? AND mtime_ns = ? LIMIT 16",
            (_int_in(size), _int_in(mtime_ns)),
        )
        return [_entry(r) for r in rows]

    def put_many(self, entries: Iterable[SyncedEntry]) -> int:
        """Record entries as synced, replacing what was there, in one transaction (all or
        nothing); returns how many."""
        rows = [_row(e) for e in entries]
        if not rows:
            return 0
        with self._db.transaction() as conn:
            conn.executemany(_UPSERT, rows)
        return len(rows)

    def put_in(self, conn: sqlite3.Connection, entries: Iterable[SyncedEntry]) -> None:
        """:meth:`put_many` inside a transaction already open on ``conn``."""
        conn.executemany(_UPSERT, map(_row, entries))

    def delete(self, path: str) -> bool:
        """Forget ``path``; returns whether it was known."""
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM synced WHERE path = ?", (path,)).rowcount > 0

    def forget_all(self) -> int:
        """Forget every path (the folder is another directory now, met as on a first run);
        returns how many were known."""
        with self._db.transaction() as conn:
            return int(conn.execute("DELETE FROM synced").rowcount)

    def count(self) -> int:
        """How many paths are recorded as synced."""
        return int(self._db.query("SELECT count(*) FROM synced")[0][0])

    def count_under(self, dir_path: str) -> int:
        """How many synced paths lie below directory ``dir_path`` (all of them for ``""``)."""
        bounds = _prefix_range(dir_path)
        if bounds is None:
            return self.count()
        sql = "SELECT count(*) FROM synced WHERE path >= ? AND path < ?"
        return int(self._db.query(sql, bounds)[0][0])

    def iter_sorted(self, prefix: str = "", *, batch: int = 1000) -> Iterator[SyncedEntry]:
        """Stream the synced entries in path order (Python ``str`` order), optionally only
        those below directory ``prefix``.

        Reads through a connection of its own, so other threads may write meanwhile; the
        iteration sees the snapshot taken at its first row.  Memory stays at ``batch`` rows.
        Close the iterator (or exhaust it) to release the connection.
        """
        bounds = _prefix_range(prefix)
        sql = _SELECT
        params: tuple[str, ...] = ()
        if bounds is not None:
            sql += " WHERE path >= ? AND path < ?"
            params = bounds
        return _entries(self._db.stream(sql + " ORDER BY path", params, batch=batch))

    def iter_rows(self, *, batch: int = 1000) -> Iterator[SyncedRow]:
        """:meth:`iter_sorted` of every path as plain rows (no entry per path): what a
        listing pass compares with the listing's rows in bulk.  Dropping the iterator
        releases its connection."""
        batches = self._db.stream_batches(_SELECT + " ORDER BY path", (), batch=batch)
        return itertools.chain.from_iterable(_plain(batches))


_NUMBERS = operator.itemgetter(1, 2, 4, 5, 6)


def _plain(batches: Generator[list[Row]]) -> Generator[list[SyncedRow]]:
    """The rows as :data:`SyncedRow` tuples, a list at a time; closing this closes
    ``batches``."""
    with contextlib.closing(batches):
        for rows in batches:
            # Integers past 64 bits come back as text (_int_in): made whole again here, in
            # the rare list that holds one (the numbers' types gathered at C speed).
            if str in set(map(type, itertools.chain.from_iterable(map(_NUMBERS, rows)))):
                yield [_plain_row(row) for row in rows]
            else:
                yield cast(list[SyncedRow], rows)


def _plain_row(row: Row) -> SyncedRow:
    if str in (type(row[1]), type(row[2]), type(row[4]), type(row[5]), type(row[6])):
        e = _entry(row)
        return (e.path, e.size, e.mtime_ns, e.etag, e.remote_mtime_ns, e.ino, e.ctime_ns)
    return cast(SyncedRow, row)


def _entries(rows: Generator[Row]) -> Generator[SyncedEntry]:
    """The rows as entries; closing this closes ``rows`` (and so their connection)."""
    with contextlib.closing(rows):
        for row in rows:
            yield _entry(row)


def _prefix_range(dir_path: str) -> tuple[str, str] | None:
    """``[lo, hi)`` bounds of the paths below ``dir_path``; None for the root (everything).

    ``'0'`` is the code point after ``'/'``, so ``'a/' <= p < 'a0'`` is exactly the
    paths starting with ``'a/'`` — no LIKE, no escaping.

    >>> _prefix_range("a/"), _prefix_range("")
    (('a/', 'a0'), None)
    """
    dir_path = dir_path.strip("/")
    if not dir_path:
        return None
    return dir_path + "/", dir_path + "0"


_INT64 = range(-(2**63), 2**63)
_BIG = "ns:"  # prefix of an integer stored as text: no SQLite affinity turns it into a REAL


def _int_in(value: int) -> int | str:
    """An integer as SQLite can keep it exactly: as is within 64 bits, else as text.

    A file dated after 2262 (or before 1678) has an ``mtime_ns`` beyond SQLite's INTEGER;
    it is stored exactly, so the file is still recognised as synced.

    >>> _int_in(5), _int_in(2**63)
    (5, 'ns:9223372036854775808')
    """
    return value if value in _INT64 else f"{_BIG}{value}"


def _int_out(value: object) -> int:
    """The integer :func:`_int_in` stored."""
    if isinstance(value, str) and value.startswith(_BIG):
        return int(value[len(_BIG) :])
    assert isinstance(value, int | str | float)
    return int(value)


def _row(entry: SyncedEntry) -> tuple[str | int, ...]:
    """A synced entry as the row stored."""
    return (
        entry.path,
        _int_in(entry.size),
        _int_in(entry.mtime_ns),
        entry.etag,
        _int_in(entry.remote_mtime_ns),
        _int_in(entry.ino),
        _int_in(entry.ctime_ns),
    )


def _entry(row: Row) -> SyncedEntry:
    path, size, mtime_ns, etag, remote_mtime_ns, ino, ctime_ns = row
    return SyncedEntry(
        str(path),
        _int_out(size),
        _int_out(mtime_ns),
        str(etag),
        _int_out(remote_mtime_ns),
        _int_out(ino),
        _int_out(ctime_ns),
    )
