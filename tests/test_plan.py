"""The planner: ``plan_sync`` (the ``aws s3 sync`` rules) and ``plan_reconcile`` (the agent's
three-way merge).  Pure tests: tables of (local, remote, state, options) -> actions, one row per
rule, and hypothesis properties for the invariants.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchsync.core.filters import DEFAULT_IGNORES, Filters, IgnoreRules
from watchsync.core.model import (
    Action,
    Condition,
    Direction,
    Item,
    Kind,
    LocalEntry,
    Mode,
    RemoteEntry,
    Skipped,
    StoredMtime,
    SyncedEntry,
    Volume,
)
from watchsync.core.plan import (
    CASE_CLASH_STEPS,
    CONFLICT_STEPS,
    PAUSED_MIN_WAIT,
    ConflictStep,
    PathOptions,
    ReconcileOptions,
    SyncOptions,
    case_clash,
    join,
    one_time,
    plan_delete_lost,
    plan_listed,
    plan_path,
    plan_raced,
    plan_reconcile,
    plan_rename,
    plan_sync,
    restored_mode,
    restored_mtime,
    runner_wait,
    same_content,
    same_file,
    settle_by_stored_mtime,
)

S = 1_000_000_000  # ns per second
MS = 1_000_000
US = 1_000
T = 1_700_000_000 * S  # a whole second

UP, DOWN = Direction.UP, Direction.DOWN
# The volumes of SD cards and USB disks: exFAT keeps whole seconds, FAT two; neither has a
# ctime of its own (it is the mtime again).
EXFAT = Volume(mtime_step_ns=S, ctime=False, case_sensitive=False, hard_links=False)
FAT = replace(EXFAT, mtime_step_ns=2 * S)
C, ABSENT = Condition, Condition.ABSENT
BOTH, PUSH, PULL = Mode.BOTH, Mode.PUSH, Mode.PULL

Row = tuple[Kind | str, str, str]
SKIP = "skip"  # a row for a path plan_sync skips (Skipped) instead of acting on


def L(path: str, size: int = 1, mtime: int = T) -> LocalEntry:
    return LocalEntry(path, size, mtime)


def R(path: str, size: int = 1, mtime: int = T, etag: str = "e1", cls: str = "") -> RemoteEntry:
    return RemoteEntry(path, size, mtime, etag, storage_class=cls)


def Y(path: str, size: int = 1, mtime: int = T, etag: str = "e1", rmtime: int = T) -> SyncedEntry:
    return SyncedEntry(path, size, mtime, etag, rmtime)


def rows(actions: Iterable[Action | Skipped]) -> list[Row]:
    return [(a.kind if isinstance(a, Action) else SKIP, a.path, a.reason) for a in actions]


def flt(*rules: tuple[str, str]) -> Filters:
    return Filters.of(rules)


# --------------------------------------------------------------------------------- plan_sync

SYNC_TABLE: list[tuple[str, list[LocalEntry], list[RemoteEntry], SyncOptions, list[Row]]] = [
    # ---- UP (local -> S3)
    ("up-missing-at-destination", [L("a")], [], SyncOptions(UP), [(Kind.UPLOAD, "a", "new")]),
    ("up-size-differs", [L("a", 2)], [R("a", 1, T + 5 * S)], SyncOptions(UP),
     [(Kind.UPLOAD, "a", "size differs")]),
    ("up-local-newer-by-a-microsecond", [L("a", mtime=T + US)], [R("a")], SyncOptions(UP),
     [(Kind.UPLOAD, "a", "local newer")]),
    ("up-local-newer-same-second", [L("a", mtime=T + 500 * MS)], [R("a")], SyncOptions(UP),
     [(Kind.UPLOAD, "a", "local newer")]),
    ("up-local-newer-rounds-to-microsecond", [L("a", mtime=T + 500)], [R("a")], SyncOptions(UP),
     [(Kind.UPLOAD, "a", "local newer")]),
    ("up-local-newer-below-half-microsecond", [L("a", mtime=T + 499)], [R("a")],
     SyncOptions(UP), []),
    ("up-equal", [L("a")], [R("a")], SyncOptions(UP), []),
    ("up-remote-newer", [L("a")], [R("a", mtime=T + 5 * S)], SyncOptions(UP), []),
    ("up-size-only-same-size-local-newer", [L("a", mtime=T + 5 * S)], [R("a")],
     SyncOptions(UP, size_only=True), []),
    ("up-size-only-size-differs", [L("a", 2)], [R("a", 1)], SyncOptions(UP, size_only=True),
     [(Kind.UPLOAD, "a", "size differs")]),
    ("up-exact-timestamps-ignored-remote-newer", [L("a")], [R("a", mtime=T + 5 * S)],
     SyncOptions(UP, exact_timestamps=True), []),
    ("up-exact-timestamps-ignored-local-newer", [L("a", mtime=T + 5 * S)], [R("a")],
     SyncOptions(UP, exact_timestamps=True), [(Kind.UPLOAD, "a", "local newer")]),
    ("up-delete", [L("a")], [R("a"), R("b")], SyncOptions(UP, delete=True),
     [(Kind.DELETE_REMOTE, "b", "not in source")]),
    ("up-no-delete-without-flag", [L("a")], [R("a"), R("b")], SyncOptions(UP), []),
    # ---- DOWN (S3 -> local)
    ("down-missing-at-destination", [], [R("a")], SyncOptions(DOWN),
     [(Kind.DOWNLOAD, "a", "new")]),
    ("down-size-differs", [L("a", 2, T + 5 * S)], [R("a", 1)], SyncOptions(DOWN),
     [(Kind.DOWNLOAD, "a", "size differs")]),
    # aws-cli skips a same-size newer object; we copy it (a later whole second).
    ("down-remote-newer-later-second", [L("a", mtime=T + 900 * MS)], [R("a", mtime=T + S)],
     SyncOptions(DOWN), [(Kind.DOWNLOAD, "a", "remote newer")]),
    ("down-remote-newer-same-second", [L("a")], [R("a", mtime=T + 900 * MS)],
     SyncOptions(DOWN), []),
    ("down-equal", [L("a")], [R("a")], SyncOptions(DOWN), []),
    ("down-local-newer", [L("a", mtime=T + 5 * S)], [R("a")], SyncOptions(DOWN), []),
    ("down-size-only-remote-newer", [L("a")], [R("a", mtime=T + 5 * S)],
     SyncOptions(DOWN, size_only=True), []),
    ("down-size-only-size-differs", [L("a", 2)], [R("a", 1)],
     SyncOptions(DOWN, size_only=True), [(Kind.DOWNLOAD, "a", "size differs")]),
    ("down-exact-timestamps-remote-older", [L("a", mtime=T + 5 * S)], [R("a")],
     SyncOptions(DOWN, exact_timestamps=True), [(Kind.DOWNLOAD, "a", "timestamps differ")]),
    ("down-exact-timestamps-remote-newer", [L("a")], [R("a", mtime=T + S)],
     SyncOptions(DOWN, exact_timestamps=True), [(Kind.DOWNLOAD, "a", "timestamps differ")]),
    ("down-exact-timestamps-same-second", [L("a", mtime=T + 300 * MS)], [R("a")],
     SyncOptions(DOWN, exact_timestamps=True), []),
    ("down-exact-timestamps-size-differs", [L("a", 2)], [R("a", 1)],
     SyncOptions(DOWN, exact_timestamps=True), [(Kind.DOWNLOAD, "a", "size differs")]),
    ("down-delete", [L("a"), L("b")], [R("b")], SyncOptions(DOWN, delete=True),
     [(Kind.DELETE_LOCAL, "a", "not in source")]),
    ("down-no-delete-without-flag", [L("a"), L("b")], [R("b")], SyncOptions(DOWN), []),
    # ---- archived objects (aws's "GLACIER objects"): skipped on download unless forced
    ("down-archived-skipped", [], [R("a", cls="GLACIER")], SyncOptions(DOWN),
     [(SKIP, "a", "object is in storage class GLACIER, not restored")]),
    ("down-deep-archive-skipped", [L("a", 2)], [R("a", cls="DEEP_ARCHIVE")], SyncOptions(DOWN),
     [(SKIP, "a", "object is in storage class DEEP_ARCHIVE, not restored")]),
    ("down-archived-current-no-word", [L("a")], [R("a", cls="GLACIER")], SyncOptions(DOWN), []),
    ("down-archived-forced", [], [R("a", cls="GLACIER")], SyncOptions(DOWN, force_archived=True),
     [(Kind.DOWNLOAD, "a", "new")]),
    ("down-archived-quiet", [], [R("a", cls="GLACIER")], SyncOptions(DOWN, quiet_archived=True),
     []),
    ("down-archived-kept-from-delete", [L("a"), L("b")], [R("a", 2, cls="GLACIER")],
     SyncOptions(DOWN, delete=True),
     [(SKIP, "a", "object is in storage class GLACIER, not restored"),
      (Kind.DELETE_LOCAL, "b", "not in source")]),
    ("down-instant-retrieval-downloaded", [], [R("a", cls="GLACIER_IR")], SyncOptions(DOWN),
     [(Kind.DOWNLOAD, "a", "new")]),
    ("up-over-archived", [L("a", 2)], [R("a", cls="GLACIER")], SyncOptions(UP),
     [(Kind.UPLOAD, "a", "size differs")]),
    # ---- filters
    ("up-excluded-not-copied", [L("a.log"), L("a.txt")], [],
     SyncOptions(UP, filters=flt(("exclude", "*.log"))), [(Kind.UPLOAD, "a.txt", "new")]),
    ("down-excluded-not-copied", [], [R("a.log"), R("a.txt")],
     SyncOptions(DOWN, filters=flt(("exclude", "*.log"))), [(Kind.DOWNLOAD, "a.txt", "new")]),
    ("up-excluded-not-deleted", [], [R("keep.log"), R("x")],
     SyncOptions(UP, delete=True, filters=flt(("exclude", "*.log"))),
     [(Kind.DELETE_REMOTE, "x", "not in source")]),
    ("down-excluded-not-deleted", [L("keep.log"), L("x")], [],
     SyncOptions(DOWN, delete=True, filters=flt(("exclude", "*.log"))),
     [(Kind.DELETE_LOCAL, "x", "not in source")]),
    ("include-after-exclude-wins", [L("a.bin"), L("a.txt")], [],
     SyncOptions(UP, filters=flt(("exclude", "*"), ("include", "*.txt"))),
     [(Kind.UPLOAD, "a.txt", "new")]),
    ("exclude-after-include-wins", [L("a.bin"), L("a.txt")], [],
     SyncOptions(UP, filters=flt(("include", "*.txt"), ("exclude", "*"))), []),
    ("star-crosses-slash", [L("a/b/c.log"), L("a/b/c.txt")], [],
     SyncOptions(UP, filters=flt(("exclude", "*.log"))), [(Kind.UPLOAD, "a/b/c.txt", "new")]),
    ("dir-star-excludes-subtree", [L("dir/a"), L("dir/sub/b"), L("dirx")], [],
     SyncOptions(UP, filters=flt(("exclude", "dir/*"))), [(Kind.UPLOAD, "dirx", "new")]),
    # ---- a folder on FAT: times within its two-second tick are one time (a download's
    # time, rounded, is not older than its object; an upload's not newer)
    ("down-fat-rounded-down", [L("a", mtime=T)], [R("a", mtime=T + S)],
     SyncOptions(DOWN, volume=FAT), []),
    ("down-posix-a-second-older", [L("a", mtime=T)], [R("a", mtime=T + S)],
     SyncOptions(DOWN), [(Kind.DOWNLOAD, "a", "remote newer")]),
    ("down-fat-two-seconds-older", [L("a", mtime=T)], [R("a", mtime=T + 2 * S)],
     SyncOptions(DOWN, volume=FAT), [(Kind.DOWNLOAD, "a", "remote newer")]),
    ("up-fat-rounded-up", [L("a", mtime=T + S)], [R("a", mtime=T)],
     SyncOptions(UP, volume=FAT), []),
    ("down-exact-fat-rounded", [L("a", mtime=T)], [R("a", mtime=T + S)],
     SyncOptions(DOWN, exact_timestamps=True, volume=FAT), []),
    # ---- several paths at once: one action per path, in key order
    ("mixed-up",
     [L("a-b", 1), L("a/x", 2, T + S), L("a0", 3)],
     [R("a-b", 1), R("a.b", 1), R("a/x", 2), R("a0", 4)],
     SyncOptions(UP, delete=True),
     [(Kind.DELETE_REMOTE, "a.b", "not in source"), (Kind.UPLOAD, "a/x", "local newer"),
      (Kind.UPLOAD, "a0", "size differs")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("local", "remote", "opts", "expected"),
    [pytest.param(*row[1:], id=row[0]) for row in SYNC_TABLE],
)
def test_plan_sync(
    local: list[LocalEntry], remote: list[RemoteEntry], opts: SyncOptions, expected: list[Row]
) -> None:
    assert rows(list(plan_sync(local, remote, opts=opts))) == expected


def test_plan_sync_actions_carry_both_entries() -> None:
    loc, rem = L("a", 2), R("a", 1)
    [action] = plan_sync([loc], [rem], opts=SyncOptions(UP))
    assert isinstance(action, Action)
    assert (action.local, action.remote) == (loc, rem)


def test_plan_sync_future_mtime_uploads_every_run() -> None:
    """aws's upload test: a file whose mtime is after the upload's second (a future mtime, or
    one set within the second the upload ran) is 'local newer' again on the next run."""
    loc = L("a", mtime=T + 10 * S + 500 * MS)
    uploaded = R("a", mtime=T + 10 * S)  # S3 stamps the upload with the wall clock's second
    assert rows(list(plan_sync([loc], [uploaded], opts=SyncOptions(UP)))) == [
        (Kind.UPLOAD, "a", "local newer")
    ]


# ------------------------------------------------------------- the object's kept mtime

NEWER, DIFFER = StoredMtime.SOURCE_NEWER, StoredMtime.TIMES_DIFFER

# Which copies plan_sync leaves to the object's kept mtime (a HEAD in the executor): only
# same-size ones chosen by the times, as the listing carries LastModified alone.
KEPT_RULE_TABLE: list[tuple[str, LocalEntry | None, RemoteEntry, SyncOptions, object]] = [
    ("up-same-size-local-newer", L("a", mtime=T + S), R("a"), SyncOptions(UP), NEWER),
    ("up-size-differs", L("a", 2, T + S), R("a"), SyncOptions(UP), None),
    ("up-new", L("a"), R("b"), SyncOptions(UP), None),
    ("down-same-size-remote-newer", L("a"), R("a", mtime=T + S), SyncOptions(DOWN), NEWER),
    ("down-exact-timestamps-differ", L("a", mtime=T + S), R("a"),
     SyncOptions(DOWN, exact_timestamps=True), DIFFER),
    ("down-size-differs", L("a", 2), R("a", mtime=T + S), SyncOptions(DOWN), None),
    ("down-new", None, R("a"), SyncOptions(DOWN), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loc", "rem", "opts", "rule"),
    [pytest.param(*row[1:], id=row[0]) for row in KEPT_RULE_TABLE],
)
def test_plan_sync_leaves_same_size_copies_to_the_kept_mtime(
    loc: LocalEntry | None, rem: RemoteEntry, opts: SyncOptions, rule: object
) -> None:
    [action] = plan_sync([loc] if loc else [], [rem], opts=opts)
    assert isinstance(action, Action) and action.by_stored_mtime is rule


_LISTED = R("a", mtime=T + 10 * S)  # the object as the listing showed it


def _kept(mtime: int | None, etag: str = "e1") -> RemoteEntry:
    """The object as a HEAD finds it, keeping ``mtime`` (None: nothing kept)."""
    return replace(_LISTED, stored_mtime_ns=mtime, etag=etag)


_UP_A = Action(
    Kind.UPLOAD, "a", "local newer", L("a", mtime=T + 9 * S), _LISTED, by_stored_mtime=NEWER
)
_DOWN_A = Action(
    Kind.DOWNLOAD, "a", "remote newer", L("a", mtime=T), _LISTED, by_stored_mtime=NEWER
)
_EXACT_A = replace(_DOWN_A, reason="timestamps differ", by_stored_mtime=DIFFER)

# (name, action, the object as a HEAD found it, what is done: (kind, reason) or None)
SETTLE_TABLE: list[tuple[str, Action, RemoteEntry | None, tuple[Kind, str] | None]] = [
    ("up-kept-is-the-file", _UP_A, _kept(T + 9 * S), None),
    ("up-future-mtime-kept", replace(_UP_A, local=L("a", mtime=T + 99 * S)),
     _kept(T + 99 * S), None),
    ("up-newer-by-a-microsecond", _UP_A, _kept(T + 9 * S - US),
     (Kind.UPLOAD, "local newer than its kept mtime")),
    ("up-newer-within-the-microsecond", replace(_UP_A, local=L("a", mtime=T + 9 * S + 999)),
     _kept(T + 9 * S), None),
    ("up-kept-newer", _UP_A, _kept(T + 20 * S), None),
    ("up-nothing-kept", _UP_A, _kept(None), (Kind.UPLOAD, "local newer")),
    ("up-object-gone", _UP_A, None, (Kind.UPLOAD, "local newer")),
    ("up-object-changed-since-listed", _UP_A, _kept(T + 9 * S, "e2"),
     (Kind.UPLOAD, "local newer")),
    ("down-kept-is-the-file", _DOWN_A, _kept(T), None),
    ("down-kept-later-second", _DOWN_A, _kept(T + S),
     (Kind.DOWNLOAD, "kept mtime newer")),
    ("down-kept-same-second", _DOWN_A, _kept(T + 900 * MS), None),
    ("down-kept-older", _DOWN_A, _kept(T - S), None),
    ("down-nothing-kept", _DOWN_A, _kept(None), (Kind.DOWNLOAD, "remote newer")),
    ("exact-kept-older", _EXACT_A, _kept(T - S),
     (Kind.DOWNLOAD, "kept mtime differs")),
    ("exact-kept-same-second", _EXACT_A, _kept(T + 300 * MS), None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("action", "head", "want"), [pytest.param(*row[1:], id=row[0]) for row in SETTLE_TABLE]
)
def test_settle_by_stored_mtime(
    action: Action, head: RemoteEntry | None, want: tuple[Kind, str] | None
) -> None:
    got = settle_by_stored_mtime(action, head)
    assert ((got.kind, got.reason) if got else None) == want
    if got is not None:
        assert got.by_stored_mtime is None  # settled: the executor does not ask again


@pytest.mark.parametrize(
    ("action", "kept", "step", "want"),
    [
        pytest.param(_DOWN_A, T + S, 1, (Kind.DOWNLOAD, "kept mtime newer"), id="posix-second"),
        pytest.param(_DOWN_A, T + S, FAT.mtime_step_ns, None, id="fat-rounded-down"),
        pytest.param(_DOWN_A, T + 2 * S, FAT.mtime_step_ns, (Kind.DOWNLOAD, "kept mtime newer"),
                     id="fat-two-seconds"),
        pytest.param(replace(_UP_A, local=L("a", mtime=T + 10 * S)), T + 9 * S + 500 * MS,
                     FAT.mtime_step_ns, None, id="fat-upload-rounded-up"),
    ],
)  # fmt: skip
def test_settle_by_stored_mtime_within_the_folder_clock_tick(
    action: Action, kept: int, step: int, want: tuple[Kind, str] | None
) -> None:
    """A FAT folder keeps two-second times: a download's time rounded down or an upload's
    rounded up is no change (rclone's --modify-window), else every sync copies again."""
    got = settle_by_stored_mtime(action, _kept(kept), step_ns=step)
    assert ((got.kind, got.reason) if got else None) == want


def test_one_time_is_equality_on_a_nanosecond_clock() -> None:
    assert one_time(T, T, 1) and not one_time(T, T + 1, 1)
    assert one_time(T, T + S, 2 * S) and not one_time(T, T + 2 * S, 2 * S)


def test_settle_leaves_other_actions_alone() -> None:
    plain = Action(Kind.UPLOAD, "a", "new", L("a"))
    assert settle_by_stored_mtime(plain, None) is plain


@pytest.mark.parametrize(
    ("last_modified", "kept", "want"), [(T, None, T), (T, T - 5 * S, T - 5 * S), (T, -S, -S)]
)
def test_restored_mtime(last_modified: int, kept: int | None, want: int) -> None:
    assert restored_mtime(last_modified, kept) == want


@pytest.mark.parametrize(
    ("kept", "keep", "want"),
    [
        (0o100755, True, 0o755),
        (0o104755, True, 0o755),  # setuid is never restored from metadata
        (0o101777, True, 0o777),  # nor sticky
        (0o100755, False, None),  # not opted in: the umask's default
        (None, True, None),  # nothing kept
    ],
)
def test_restored_mode(kept: int | None, keep: bool, want: int | None) -> None:
    assert restored_mode(kept, keep_mode=keep) == want


@pytest.mark.parametrize(
    "streams",
    [
        pytest.param(([L("b"), L("a")], []), id="first-descending"),
        pytest.param(([L("a")], [L("a"), L("a")]), id="second-duplicate"),
        pytest.param(([L("a/x"), L("a-b")], [L("a")]), id="first-slash-before-dash"),
    ],
)
def test_join_rejects_unsorted(streams: tuple[list[LocalEntry], ...]) -> None:
    with pytest.raises(ValueError, match="not sorted"):
        list(join(*streams))


def test_join_rows() -> None:
    got = [(p, [e is not None for e in row]) for p, row in join([L("a"), L("c")], [L("b"), L("c")])]
    assert got == [("a", [True, False]), ("b", [False, True]), ("c", [True, True])]


def test_plan_sync_unsorted_listing_raises() -> None:
    with pytest.raises(ValueError, match="stream 1 is not sorted"):
        list(plan_sync([], [R("b"), R("a")], opts=SyncOptions(DOWN)))


# ---------------------------------------------------------------------------- plan_reconcile

Want = tuple[Kind, str] | None  # the one action expected for path "a", or None
N = None
# (local, remote, synced, expected result for each (mode, delete))
ReconcileCase = tuple[
    LocalEntry | None, RemoteEntry | None, SyncedEntry | None, dict[tuple[Mode, bool], Want]
]


def every(want: Want) -> dict[tuple[Mode, bool], Want]:
    return {(m, d): want for m in Mode for d in (False, True)}


def per_mode(both: Want, push: Want, pull: Want) -> dict[tuple[Mode, bool], Want]:
    """The same result with and without delete."""
    return {(m, d): w for m, w in ((BOTH, both), (PUSH, push), (PULL, pull)) for d in (False, True)}


def per_mode_delete(
    keep: tuple[Want, Want, Want], delete: tuple[Want, Want, Want]
) -> dict[tuple[Mode, bool], Want]:
    out: dict[tuple[Mode, bool], Want] = {}
    for d, wants in ((False, keep), (True, delete)):
        for m, w in zip((BOTH, PUSH, PULL), wants, strict=True):
            out[(m, d)] = w
    return out


UPL, DWN = Kind.UPLOAD, Kind.DOWNLOAD
SYN = Y("a")  # the last synced version: local (1 byte, T), object (etag e1, T)

FIRST_CONFLICT = (Kind.CONFLICT, "differs on both sides, never synced")
FIRST_SAME_SIZE = (Kind.CONFLICT, "same size, times differ, never synced")
FIRST_SAME_SECOND = (Kind.CONFLICT, "same size and second, never synced")

RECONCILE_CASES: dict[str, ReconcileCase] = {
    # --- gone from both sides
    "gone-from-both": (N, N, SYN, every((Kind.FORGET, "gone from both sides"))),
    # --- _first_meeting: both sides have it, never synced
    "first-equal": (L("a"), R("a"), N, every((Kind.RECORD, "already equal"))),
    # the same second is not the same time: a file written in the object's second (a lost
    # state) may hold other bytes; only a download's exact LastModified is taken as equal
    # (push keeps aws's rule, without hashing)
    "first-same-size-same-second": (
        L("a", mtime=T + 700 * MS), R("a"), N,
        per_mode(FIRST_SAME_SECOND, (Kind.RECORD, "already equal"), FIRST_SAME_SECOND)),
    # same size, other times: copied the mode's way, after a content-hash check
    # (both, pull: kept as a conflict unless the content hashes agree; the newer time is no
    # proof, and pull never overwrites a local file without a copy)
    "first-same-size-local-newer": (
        L("a", mtime=T + 5 * S), R("a"), N,
        per_mode(FIRST_SAME_SIZE, (UPL, "same size, times differ"), FIRST_SAME_SIZE)),
    "first-same-size-remote-newer": (
        L("a"), R("a", mtime=T + 5 * S), N,
        per_mode(FIRST_SAME_SIZE, (Kind.RECORD, "same size, local not newer"), FIRST_SAME_SIZE)),
    # push adopts by aws's rule: not newer to the microsecond is equal, without hashing
    "first-same-size-local-older-by-a-second": (
        L("a", mtime=T - S), R("a"), N,
        per_mode(FIRST_SAME_SIZE, (Kind.RECORD, "same size, local not newer"), FIRST_SAME_SIZE)),
    # different sizes: push copies its way, both and pull keep both versions
    "first-size-differs-local-newer": (
        L("a", 2, T + 5 * S), R("a", 1), N,
        per_mode(FIRST_CONFLICT, (UPL, "size differs"), FIRST_CONFLICT)),
    "first-size-differs-remote-newer": (
        L("a", 2), R("a", 1, T + 5 * S), N,
        per_mode(FIRST_CONFLICT, (UPL, "size differs"), FIRST_CONFLICT)),
    "first-size-differs-same-second-local-later": (
        L("a", 2, T + 500 * MS), R("a", 1), N,
        per_mode(FIRST_CONFLICT, (UPL, "size differs"), FIRST_CONFLICT)),
    "first-size-differs-same-time": (
        L("a", 2), R("a", 1), N,
        per_mode(FIRST_CONFLICT, (UPL, "size differs"), FIRST_CONFLICT)),
    # --- both sides present, synced before
    "synced-unchanged": (L("a"), R("a"), SYN, every(N)),
    "local-changed-size": (
        L("a", 2), R("a"), SYN, per_mode((UPL, "local changed"), (UPL, "local changed"), N)),
    "local-changed-mtime-only": (
        L("a", mtime=T + 1), R("a"), SYN,
        per_mode((UPL, "local changed"), (UPL, "local changed"), N)),
    # another file renamed over it, written within the same time tick: same size and mtime
    "local-changed-identity-only": (
        LocalEntry("a", 1, T, ino=7), R("a"), SyncedEntry("a", 1, T, "e1", T, ino=6),
        per_mode((UPL, "local changed"), (UPL, "local changed"), N)),
    # ``touch -r``, ``cp -p`` over it, a chmod: size and mtime as synced, only the ctime moved
    # (the executor compares content before sending: verify)
    "local-changed-ctime-only": (
        LocalEntry("a", 1, T, ctime_ns=T + 5 * S), R("a"), SyncedEntry("a", 1, T, "e1", T,
                                                                         ctime_ns=T),
        per_mode((UPL, "local changed"), (UPL, "local changed"), N)),
    "synced-ctime-unknown": (
        LocalEntry("a", 1, T, ctime_ns=T + 5 * S), R("a"), SYN, every(N)),
    # an identity not known on one side (a state written by an older watchsync) is no change
    "synced-identity-unknown": (
        LocalEntry("a", 1, T, ino=7), R("a"), SyncedEntry("a", 1, T, "e1", T), every(N)),
    "remote-changed-etag": (
        L("a"), R("a", etag="e2"), SYN,
        per_mode((DWN, "remote changed"), N, (DWN, "remote changed"))),
    "remote-changed-size": (
        L("a"), R("a", 2), SYN, per_mode((DWN, "remote changed"), N, (DWN, "remote changed"))),
    "remote-same-etag-new-time-unchanged": (L("a"), R("a", mtime=T + 9 * S), SYN, every(N)),
    "remote-no-etag-time-changed": (
        L("a"), R("a", mtime=T + S, etag=""), SYN,
        per_mode((DWN, "remote changed"), N, (DWN, "remote changed"))),
    "remote-no-etag-unchanged": (L("a"), R("a", etag=""), SYN, every(N)),
    "synced-no-etag-time-changed": (
        L("a"), R("a", mtime=T + S), Y("a", etag=""),
        per_mode((DWN, "remote changed"), N, (DWN, "remote changed"))),
    # Reported: CONFLICT also in push and pull modes, which may not write the other side.
    "both-changed": (
        L("a", 2), R("a", 3, etag="e2"), SYN, every((Kind.CONFLICT, "changed on both sides"))),
    # Reported: both sides changed to the same thing is still a conflict.
    "both-changed-identically": (
        L("a", 2, T + 5 * S), R("a", 2, T + 5 * S, "e2"), SYN,
        every((Kind.CONFLICT, "changed on both sides"))),
    # --- only local
    "local-only-new": (
        L("a"), N, N, per_mode((UPL, "new local file"), (UPL, "new local file"), N)),
    "local-only-changed-remote-deleted": (
        L("a", 2), N, SYN,
        per_mode((UPL, "local changed, remote deleted"), (UPL, "local changed, remote deleted"),
                 N)),
    "local-only-deleted-in-s3": (
        L("a"), N, SYN,
        per_mode_delete(
            keep=((UPL, "missing in S3"), (UPL, "missing in S3"), N),
            delete=((Kind.DELETE_LOCAL, "deleted in S3"), (UPL, "missing in S3"),
                    (Kind.DELETE_LOCAL, "deleted in S3")))),
    # --- only remote
    "remote-only-new": (
        N, R("a"), N, per_mode((DWN, "new in S3"), N, (DWN, "new in S3"))),
    "remote-only-changed-local-deleted": (
        N, R("a", etag="e2"), SYN,
        per_mode((DWN, "remote changed, local deleted"), N,
                 (DWN, "remote changed, local deleted"))),
    "remote-only-deleted-locally": (
        N, R("a"), SYN,
        per_mode_delete(
            keep=((DWN, "missing locally"), N, (DWN, "missing locally")),
            delete=((Kind.DELETE_REMOTE, "deleted locally"),
                    (Kind.DELETE_REMOTE, "deleted locally"), (DWN, "missing locally")))),
}  # fmt: skip


def _reconcile_params() -> list[object]:
    out: list[object] = []
    for name, (loc, rem, syn, wants) in RECONCILE_CASES.items():
        assert set(wants) == {(m, d) for m in Mode for d in (False, True)}, name
        for (mode, delete), want in wants.items():
            case_id = f"{name}-{mode.value}-{'delete' if delete else 'keep'}"
            out.append(pytest.param(loc, rem, syn, mode, delete, want, id=case_id))
    return out


@pytest.mark.parametrize(("loc", "rem", "syn", "mode", "delete", "want"), _reconcile_params())
def test_plan_reconcile(
    loc: LocalEntry | None,
    rem: RemoteEntry | None,
    syn: SyncedEntry | None,
    mode: Mode,
    delete: bool,
    want: Want,
) -> None:
    opts = ReconcileOptions(mode=mode, delete=delete)
    got = list(
        plan_reconcile([loc] if loc else [], [rem] if rem else [], [syn] if syn else [], opts=opts)
    )
    assert rows(got) == ([] if want is None else [(want[0], "a", want[1])])
    for action in got:
        assert (action.local, action.remote, action.synced) == (loc, rem, syn)


# (name, local, remote, synced, volume, the action for "a" under both with delete)
VOLUME_RECONCILE_TABLE: list[
    tuple[str, LocalEntry, RemoteEntry, SyncedEntry | None, Volume, Want]
] = [
    # a download's time, rounded by FAT, met again without a state: equal, no hash
    ("fat-first-meeting-rounded", L("a", mtime=T), R("a", mtime=T + S), N, FAT,
     (Kind.RECORD, "already equal")),
    ("posix-first-meeting-a-second-apart", L("a", mtime=T), R("a", mtime=T + S), N, Volume(),
     FIRST_SAME_SIZE),
    # exFAT's ctime is its mtime again: not evidence of anything
    ("exfat-ctime-is-no-evidence", LocalEntry("a", 1, T, ctime_ns=T + 5 * S), R("a"),
     SyncedEntry("a", 1, T, "e1", T, ctime_ns=T), EXFAT, N),
    ("posix-ctime-moved", LocalEntry("a", 1, T, ctime_ns=T + 5 * S), R("a"),
     SyncedEntry("a", 1, T, "e1", T, ctime_ns=T), Volume(), (UPL, "local changed")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loc", "rem", "syn", "volume", "want"),
    [pytest.param(*row[1:], id=row[0]) for row in VOLUME_RECONCILE_TABLE],
)
def test_plan_reconcile_on_a_volume(
    loc: LocalEntry, rem: RemoteEntry, syn: SyncedEntry | None, volume: Volume, want: Want
) -> None:
    opts = ReconcileOptions(mode=BOTH, delete=True, volume=volume)
    got = list(plan_reconcile([loc], [rem], [syn] if syn else [], opts=opts))
    assert [(a.kind, a.reason) for a in got] == ([want] if want else [])
    if want is not None and want[0] is UPL:
        assert got[0].verify  # the same bytes are recorded, not sent


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.value)
def test_plan_reconcile_excluded_path_untouched(mode: Mode) -> None:
    opts = ReconcileOptions(mode=mode, delete=True, included=lambda p: not p.endswith(".log"))
    local = [L("a.log", 2), L("b")]
    remote = [R("b"), R("c.log")]
    synced = [Y("a.log"), Y("b"), Y("c.log"), Y("d.log")]
    got = rows(list(plan_reconcile(local, remote, synced, opts=opts)))
    assert got == []


@pytest.mark.parametrize("mode", list(Mode), ids=lambda m: m.value)
def test_plan_reconcile_skipped_key_is_never_a_delete(mode: Mode) -> None:
    """A key the listing skipped as unsafe exists in S3: its path is left alone."""
    opts = ReconcileOptions(mode=mode, delete=True)
    remote: list[RemoteEntry | Skipped] = [Skipped("a", "control characters"), R("b")]
    got = rows(plan_reconcile([L("a")], remote, [Y("a"), Y("b")], opts=opts))
    assert [r for r in got if r[1] == "a"] == []


def test_plan_reconcile_rows_in_key_order() -> None:
    opts = ReconcileOptions(delete=True)
    got = rows(
        list(plan_reconcile([L("a-b"), L("a0")], [R("a.b"), R("a/x")], [Y("a/x")], opts=opts))
    )
    assert got == [
        (UPL, "a-b", "new local file"),
        (DWN, "a.b", "new in S3"),
        (Kind.DELETE_REMOTE, "a/x", "deleted locally"),
        (UPL, "a0", "new local file"),
    ]


# ------------------------------------------------------------------------- property tests

PROPS = settings(max_examples=150, deadline=None)

segment = st.text("ab-.", min_size=1, max_size=2)
paths = st.lists(segment, min_size=1, max_size=3).map("/".join)
sizes = st.integers(0, 3)
# Within a few seconds of T, often on whole seconds, often not.
mtimes = st.one_of(
    st.integers(0, 4).map(lambda s: T + s * S),
    st.integers(0, 4 * S).map(lambda ns: T + ns),
)
patterns = st.sampled_from(["*", "a*", "*b", "*/*", "a/*", "?", "*-*"])
rule_sets = st.lists(st.tuples(st.sampled_from(["exclude", "include"]), patterns), max_size=3)


def _floor_s(ns: int) -> int:
    return ns // S * S


@dataclass
class Tree:
    """One side of a simulated sync, as {path: (size, mtime)}."""

    files: dict[str, tuple[int, int]]

    def local(self) -> list[LocalEntry]:
        return [LocalEntry(p, s, m) for p, (s, m) in sorted(self.files.items())]

    def remote(self) -> list[RemoteEntry]:
        return [RemoteEntry(p, s, m) for p, (s, m) in sorted(self.files.items())]


trees = st.dictionaries(paths, st.tuples(sizes, mtimes), max_size=8).map(Tree)


@st.composite
def sync_options(draw: st.DrawFn, direction: Direction) -> SyncOptions:
    return SyncOptions(
        direction,
        delete=draw(st.booleans()),
        size_only=draw(st.booleans()),
        exact_timestamps=draw(st.booleans()),
        filters=Filters.of(draw(rule_sets)),
    )


@PROPS
@given(
    local=trees,
    remote=trees,
    opts=sync_options(UP),
    # The upload runs in a later second than any file's mtime (see the future-mtime test).
    now=st.integers(5 * S, 8 * S).map(lambda ns: T + ns),
)
def test_sync_up_twice_yields_nothing(
    local: Tree, remote: Tree, opts: SyncOptions, now: int
) -> None:
    for a in plan_sync(local.local(), remote.remote(), opts=opts):
        if a.kind is Kind.UPLOAD:
            size, mtime = local.files[a.path]
            remote.files[a.path] = (size, _floor_s(max(now, mtime)))
        elif a.kind is Kind.DELETE_REMOTE:
            del remote.files[a.path]
        else:
            raise AssertionError(f"unexpected {a}")
    assert list(plan_sync(local.local(), remote.remote(), opts=opts)) == []


@PROPS
@given(local=trees, remote=trees, opts=sync_options(DOWN))
def test_sync_down_twice_yields_nothing(local: Tree, remote: Tree, opts: SyncOptions) -> None:
    for a in plan_sync(local.local(), remote.remote(), opts=opts):
        if a.kind is Kind.DOWNLOAD:
            local.files[a.path] = remote.files[a.path]  # mtime set to LastModified
        elif a.kind is Kind.DELETE_LOCAL:
            del local.files[a.path]
        else:
            raise AssertionError(f"unexpected {a}")
    assert list(plan_sync(local.local(), remote.remote(), opts=opts)) == []


@PROPS
@given(local=trees, remote=trees, direction=st.sampled_from(Direction), data=st.data())
def test_sync_deletes_only_listed_included_destination_paths(
    local: Tree, remote: Tree, direction: Direction, data: st.DataObject
) -> None:
    opts = data.draw(sync_options(direction))
    src, dst = (local, remote) if direction is UP else (remote, local)
    for a in plan_sync(local.local(), remote.remote(), opts=opts):
        if a.kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE):
            assert opts.delete
            assert a.kind is (Kind.DELETE_REMOTE if direction is UP else Kind.DELETE_LOCAL)
            assert a.path in dst.files
            assert a.path not in src.files
            assert opts.filters.included(a.path)
        else:
            assert a.kind is (Kind.UPLOAD if direction is UP else Kind.DOWNLOAD)
            assert a.path in src.files
            assert opts.filters.included(a.path)


# --- plan_reconcile properties


@dataclass
class World:
    """The folder, the bucket and the state of one simulated agent."""

    local: dict[str, tuple[int, int]]
    remote: dict[str, tuple[int, int, str]]
    synced: dict[str, SyncedEntry]

    def plan(self, opts: ReconcileOptions) -> list[Action]:
        return list(
            plan_reconcile(
                [LocalEntry(p, s, m) for p, (s, m) in sorted(self.local.items())],
                [RemoteEntry(p, s, m, e) for p, (s, m, e) in sorted(self.remote.items())],
                [self.synced[p] for p in sorted(self.synced)],
                opts=opts,
            )
        )


etags = st.sampled_from(["", "e1", "e2", "e3"])


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Paths whose sides are unchanged, changed, missing or new relative to the state."""
    world = World({}, {}, {})
    for path in draw(st.lists(paths, max_size=8, unique=True)):
        syn: SyncedEntry | None = None
        if draw(st.booleans()):
            size, mtime, rmtime = draw(sizes), draw(mtimes), draw(mtimes)
            syn = SyncedEntry(path, size, mtime, draw(etags), rmtime)
            world.synced[path] = syn
        side = st.sampled_from(["same", "other", "missing"] if syn else ["other", "missing"])
        how = draw(side)
        if how == "same" and syn is not None:
            world.local[path] = (syn.size, syn.mtime_ns)
        elif how == "other":
            world.local[path] = (draw(sizes), draw(mtimes))
        how = draw(side)
        if how == "same" and syn is not None:
            world.remote[path] = (syn.size, syn.remote_mtime_ns, syn.etag)
        elif how == "other":
            world.remote[path] = (draw(sizes), draw(mtimes), draw(etags))
    return world


@st.composite
def reconcile_options(draw: st.DrawFn) -> ReconcileOptions:
    filters = Filters.of(draw(rule_sets))
    return ReconcileOptions(
        mode=draw(st.sampled_from(Mode)), delete=draw(st.booleans()), included=filters.included
    )


@PROPS
@given(world=worlds(), opts=reconcile_options())
def test_reconcile_respects_mode_and_delete(world: World, opts: ReconcileOptions) -> None:
    kinds = {a.kind for a in world.plan(opts)}
    if not opts.delete:
        assert not kinds & {Kind.DELETE_LOCAL, Kind.DELETE_REMOTE}
    if opts.mode is PUSH:
        assert not kinds & {Kind.DOWNLOAD, Kind.DELETE_LOCAL}
    if opts.mode is PULL:
        assert not kinds & {Kind.UPLOAD, Kind.DELETE_REMOTE}


_etag_counter = itertools.count()


def _apply(world: World, a: Action, now: int) -> None:
    """Carry out one reconcile action the way an agent would, then record the state."""
    p = a.path

    def upload(src: str, dst: str) -> None:
        size, mtime = world.local[src]
        etag = f"up{next(_etag_counter)}"
        lm = _floor_s(max(now, mtime))
        world.remote[dst] = (size, lm, etag)
        world.synced[dst] = SyncedEntry(dst, size, mtime, etag, lm)

    def download(path: str) -> None:
        size, lm, etag = world.remote[path]
        world.local[path] = (size, lm)
        world.synced[path] = SyncedEntry(path, size, lm, etag, lm)

    if a.kind is Kind.UPLOAD:
        upload(p, p)
    elif a.kind is Kind.DOWNLOAD:
        download(p)
    elif a.kind is Kind.RECORD:
        (size, mtime), (_, lm, etag) = world.local[p], world.remote[p]
        world.synced[p] = SyncedEntry(p, size, mtime, etag, lm)
    elif a.kind is Kind.CONFLICT:  # keep both: the local version under a new name, synced
        copy = p + "~conflict"
        world.local[copy] = world.local[p]
        upload(copy, copy)
        download(p)
    elif a.kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE, Kind.FORGET):
        if a.kind is Kind.DELETE_LOCAL:
            del world.local[p]
        if a.kind is Kind.DELETE_REMOTE:
            del world.remote[p]
        world.synced.pop(p)
    else:
        raise AssertionError(f"unexpected {a}")


@PROPS
@given(world=worlds(), opts=reconcile_options(), now=st.integers(0, 8 * S).map(lambda n: T + n))
def test_reconcile_twice_yields_nothing(world: World, opts: ReconcileOptions, now: int) -> None:
    for action in world.plan(opts):
        _apply(world, action, now)
    assert world.plan(opts) == []


def test_reconcile_property_strategies_cover_every_kind() -> None:
    """The world generator reaches every decision (guards the properties against vacuity)."""
    seen: set[Kind] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(world=worlds(), mode=st.sampled_from(Mode))
    def collect(world: World, mode: Mode) -> None:
        seen.update(a.kind for a in world.plan(ReconcileOptions(mode=mode, delete=True)))

    collect()
    assert seen == set(Kind) - {Kind.COPY}  # a rename is decided by plan_rename alone


# ---------------------------------------------------------- the agent's single-path decisions

NO_HINT = Item("a")
PATH_TABLE: list[tuple[str, LocalEntry | None, SyncedEntry | None, Item, PathOptions, Any]] = [
    # (id, file now, last synced, hint, options, expected (kind, reason, condition) or None)
    ("new-file", L("a"), None, NO_HINT, PathOptions(), (Kind.UPLOAD, "new local file", ABSENT)),
    ("changed", L("a", 2), Y("a"), NO_HINT, PathOptions(), (Kind.UPLOAD, "local changed", C("e1"))),
    ("unchanged", L("a"), Y("a"), NO_HINT, PathOptions(), None),
    (
        "other-file-same-stat",
        LocalEntry("a", 1, T, ino=7),
        SyncedEntry("a", 1, T, "e1", T, ino=6),
        NO_HINT,
        PathOptions(),
        (Kind.UPLOAD, "local changed", C("e1")),
    ),
    (
        "hint-etag-wins",
        L("a", 2),
        Y("a"),
        Item("a", "e9"),
        PathOptions(),
        (Kind.UPLOAD, "local changed", C("e9")),
    ),
    (
        "absent-in-s3",
        L("a"),
        Y("a"),
        Item("a", absent=True),
        PathOptions(),
        (Kind.UPLOAD, "not in S3", ABSENT),
    ),
    ("pull-never-uploads", L("a", 2), Y("a"), NO_HINT, PathOptions(PULL), None),
    ("deleted-no-flag", None, Y("a"), NO_HINT, PathOptions(), None),
    (
        "deleted",
        None,
        Y("a"),
        NO_HINT,
        PathOptions(delete=True),
        (Kind.DELETE_REMOTE, "deleted locally", C("e1")),  # only if still the synced object
    ),
    ("deleted-pull", None, Y("a"), NO_HINT, PathOptions(PULL, delete=True), None),
    # the watcher saw a write, the stat shows none: on a volume without a ctime (exFAT, FAT)
    # a rewrite within one tick of its clock keeps size and mtime; the content decides
    ("written-same-stat-exfat", L("a"), Y("a"), Item("a", reported=True),
     PathOptions(volume=EXFAT),
     (Kind.UPLOAD, "written, size and mtime as synced: comparing content", C("e1"))),
    ("written-same-stat-posix", L("a"), Y("a"), Item("a", reported=True), PathOptions(), None),
    ("not-reported-same-stat-exfat", L("a"), Y("a"), NO_HINT, PathOptions(volume=EXFAT), None),
    # touch -r, cp -p: only the ctime moved (compared by content first)
    ("ctime-moved-posix", LocalEntry("a", 1, T, ctime_ns=T + S),
     SyncedEntry("a", 1, T, "e1", T, ctime_ns=T), Item("a", reported=True), PathOptions(),
     (Kind.UPLOAD, "local changed", C("e1"))),
    ("ctime-moved-exfat", LocalEntry("a", 1, T, ctime_ns=T + S),
     SyncedEntry("a", 1, T, "e1", T, ctime_ns=T), NO_HINT, PathOptions(volume=EXFAT), None),
    ("never-synced-gone", None, None, NO_HINT, PathOptions(delete=True), None),
]


@pytest.mark.parametrize(
    ("loc", "syn", "hint", "opts", "want"), [pytest.param(*r[1:], id=r[0]) for r in PATH_TABLE]
)
def test_plan_path(
    loc: LocalEntry | None, syn: SyncedEntry | None, hint: Item, opts: PathOptions, want: Any
) -> None:
    got = plan_path(loc, syn, hint, opts=opts)
    if want is None:
        assert got is None
    else:
        assert got is not None and (got.kind, got.reason, got.condition) == want


def test_plan_path_compares_content_where_the_stat_cannot_tell() -> None:
    """The content check is against the object last synced: same bytes, only a record."""
    syn = SyncedEntry("a", 1, T, "e1", T + S, ctime_ns=T)
    for loc, item, opts in [
        (L("a"), Item("a", reported=True), PathOptions(volume=EXFAT)),
        (LocalEntry("a", 1, T, ctime_ns=T + S), Item("a"), PathOptions()),
        # touch, to a later time or an earlier one: the size as synced, the content decides
        (LocalEntry("a", 1, T + 5 * S, ctime_ns=T + 5 * S), Item("a"), PathOptions()),
        (LocalEntry("a", 1, T - 5 * S, ctime_ns=T + 5 * S), Item("a", reported=True),
         PathOptions()),
    ]:  # fmt: skip
        got = plan_path(loc, syn, item, opts=opts)
        assert got is not None and got.verify
        assert got.remote == R("a", 1, T + S, "e1") and got.synced == syn
    grown = plan_path(LocalEntry("a", 2, T + 5 * S), syn, Item("a"), opts=PathOptions())
    assert grown is not None and not grown.verify  # another size: sent, nothing to compare


def test_plan_path_same_size_object_is_verified_first() -> None:
    rem = R("a", 1, T + S, "e7")
    got = plan_path(L("a"), None, Item("a", "e7", remote=rem), opts=PathOptions())
    assert got is not None and got.verify and got.remote == rem and got.condition == C("e7")
    other = plan_path(L("a", 5), None, Item("a", "e7", remote=rem), opts=PathOptions())
    assert other is not None and not other.verify


NEW = Action(Kind.UPLOAD, "new", "new local file", L("new"), condition=ABSENT)
RENAME_TABLE: list[tuple[str, Action, list[SyncedEntry], Kind]] = [
    ("same-size-and-time", NEW, [Y("old")], Kind.COPY),
    ("other-size", NEW, [Y("old", 2)], Kind.UPLOAD),
    ("other-mtime", NEW, [Y("old", mtime=T + 1)], Kind.UPLOAD),
    ("no-candidates", NEW, [], Kind.UPLOAD),
    ("itself", NEW, [Y("new")], Kind.UPLOAD),
    (
        "object-expected",
        Action(Kind.UPLOAD, "new", "x", L("new"), condition=C("e1")),
        [Y("old")],
        Kind.UPLOAD,
    ),
    (
        "synced-before",
        Action(Kind.UPLOAD, "new", "x", L("new"), synced=Y("new"), condition=ABSENT),
        [Y("old")],
        Kind.UPLOAD,
    ),
]


@pytest.mark.parametrize(
    ("action", "gone", "kind"), [pytest.param(*r[1:], id=r[0]) for r in RENAME_TABLE]
)
def test_plan_rename(action: Action, gone: list[SyncedEntry], kind: Kind) -> None:
    got = plan_rename(action, gone)
    assert got.kind is kind
    if kind is Kind.COPY:
        assert got.verify and got.synced == gone[0] and got.reason == "renamed from old"


@pytest.mark.parametrize(
    ("loc", "rem", "want"),
    [
        pytest.param(None, R("a"), None, id="file-gone-meanwhile"),
        pytest.param(L("a"), None, (Kind.UPLOAD, ABSENT), id="deleted-in-s3-change-wins"),
        pytest.param(L("a", 2), R("a"), (Kind.CONFLICT, None), id="both-changed"),
    ],
)
def test_plan_raced(loc: LocalEntry | None, rem: RemoteEntry | None, want: Any) -> None:
    got = plan_raced(loc, rem, Y("a"))
    assert (None if got is None else (got.kind, got.condition)) == want


@pytest.mark.parametrize(
    ("rem", "mode", "want"),
    [
        pytest.param(None, BOTH, (Kind.FORGET, "already gone from S3"), id="gone-forget"),
        pytest.param(None, PUSH, (Kind.FORGET, "already gone from S3"), id="gone-forget-push"),
        pytest.param(
            R("a", etag="e2"),
            BOTH,
            (DWN, "changed in S3 since synced: the change beats the delete"),
            id="changed-downloaded",
        ),
        pytest.param(R("a", etag="e2"), PUSH, None, id="changed-push-kept-in-s3"),
    ],
)
def test_plan_delete_lost(rem: RemoteEntry | None, mode: Mode, want: Any) -> None:
    """A conditional remote delete found another object: the change beats the delete."""
    got = plan_delete_lost("a", rem, Y("a"), mode=mode)
    assert (None if got is None else (got.kind, got.reason)) == want
    if got is not None and got.kind is DWN:
        assert got.remote == rem


# --------------------------------------------------------------------------------- same_file

# Each caller's two looks: a walk or stat (LocalEntry), a record (SyncedEntry), an upload
# (Uploaded: size, mtime_ns, ino); ino 0 means the look did not learn the file's identity.
SAME_FILE_TABLE: list[tuple[str, LocalEntry | None, SyncedEntry | None, bool]] = [
    ("neither-exists", None, None, True),
    ("gone-since", None, Y("a"), False),
    ("new-since", L("a"), None, False),
    ("same-size-and-time", L("a"), Y("a"), True),
    ("size-differs", L("a", size=2), Y("a"), False),
    ("time-differs-by-a-nanosecond", L("a", mtime=T + 1), Y("a"), False),
    ("same-inode", LocalEntry("a", 1, T, ino=7), SyncedEntry("a", 1, T, "e1", T, ino=7), True),
    (
        "another-file-renamed-over-it",
        LocalEntry("a", 1, T, ino=7),
        SyncedEntry("a", 1, T, "e1", T, ino=8),
        False,
    ),
    ("inode-known-on-one-side-only", LocalEntry("a", 1, T, ino=7), Y("a"), True),
    ("inode-unknown-here", L("a"), SyncedEntry("a", 1, T, "e1", T, ino=8), True),
    (
        "same-inode-other-size",
        LocalEntry("a", 2, T, ino=7),
        SyncedEntry("a", 1, T, "e1", T, ino=7),
        False,
    ),
    ("the-object-side-is-not-compared", L("a"), Y("a", etag="e2", rmtime=T + S), True),
    # touch -r / cp -p put size and mtime back; the ctime moved
    ("ctime-moved", LocalEntry("a", 1, T, ctime_ns=T + 1), SyncedEntry("a", 1, T, "e1", T,
                                                                     ctime_ns=T), False),
    ("ctime-known-on-one-side-only", LocalEntry("a", 1, T, ctime_ns=T + 1), Y("a"), True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("loc", "syn", "same"),
    [row[1:] for row in SAME_FILE_TABLE],
    ids=[r[0] for r in SAME_FILE_TABLE],
)
def test_same_file(loc: LocalEntry | None, syn: SyncedEntry | None, same: bool) -> None:
    assert same_file(loc, syn) is same
    assert same_file(syn, loc) is same  # the order of the looks does not matter


def test_same_content_becomes_a_record() -> None:
    a = Action(Kind.CONFLICT, "a", "changed on both sides", L("a"), R("a"), Y("a"), verify=True)
    assert rows([same_content(a)]) == [(Kind.RECORD, "a", "same content")]


@pytest.mark.parametrize(
    ("mode", "steps"),
    [
        (BOTH, ["DOWNLOAD_REMOTE_ASIDE", "UPLOAD_ASIDE", "UPLOAD_LOCAL"]),
        (PUSH, ["COPY_REMOTE_ASIDE", "UPLOAD_LOCAL"]),
        (PULL, ["MOVE_LOCAL_ASIDE", "DOWNLOAD_REMOTE"]),
    ],
)
def test_conflict_steps_per_mode(mode: Mode, steps: list[str]) -> None:
    assert [s.name for s in CONFLICT_STEPS[mode]] == steps
    # push never writes the folder's existing files; pull never writes S3
    if mode is PUSH:
        assert not {ConflictStep.DOWNLOAD_REMOTE, ConflictStep.MOVE_LOCAL_ASIDE} & set(
            CONFLICT_STEPS[mode]
        )
    if mode is PULL:
        uploads = {
            ConflictStep.UPLOAD_LOCAL,
            ConflictStep.UPLOAD_ASIDE,
            ConflictStep.COPY_REMOTE_ASIDE,
        }
        assert not uploads & set(CONFLICT_STEPS[mode])


@pytest.mark.parametrize(
    ("loc", "rem", "syn", "kind", "condition", "verify"),
    [
        pytest.param(L("a", 2), R("a"), Y("a"), Kind.UPLOAD, C("e1"), False, id="upload-if-match"),
        pytest.param(L("a"), None, None, Kind.UPLOAD, ABSENT, False, id="upload-if-none-match"),
        pytest.param(
            L("a", mtime=T + 5 * S),
            R("a"),
            None,
            Kind.CONFLICT,
            None,
            True,
            id="first-meeting-verified",
        ),
        pytest.param(
            L("a"),
            R("a", etag="e2"),
            Y("a"),
            Kind.DOWNLOAD,
            None,
            True,
            id="download-same-size-verified",
        ),
        pytest.param(
            L("a"),
            R("a", 3, etag="e2"),
            Y("a"),
            Kind.DOWNLOAD,
            None,
            False,
            id="download-other-size",
        ),
        pytest.param(
            L("a", 2),
            R("a", 2, etag="e2"),
            Y("a"),
            Kind.CONFLICT,
            None,
            True,
            id="conflict-verified",
        ),
        pytest.param(
            None, R("a"), Y("a"), Kind.DELETE_REMOTE, C("e1"), False, id="delete-if-match"
        ),
    ],
)
def test_plan_reconcile_conditions_and_checks(
    loc: LocalEntry | None,
    rem: RemoteEntry | None,
    syn: SyncedEntry | None,
    kind: Kind,
    condition: Condition | None,
    verify: bool,
) -> None:
    opts = ReconcileOptions(mode=BOTH, delete=True)
    [action] = plan_reconcile(
        [loc] if loc else [], [rem] if rem else [], [syn] if syn else [], opts=opts
    )
    assert (action.kind, action.condition, action.verify) == (kind, condition, verify)


# ------------------------------------------------------------------ a path in flight

# What the pass would do with a path, were it not on its way to S3 right now: in flight,
# each is left alone (pending), whatever the sides say.
IN_FLIGHT_TABLE: list[tuple[str, LocalEntry | None, RemoteEntry | None, SyncedEntry | None]] = [
    ("new-file-being-sent", L("a"), None, None),  # else: upload again
    ("conflict-copy-not-synced-yet", L("a"), None, None),
    ("recorded-copy-not-in-s3", L("a"), None, Y("a")),  # else: deleted in S3
    ("own-put-listed-before-its-record", L("a", 2), R("a", 2, etag="e2"), Y("a")),  # conflict
    ("gone-locally-while-sent", None, R("a"), Y("a")),  # else: delete in S3
    ("new-in-s3", None, R("a"), None),  # else: download
]


@pytest.mark.parametrize(
    ("loc", "rem", "syn"), [pytest.param(*r[1:], id=r[0]) for r in IN_FLIGHT_TABLE]
)
def test_plan_reconcile_leaves_a_path_in_flight_to_its_sender(
    loc: LocalEntry | None, rem: RemoteEntry | None, syn: SyncedEntry | None
) -> None:
    def plan(in_flight: Callable[[str], bool]) -> list[Action]:
        opts = ReconcileOptions(mode=BOTH, delete=True, in_flight=in_flight)
        return list(
            plan_reconcile(
                [loc] if loc else [], [rem] if rem else [], [syn] if syn else [], opts=opts
            )
        )

    assert plan(lambda _path: False)  # there is something to do ...
    assert plan(lambda path: path == "a") == []  # ... once its upload has landed


# ----------------------------------------------------------------------------- runner_wait

# (now 10.0, tick 1.0): when the pass is due, whether the folder is paused, the next probe.
RUNNER_WAIT_TABLE: list[tuple[str, float, bool, float | None, float]] = [
    ("pass-later-than-a-tick", 30.0, False, None, 1.0),
    ("pass-in-half-a-second", 10.5, False, None, 0.5),
    ("pass-due-runs-now", 5.0, False, None, 0.0),
    ("paused-by-a-person-pass-due", 5.0, True, None, 1.0),
    ("outage-pass-due-probe-later", 5.0, True, 10.25, 0.25),
    ("outage-pass-due-probe-far", 5.0, True, 40.0, 1.0),
    ("outage-probe-due-never-zero", 5.0, True, 9.0, PAUSED_MIN_WAIT),
    ("outage-pass-later-probe-decides", 30.0, True, 10.5, 0.5),
]


@pytest.mark.parametrize(
    ("pass_at", "paused", "probe_at", "want"),
    [pytest.param(*r[1:], id=r[0]) for r in RUNNER_WAIT_TABLE],
)
def test_runner_wait(pass_at: float, paused: bool, probe_at: float | None, want: float) -> None:
    got = runner_wait(10.0, pass_at=pass_at, tick=1.0, paused=paused, probe_at=probe_at)
    assert got == pytest.approx(want)
    if paused:
        assert got > 0  # a paused runner always sleeps


etags = st.sampled_from(["", "e1", "e2"])


@PROPS
@given(
    synced=st.dictionaries(paths, st.tuples(sizes, mtimes, etags, mtimes), max_size=8),
    remote=st.dictionaries(paths, st.tuples(sizes, mtimes, etags), max_size=8),
    files=st.dictionaries(paths, st.tuples(sizes, mtimes), max_size=4),
    looked_at=st.sets(paths, max_size=4),
    mode=st.sampled_from(list(Mode)),
    delete=st.booleans(),
)
def test_plan_listed_decides_as_plan_reconcile(
    synced: dict[str, tuple[int, int, str, int]],
    remote: dict[str, tuple[int, int, str]],
    files: dict[str, tuple[int, int]],
    looked_at: set[str],
    mode: Mode,
    delete: bool,
) -> None:
    """Rows compared in bulk plan exactly what the entries' three-way merge plans, for a
    local side that is the state as last synced except at the paths looked at."""
    opts = ReconcileOptions(mode=mode, delete=delete, included=lambda p: not p.startswith("b"))
    records = [SyncedEntry(p, *v) for p, v in sorted(synced.items())]
    objects = [RemoteEntry(p, *v) for p, v in sorted(remote.items())]
    fresh = [LocalEntry(p, *v) for p, v in sorted(files.items()) if p in looked_at]
    by_path = {e.path: e for e in fresh}
    local = sorted(
        [LocalEntry(e.path, e.size, e.mtime_ns) for e in records if e.path not in looked_at]
        + [by_path[p] for p in looked_at if p in by_path],
        key=lambda e: e.path,
    )
    want = list(plan_reconcile(local, objects, records, opts=opts))
    got = plan_listed(
        [(e.path, e.size, e.mtime_ns, e.etag) for e in objects],
        [
            (e.path, e.size, e.mtime_ns, e.etag, e.remote_mtime_ns, e.ino, e.ctime_ns)
            for e in records
        ],
        fresh,
        looked=looked_at.__contains__ if looked_at else None,
        opts=opts,
    )
    assert list(got) == want


def test_plan_listed_refuses_an_unsorted_listing() -> None:
    rows = [("b", 1, T, "e"), ("a", 1, T, "e")]
    with pytest.raises(ValueError, match="not sorted"):
        list(plan_listed(rows, [], [], looked=None, opts=ReconcileOptions()))


def test_plan_listed_reads_the_state_before_the_listing() -> None:
    """A path recorded while the listing is read must not look synced and gone from S3:
    the state's snapshot is taken first."""
    order: list[str] = []

    def side(name: str, rows: list[Any]) -> Iterator[Any]:
        order.append(name)
        yield from rows

    rec = ("a", 1, T, "e", T, 0, 0)
    list(
        plan_listed(
            side("listing", [("a", 1, T, "e")]),
            side("state", [rec]),
            [],
            looked=None,
            opts=ReconcileOptions(),
        )
    )
    assert order == ["state", "listing"]


# -- names the folder's file system refuses ----------------------------------------------

CARD = Volume(refused=':*?"<>|', trailing_dot_space=False)


@pytest.mark.parametrize(
    ("direction", "delete", "expected"),
    [
        (Direction.DOWN, False, [("skip", "a:b", "the folder's file system refuses : in a name")]),
        (Direction.UP, True, [("delete-remote", "a:b", "not in source: the folder's file "
                               "system refuses : in a name, so no file there can have it")]),
    ],
    ids=["download-skipped", "delete-says-why"],
)  # fmt: skip
def test_plan_sync_with_a_name_the_folder_refuses(
    direction: Direction, delete: bool, expected: list[tuple[str, str, str]]
) -> None:
    opts = SyncOptions(direction, delete=delete, volume=CARD)
    got = [
        ("skip", a.path, a.reason) if isinstance(a, Skipped) else (a.kind.value, a.path, a.reason)
        for a in plan_sync([], [RemoteEntry("a:b", 1, T)], opts=opts)
    ]
    assert got == expected


@pytest.mark.parametrize("key", ["a:b", "dir?/c", "trail.", "dir./c", "space "])
def test_a_name_the_folder_refuses_is_left_alone_by_the_agent(key: str) -> None:
    """Never a download that fails every pass, never a delete."""
    opts = ReconcileOptions(delete=True, volume=CARD)
    remote, synced = [RemoteEntry(key, 1, T, "e")], [SyncedEntry(key, 1, T, "e", T)]
    assert list(plan_reconcile([], remote, [], opts=opts)) == []
    assert list(plan_reconcile([], remote, synced, opts=opts)) == []
    assert list(plan_listed([(key, 1, T, "e")], [], [], looked=None, opts=opts)) == []
    assert [a.kind for a in plan_reconcile([], remote, [], opts=ReconcileOptions())] == [
        Kind.DOWNLOAD
    ]


# -- keys a folder that ignores case cannot hold apart -----------------------------------


@pytest.mark.parametrize(
    ("path", "held", "copies", "copy_held", "expected"),
    [
        ("photo.jpg", None, True, None, None),
        ("photo.jpg", "Photo.JPG", True, None, "photo (case conflict).jpg"),
        ("dir/b.txt", "Dir/b.txt", True, None, "dir (case conflict)/b.txt"),
        ("a/dir/x/y.tar.gz", "a/DIR/x/y.tar.gz", True, None, "a/dir (case conflict)/x/y.tar.gz"),
        ("Makefile", "makefile", True, None, "Makefile (case conflict)"),
        ("photo.jpg", "Photo.JPG", False, None,
         "skip: the folder holds Photo.JPG, and its file system ignores case: not downloaded"),
        ("PHOTO.jpg", "Photo.JPG", True, "photo (case conflict).jpg",
         "skip: the folder holds Photo.JPG, and its file system ignores case: not downloaded "
         "(nor as PHOTO (case conflict).jpg: the folder holds photo (case conflict).jpg)"),
    ],
    ids=["no-clash", "kept-aside", "directory", "deep-directory", "no-extension", "sync-skips",
         "third-key-skips"],
)  # fmt: skip
def test_case_clash_keeps_the_second_key_under_a_case_conflict_name(
    path: str, held: str | None, copies: bool, copy_held: str | None, expected: str | None
) -> None:
    got = case_clash(path, held, copies=copies, copy_held=lambda _p: copy_held)
    assert (f"skip: {got.reason}" if isinstance(got, Skipped) else got) == expected


def test_case_conflict_copies_are_left_alone_by_the_agents_ignore_rules() -> None:
    """The copy is never uploaded as a new key (a loop) nor deleted: the built-in ignore
    rules, which the agent's walk, watcher and planner all apply, leave it alone; sync,
    which has no such rules, skips instead."""
    rules = IgnoreRules(DEFAULT_IGNORES)
    for copies, step in CASE_CLASH_STEPS.items():
        got = case_clash("a/photo.jpg", "a/Photo.JPG", copies=copies, copy_held=lambda _p: None)
        assert isinstance(got, str) is (step.name == "KEEP_COPY") is copies
        if isinstance(got, str):
            assert rules.matches(got)
    assert rules.matches("dir (case conflict)/b.txt")
    assert not rules.matches("photo.jpg") and not rules.matches("case conflict.txt")
