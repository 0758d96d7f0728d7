"""The SQLite file of one folder pair and its connections, shared by every part of the state.

Writes go through one connection under a lock, so they are serialized and a part of the
state can join another's transaction (a finished transfer's row, counters and journal entry
commit together).  Point reads go through a second connection, so in WAL mode they run
while a commit holds the writer's for its fsync; a stream of rows gets a connection of its
own, which sees one snapshot and neither blocks nor is blocked by writers.

``synchronous=FULL``: in WAL mode ``NORMAL`` never corrupts the database, but a power loss
may roll back the last few commits.  FULL fsyncs the WAL at every commit, so writes are
batched to keep the fsync count low.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

from watchsync.core.errors import WatchsyncError

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

Row = tuple[Any, ...]


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the state's disk is full: SQLite's ``SQLITE_FULL``, or a file
    write refused for space or quota.  An operational fault (room is made, the writes go
    on), not a bug: said in one line, without a traceback.

    >>> disk_full(sqlite3.OperationalError("database or disk is full"))
    True
    >>> disk_full(OSError(errno.ENOSPC, "No space left on device")), disk_full(ValueError())
    (True, False)
    """
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
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


class Database:
    """The database file at ``path``; safe to use from several threads.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     db = Database.open(Path(d) / "x.db")
    ...     with db.transaction() as conn:
    ...         _ = conn.execute("CREATE TABLE t (n INTEGER)")
    ...         _ = conn.execute("INSERT INTO t VALUES (1), (2)")
    ...     db.later("DELETE FROM t WHERE n = ?", (1,))  # rides on the next commit
    ...     print(db.query("SELECT n FROM t"), end=" ")
    ...     db.flush()
    ...     print(db.read("SELECT n FROM t"), list(db.stream("SELECT n FROM t", ())))
    ...     db.close()
    [(1,), (2,)] [(2,)] [(2,)]
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, *, read_only: bool) -> None:
        self.path = path
        self.is_read_only = read_only
        self._conn = conn
        self._mutex = threading.RLock()
        self._reader: sqlite3.Connection | None = None
        self._reader_mutex = threading.Lock()
        self._closed = False
        self._inode = _inode(path)
        # Statements to run in the next write transaction, by SQL (see later()).
        self._later: dict[str, list[tuple[object, ...]]] = {}

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Database:
        """Open (creating unless ``read_only``) the database file at ``path``."""
        return cls(path, connect(path, read_only=read_only), read_only=read_only)

    def close(self) -> None:
        """Commit what :meth:`later` holds and close every connection; idempotent."""
        with self._mutex:
            if self._closed:
                return
            with contextlib.suppress(sqlite3.Error):
                self.flush()
            self._closed = True
            self._conn.close()
            self._drop_reader()

    @contextlib.contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
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
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    for sql, params in self._later.items():
                        conn.executemany(sql, params)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                self._later.clear()
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")

    def later(self, sql: str, params: tuple[object, ...]) -> None:
        """Run a write in the next transaction instead of a commit of its own: for work
        whose loss in a crash only means a look at a path once more."""
        with self._mutex:
            self._check_open()
            self._later.setdefault(sql, []).append(params)

    def flush(self) -> None:
        """Commit the writes :meth:`later` is holding (without an fsync of its own)."""
        with self._mutex:
            if self._later:
                with self.transaction(durable=False):
                    pass

    def query(self, sql: str, params: Iterable[object] = ()) -> list[Row]:
        """Rows through the writer's connection: they include this process's last writes."""
        with self._mutex:
            self._check_open()
            return self._conn.execute(sql, tuple(params)).fetchall()

    def read(self, sql: str, params: Iterable[object] = ()) -> list[Row]:
        """Rows through the reader connection (committed data only), not waiting for a
        commit under way."""
        if self.is_read_only:
            return self.query(sql, params)
        with self._reader_mutex:
            self._check_open()
            if self._reader is None:
                self._reader = connect(self.path, read_only=False)
            return self._reader.execute(sql, tuple(params)).fetchall()

    def stream(self, sql: str, params: tuple[object, ...], *, batch: int = 1000) -> Generator[Row]:
        """Rows through a connection of their own, ``batch`` at a time, all from the one
        snapshot taken at the first row.  Close the iterator (or exhaust it) to release
        the connection."""
        self._check_open()
        return self._stream(sql, params, batch)

    def stream_batches(
        self, sql: str, params: tuple[object, ...], *, batch: int = 1000
    ) -> Generator[list[Row]]:
        """:meth:`stream` ``batch`` rows at a time, as lists."""
        self._check_open()
        return self._batches(sql, params, batch)

    def _stream(self, sql: str, params: tuple[object, ...], batch: int) -> Generator[Row]:
        with contextlib.closing(self._batches(sql, params, batch)) as batches:
            for rows in batches:
                yield from rows

    def _batches(self, sql: str, params: tuple[object, ...], batch: int) -> Generator[list[Row]]:
        self._restore_if_removed()
        conn = connect(self.path, read_only=True)
        try:
            # The explicit read transaction pins one snapshot across fetchmany() calls.
            conn.execute("BEGIN")
            cursor = conn.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                yield rows
            cursor.close()
            conn.execute("COMMIT")
        finally:
            conn.close()

    def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check``: ``"ok"`` when the file is sound."""
        return "; ".join(str(row[0]) for row in self.query("PRAGMA quick_check"))

    def _restore_if_removed(self) -> None:
        """The database file was removed (or replaced) under us: the open connection still
        holds the data, so write it back to the file and go on with that file.  Without
        this every pass would fail, and nothing recorded from then on would survive."""
        if self.is_read_only or _inode(self.path) == self._inode:
            return
        with self._mutex:
            self._check_open()
            if _inode(self.path) == self._inode:
                return
            logger.error(
                "state: database %s was removed or replaced while in use; "
                "writing the state this agent holds back to it",
                self.path,
            )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.path}{suffix}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                fresh = sqlite3.connect(str(self.path), isolation_level=None)
                try:
                    self._conn.backup(fresh)
                finally:
                    fresh.close()
                conn = connect(self.path, read_only=False)
            except (OSError, sqlite3.Error) as exc:
                raise WatchsyncError(
                    f"state database {self.path} was removed and cannot be written "
                    f"again: {exc}; restart the agent"
                ) from exc
            self._conn.close()
            self._conn = conn
            self._drop_reader()
            self._inode = _inode(self.path)

    def _drop_reader(self) -> None:
        with self._reader_mutex:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _check_open(self) -> None:
        if self._closed:
            raise WatchsyncError(f"state database {self.path} is closed")


def _inode(path: Path) -> tuple[int, int] | None:
    """The file's identity, or None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
