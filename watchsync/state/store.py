"""Durable state of one folder pair in SQLite: what was last synced, the pending journal,
and the status and counters ``watchsync status`` shows.

One database per (local root, URL) pair lives in the state directory, named by a hash of
the pair, with a ``.lock`` file beside it.  The database runs in WAL mode so that
``watchsync status`` can read it while the agent writes, and a process killed at any
point leaves the last committed transaction intact.

``synchronous=FULL``: in WAL mode ``NORMAL`` never corrupts the database, but a power
loss may roll back the last few commits.  The journal is *write-ahead*: a path is journaled
before it is queued or downloaded, and its entry is closed in the same transaction that
records the result, so a crash at any point leaves unfinished work in the journal, never
work recorded but not done.  Remote deletes are not journaled: the synced entry is dropped
only after S3 confirmed the delete, so a delete cut short is planned again by the next
reconcile.  FULL fsyncs the WAL at every commit; writes are batched (``put_many``,
``journal_add_many``) to keep the fsync count low.

Example::

    with StateStore.open(state_dir, local_root=root, url="s3://bucket/prefix") as store:
        store.lock()
        op = store.journal_add("upload", "a/b.txt")
        ...  # upload
        store.put(SyncedEntry("a/b.txt", 12, mtime_ns, etag, remote_mtime_ns))
        store.journal_done(op)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import filelock

from watchsync.core.errors import LockedError, WatchsyncError
from watchsync.core.model import SyncedEntry

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_SUFFIX = ".db"
LOCK_SUFFIX = ".lock"
BUSY_TIMEOUT_MS = 5000

StatusValue = str | float | int | None

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
    ino INTEGER NOT NULL DEFAULT 0  -- the file's st_ino when synced, 0: unknown
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


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """An operation recorded before it ran and not yet marked done, e.g. after a crash."""

    id: int
    kind: str
    path: str
    detail: str
    created: float  # wall clock (seconds since the epoch)


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


def _prefix_range(dir_path: str) -> tuple[str, str] | None:
    """``[lo, hi)`` bounds of the paths below ``dir_path``; None for the root (everything).

    ``'0'`` is the code point after ``'/'``, so ``'a/' <= p < 'a0'`` is exactly the
    paths starting with ``'a/'`` — no LIKE, no escaping.
    """
    dir_path = dir_path.strip("/")
    if not dir_path:
        return None
    return dir_path + "/", dir_path + "0"


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode; transactions are explicit."""
    if read_only:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if not read_only:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


class StateStore:
    """Durable state of one folder pair; safe to use from several threads.

    Writes go through one connection under a lock, so they are serialized; ``iter_sorted``
    reads through its own connection, which in WAL mode sees one consistent snapshot and
    neither blocks nor is blocked by writers, and so do the point reads (:meth:`get`,
    :meth:`get_many`, :meth:`find_by_stat`) through one more, shared.  Open with
    :meth:`open` (the agent) or :meth:`read_only` (``watchsync status``).
    """

    def __init__(
        self,
        db_path: Path,
        conn: sqlite3.Connection,
        *,
        read_only: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db_path = db_path
        self.lock_path = db_path.with_suffix(LOCK_SUFFIX)
        self.is_read_only = read_only
        self._conn = conn
        self._mutex = threading.RLock()
        # Point reads (a worker's look at one path) go through a connection of their own:
        # in WAL mode they then run while a commit holds the writer's for its fsync.
        self._reader: sqlite3.Connection | None = None
        self._reader_mutex = threading.Lock()
        self._clock = clock
        self._lock_fd: int | None = None
        self._closed = False
        self._inode = _inode(db_path)
        self._closes: list[int] = []  # journal entries to remove with the next write
        # Set when a corrupt database was moved aside and this one started empty: what
        # happened, for the agent to say loudly (and to hold deletes for its first pass).
        self.recovered: str | None = None

    # -- lifecycle -----------------------------------------------------------------------

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
        """Open (creating if needed) the database of the pair ``(local_root, url)``.

        >>> store = StateStore.open(Path("~/.local/state/watchsync").expanduser(),
        ...                         local_root=Path("/data"), url="s3://b/p")  # doctest: +SKIP
        """
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
        try:
            return cls._open_at(db_path, local_root=local_root, url=url, clock=clock, stat=stat)
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
        lock_fd = _take_lock(db_path.with_suffix(LOCK_SUFFIX))
        try:
            moved = _quarantine(db_path, clock())
            store = cls._open_at(db_path, local_root=local_root, url=url, clock=clock, stat=stat)
        except BaseException:
            os.close(lock_fd)
            raise
        store._lock_fd = lock_fd
        store.recovered = f"state database {db_path} was corrupt ({why}); moved aside to {moved}"
        store.set_meta("recovered_from", str(moved))
        logger.error("state: %s; starting again with an empty state", store.recovered)
        return store

    @classmethod
    def _open_at(
        cls,
        db_path: Path,
        *,
        local_root: Path,
        url: str,
        clock: Callable[[], float],
        stat: Callable[[Path], os.stat_result],
    ) -> StateStore:
        """Open the database at ``db_path``; a damaged file raises ``sqlite3.DatabaseError``."""
        conn = _connect(db_path, read_only=False)
        store = cls(db_path, conn, read_only=False, clock=clock)
        try:
            store._init_schema(local_root=local_root, url=url, stat=stat)
            check = store.integrity_check(quick=True)
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[:200]}")
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def read_only(cls, db_path: Path) -> StateStore:
        """Open an existing database for reading only; never locks, never blocks the agent."""
        if not db_path.is_file():
            raise WatchsyncError(f"state database not found: {db_path}")
        conn = _connect(db_path, read_only=True)
        return cls(db_path, conn, read_only=True)

    def _init_schema(
        self, *, local_root: Path, url: str, stat: Callable[[Path], os.stat_result]
    ) -> None:
        with self._transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise WatchsyncError(
                    f"state database {self.db_path} has schema {version}, newer than "
                    f"this watchsync ({SCHEMA_VERSION})"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            # Added without a new schema version: an older watchsync writes rows without
            # it (0, unknown) and so can still open the database.
            columns = {row[1] for row in conn.execute("PRAGMA table_info(synced)")}
            if "ino" not in columns:
                conn.execute("ALTER TABLE synced ADD COLUMN ino INTEGER NOT NULL DEFAULT 0")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            try:
                root_dev = str(stat(local_root).st_dev)
            except OSError:
                root_dev = ""
            meta = {
                "local_root": str(local_root.resolve()),
                "url": url,
                "root_dev": root_dev,
                "created": repr(self._clock()),
            }
            conn.executemany("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", meta.items())

    def close(self) -> None:
        """Close the connection and release the process lock; idempotent."""
        with self._mutex:
            if self._closed:
                return
            with contextlib.suppress(sqlite3.Error):
                self.flush_journal()
            self._closed = True
            self._conn.close()
            self._drop_reader()
            if self._lock_fd is not None:
                # Closing the descriptor drops the flock; the pid left in the file is
                # harmless because only the flock counts.
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- process lock --------------------------------------------------------------------

    def lock(self) -> None:
        """Take the pair's exclusive lock for the life of this store, without waiting.

        Raises :class:`LockedError` naming the holder's pid if another agent has it.  The
        kernel drops the lock when the process dies, even on ``kill -9``.
        """
        with self._mutex:
            if self._lock_fd is not None:
                return
            self._lock_fd = _take_lock(self.lock_path)
            logger.debug("state: locked %s", self.lock_path)

    @property
    def locked(self) -> bool:
        """Whether this store holds the pair's lock."""
        return self._lock_fd is not None

    # -- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One serialized write transaction; rolled back if the body raises.

        ``durable=False`` commits without an fsync of its own (WAL, ``synchronous=NORMAL``):
        the next durable commit carries it to the disk, and a power cut may lose it (never
        corrupt the database).  For the upload journal only: after a crash the agent's
        first pass walks the whole folder and lists the whole prefix, so a lost entry only
        means that pass, not the journal, finds the path."""
        with self._mutex:
            self._check_open()
            conn = self._conn
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._begun(conn):
                    yield conn
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def _begun(self, conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            if self._closes:  # journal entries closed since (see journal_done_later)
                conn.executemany("DELETE FROM journal WHERE id = ?", map(_one, self._closes))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._closes.clear()

    def _query(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            self._check_open()
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _read(self, sql: str, params: Iterable[object] = ()) -> list[tuple[Any, ...]]:
        """:meth:`_query` through the reader connection (committed data only)."""
        if self.is_read_only:
            return self._query(sql, params)
        with self._reader_mutex:
            self._check_open()
            if self._reader is None:
                self._reader = _connect(self.db_path, read_only=False)
            return self._reader.execute(sql, tuple(params)).fetchall()

    def _drop_reader(self) -> None:
        with self._reader_mutex:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _check_open(self) -> None:
        if self._closed:
            raise WatchsyncError(f"state database {self.db_path} is closed")

    def meta(self) -> dict[str, str]:
        """What was recorded at creation: local_root, url, root_dev, created."""
        return {str(k): str(v) for k, v in self._query("SELECT key, value FROM meta")}

    def integrity_check(self, *, quick: bool = False) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``quick_check``): ``"ok"`` when sound."""
        pragma = "quick_check" if quick else "integrity_check"
        return "; ".join(str(row[0]) for row in self._query(f"PRAGMA {pragma}"))

    # -- synced entries ------------------------------------------------------------------

    def get(self, path: str) -> SyncedEntry | None:
        """The entry last synced for ``path``, or None."""
        rows = self._read(
            "SELECT path, size, mtime_ns, etag, remote_mtime_ns, ino FROM synced WHERE path = ?",
            (path,),
        )
        return _entry(rows[0]) if rows else None

    def get_many(self, paths: Sequence[str]) -> dict[str, SyncedEntry]:
        """The entries last synced for ``paths`` (at most 500), by path; missing ones left out."""
        if not paths:
            return {}
        rows = self._read(
            "SELECT path, size, mtime_ns, etag, remote_mtime_ns, ino FROM synced"
            f" WHERE path IN ({','.join('?' * len(paths))})",
            tuple(paths),
        )
        return {entry.path: entry for entry in map(_entry, rows)}

    def find_by_stat(self, size: int, mtime_ns: int) -> list[SyncedEntry]:
        """Synced entries with exactly this size and mtime (rename candidates)."""
        rows = self._read(
            "SELECT path, size, mtime_ns, etag, remote_mtime_ns, ino FROM synced"
            " WHERE size = ? AND mtime_ns = ? LIMIT 16",
            (_int_in(size), _int_in(mtime_ns)),
        )
        return [_entry(r) for r in rows]

    def set_meta(self, key: str, value: str) -> None:
        """Record one meta value (e.g. the root's device once it exists)."""
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def put(self, entry: SyncedEntry) -> None:
        """Record ``entry`` as synced, replacing what was there."""
        self.put_many((entry,))

    def put_many(self, entries: Iterable[SyncedEntry]) -> int:
        """Record many entries in one transaction (all or nothing); returns how many."""
        rows = [_row(e) for e in entries]
        if not rows:
            return 0
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO synced(path, size, mtime_ns, etag, remote_mtime_ns, ino) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def delete(self, path: str) -> bool:
        """Forget ``path``; returns whether it was known."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM synced WHERE path = ?", (path,)).rowcount > 0

    def delete_prefix(self, dir_path: str) -> int:
        """Forget everything below directory ``dir_path`` (not a file named ``dir_path``).

        ``delete_prefix("a")`` removes ``a/x`` and ``a/b/y`` but keeps ``a``, ``a-b/x`` and
        ``ab``; ``delete_prefix("")`` removes everything.  Returns the number removed.
        """
        bounds = _prefix_range(dir_path)
        with self._transaction() as conn:
            if bounds is None:
                return conn.execute("DELETE FROM synced").rowcount
            return conn.execute("DELETE FROM synced WHERE path >= ? AND path < ?", bounds).rowcount

    def count(self) -> int:
        """How many paths are recorded as synced."""
        return int(self._query("SELECT count(*) FROM synced")[0][0])

    def count_under(self, dir_path: str) -> int:
        """How many synced paths lie below directory ``dir_path`` (all of them for ``""``)."""
        bounds = _prefix_range(dir_path)
        if bounds is None:
            return self.count()
        sql = "SELECT count(*) FROM synced WHERE path >= ? AND path < ?"
        return int(self._query(sql, bounds)[0][0])

    # -- delete guards -------------------------------------------------------------------

    def dir_devices(self) -> dict[str, str]:
        """The recorded device of each mount point below the root: relative path -> st_dev."""
        return {str(p): str(d) for p, d in self._query("SELECT path, dev FROM dir_devices")}

    def set_dir_device(self, dir_path: str, dev: str) -> None:
        """Record (or, after a forced pass, replace) the device of directory ``dir_path``."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO dir_devices(path, dev) VALUES (?, ?)", (dir_path, dev)
            )

    def deletes_since(self, since: float) -> int:
        """How many deletes were allowed at or after wall time ``since``."""
        return int(
            self._query("SELECT coalesce(sum(n), 0) FROM delete_log WHERE at >= ?", (since,))[0][0]
        )

    def log_deletes(self, at: float, n: int, *, keep_after: float) -> None:
        """Count ``n`` deletes allowed at wall time ``at``; rows before ``keep_after`` go."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM delete_log WHERE at < ?", (keep_after,))
            conn.execute("INSERT INTO delete_log(at, n) VALUES (?, ?)", (at, n))

    def iter_sorted(self, prefix: str = "", *, batch: int = 1000) -> Iterator[SyncedEntry]:
        """Stream the synced entries in path order (Python ``str`` order), optionally only
        those below directory ``prefix``.

        Reads through a connection of its own, so other threads may write meanwhile; the
        iteration sees the snapshot taken at its first row.  Memory stays at ``batch`` rows.
        Close the iterator (or exhaust it) to release the connection.
        """
        self._check_open()
        bounds = _prefix_range(prefix)
        sql = "SELECT path, size, mtime_ns, etag, remote_mtime_ns, ino FROM synced"
        params: tuple[str, ...] = ()
        if bounds is not None:
            sql += " WHERE path >= ? AND path < ?"
            params = bounds
        sql += " ORDER BY path"
        return self._iter_rows(sql, params, batch)

    def _iter_rows(self, sql: str, params: tuple[str, ...], batch: int) -> Iterator[SyncedEntry]:
        self._restore_if_removed()
        conn = _connect(self.db_path, read_only=True)
        try:
            # The explicit read transaction pins one snapshot across fetchmany() calls.
            conn.execute("BEGIN")
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                for row in rows:
                    yield _entry(row)
            cursor.close()
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _restore_if_removed(self) -> None:
        """The database file was removed (or replaced) under us: the open connection still
        holds the data, so write it back to the file and go on with that file.  Without
        this every pass would fail, and nothing recorded from then on would survive."""
        if self.is_read_only or _inode(self.db_path) == self._inode:
            return
        with self._mutex:
            self._check_open()
            if _inode(self.db_path) == self._inode:
                return
            logger.error(
                "state: database %s was removed or replaced while in use; "
                "writing the state this agent holds back to it",
                self.db_path,
            )
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.db_path}{suffix}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.db_path)
                fresh = sqlite3.connect(str(self.db_path), isolation_level=None)
                try:
                    self._conn.backup(fresh)
                finally:
                    fresh.close()
                conn = _connect(self.db_path, read_only=False)
            except (OSError, sqlite3.Error) as exc:
                raise WatchsyncError(
                    f"state database {self.db_path} was removed and cannot be written "
                    f"again: {exc}; restart the agent"
                ) from exc
            self._conn.close()
            self._conn = conn
            self._drop_reader()
            self._inode = _inode(self.db_path)

    # -- journal -------------------------------------------------------------------------

    def journal_add(self, kind: str, path: str, detail: str = "") -> int:
        """Record an operation before it runs; returns its id for :meth:`journal_done`."""
        with self._transaction(durable=False) as conn:
            cursor = conn.execute(
                "INSERT INTO journal(kind, path, detail, created) VALUES (?, ?, ?, ?)",
                (kind, path, detail, self._clock()),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def journal_add_many(self, kind: str, paths: Sequence[str]) -> list[int]:
        """:meth:`journal_add` for many paths in one transaction."""
        ids: list[int] = []
        now = self._clock()
        with self._transaction(durable=False) as conn:
            for path in paths:
                cursor = conn.execute(
                    "INSERT INTO journal(kind, path, detail, created) VALUES (?, ?, ?, ?)",
                    (kind, path, "", now),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def record(
        self,
        entry: SyncedEntry,
        *,
        counters: Mapping[str, int] | None = None,
        journal_id: int | None = None,
    ) -> None:
        """One finished transfer in one transaction: the synced entry, its counters and the
        removal of its journal row (so a crash leaves either all of it or none)."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO synced(path, size, mtime_ns, etag, remote_mtime_ns, ino) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                _row(entry),
            )
            for name, n in (counters or {}).items():
                conn.execute(
                    "INSERT INTO counters(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, n),
                )
            if journal_id is not None:
                conn.execute("DELETE FROM journal WHERE id = ?", (journal_id,))

    def record_many(self, items: Sequence[Recorded]) -> None:
        """:meth:`record` for many finished transfers in one transaction and one fsync
        (group commit): all of them are recorded, or none."""
        if not items:
            return
        totals: dict[str, int] = {}
        for item in items:
            for name, n in (item.counters or {}).items():
                totals[name] = totals.get(name, 0) + n
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO synced(path, size, mtime_ns, etag, remote_mtime_ns, ino) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [_row(item.entry) for item in items],
            )
            conn.executemany(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                totals.items(),
            )
            conn.executemany(
                "DELETE FROM journal WHERE id = ?",
                [(item.journal_id,) for item in items if item.journal_id is not None],
            )

    def journal_done(self, entry_id: int) -> None:
        """Remove a finished (or abandoned) operation from the journal."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM journal WHERE id = ?", (entry_id,))

    def journal_done_later(self, entry_id: int) -> None:
        """:meth:`journal_done` without a commit of its own: the removal rides on the next
        write transaction (or :meth:`flush_journal`).  For entries whose work is already
        durable elsewhere (a recorded transfer, a path found in step): a crash before that
        commit only makes the next start look at the path once more."""
        with self._mutex:
            self._check_open()
            self._closes.append(entry_id)

    def flush_journal(self) -> None:
        """Commit the removals :meth:`journal_done_later` is holding."""
        with self._mutex:
            if self._closes:
                with self._transaction(durable=False):
                    pass

    def journal_pending(self) -> list[JournalEntry]:
        """Operations recorded but not done, oldest first."""
        self.flush_journal()
        rows = self._query("SELECT id, kind, path, detail, created FROM journal ORDER BY id")
        return [JournalEntry(int(i), str(k), str(p), str(d), float(c)) for i, k, p, d, c in rows]

    def journal_count(self) -> int:
        """How many operations are pending."""
        self.flush_journal()
        return int(self._query("SELECT count(*) FROM journal")[0][0])

    def journal_oldest_age(self, now: float) -> float | None:
        """Seconds since the oldest pending operation was recorded; None if none is."""
        self.flush_journal()
        value = self._query("SELECT min(created) FROM journal")[0][0]
        return None if value is None else now - float(value)

    # -- status and counters -------------------------------------------------------------

    def set_status(self, **fields: StatusValue) -> None:
        """Set status fields, e.g. ``set_status(state="watching", pid=os.getpid())``."""
        if not fields:
            return
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO status(key, value) VALUES (?, ?)", fields.items()
            )

    def get_status(self) -> dict[str, StatusValue]:
        """All status fields as last set."""
        result: dict[str, StatusValue] = {}
        for key, value in self._query("SELECT key, value FROM status ORDER BY key"):
            assert value is None or isinstance(value, str | int | float)
            result[str(key)] = value
        return result

    def incr(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to a counter, e.g. ``incr("uploaded_bytes", size)``."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (counter, n),
            )

    def counters(self) -> dict[str, int]:
        """All counters; the well-known ones are present (0) even before first use."""
        result = dict.fromkeys(COUNTERS, 0)
        for name, value in self._query("SELECT name, value FROM counters"):
            result[str(name)] = int(value)
        return result


_INT64 = range(-(2**63), 2**63)
_BIG = "ns:"  # prefix of an integer stored as text: no SQLite affinity turns it into a REAL


def _one(value: int) -> tuple[int]:
    return (value,)


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


def _row(entry: SyncedEntry) -> tuple[str, int | str, int | str, str, int | str, int | str]:
    """A synced entry as the row stored."""
    return (
        entry.path,
        _int_in(entry.size),
        _int_in(entry.mtime_ns),
        entry.etag,
        _int_in(entry.remote_mtime_ns),
        _int_in(entry.ino),
    )


@dataclass(frozen=True)
class Recorded:
    """One finished transfer for :meth:`StateStore.record_many`."""

    entry: SyncedEntry
    counters: Mapping[str, int] | None = None
    journal_id: int | None = None


def _entry(row: tuple[Any, ...]) -> SyncedEntry:
    path, size, mtime_ns, etag, remote_mtime_ns, ino = row
    return SyncedEntry(
        str(path),
        _int_out(size),
        _int_out(mtime_ns),
        str(etag),
        _int_out(remote_mtime_ns),
        _int_out(ino),
    )


def _inode(path: Path) -> tuple[int, int] | None:
    """The file's identity, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is damaged (not busy, locked or unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError  # our own integrity-check failure


def _take_lock(lock_path: Path) -> int:
    """The pair's lock, taken now or :class:`LockedError` (as :meth:`StateStore.lock`).

    filelock's descriptor lock: ``flock`` on POSIX, ``LockFileEx`` on byte 0 on Windows; the
    OS drops it with the descriptor, so when the process dies too.  Our pid follows byte 0,
    where Windows lets another process read it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        taken = filelock.lock_descriptor(fd, blocking=False)
    except BaseException:
        os.close(fd)
        raise
    if not taken:
        holder = _read_pid(fd)
        os.close(fd)
        raise LockedError(
            f"another watchsync agent (pid {holder or 'unknown'}) already serves "
            f"this folder pair (lock {lock_path})"
        )
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f" {os.getpid()}\n".encode())
    return fd


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


def _read_pid(fd: int) -> int | None:
    """The pid the lock holder wrote into the lock file, if readable (from byte 1 where
    Windows keeps byte 0 locked)."""
    for start in (0, 1):
        try:
            os.lseek(fd, start, os.SEEK_SET)
            text = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(text) if text else None
        except ValueError:
            return None
        except OSError:
            continue
    return None
