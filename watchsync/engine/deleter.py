"""Deletes for the :class:`~watchsync.engine.executor.Executor`: effects only, each re-checked
first.  Remote deletes are conditional on the ETag last synced (checked right before, and
sent as a condition where the server honours it), and one that loses goes back to the
planner (the change wins); a local delete keeps a second name for the file until it is gone,
so a write landing after the re-check is put back, never lost; directories a propagated
delete emptied go too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from watchsync.core.errors import ConditionalWritesUnsupported, FileError
from watchsync.core.model import Action, Condition, Kind, RemoteEntry
from watchsync.core.plan import plan_delete_lost, same_file
from watchsync.fs.tempfiles import temp_name
from watchsync.fs.walk import entry_of

if TYPE_CHECKING:
    from watchsync.engine.executor import Executor

logger = logging.getLogger(__name__)

_DELETE_BATCH = 1000  # DeleteObjects' limit
_LOST_CONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_ALREADY_GONE = frozenset({"NoSuchKey", "404", "NotFound"})


class Deleter:
    """The delete side of one executor (it shares the executor's transfer, recorder and
    events, and asks it to apply what the planner decides when a delete loses)."""

    def __init__(self, ex: Executor) -> None:
        self.ex = ex
        self._delete_condition = ex.conditional  # cleared if the server rejects it

    def delete(self, actions: Iterable[Action]) -> None:
        """Run deletes now (the caller applied the policy), each re-checked first: a file
        that came back, or changed since the plan, is not deleted (a change beats a delete)."""
        batch: list[Action] = []
        for action in actions:
            if self.ex.dry_run:
                self.ex.events.would(action)
            elif action.kind is Kind.DELETE_REMOTE:
                if file_exists(self.ex.root / action.path):
                    continue
                batch.append(action)
                if len(batch) >= _DELETE_BATCH:
                    self._delete_remote(batch)
                    batch = []
            else:
                self._delete_local(action)
        if batch:
            self._delete_remote(batch)

    def _delete_remote(self, batch: list[Action]) -> None:
        """Delete objects; under guarded deletes only those still as last synced: each is
        checked right before (for servers that ignore the condition) and deleted with its
        ETag as a condition (closing the window after the check where it is honoured)."""
        conditions: dict[str, Condition] = {}
        if self.ex.guarded_deletes:
            conditions = {a.path: c for a in batch if (c := delete_condition(a)) is not None}
            batch = [
                a for a in batch if a.path not in conditions or self._still_synced(a, conditions)
            ]
            if not batch:
                return
        try:
            failed = dict(self._delete_objects(batch, conditions))
        except Exception as exc:
            for action in batch:
                self.ex.events.failed(action, exc)
            return
        for action in batch:
            code = failed.get(action.path)
            if code in _LOST_CONDITION:
                self._lost(action)
            elif code in _ALREADY_GONE:
                self.ex.recorder.forget(action.path)
            elif code is not None:
                self.ex.events.failed(action, FileError(action.path, code))
            else:
                self.ex.recorder.forget(action.path, counter="deleted_remote")
                self.ex.events.deleted(action)

    def _delete_objects(
        self, batch: list[Action], conditions: dict[str, Condition]
    ) -> list[tuple[str, str]]:
        paths = [a.path for a in batch]
        if not self._delete_condition or not conditions:
            return self.ex.transfer.delete_remote(paths)
        try:
            return self.ex.transfer.delete_remote(paths, conditions=conditions)
        except ConditionalWritesUnsupported:
            logger.warning(
                "delete: the server rejects conditional deletes; deleting after an ETag check only"
            )
            self._delete_condition = False
            return self.ex.transfer.delete_remote(paths)

    def _still_synced(self, action: Action, conditions: Mapping[str, Condition]) -> bool:
        """The check right before a delete: the object still has the ETag last synced."""
        try:
            head = self.ex.transfer.head(action.path)
        except Exception as exc:
            self.ex.events.failed(action, exc)
            return False
        if head is not None and head.etag == conditions[action.path].etag:
            return True
        self._delete_lost(action, head)
        return False

    def _lost(self, action: Action) -> None:
        """A conditional delete failed: look at what S3 holds now."""
        try:
            head = self.ex.transfer.head(action.path)
        except Exception as exc:
            self.ex.events.failed(action, exc)
            return
        self._delete_lost(action, head)

    def _delete_lost(self, action: Action, remote: RemoteEntry | None) -> None:
        """The object is not the one last synced: ask the planner (the change wins)."""
        after = plan_delete_lost(action.path, remote, action.synced, mode=self.ex.mode)
        if after is None:
            return
        if after.kind is Kind.DOWNLOAD:
            logger.info(
                "delete: %s changed in S3 meanwhile; not deleted, downloading it", action.path
            )
        try:
            self.ex.apply(after)
        except Exception as exc:
            self.ex.events.failed(after, exc)

    def _delete_local(self, action: Action) -> None:
        if action.local is not None and not self.ex.unchanged_since_plan(action):
            return
        # A second name for the file, so a write landing between the re-check above and
        # the unlink (or still arriving through an open handle) is not lost with it.
        aside = self._link_aside(action.path) if action.local is not None else None
        try:
            self.ex.transfer.delete_local(action.path)
        except FileError as exc:
            self.ex.events.failed(action, exc)
            return
        finally:
            if aside is not None:
                changed = self._changed_aside(aside, action)
        if aside is not None and changed:
            return
        self.ex.recorder.forget(action.path, counter="deleted_local")
        self.ex.events.deleted(action)
        if self.ex.prune_emptied_dirs:
            self._remove_emptied_dirs(action.path)

    def _link_aside(self, path: str) -> Path | None:
        """A hard link to ``path`` beside it (None when it cannot be made)."""
        target = self.ex.root / path
        aside = target.with_name(temp_name(target.name, "del-" + secrets.token_hex(4)))
        try:
            os.link(target, aside, follow_symlinks=False)
        except OSError:
            return None
        return aside

    def _changed_aside(self, aside: Path, action: Action) -> bool:
        """Drop the linked file if it is still the one the plan saw; else put it back at its
        path (or keep it under a conflict name when the path was taken meanwhile)."""
        was = action.local
        assert was is not None
        try:
            if same_file(entry_of(action.path, os.lstat(aside)), was):
                return False
            target = self.ex.root / action.path
            keep = target
            if os.path.lexists(target) and self.ex.conflict_name is not None:
                keep = self.ex.root / self.ex.conflict_name(action.path)
            elif os.path.lexists(target):
                return True  # something is there again: leave it, drop the link
            os.rename(aside, keep)
            logger.warning(
                "delete: %s changed while it was deleted; kept as %s",
                action.path,
                keep.relative_to(self.ex.root).as_posix(),
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
                os.rmdir(self.ex.root / parent)
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
