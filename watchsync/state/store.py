"""Durable state of one folder pair in SQLite, opened as one :class:`StateStore` whose parts
share the database: ``synced`` (what was last synced), ``journal`` (the write-ahead
journal), ``status`` (status fields, counters, meta) and ``guards`` (the delete guards'
records), plus the pair's lock.

One database per (local root, URL) pair lives in the state directory, named by a hash of
the pair, with a ``.lock`` file beside it.  The database runs in WAL mode so that
``watchsync status`` can read it while the agent writes, and a process killed at any point
leaves the last committed transaction intact.  A corrupt database is moved aside and the
pair starts again as if met for the first time.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d, StateStore.open(
...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix"
... ) as store:
...     store.lock()
...     op = store.journal.add("upload", "a/b.txt")
...     # ... the upload ...
...     store.record_many([Recorded(SyncedEntry("a/b.txt", 12, 1_000, "etag", 2_000),
...                                 counters={"uploaded_files": 1}, journal_id=op)])
...     print(store.synced.get("a/b.txt").size, store.journal.count(),
...           store.status.counters()["uploaded_files"])
12 0 1
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from watchsync.core.errors import WatchsyncError
from watchsync.core.model import SyncedEntry
from watchsync.state.db import Database
from watchsync.state.guards import GuardRecords
from watchsync.state.journal import Journal
from watchsync.state.lock import PairLock
from watchsync.state.status import StatusRecords
from watchsync.state.synced import SyncedRows

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_SUFFIX = ".db"
LOCK_SUFFIX = ".lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS synced (
    path TEXT PRIMARY KEY,          -- BINARY collation on UTF-8: code point order
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    etag TEXT NOT NULL,
    remote_mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL DEFAULT 0,  -- the file's st_ino when synced, 0: unknown
    ctime_ns INTEGER NOT NULL DEFAULT 0  -- its st_ctime_ns when synced, 0: unknown
) WITHOUT ROWID;
-- finds the synced file a new path may have been renamed from (same size and mtime)
CREATE INDEX IF NOT EXISTS synced_stat ON synced(size, mtime_ns);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    detail TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS status (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- the device of each mount point below the root, as first seen (an unmounted disk guard)
CREATE TABLE IF NOT EXISTS dir_devices (
    path TEXT PRIMARY KEY,
    dev TEXT NOT NULL
) WITHOUT ROWID;
-- deletes allowed recently (wall clock), for --max-delete over a rolling window
CREATE TABLE IF NOT EXISTS delete_log (
    at REAL NOT NULL,
    n INTEGER NOT NULL
);
"""


def store_name(local_root: Path, url: str) -> str:
    """The file stem for a folder pair: a hash of the resolved root and the URL.

    >>> len(store_name(Path("/data"), "s3://bucket/prefix"))
    24
    """
    key = f"{local_root.resolve()}\0{url}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:24]


def list_stores(state_dir: Path) -> list[Path]:
    """All state databases in ``state_dir``, sorted; ``[]`` if it does not exist."""
    if not state_dir.is_dir():
        return []
    return sorted(p for p in state_dir.iterdir() if p.suffix == DB_SUFFIX and p.is_file())


@dataclass(frozen=True)
class Recorded:
    """One finished transfer for :meth:`StateStore.record_many`."""

    entry: SyncedEntry
    counters: Mapping[str, int] | None = None
    journal_id: int | None = None


class StateStore:
    """Durable state of one folder pair; safe to use from several threads.

    Open with :meth:`open` (the agent) or :meth:`read_only` (``watchsync status``).
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        lock: PairLock,
        recovered: str | None = None,
    ) -> None:
        self.db_path = db.path
        self.synced = SyncedRows(db)
        self.journal = Journal(db, clock=clock)
        self.status = StatusRecords(db)
        self.guards = GuardRecords(db)
        self._db = db
        self._lock = lock
        # Set when a corrupt database was moved aside and this one started empty: what
        # happened, for the agent to say loudly (and to hold deletes for its first pass).
        self.recovered = recovered

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        local_root: Path,
        url: str,
        clock: Callable[[], float] = time.time,
        stat: Callable[[Path], os.stat_result] = os.stat,
    ) -> StateStore:
        """Open (creating if needed) the database of the pair ``(local_root, url)``; see the
        module's example."""
        instead = "or choose another with --state-dir / WATCHSYNC_STATE_DIR"
        if state_dir.exists() and not state_dir.is_dir():
            raise WatchsyncError(
                f"state dir {state_dir} is a file, not a directory: move it away {instead}"
            )
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WatchsyncError(
                f"cannot create state dir {state_dir} ({exc.strerror}): create it writable "
                f"{instead}"
            ) from exc
        db_path = state_dir / (store_name(local_root, url) + DB_SUFFIX)
        lock = PairLock(db_path.with_suffix(LOCK_SUFFIX))
        try:
            return cls._open_at(
                db_path, lock, local_root=local_root, url=url, clock=clock, stat=stat
            )
        except sqlite3.DatabaseError as exc:
            readonly = ("unable to open", "readonly", "read-only")
            if isinstance(exc, sqlite3.OperationalError) and any(m in str(exc) for m in readonly):
                raise WatchsyncError(
                    f"state dir {state_dir} is read-only ({exc}): make it writable {instead}"
                ) from exc
            if not _is_corrupt(exc):
                raise
            why = str(exc)
        # A corrupt file (power loss on an SD card, a half-copied file) would stop the folder
        # for good.  It is moved aside, under the pair's lock so a running agent's live file
        # is never touched, and the pair starts again as if met for the first time.
        lock.acquire()
        try:
            moved = _quarantine(db_path, clock())
            recovered = f"state database {db_path} was corrupt ({why}); moved aside to {moved}"
            store = cls._open_at(
                db_path,
                lock,
                local_root=local_root,
                url=url,
                clock=clock,
                stat=stat,
                recovered=recovered,
            )
        except BaseException:
            lock.release()
            raise
        store.status.set_meta("recovered_from", str(moved))
        logger.error("state: %s; starting again with an empty state", store.recovered)
        return store

    @classmethod
    def _open_at(
        cls,
        db_path: Path,
        lock: PairLock,
        *,
        local_root: Path,
        url: str,
        clock: Callable[[], float],
        stat: Callable[[Path], os.stat_result],
        recovered: str | None = None,
    ) -> StateStore:
        """Open the database at ``db_path``; a damaged file raises ``sqlite3.DatabaseError``."""
        db = Database.open(db_path)
        try:
            _init_schema(db, local_root=local_root, url=url, clock=clock, stat=stat)
            check = db.quick_check()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[:200]}")
        except BaseException:
            db.close()
            raise
        return cls(db, clock=clock, lock=lock, recovered=recovered)

    @classmethod
    def read_only(cls, db_path: Path) -> StateStore:
        """Open an existing database for reading only; never locks, never blocks the agent."""
        if not db_path.is_file():
            raise WatchsyncError(f"state database not found: {db_path}")
        lock = PairLock(db_path.with_suffix(LOCK_SUFFIX))
        return cls(Database.open(db_path, read_only=True), lock=lock)

    def close(self) -> None:
        """Close the database and release the pair's lock; idempotent."""
        self._db.close()
        self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def lock(self) -> None:
        """Take the pair's exclusive lock for the life of this store, without waiting.

        Raises :class:`~watchsync.core.errors.LockedError` naming the holder's pid if
        another agent has it.
        """
        self._lock.acquire()

    def record_many(self, items: Sequence[Recorded]) -> None:
        """Finished transfers in one transaction and one fsync (group commit): each one's
        synced row, its counters and the removal of its journal entry, so a crash leaves
        all of them or none."""
        if not items:
            return
        totals: Counter[str] = Counter()
        for item in items:
            totals.update(item.counters or {})
        with self._db.transaction() as conn:
            self.synced.put_in(conn, (item.entry for item in items))
            self.status.add_in(conn, totals.items())
            self.journal.done_in(
                conn, (item.journal_id for item in items if item.journal_id is not None)
            )


def _init_schema(
    db: Database,
    *,
    local_root: Path,
    url: str,
    clock: Callable[[], float],
    stat: Callable[[Path], os.stat_result],
) -> None:
    with db.transaction() as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise WatchsyncError(
                f"state database {db.path} has schema {version}, newer than "
                f"this watchsync ({SCHEMA_VERSION})"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        # Added without a new schema version: an older watchsync writes rows without
        # it (0, unknown) and so can still open the database.
        columns = {row[1] for row in conn.execute("PRAGMA table_info(synced)")}
        for column in ("ino", "ctime_ns"):
            if column not in columns:
                conn.execute(f"ALTER TABLE synced ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        try:
            root_dev = str(stat(local_root).st_dev)
        except OSError:
            root_dev = ""
        meta = {
            "local_root": str(local_root.resolve()),
            "url": url,
            "root_dev": root_dev,
            "created": repr(clock()),
        }
        conn.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", meta.items())


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is damaged (not busy, locked or unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError  # our own integrity-check failure


def _quarantine(db_path: Path, now: float) -> Path:
    """Move a damaged database (and its WAL) aside as ``NAME.db.corrupt-YYYYMMDD-HHMMSS``."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    moved = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = db_path.with_name(f"{db_path.name}.corrupt-{stamp}-{n}")
    os.replace(db_path, moved)
    with contextlib.suppress(FileNotFoundError):
        os.replace(f"{db_path}-wal", f"{moved}-wal")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{db_path}-shm")
    return moved
