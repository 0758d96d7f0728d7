"""The delete side of the executor: effects only, each re-checked first.  A remote delete
with a condition (the object last synced) is checked right before and sent with that
condition while the server takes it; one that loses goes back to the planner (the change
wins), whose decision the executor carries out.  A local delete keeps a second name for the
file until it is gone, so a write landing after the re-check is put back, never lost (a
hard link; where the volume has none, FAT or exFAT, the file renamed aside to a conflict
name and compared there); directories a propagated delete emptied go too (where the policy
says so).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from watchsync.core.errors import Failure, FailureKind, FileError
from watchsync.core.model import Action, Condition, Kind, RemoteEntry
from watchsync.core.plan import delete_stands, plan_delete_lost, same_file
from watchsync.engine.local_files import LocalFiles
from watchsync.engine.policy import ExecPolicy
from watchsync.engine.reporting import Events, Recorder
from watchsync.fs.tempfiles import temp_name
from watchsync.fs.volume import NO_LINK_ERRNOS, FolderVolume
from watchsync.fs.walk import entry_of
from watchsync.s3.capabilities import Capabilities, Feature
from watchsync.s3.transfer import Objects

logger = logging.getLogger(__name__)

_DELETE_BATCH = 1000  # DeleteObjects' limit


class Deleter:
    """Deletes through ``transfer`` and in ``files``, recorded in ``recorder`` and told to
    ``events``; remote conditions are sent while ``server`` takes them; a late write is
    kept under ``conflict_name`` when its path was taken meanwhile."""

    def __init__(
        self,
        transfer: Objects,
        *,
        files: LocalFiles,
        recorder: Recorder,
        events: Events,
        server: Capabilities,
        policy: ExecPolicy,
        conflict_name: Callable[[str], str] | None = None,
        volume: FolderVolume | None = None,
    ) -> None:
        self.transfer = transfer
        self.volume = volume or FolderVolume(files.root)
        self.files = files
        self.root = files.root
        self.recorder = recorder
        self.events = events
        self.server = server
        self.policy = policy
        self.conflict_name = conflict_name

    def delete(self, actions: Iterable[Action]) -> list[Action]:
        """Run deletes now (the caller applied the guards), each re-checked first: a file
        that came back, or changed since the plan, is not deleted (a change beats a delete).
        Returns what the planner decided for the objects found changed instead (a download
        of the newer version, or forgetting one already gone), for the caller to apply."""
        after: list[Action] = []
        batch: list[Action] = []
        for action in actions:
            if not self._stands(action):
                continue
            if action.kind is Kind.DELETE_REMOTE:
                if file_exists(self.root / action.path) and self.volume.spelled(action.path):
                    continue  # came back (not merely another spelling: a case-only rename)
                batch.append(action)
                if len(batch) >= _DELETE_BATCH:
                    after += self._delete_remote(batch)
                    batch = []
            else:
                self._delete_local(action)
        if batch:
            after += self._delete_remote(batch)
        return after

    def _stands(self, action: Action) -> bool:
        """The state still holds the record the delete was planned from (see
        :func:`~watchsync.core.plan.delete_stands`)."""
        synced = action.synced
        still = synced is not None and self.recorder.holds(action.path, synced.etag)
        if delete_stands(action, still_recorded=still):
            return True
        logger.info("delete: %s is no longer recorded as synced; kept", action.path)
        return False

    def _delete_remote(self, batch: list[Action]) -> list[Action]:
        """Delete objects; one with a condition only while it is still that version: each
        is checked right before (for servers that ignore the condition) and deleted with its
        ETag as a condition (closing the window after the check where it is honoured)."""
        after: list[Action] = []
        conditions = {a.path: c for a in batch if (c := delete_condition(a)) is not None}
        if conditions:
            batch = [
                a
                for a in batch
                if a.path not in conditions or self._still_synced(a, conditions, after)
            ]
            if not batch:
                return after
        try:
            failed = dict(self._delete_objects(batch, conditions))
        except Exception as exc:
            for action in batch:
                self.events.failed(action, exc)
            return after
        for action in batch:
            failure = failed.get(action.path)
            kind = failure.kind if failure is not None else None
            if kind is FailureKind.PRECONDITION:
                self._lost(action, after)
            elif kind is FailureKind.NOT_FOUND:
                self.recorder.forget(action.path)
            elif failure is not None:
                self.events.failed(action, FileError(action.path, failure.code))
            else:
                self.recorder.forget(action.path, counter="deleted_remote")
                self.events.deleted(action)
        return after

    def _delete_objects(
        self, batch: list[Action], conditions: dict[str, Condition]
    ) -> list[tuple[str, Failure]]:
        paths = [a.path for a in batch]
        if not conditions or not self.server.conditional_deletes:
            return self.transfer.delete_remote(paths)
        try:
            return self.transfer.delete_remote(paths, conditions=conditions)
        except Failure as exc:
            if exc.kind is not FailureKind.UNSUPPORTED:
                raise
            if self.server.refused(Feature.CONDITIONAL_DELETES):
                logger.warning(
                    "delete: the server rejects conditional deletes; "
                    "deleting after an ETag check only"
                )
            return self.transfer.delete_remote(paths)

    def _still_synced(
        self, action: Action, conditions: Mapping[str, Condition], after: list[Action]
    ) -> bool:
        """The check right before a delete: the object is still the version named."""
        try:
            head = self.transfer.head(action.path)
        except Exception as exc:
            self.events.failed(action, exc)
            return False
        if head is not None and head.etag == conditions[action.path].etag:
            return True
        self._delete_lost(action, head, after)
        return False

    def _lost(self, action: Action, after: list[Action]) -> None:
        """A conditional delete failed: look at what S3 holds now."""
        try:
            head = self.transfer.head(action.path)
        except Exception as exc:
            self.events.failed(action, exc)
            return
        self._delete_lost(action, head, after)

    def _delete_lost(self, action: Action, remote: RemoteEntry | None, after: list[Action]) -> None:
        """The object is not the one last synced: ask the planner (the change wins)."""
        decided = plan_delete_lost(action.path, remote, action.synced, mode=self.policy.mode)
        if decided is None:
            return
        if decided.kind is Kind.DOWNLOAD:
            logger.info(
                "delete: %s changed in S3 meanwhile; not deleted, downloading it", action.path
            )
        after.append(decided)

    def _delete_local(self, action: Action) -> None:
        if action.local is not None and not self.files.still(action.path, action.local):
            return
        if not self._gone(action):
            return
        self.recorder.forget(action.path, counter="deleted_local")
        self.events.deleted(action)
        if self.policy.prune_emptied_dirs:
            self._remove_emptied_dirs(action.path)

    def _gone(self, action: Action) -> bool:
        """Delete the file, keeping a second name for it until it is found as the plan saw
        it, so a write landing between the re-check and the unlink (or still arriving
        through an open handle) is not lost with it; whether it went."""
        aside: Path | None = None
        if action.local is not None:
            target = self.root / action.path
            aside = target.with_name(temp_name(target.name, "del-" + secrets.token_hex(4)))
            try:
                self.volume.link(target, aside)
            except OSError as exc:
                aside = None
                if exc.errno in NO_LINK_ERRNOS and self.conflict_name is not None:
                    return self._gone_renamed(action, self.conflict_name(action.path), exc)
        try:
            self.transfer.delete_local(action.path)
        except FileError as exc:
            self.events.failed(action, exc)
            return False
        finally:
            if aside is not None:
                changed = self._changed_aside(aside, action)
        return aside is None or not changed

    def _gone_renamed(self, action: Action, keep: str, exc: OSError) -> bool:
        """:meth:`_gone` on a volume without hard links: the file is renamed to ``keep`` (a
        conflict name: should the process die before it is compared, it is still there),
        compared, and deleted there, or put back when it changed."""
        if self.volume.once("delete-no-links"):
            logger.warning(
                "delete: no hard links under %s (%s): a file is renamed aside before it is "
                "deleted, so a write that lands meanwhile is still kept",
                self.root,
                exc.strerror,
            )
        was = action.local
        assert was is not None
        try:
            # As it is right before the rename (which may set the mtime: fusefat does).
            before = entry_of(action.path, os.lstat(self.root / action.path))
            os.rename(self.root / action.path, self.root / keep)
        except FileNotFoundError:
            return True  # gone already
        except OSError as err:
            self.events.failed(action, FileError(action.path, err.strerror or str(err)))
            return False
        if not same_file(before, was):
            self._put_back(keep, action.path, changed=True)
            return False
        try:
            self.transfer.delete_local(keep)
        except FileError as err:
            self._put_back(keep, action.path, changed=False)
            self.events.failed(action, err)
            return False
        return True

    def _put_back(self, keep: str, path: str, *, changed: bool) -> None:
        """A file renamed aside to be deleted goes back to ``path`` (or stays at ``keep``
        when that was taken meanwhile)."""
        try:
            if os.path.lexists(self.root / path):
                raise FileExistsError(path)
            os.rename(self.root / keep, self.root / path)
            kept = path
        except OSError:
            kept = keep
        if changed:
            logger.warning("delete: %s changed while it was deleted; kept as %s", path, kept)

    def _changed_aside(self, aside: Path, action: Action) -> bool:
        """Drop the linked file if it is still the one the plan saw; else put it back at its
        path (or keep it under a conflict name when the path was taken meanwhile).  The
        link itself moved the ctime: the re-check before it compared that."""
        was = action.local
        assert was is not None
        try:
            if same_file(entry_of(action.path, os.lstat(aside)), was, by_ctime=False):
                return False
            target = self.root / action.path
            keep = target
            if os.path.lexists(target) and self.conflict_name is not None:
                keep = self.root / self.conflict_name(action.path)
            elif os.path.lexists(target):
                return True  # something is there again: leave it, drop the link
            os.rename(aside, keep)
            logger.warning(
                "delete: %s changed while it was deleted; kept as %s",
                action.path,
                keep.relative_to(self.root).as_posix(),
            )
            return True
        except OSError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                aside.unlink()

    def _remove_emptied_dirs(self, path: str) -> None:
        """The directories a propagated delete left empty go too, up to (never) the root: S3
        has no directories, so an empty one would stay behind on this side only.  One that
        holds anything stays (rmdir refuses), and so does a symlink (rmdir refuses it)."""
        parent = path.rpartition("/")[0]
        while parent:
            try:
                os.rmdir(self.root / parent)
            except OSError:
                return
            logger.debug("execute: removed %s/, emptied by a delete", parent)
            parent = parent.rpartition("/")[0]


def file_exists(path: Path) -> bool:
    """Whether something other than a directory is at ``path``: the file came back (a
    directory of that name is a type change: the file is still gone).

    >>> file_exists(Path("/"))
    False
    """
    return os.path.lexists(path) and not os.path.isdir(path)


def delete_condition(action: Action) -> Condition | None:
    """What a remote delete is conditional on: the planner's condition, else the object
    last synced; None when no version is known."""
    if action.condition is not None:
        return action.condition
    if action.synced is not None and action.synced.etag:
        return Condition(action.synced.etag)
    return None
