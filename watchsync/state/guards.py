"""What the agent's delete guards remember across restarts: the device of each mount point
below the root (an unmounted disk looks like a folder emptied) and the deletes allowed
recently, net of the files that replaced them (``--max-delete`` over a rolling window)."""

from __future__ import annotations

from watchsync.state.db import Database


class GuardRecords:
    """The delete guards' records in one database.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from watchsync.state.store import StateStore
    >>> with tempfile.TemporaryDirectory() as d, StateStore.open(
    ...     Path(d) / "state", local_root=Path(d), url="s3://bucket/prefix"
    ... ) as store:
    ...     store.guards.set_dir_device("media", "2049")
    ...     store.guards.log_deletes(100.0, 3, keep_after=0.0)
    ...     store.guards.log_deletes(200.0, 2, keep_after=150.0)  # the first one goes
    ...     print(store.guards.dir_devices(), store.guards.deletes_since(0.0))
    {'media': '2049'} 2
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    def dir_devices(self) -> dict[str, str]:
        """The recorded device of each mount point below the root: relative path -> st_dev."""
        return {str(p): str(d) for p, d in self._db.query("SELECT path, dev FROM dir_devices")}

    def set_dir_device(self, dir_path: str, dev: str) -> None:
        """Record (or, after a forced pass, replace) the device of directory ``dir_path``."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO dir_devices(path, dev) VALUES (?, ?)", (dir_path, dev)
            )

    def forget_dir_devices(self) -> None:
        """The root is another directory now: the mount points below the old one say
        nothing of it."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM dir_devices")

    def deletes_since(self, since: float) -> int:
        """How many deletes were allowed at or after wall time ``since``."""
        rows = self._db.query("SELECT coalesce(sum(n), 0) FROM delete_log WHERE at >= ?", (since,))
        return int(rows[0][0])

    def log_deletes(self, at: float, n: int, *, keep_after: float) -> None:
        """Count ``n`` deletes allowed at wall time ``at`` (net of the files added with them);
        rows before ``keep_after`` go."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM delete_log WHERE at < ?", (keep_after,))
            conn.execute("INSERT INTO delete_log(at, n) VALUES (?, ?)", (at, n))
