"""The conflicts room: the names both versions are kept under."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from world import (
    World,
)

from watchsync.agent.conflicts import conflict_name
from watchsync.core.model import Mode


@pytest.mark.parametrize(
    ("path", "taken", "expect"),
    [
        ("a.txt", set(), "a.conflict-20261125-101500.txt"),
        ("dir/sub/photo.tar.gz", set(), "dir/sub/photo.tar.conflict-20261125-101500.gz"),
        ("Makefile", set(), "Makefile.conflict-20261125-101500"),
        ("a.txt", {"a.conflict-20261125-101500.txt"}, "a.conflict-20261125-101500-2.txt"),
    ],
)
def test_conflict_name(path: str, taken: set[str], expect: str) -> None:
    when = 1795601700.0  # 2026-11-25 10:15:00 UTC
    assert conflict_name(path, when, taken=taken.__contains__) == expect


def test_conflict_name_under_push_avoids_names_taken_in_s3(
    make_world: Callable[..., World],
) -> None:
    w = make_world(direction=Mode.PUSH)
    first = w.rooms.conflicts.name("a.txt")
    w.objects.put(first, b"an earlier conflict copy")
    second = w.rooms.conflicts.name("a.txt")
    assert second != first and second.endswith("-2.txt")


@pytest.mark.parametrize(
    ("name", "ext"),
    [("é" * 120 + ".txt", ".txt"), ("名" * 84, ""), ("a" * 250 + ".tar.gz", ".gz")],
    ids=["two-byte-chars", "three-byte-chars-no-ext", "ascii"],
)
def test_conflict_name_of_a_long_name_fits_and_stays_unique(name: str, ext: str) -> None:
    taken: set[str] = set()
    for _ in range(3):
        got = conflict_name("dir/" + name, 1795601700.0, taken=taken.__contains__)
        leaf = got.split("/")[-1]
        assert len(leaf.encode()) <= 255 and leaf.endswith(ext) and got.startswith("dir/")
        assert ".conflict-20261125-101500" in leaf and got not in taken
        leaf.encode("utf-8")  # never cut inside a character
        taken.add(got)
