"""Room: what takes part.  The ignore rules (built-in temp-file patterns plus the ignore
file) and the aws-style filters, swapped whole when the ignore file changes.

Must not touch: S3, the state, threads.  Reads only the ignore file.
"""

from __future__ import annotations

from pathlib import Path

from watchsync.agent.config import FolderConfig
from watchsync.core.filters import Filters, IgnoreRules
from watchsync.fs.walk import WalkOptions


class Scope:
    """Which relative paths one folder syncs.

    >>> scope = Scope(FolderConfig(path=Path("/nonexistent"), url="s3://bkt"), state_dir=None)
    >>> scope.included("a.txt"), scope.included("a.txt.swp")
    (True, False)
    """

    def __init__(self, cfg: FolderConfig, *, state_dir: Path | None) -> None:
        self.root = cfg.path
        self.filters = Filters.of(cfg.filters)
        self.follow_symlinks = cfg.follow_symlinks
        # Replaced whole on reload: readers on other threads see the old or the new rules.
        self.ignore = IgnoreRules.load(self.root, cfg.ignore_file, state_dir=state_dir)

    def included(self, path: str) -> bool:
        """Neither ignored (ignore file, editor temp files) nor excluded by the filters."""
        return not self.ignore.matches(path) and (not self.filters or self.filters.included(path))

    def ignored(self, name: str, is_dir: bool) -> bool:
        """Whether a name directly under the root is ignored (for the empty-folder guard)."""
        return self.ignore.matches(name, is_dir)

    def prune(self, rel_dir: str) -> bool:
        """Whether a whole directory is ignored, so a walk need not enter it."""
        return self.ignore.matches(rel_dir, is_dir=True)

    def reload(self) -> None:
        """Read the ignore file again."""
        self.ignore = self.ignore.reload()

    def walk_options(self) -> WalkOptions:
        """How the local side is walked: symlinks followed unless told not to."""
        return WalkOptions(follow_symlinks=self.follow_symlinks, prune=self.prune)
