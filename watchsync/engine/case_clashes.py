"""Downloads a folder that ignores case cannot hold apart from another key (S3 holds both
``Photo.JPG`` and ``photo.jpg``): skipped, or S3's version kept under a case-conflict name
(:func:`~watchsync.core.plan.case_clash` decides which).  Such a copy has no record and is
left alone by the agent's ignore rules, so the planner asks for its download every pass:
a copy that already holds the object is current, found by the stat it had when last
checked (by its content once, after a start), never downloaded again.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from watchsync.core.model import Action, LocalEntry, Skipped
from watchsync.core.plan import case_clash
from watchsync.engine.local_files import LocalFiles
from watchsync.engine.reporting import Events


class Clash(enum.Enum):
    """What :meth:`CaseClashes.apply` did (named as the executor's outcomes)."""

    SKIPPED = "skipped and reported"
    CURRENT = "the case-conflict copy holds the object already"
    DONE = "downloaded to the case-conflict name"


class CaseClashes:
    """The downloads of one folder's keys that clash in case.  ``copies``: the command's
    ignore rules leave case-conflict names alone (the agent's do, ``sync`` has none)."""

    def __init__(
        self,
        files: LocalFiles,
        events: Events,
        copies: bool,
        download: Callable[..., None],
    ) -> None:
        self.files = files
        self.events = events
        self.copies = copies
        self.download = download
        # Copies as last found holding an object (its ETag, their stat): not hashed again.
        self._checked: dict[str, tuple[str, LocalEntry]] = {}

    def apply(self, action: Action) -> Clash | None:
        """Carry out the download ``action`` if its path clashes; None where it does not."""
        volume = self.files.volume
        if volume is None or (held := volume.twin(action.path)) is None:
            return None
        clash = case_clash(action.path, held, copies=self.copies, copy_held=volume.twin)
        if isinstance(clash, Skipped):
            self.events.skipped(clash, remote=True)
            return Clash.SKIPPED
        assert clash is not None and action.remote is not None
        if self._holds(clash, action.remote.etag, action.remote.size):
            return Clash.CURRENT
        why = f"the folder holds {held}, and its file system ignores case: kept as {clash}"
        self.events.skipped(Skipped(action.path, why), remote=True)  # said once per path
        self.download(action, dest=clash)
        return Clash.DONE

    def _holds(self, copy: str, etag: str, size: int) -> bool:
        """Whether the copy holds the object of ``etag`` (remembered by its stat)."""
        now = self.files.now(copy)
        if now is None or now.size != size:
            return False
        if self._checked.get(copy) != (etag, now) and not self.files.holds(copy, etag):
            return False
        self._checked[copy] = (etag, now)
        return True
