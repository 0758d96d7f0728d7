"""Downloads a folder that ignores case cannot hold apart from another key (S3 holds both
``Photo.JPG`` and ``photo.jpg``): skipped, or S3's version kept under a case-conflict name
(:func:`~watchsync.core.plan.case_clash` decides which).  Such a copy has no record and is
left alone by the agent's ignore rules, so the planner asks for its download every pass:
a copy that already holds the object is current, found by the stat it had when last
checked (by its content once, after a start), never downloaded again.

Two such keys in one pass download side by side: neither finds the other on disk yet.
So the executor claims each download's name as it queues it (:meth:`CaseClashes.claim`,
released once it ends): the first spelling queued owns the folded name meanwhile, and a
later spelling meets it as held.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterator

from watchsync.core.model import Action, Kind, LocalEntry, Skipped
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
        # Queued downloads' names, each part folded: the spelling that owns it, how many.
        self._owner: dict[str, str] = {}
        self._count: dict[str, int] = {}
        self._lock = threading.Lock()

    def _folding(self, action: Action) -> bool:
        """Whether ``action`` is a download onto a volume that ignores case."""
        volume = self.files.volume
        folds = volume is not None and not volume.now.case_sensitive
        return folds and action.kind is Kind.DOWNLOAD

    def claim(self, action: Action) -> None:
        """A download is queued: its name (and each directory on its way) is its spelling's,
        unless another spelling owns it already."""
        if not self._folding(action):
            return
        with self._lock:
            for folded, spelled in _prefixes(action.path):
                if self._owner.setdefault(folded, spelled) == spelled:
                    self._count[folded] = self._count.get(folded, 0) + 1

    def release(self, action: Action) -> None:
        """A queued download has ended (what it wrote is on disk now, if anything)."""
        if not self._folding(action):
            return
        with self._lock:
            for folded, spelled in _prefixes(action.path):
                if self._owner.get(folded) == spelled:
                    self._count[folded] -= 1
                    if not self._count[folded]:
                        del self._owner[folded], self._count[folded]

    def _claimed(self, path: str) -> str | None:
        """Where another queued download puts ``path`` (as :meth:`FolderVolume.twin`)."""
        parts = path.split("/")
        with self._lock:
            for i, (folded, spelled) in enumerate(_prefixes(path)):
                owner = self._owner.get(folded)
                if owner is not None and owner != spelled:
                    return "/".join([owner, *parts[i + 1 :]])
        return None

    def apply(self, action: Action) -> Clash | None:
        """Carry out the download ``action`` if its path clashes; None where it does not."""
        volume = self.files.volume
        if volume is None:
            return None
        held = volume.twin(action.path) or (
            self._claimed(action.path) if self._folding(action) else None
        )
        if held is None:
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


def _prefixes(path: str) -> Iterator[tuple[str, str]]:
    """Each leading part of ``path`` (``a``, ``a/b``, ...), folded and as spelled."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        spelled = "/".join(parts[:i])
        yield spelled.casefold(), spelled
