"""``--exclude`` / ``--include`` with ``aws s3 sync`` semantics."""

from __future__ import annotations

import pytest

from watchsync.core.filters import Filters

EX, IN = "exclude", "include"

FILTER_TABLE: list[tuple[str, list[tuple[str, str]], str, bool]] = [
    ("no-rules-includes", [], "a/b", True),
    ("exclude-star-all", [(EX, "*")], "a/b.txt", False),
    ("only-txt-keeps-txt", [(EX, "*"), (IN, "*.txt")], "a/b.txt", True),
    ("only-txt-drops-other", [(EX, "*"), (IN, "*.txt")], "a/b.bin", False),
    ("later-rule-wins", [(IN, "*.txt"), (EX, "*")], "a.txt", False),
    ("later-exclude-narrows", [(EX, "*"), (IN, "*.txt"), (EX, "tmp/*")], "tmp/a.txt", False),
    ("later-exclude-elsewhere", [(EX, "*"), (IN, "*.txt"), (EX, "tmp/*")], "ok/a.txt", True),
    ("dir-star-subtree", [(EX, "dir/*")], "dir/a/b", False),
    ("dir-star-direct", [(EX, "dir/*")], "dir/a", False),
    ("dir-star-not-sibling", [(EX, "dir/*")], "dirx/a", True),
    ("dir-star-not-dir-file", [(EX, "dir/*")], "dir", True),
    ("star-crosses-slash", [(EX, "*.log")], "a/b/c.log", False),
    ("whole-path-anchored", [(EX, "b.log")], "a/b.log", True),
    ("anchored-at-end", [(EX, "*.log")], "a.log.gz", True),
    ("question-one-char", [(EX, "a?c")], "abc", False),
    ("question-not-zero", [(EX, "a?c")], "ac", True),
    ("question-crosses-slash", [(EX, "a?c")], "a/c", False),
    ("class-match", [(EX, "[ab].txt")], "b.txt", False),
    ("class-no-match", [(EX, "[ab].txt")], "c.txt", True),
    ("class-negated", [(EX, "[!ab].txt")], "c.txt", False),
    ("class-range", [(EX, "f[0-9]")], "f7", False),
    ("case-sensitive", [(EX, "*.TXT")], "a.txt", True),
    ("dot-literal", [(EX, "a.b")], "axb", True),
    ("regex-chars-literal", [(EX, "a+(b)")], "a+(b)", False),
    ("hidden-files-matched-by-star", [(EX, "*")], ".hidden", False),
    ("newline-in-name", [(EX, "a*")], "a\nb", False),
]


@pytest.mark.parametrize(
    ("rules", "path", "included"), [pytest.param(*r[1:], id=r[0]) for r in FILTER_TABLE]
)
def test_included(rules: list[tuple[str, str]], path: str, included: bool) -> None:
    assert Filters.of(rules).included(path) is included


def test_truthiness_and_equality() -> None:
    assert not Filters()
    assert Filters.of([(EX, "*")])
    assert Filters.of([(EX, "*")]) == Filters(((False, "*"),))


def test_unknown_kind_rejected() -> None:
    with pytest.raises(ValueError, match="unknown filter kind"):
        Filters.of([("ignore", "*")])
