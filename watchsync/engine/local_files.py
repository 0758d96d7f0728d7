"""The local root as the executor's sides look at it again right before they act: a file as
it is now, whether it is still the one the plan saw, whether it holds an object's bytes."""

from __future__ import annotations

from pathlib import Path

from watchsync.core.model import LocalEntry
from watchsync.core.plan import same_file
from watchsync.fs import etag as etags
from watchsync.fs.volume import FolderVolume
from watchsync.fs.walk import stat_entry
from watchsync.s3.transfer import MULTIPART_THRESHOLD


class LocalFiles:
    """One local root, re-checked (links followed or not, as the walk does).

    >>> files = LocalFiles(Path("/nonexistent"))
    >>> files.now("a.txt") is None, files.still("a.txt", None)
    (True, True)
    """

    def __init__(
        self,
        root: Path,
        *,
        follow_symlinks: bool = True,
        volume: FolderVolume | None = None,
    ) -> None:
        self.root = root
        self.follow_symlinks = follow_symlinks
        self.volume = volume
        # Where the volume ignores case, a file found under another spelling is not this
        # path's (see FolderVolume.spelled).
        self.spelled = volume.spelled if volume is not None else None

    def now(self, path: str) -> LocalEntry | None:
        """The regular file at ``path`` now, or None."""
        return stat_entry(
            self.root, path, follow_symlinks=self.follow_symlinks, spelled=self.spelled
        )

    def still(self, path: str, was: LocalEntry | None) -> bool:
        """Whether ``path`` is still the file ``was`` describes (or still none)."""
        return same_file(self.now(path), was)

    def holds(self, path: str, etag: str) -> bool:
        """Whether the file at ``path`` holds the bytes of an object with ``etag``."""
        try:
            return bool(
                etags.matches(
                    self.root / path,
                    etag,
                    part_size=MULTIPART_THRESHOLD,
                    threshold=MULTIPART_THRESHOLD,
                )
            )
        except OSError:
            return False
