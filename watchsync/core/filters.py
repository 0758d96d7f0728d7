"""What takes part in a sync: ``--exclude`` / ``--include`` with the semantics of ``aws s3
sync``, and the agent's gitignore-style ignore rules (built-in temp-file patterns plus
``.watchsyncignore``).

Every path starts included; the rules are applied in the order given and the last one that
matches wins.  Patterns are ``fnmatch`` patterns matched against the whole path relative to
the sync root, so ``*`` also crosses ``/`` (``--exclude '*.log'`` excludes ``a/b/c.log``).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Filters:
    """Ordered include/exclude rules.

    >>> Filters.of([("exclude", "*"), ("include", "*.txt")]).included("a/b.txt")
    True
    """

    rules: tuple[tuple[bool, str], ...] = ()  # (include?, pattern)
    _compiled: tuple[tuple[bool, re.Pattern[str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        compiled = tuple((inc, re.compile(fnmatch.translate(p))) for inc, p in self.rules)
        object.__setattr__(self, "_compiled", compiled)

    @classmethod
    def of(cls, rules: Iterable[tuple[str, str]]) -> Filters:
        """Build from ``("exclude"|"include", pattern)`` pairs in command-line order."""
        out: list[tuple[bool, str]] = []
        for kind, pattern in rules:
            if kind not in ("include", "exclude"):
                raise ValueError(f"unknown filter kind {kind!r}")
            out.append((kind == "include", pattern))
        return cls(tuple(out))

    def included(self, path: str) -> bool:
        """Whether ``path`` (relative, ``/``-separated) takes part in the sync."""
        verdict = True
        for include, rx in self._compiled:
            if rx.match(path):
                verdict = include
        return verdict

    def __bool__(self) -> bool:
        return bool(self.rules)


IGNORE_FILE = ".watchsyncignore"
_MATCH_CACHE = 16_384  # names whose ignore verdict is remembered (see IgnoreRules)

#: The reserved key space under a prefix (the agents' change feed): never a file on either
#: side, never listed, never deleted.
RESERVED_DIR = ".watchsync"


def is_reserved(path: str) -> bool:
    """Whether a relative path lies in the reserved key space.

    >>> is_reserved(".watchsync/feed.json"), is_reserved("a/.watchsync/x")
    (True, False)
    """
    return path.startswith(RESERVED_DIR + "/") or path == RESERVED_DIR


#: What the name of a case-conflict copy carries (a file's before its extension).
CASE_COPY_MARK = " (case conflict)"

#: Editor and OS temporary files, in gitignore syntax.  Only names that are never user data.
DEFAULT_IGNORES: tuple[str, ...] = (
    "*.swp",  # vim swap files (.name.swp, .name.swo, ...)
    "*.swx",
    "*.swo",
    "*~",  # vim/emacs/gedit backups
    ".#*",  # emacs lock files
    "4913",  # vim probes whether it may write the directory
    ".goutputstream-*",  # GLib/gedit atomic-save temp files
    ".DS_Store",  # macOS Finder
    "~$*",  # MS Office owner files
    ".~lock.*#",  # LibreOffice lock files
    # our own download temp files, exactly local.temp_name()'s: .<name>.watchsync-tmp-<16 hex>
    ".*.watchsync-tmp-" + "[0-9a-f]" * 16,
    ".*.watchsync-tmp-" + "[0-9a-f]" * 8,  # ... as versions before the pid wrote them
    "/.watchsync/",  # the reserved key space (the agents' change feed)
    # A key kept beside another that differs only in case: S3's version, never sent back
    # as a new key, never deleted (see watchsync.core.plan.case_clash).
    f"*{CASE_COPY_MARK}",
    f"*{CASE_COPY_MARK}.*",
)


def _escape_glob(rel: str) -> str:
    """Escape a literal relative path for use in a gitignore pattern."""
    out = []
    for ch in rel:
        if ch in "\\*?[]!# ":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def default_ignores(root: Path | None = None, *, state_dir: Path | None = None) -> list[str]:
    """The built-in ignore patterns, plus ``state_dir`` when it lies inside ``root``.

    >>> default_ignores(Path("/data"), state_dir=Path("/data/.state"))[-1]
    '/.state/'
    """
    patterns = list(DEFAULT_IGNORES)
    if root is not None and state_dir is not None:
        try:
            rel = state_dir.resolve().relative_to(root.resolve())
        except ValueError:
            rel = None
        if rel is not None and rel.parts:
            patterns.append("/" + _escape_glob(rel.as_posix()) + "/")
    return patterns


class IgnoreRules:
    """Which relative paths the agent leaves alone: built-in temp-file patterns plus a
    gitignore-syntax file (``.watchsyncignore`` at the root by default).

    A path is ignored if it, or any directory above it, matches.

    >>> rules = IgnoreRules.from_lines(["build/", "*.log"])
    >>> rules.matches("build/x.o"), rules.matches("a/b.log"), rules.matches("a/b.txt")
    (True, True, False)
    """

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        ignore_file: Path | None = None,
        base: Iterable[str] = (),
    ) -> None:
        self.ignore_file = ignore_file
        self._base = list(base)
        self._lines = list(patterns)
        import pathspec  # here: a sync without ignore files starts without it

        self._spec = pathspec.GitIgnoreSpec.from_lines(self._lines)
        # Every pattern is tried in turn on each call, and the same names come back again
        # and again (each event of a file, each directory above it): remember recent ones.
        self._match = functools.lru_cache(maxsize=_MATCH_CACHE)(self._spec.match_file)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> IgnoreRules:
        """Rules from gitignore lines only, without the built-in defaults."""
        return cls(lines)

    @classmethod
    def load(
        cls,
        root: Path,
        ignore_file: Path | None = None,
        *,
        state_dir: Path | None = None,
        extra: Iterable[str] = (),
    ) -> IgnoreRules:
        """Defaults + ``extra`` + the ignore file (``root/.watchsyncignore`` if not given;
        a missing file means no extra rules).  Later lines win, so the file may re-include
        (``!name``) what the defaults exclude."""
        base = [*default_ignores(root, state_dir=state_dir), *extra]
        path = ignore_file if ignore_file is not None else root / IGNORE_FILE
        return cls([*base, *_read_lines(path)], ignore_file=path, base=base)

    def reload(self) -> IgnoreRules:
        """The same rules with the ignore file read again."""
        if self.ignore_file is None:
            return self
        lines = [*self._base, *_read_lines(self.ignore_file)]
        return IgnoreRules(lines, ignore_file=self.ignore_file, base=self._base)

    def matches(self, rel_path: str, is_dir: bool = False) -> bool:
        """Whether ``rel_path`` (relative, ``/``-separated) is ignored."""
        rel_path = rel_path.strip("/")
        if not rel_path:
            return False
        parts = rel_path.split("/")
        for i in range(1, len(parts)):
            if self._match("/".join(parts[:i]) + "/"):
                return True
        return bool(self._match(rel_path + "/" if is_dir else rel_path))


def _read_lines(path: Path) -> list[str]:
    """Lines of an ignore file; none if it does not exist."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning("watch: cannot read ignore file %s: %s", path, exc)
        return []
