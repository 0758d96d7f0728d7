"""Room: what the folder's root is.  The directory accepted as the folder is recorded (its
device and inode, as the resolved root shows them, and a folder id); with ``folder_marker``
on, the id is also kept in the folder itself, ``ROOT/.watchsync/folder-id`` (Syncthing's
``.stfolder``).  :meth:`FolderRoot.check` compares the root as it is now with that record
(at start, before every pass, every tick of the runner, and when the watcher says the root
moved) and acts on :func:`~watchsync.core.plan.judge_root`'s verdict:

* a different directory (a repointed symlink, another disk at the mount point, a restored
  tree) is a new folder: what was synced with the old one is forgotten, so the next pass
  meets this one as on a first run (both versions kept, nothing deleted), and every delete
  is held until a person accepts it (``watchsync ctl deletes approve ID`` of its batch, or
  ``--force-delete``);
* a root that is missing, cannot be looked at (a FUSE daemon killed under its mount point:
  "Transport endpoint is not connected"; a disk failing), looks unmounted (another directory,
  empty) or lacks its marker is waited for: nothing is synced, and the one line that says so
  names the error;
* the folder's marker found on a new device or inode is the same folder, moved: recorded.

Must not touch: threads, S3.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from watchsync.agent.delete_guards import folder_empty, root_gone
from watchsync.agent.refused import ROOT, RefusedDeletes
from watchsync.agent.status import Status
from watchsync.core.filters import RESERVED_DIR
from watchsync.core.plan import RootRecord, RootSeen, RootVerdict, judge_root
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)

MARKER = f"{RESERVED_DIR}/folder-id"  # relative to the root; never synced (reserved)

# The verdicts under which no delete may run, and those under which nothing is synced.
_HOLDING = frozenset({RootVerdict.NEW, RootVerdict.UNACCEPTED, RootVerdict.WAIT})


def read_marker(root: Path) -> str | None:
    """The folder id kept in ``root``'s marker, or None when there is none (or it cannot
    be read).

    >>> read_marker(Path("/nonexistent")) is None
    True
    """
    try:
        text = (root / MARKER).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


class FolderRoot:
    """The root of one folder: recorded, checked, accepted.

    ``on_new``: called once a different directory was taken as a new folder, or one
    accepted (the runner then restarts the watcher there and runs a full pass).
    """

    def __init__(
        self,
        name: str,
        *,
        root: Path,
        store: StateStore,
        status: Status,
        refused: RefusedDeletes,
        marker: bool,
        force: bool,
        ignored: Callable[[str, bool], bool],
        on_new: Callable[[], None] = lambda: None,
        stat_root: Callable[[Path], os.stat_result] = os.stat,
        new_id: Callable[[], str] = lambda: secrets.token_hex(8),
    ) -> None:
        self.name = name
        self.root = root
        self.store = store
        self.status = status
        self.refused = refused
        self.marker = marker
        self.force = force
        self.ignored = ignored
        self.on_new = on_new
        self.stat_root = stat_root
        self.new_id = new_id
        self._lock = threading.RLock()
        self.verdict: RootVerdict | None = None
        self._why: str | None = None  # why deletes are held by the root, while they are
        self._batch: str | None = None  # the refused batch a person approves to accept it
        self._unseen: OSError | None = None  # why the root could not be looked at, last time

    # -- what callers ask ---------------------------------------------------------------------

    def holding(self) -> str | None:
        """Why the root holds every delete now, or None (the guards ask before each pass's
        deletes and each batch: the root is looked at again then, so a swap during a pass
        is caught too)."""
        self.check()
        with self._lock:
            return self._why

    def waiting(self) -> bool:
        """Nothing may be synced: the root is missing, looks unmounted or lacks its marker."""
        return self.verdict is RootVerdict.WAIT

    def seen(self) -> RootSeen | None:
        """The root as it is now (None: missing, not a directory, unreadable; why it could
        not be looked at is kept for the line that says so)."""
        self._unseen = None
        try:
            st = self.stat_root(self.root)
            if not stat.S_ISDIR(st.st_mode):
                return None
            empty = folder_empty(self.root, self.ignored)
        except OSError as exc:
            self._unseen = exc
            return None
        return RootSeen(st.st_dev, st.st_ino, read_marker(self.root), empty)

    def recorded(self) -> RootRecord | None:
        """What the state recorded (None: nothing yet); a state that kept only the device
        is taken as ``dev:``."""
        meta = self.store.status.meta()
        key = meta.get("root_key") or (f"{meta['root_dev']}:" if meta.get("root_dev") else "")
        if not key:
            return None
        return RootRecord(key, meta.get("root_id", ""), meta.get("root_unaccepted", ""))

    # -- checking -----------------------------------------------------------------------------

    def check(self) -> RootVerdict:
        """Look at the root and act on what it is now (see the module)."""
        with self._lock:
            recorded, seen = self.recorded(), self.seen()
            verdict = judge_root(recorded, seen, marker=self.marker)
            if verdict is RootVerdict.FIRST:
                assert seen is not None
                self._record(seen, recorded)
            elif verdict is RootVerdict.SAME:
                assert seen is not None
                if recorded is not None and recorded.key.endswith(":"):
                    self._record(seen, recorded)  # a state that kept only the device
                elif recorded is not None and recorded.unaccepted:
                    self._record(seen, recorded)  # the old directory is back
                    logger.info(
                        "folder %s: %s is the folder's own directory again", self.name, self.root
                    )
                elif self.marker and seen.marker is None:
                    self._write_marker(recorded.folder_id if recorded else "")
            elif verdict is RootVerdict.MOVED:
                assert seen is not None and recorded is not None
                self._record(seen, recorded)
                logger.info(
                    "folder %s: %s is on a new device or inode (%s, was %s); its marker "
                    "says it is the same folder",
                    self.name,
                    self.root,
                    seen.key,
                    recorded.key,
                )
            elif verdict is RootVerdict.NEW:
                assert seen is not None and recorded is not None
                self._met_new(seen, recorded)
            self._hold(verdict, seen, recorded)
            self.verdict = verdict
            return verdict

    def accept(self) -> None:
        """The directory now at the root is the folder (a person said so): recorded, and
        deletes are judged as usual again.  One not met as a new folder yet is met so
        first: nothing synced with the old directory is deleted."""
        with self._lock:
            seen, recorded = self.seen(), self.recorded()
            if seen is None:
                return
            if recorded is not None and seen.key not in (recorded.key, recorded.unaccepted):
                self._forget(recorded)
            self._record(seen, recorded, new_folder=recorded is not None)
            logger.warning(
                "folder %s: %s (device and inode %s) accepted as the folder",
                self.name,
                self.root,
                seen.key,
            )
            self.check()
        self.on_new()

    # -- effects --------------------------------------------------------------------------

    def _met_new(self, seen: RootSeen, recorded: RootRecord) -> None:
        """A different directory: forget the old one's records, so this one is met as on a
        first run; accepted at once under ``--force-delete``."""
        self._forget(recorded)
        if self.force:
            self._record(seen, recorded, new_folder=True)
            logger.warning(
                "folder %s: %s is another directory than the one synced (device and inode "
                "%s, was %s); met as a new folder, accepted (--force-delete)",
                self.name,
                self.root,
                seen.key,
                recorded.key,
            )
        else:
            self.store.status.set_meta("root_unaccepted", seen.key)
        self.on_new()

    def _forget(self, recorded: RootRecord) -> None:
        n = self.store.synced.forget_all()
        self.store.guards.forget_dir_devices()
        logger.info(
            "folder %s: the %d paths synced with the directory %s are forgotten; the "
            "next pass meets %s as on a first run (both versions kept, nothing deleted)",
            self.name,
            n,
            recorded.key,
            self.root,
        )

    def _record(
        self, seen: RootSeen, recorded: RootRecord | None, *, new_folder: bool = False
    ) -> None:
        """``seen`` is the folder's directory from now on."""
        folder_id = (recorded.folder_id if recorded and not new_folder else "") or (
            seen.marker if self.marker and seen.marker else self.new_id()
        )
        meta = self.store.status
        meta.set_meta("root_key", seen.key)
        meta.set_meta("root_dev", str(seen.dev))
        meta.set_meta("root_id", folder_id)
        meta.set_meta("root_unaccepted", "")
        if self.marker and seen.marker != folder_id:
            self._write_marker(folder_id)

    def _write_marker(self, folder_id: str) -> None:
        if not folder_id:
            folder_id = self.new_id()
            self.store.status.set_meta("root_id", folder_id)
        path = self.root / MARKER
        try:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".folder-id.{os.getpid()}")
            tmp.write_text(folder_id + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            logger.warning(
                "folder %s: cannot write the folder marker %s: %s", self.name, path, exc.strerror
            )

    def _hold(
        self, verdict: RootVerdict, seen: RootSeen | None, recorded: RootRecord | None
    ) -> None:
        """Hold every delete while the root is not the folder's own, say why once (the
        runner says it for a root it waits for), and keep a batch a person approves to
        accept it."""
        if verdict not in _HOLDING:
            self._set_why(None)
            return
        if seen is None:  # missing or not answering: nothing to accept
            self._set_why(root_gone(self.root, self._unseen), offer=False)
            return
        was = recorded.key if recorded is not None else "?"
        if verdict is RootVerdict.WAIT and self.marker:
            why = (
                f"folder {self.root} lacks the folder's marker {MARKER} (device and inode "
                f"{seen.key}, was {was}): another directory or disk?"
            )
        elif verdict is RootVerdict.WAIT:
            why = (
                f"folder {self.root} is another directory than the one synced, and empty "
                f"(device and inode {seen.key}, was {was}): unmounted?"
            )
        else:
            why = (
                f"folder {self.root} is another directory than the one synced (device and "
                f"inode {seen.key}, was {was}): met as a new folder, both versions kept, "
                "no deletes either way"
            )
        self._set_why(why, say=verdict is not RootVerdict.WAIT)

    def waiting_text(self, what: str) -> str:
        """The one line said while the runner waits for the root (``what``: ``does not
        exist``, ``disappeared``)."""
        with self._lock:
            seen, gone = self.seen(), root_gone(self.root, self._unseen)
        if seen is None:
            if gone.endswith("is missing"):
                gone = f"folder {self.root} {what} (a disk not mounted yet?)"
            else:  # there, but not answering
                gone += ": a dead mount, or a disk pulled out or failing?"
            return f"{gone}; waiting for it, nothing is synced or deleted meanwhile"
        return (
            f"{self.reason()}; waiting for the folder's own directory, nothing is synced or "
            f"deleted meanwhile (`watchsync ctl deletes approve {self.batch}` accepts this "
            "one as the folder)"
        )

    def reason(self) -> str | None:
        """Why the root holds every delete, as last checked."""
        with self._lock:
            return self._why

    @property
    def batch(self) -> str | None:
        """The refused batch that accepts the directory now at the root, if one is offered."""
        with self._lock:
            return self._batch

    def _set_why(self, why: str | None, *, offer: bool = True, say: bool = True) -> None:
        """A new reason (or none): said once, in one line, with the batch that releases it."""
        if why == self._why:
            return
        self._why = why
        if self._batch is not None:
            self.refused.withdraw(self._batch)
            self._batch = None
        if why is None or not offer:
            return
        self._batch = self.refused.add((), why=why, origin=ROOT).id
        if say:
            self.status.refused(
                f"delete: {why}; `watchsync ctl deletes approve {self._batch}` accepts it as "
                "the folder (or --force-delete)"
            )
