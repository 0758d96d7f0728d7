"""The agent's delete guards and conflict naming, without threads or S3."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from watchsync.guards import DeleteBatcher, conflict_name, delete_refusal


def refusal(
    root: Path,
    *,
    count: int = 1,
    synced: int = 5,
    dev: str | None = None,
    max_delete: int = 10,
    force: bool = False,
) -> str | None:
    return delete_refusal(
        root,
        count=count,
        synced=lambda: synced,
        root_dev=str(os.stat(root).st_dev) if dev is None and root.exists() else (dev or ""),
        ignored=lambda name, is_dir: name.endswith(".swp"),
        max_delete=max_delete,
        force=force,
    )


@pytest.mark.parametrize(
    ("setup", "kwargs", "expect"),
    [
        pytest.param("files", {}, None, id="normal-pass-allowed"),
        pytest.param("missing", {}, "is missing", id="root-missing"),
        pytest.param("files", {"dev": "999999"}, "another device", id="other-device"),
        pytest.param("empty", {}, "is empty while 5 files", id="empty-root"),
        pytest.param("ignored-only", {}, "is empty while 5 files", id="only-temp-files-left"),
        pytest.param("empty", {"synced": 0}, None, id="empty-and-nothing-synced"),
        pytest.param("files", {"count": 11}, "exceed --max-delete 10", id="too-many"),
        pytest.param("files", {"count": 11, "force": True}, None, id="too-many-forced"),
        pytest.param("files", {"count": 10}, None, id="exactly-max"),
    ],
)
def test_delete_refusal(
    tmp_path: Path, setup: str, kwargs: dict[str, object], expect: str | None
) -> None:
    root = tmp_path / "root"
    if setup != "missing":
        root.mkdir()
    if setup == "files":
        (root / "keep.txt").write_text("x")
    if setup == "ignored-only":
        (root / ".a.swp").write_text("x")
    got = refusal(root, **kwargs)  # type: ignore[arg-type]
    if expect is None:
        assert got is None
    else:
        assert got is not None and expect in got


def test_delete_batcher_releases_one_batch_after_quiet() -> None:
    now = [0.0]
    batcher = DeleteBatcher(1.0, clock=lambda: now[0])
    batcher.add("b")
    now[0] = 0.9
    batcher.add("a")  # restarts the grace period for the whole batch
    now[0] = 1.5
    stop = threading.Event()
    result: list[list[str]] = []
    t = threading.Thread(target=lambda: result.append(batcher.take(stop)))
    t.start()
    t.join(0.5)
    assert t.is_alive() and batcher.pending() == 2  # 0.6 s quiet is not enough
    now[0] = 2.0
    t.join(5)
    assert result == [["a", "b"]] and batcher.pending() == 0


def test_delete_batcher_take_returns_on_stop() -> None:
    stop = threading.Event()
    stop.set()
    assert DeleteBatcher(1.0).take(stop) == []


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
