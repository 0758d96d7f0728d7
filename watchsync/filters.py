"""``--exclude`` / ``--include`` with the semantics of ``aws s3 sync``.

Every path starts included; the rules are applied in the order given and the last one that
matches wins.  Patterns are ``fnmatch`` patterns matched against the whole path relative to
the sync root, so ``*`` also crosses ``/`` (``--exclude '*.log'`` excludes ``a/b/c.log``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


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


def ordered_rules(argv: Sequence[str]) -> list[tuple[str, str]]:
    """Recover the interleaved order of ``--exclude``/``--include`` from raw arguments.

    argparse keeps two separate lists; aws semantics need the order across both.
    """
    out: list[tuple[str, str]] = []
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        for kind in ("exclude", "include"):
            flag = f"--{kind}"
            if arg == flag and i + 1 < len(argv):
                out.append((kind, argv[i + 1]))
                next(it, None)
            elif arg.startswith(flag + "="):
                out.append((kind, arg[len(flag) + 1 :]))
    return out
