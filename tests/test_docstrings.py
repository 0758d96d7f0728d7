"""Docstring examples run for real: pytest runs every ``>>>`` in the package
(``--doctest-modules``), and none may be skipped — a ``+SKIP`` example is prose in disguise,
and every run would report it as a skipped test that is not a test."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "watchsync"
TESTS = Path(__file__).resolve().parent  # pytest collects the helpers' examples too
SKIP = re.compile(r"doctest:.*[+]SKIP")


def skipped_examples(package: Path) -> list[str]:
    """``file:line`` of every example marked to be skipped under ``package``."""
    return [
        f"{path.relative_to(package.parent)}:{n}"
        for path in sorted(package.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SKIP.search(line)
    ]


def test_no_docstring_example_is_skipped() -> None:
    skipped = skipped_examples(PACKAGE) + [
        s for s in skipped_examples(TESTS) if not s.startswith("tests/test_docstrings.py")
    ]
    assert skipped == [], "run the example for real or write it as prose"


def test_a_skipped_example_is_found(tmp_path: Path) -> None:
    package = tmp_path / "watchsync"
    (package / "core").mkdir(parents=True)
    (package / "core" / "ok.py").write_text('"""\n>>> 1 + 1\n2\n"""\n')
    (package / "core" / "bad.py").write_text('"""\n>>> f()  # doctest: +ELLIPSIS, +SKIP\n"""\n')
    assert skipped_examples(package) == ["watchsync/core/bad.py:2"]
