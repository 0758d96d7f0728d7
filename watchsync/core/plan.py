"""The decision core: sorted streams in, actions with reasons out.  Pure: no clock, no I/O.

``plan_sync`` is ``watchsync sync`` (one direction, the ``aws s3 sync`` rules);
``plan_reconcile`` is the agent's three-way merge of the folder, the bucket and what was
last synced, which is what lets it tell a delete from a file that is new on the other side.
The agent's single-path decisions live here too: ``plan_path`` (a path the watcher
reported), ``plan_rename`` (a new file that is a synced one renamed), ``plan_raced`` (a
conditional write lost a race), ``plan_delete_lost`` (a conditional delete found a newer
object), ``delete_stands`` (a delete whose record was given up meanwhile), ``plan_blocked``
(a download a file or directory in the way still blocks: a collision), ``same_content``
and ``CONFLICT_STEPS`` (how each mode keeps both versions).
``unwritable`` marks the keys whose names the folder's file system refuses;
``case_clash`` is a download a volume ignoring case cannot hold apart (kept under a
case-conflict name, :data:`CASE_CLASH_STEPS`).
``runner_wait`` is how long a folder's runner sleeps (a due pass does not hurry a paused
folder).  ``same_file`` is the one answer to "is this still the file that was looked at?", wherever
it is asked (the planner, the executor's re-checks, a download or delete keeping a late
write).  Executors ask; they never decide.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from watchsync.core.filters import CASE_COPY_MARK, Filters
from watchsync.core.model import (
    POSIX_VOLUME,
    Action,
    Condition,
    Direction,
    Item,
    Kind,
    LocalEntry,
    Mode,
    RemoteEntry,
    RemoteRow,
    SkipKind,
    Skipped,
    StoredMtime,
    SyncedEntry,
    SyncedRow,
    Volume,
)


class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


E = TypeVar("E", bound=_HasPath)
R = TypeVar("R", RemoteEntry, RemoteRow)

_NS_PER_US = 1000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class SyncOptions:
    """What ``watchsync sync`` was asked to do."""

    direction: Direction
    delete: bool = False
    size_only: bool = False
    exact_timestamps: bool = False
    filters: Filters = field(default_factory=Filters)
    # Archived objects (not restored): downloaded anyway (they fail unless restored), or
    # skipped without a word; by default skipped with a warning that counts, as by aws.
    force_archived: bool = False
    quiet_archived: bool = False
    # The local folder's file system: its timestamps' granularity is the window within
    # which two times are one, and names it cannot hold are skipped on download.
    volume: Volume = POSIX_VOLUME


#: Storage classes whose objects cannot be read until restored (aws's "GLACIER objects").
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


@dataclass(frozen=True)
class ReconcileOptions:
    """What the agent may do in one reconcile pass."""

    mode: Mode = Mode.BOTH
    delete: bool = False
    included: Callable[[str], bool] = lambda _path: True
    # A path on its way to S3 right now (the uploader has it in hand, or the executor is
    # sending it): its sender records it once the upload lands, so the pass leaves it alone.
    in_flight: Callable[[str], bool] = lambda _path: False
    volume: Volume = POSIX_VOLUME  # the folder's file system (see :class:`PathOptions`)


def join(*streams: Iterable[E]) -> Iterator[tuple[str, list[E | None]]]:
    """Merge sorted streams by path: one row per path, ``None`` where a stream lacks it.

    >>> a, b = LocalEntry("a", 1, 0), LocalEntry("b", 1, 0)
    >>> [(p, [e is not None for e in row]) for p, row in join([a], [a, b])]
    [('a', [True, True]), ('b', [False, True])]
    """
    iters = [iter(s) for s in streams]
    heads: list[E | None] = [next(it, None) for it in iters]
    while True:
        live = [h.path for h in heads if h is not None]
        if not live:
            return
        path = min(live)
        row: list[E | None] = []
        for i, head in enumerate(heads):
            if head is not None and head.path == path:
                row.append(head)
                nxt = next(iters[i], None)
                if nxt is not None and nxt.path <= path:
                    raise ValueError(f"stream {i} is not sorted: {nxt.path!r} after {path!r}")
                heads[i] = nxt
            else:
                row.append(None)
        yield path, row


def one_time(a_ns: int, b_ns: int, step_ns: int) -> bool:
    """Whether two mtimes are one time to a file system whose clock ticks every
    ``step_ns`` (rclone's ``--modify-window``, Syncthing's ``modTimeWindow``): FAT keeps
    two seconds, so a time set to 1.5 s comes back as 0 or 2 s.  A step of 1 ns: equal.

    >>> one_time(10**9 + 5 * 10**8, 2 * 10**9, 2 * 10**9), one_time(1, 2, 1)
    (True, False)
    """
    return abs(a_ns - b_ns) < step_ns


def local_newer(local: LocalEntry, remote: RemoteEntry, step_ns: int = 1) -> bool:
    """aws's upload test: the file's mtime (to the microsecond) is after LastModified,
    and not within one tick of the folder's clock (``step_ns``) of it."""
    newer = (local.mtime_ns + _NS_PER_US // 2) // _NS_PER_US > remote.mtime_ns // _NS_PER_US
    return newer and not one_time(local.mtime_ns, remote.mtime_ns, step_ns)


def remote_newer(local: LocalEntry, remote: RemoteEntry, step_ns: int = 1) -> bool:
    """The download test: LastModified is in a later second than the file's mtime (and
    not within one tick of the folder's clock, ``step_ns``, of it).

    Whole seconds, because S3 keeps LastModified to the second and some file systems keep
    mtimes coarser than nanoseconds; finer would re-download forever.
    """
    newer = remote.mtime_ns // _NS_PER_S > local.mtime_ns // _NS_PER_S
    return newer and not one_time(local.mtime_ns, remote.mtime_ns, step_ns)


def same_time(local: LocalEntry, remote: RemoteEntry, step_ns: int = 1) -> bool:
    """Whether the file's mtime is LastModified, as a download leaves it (the same second,
    or one tick of the folder's clock, ``step_ns``, which rounded it)."""
    same_second = remote.mtime_ns // _NS_PER_S == local.mtime_ns // _NS_PER_S
    return same_second or one_time(local.mtime_ns, remote.mtime_ns, step_ns)


def plan_sync(
    local: Iterable[LocalEntry], remote: Iterable[RemoteEntry], *, opts: SyncOptions
) -> Iterator[Action | Skipped]:
    """Decide ``watchsync sync`` from the sorted local walk and the sorted listing; a
    download that cannot be made (an archived object) comes out as :class:`Skipped`.

    >>> [a.kind for a in plan_sync([LocalEntry("x", 1, 0)], [], opts=SyncOptions(Direction.UP))]
    [<Kind.UPLOAD: 'upload'>]
    """
    up = opts.direction is Direction.UP
    for path, (lo, ro) in join(local, remote):
        if opts.filters and not opts.filters.included(path):
            continue
        loc = lo if isinstance(lo, LocalEntry) else None
        rem = ro if isinstance(ro, RemoteEntry) else None
        src_present = (loc if up else rem) is not None
        if not src_present:
            if opts.delete:
                kind = Kind.DELETE_REMOTE if up else Kind.DELETE_LOCAL
                yield Action(kind, path, _not_in_source(path, opts.volume), loc, rem)
            continue
        if not up and (why := opts.volume.refuses(path)):
            yield Skipped(path, why)  # not written under an altered name, nor failing
            continue
        rule = None
        if loc is None or rem is None:
            reason = "new"
        else:
            reason = _copy_reason(loc, rem, opts)
            # Chosen by the times alone: a kept mtime, where the object has one, decides.
            rule = _STORED_RULE[opts.exact_timestamps] if loc.size == rem.size else None
        if not reason:
            continue
        if not up and rem is not None and archived(rem, opts):
            if not opts.quiet_archived:
                why = f"object is in storage class {rem.storage_class}, not restored"
                yield Skipped(path, why, SkipKind.ARCHIVED)
            continue
        kind = Kind.UPLOAD if up else Kind.DOWNLOAD
        yield Action(kind, path, reason, loc, rem, by_stored_mtime=rule)


NOT_IN_SOURCE = "not in source"


def _not_in_source(path: str, volume: Volume) -> str:
    """Why a destination path goes: the key of a name the folder cannot hold is deleted by
    ``sync --delete`` as aws deletes it, and says why it could not be in the source.

    >>> _not_in_source("a:b", Volume(refused=":"))
    "not in source: the folder's file system refuses : in a name, so no file there can have it"
    """
    why = volume.refuses(path)
    return f"{NOT_IN_SOURCE}: {why}, so no file there can have it" if why else NOT_IN_SOURCE


def archived(rem: RemoteEntry, opts: SyncOptions) -> bool:
    """Whether a download of ``rem`` is held back: an archived object, not forced.

    >>> archived(RemoteEntry("a", 1, 0, storage_class="GLACIER"), SyncOptions(Direction.DOWN))
    True
    """
    return rem.storage_class in ARCHIVE_CLASSES and not opts.force_archived


def _copy_reason(loc: LocalEntry, rem: RemoteEntry, opts: SyncOptions) -> str:
    """Why an existing destination is out of date, or "" when it is current."""
    if loc.size != rem.size:
        return "size differs"
    if opts.size_only:
        return ""
    step = opts.volume.mtime_step_ns
    if opts.direction is Direction.UP:
        return "local newer" if local_newer(loc, rem, step) else ""
    if opts.exact_timestamps:
        return "" if same_time(loc, rem, step) else "timestamps differ"
    return "remote newer" if remote_newer(loc, rem, step) else ""


# Under --exact-timestamps a download is due whenever the times differ (aws's meaning).
_STORED_RULE = {False: StoredMtime.SOURCE_NEWER, True: StoredMtime.TIMES_DIFFER}


def settle_by_stored_mtime(
    action: Action, head: RemoteEntry | None, *, step_ns: int = 1
) -> Action | None:
    """A same-size copy chosen by LastModified, decided again from the object's kept mtime
    (``head``: the object as a HEAD found it): None when the kept mtime says the
    destination is current.  An object that keeps no mtime (written by another tool), or
    that changed or went since it was listed, leaves the action as the listing decided it.

    An upload is due when the file's mtime is later than the kept one (to the microsecond:
    the file the upload read has exactly the kept time); a download when the kept mtime is
    in a later second than the file's, or under ``--exact-timestamps`` in another second
    (whole seconds, as for LastModified: a file system that keeps coarser times than the
    object would otherwise be downloaded on every run).  Times within one tick of the
    folder's clock (``step_ns``: FAT rounds to two seconds) are one time either way.

    >>> loc, rem = LocalEntry("a", 3, 5 * 10**9), RemoteEntry("a", 3, 9 * 10**9)
    >>> up = Action(Kind.UPLOAD, "a", "local newer", loc, rem,
    ...             by_stored_mtime=StoredMtime.SOURCE_NEWER)
    >>> settle_by_stored_mtime(up, replace(rem, stored_mtime_ns=5 * 10**9)) is None
    True
    """
    rule, loc, was = action.by_stored_mtime, action.local, action.remote
    if rule is None or loc is None or was is None:
        return action
    unsettled = replace(action, by_stored_mtime=None)
    if head is None or (head.size, head.etag) != (was.size, was.etag):
        return unsettled
    kept = head.stored_mtime_ns
    if kept is None:
        return unsettled
    if one_time(loc.mtime_ns, kept, step_ns):
        return None
    if action.kind is Kind.UPLOAD:
        if loc.mtime_ns // _NS_PER_US <= kept // _NS_PER_US:
            return None
        return replace(unsettled, reason="local newer than its kept mtime")
    local_s, kept_s = loc.mtime_ns // _NS_PER_S, kept // _NS_PER_S
    if rule is StoredMtime.TIMES_DIFFER:
        return replace(unsettled, reason="kept mtime differs") if kept_s != local_s else None
    return replace(unsettled, reason="kept mtime newer") if kept_s > local_s else None


class CaseClash(enum.Enum):
    """What becomes of a download the folder cannot hold apart from another key."""

    SKIP = "skip it: both objects stay in S3, the folder holds only the other"
    KEEP_COPY = "download it to its case-conflict name, which is then left alone"


#: A download the folder cannot hold apart, by whether the command leaves case-conflict
#: names alone.  The agent does (its built-in ignore rules): S3's version is kept beside the
#: other under that name, never uploaded back as a new key (that would be a loop), never
#: deleted.  ``sync`` has no such rules (aws has none): a later upload would send the copy
#: as a new key, so it skips.
CASE_CLASH_STEPS: Mapping[bool, CaseClash] = {True: CaseClash.KEEP_COPY, False: CaseClash.SKIP}


def case_copy_name(path: str, held: str) -> str:
    """Where S3's version of ``path`` is kept when the folder holds ``held`` (``path`` in
    another case): the first part that differs gets ``CASE_COPY_MARK`` (before a file's
    extension; the agent's built-in ignore rules leave such a name alone), so a directory's
    clash keeps its files together under one name.

    >>> case_copy_name("photo.jpg", "Photo.JPG")
    'photo (case conflict).jpg'
    >>> case_copy_name("a/dir/b.txt", "a/Dir/b.txt"), case_copy_name(".rc", ".RC")
    ('a/dir (case conflict)/b.txt', '.rc (case conflict)')
    """
    parts, theirs = path.split("/"), held.split("/")
    i = next((n for n, (a, b) in enumerate(zip(parts, theirs, strict=False)) if a != b), 0)
    stem, dot, ext = parts[i].rpartition(".")
    if i < len(parts) - 1 or not stem:
        stem, dot, ext = parts[i], "", ""  # a directory, a dot-file or no extension
    parts[i] = f"{stem}{CASE_COPY_MARK}{dot}{ext}"
    return "/".join(parts)


def case_clash(
    path: str, held: str | None, *, copies: bool, copy_held: Callable[[str], str | None]
) -> Skipped | str | None:
    """A download of ``path`` where the folder holds ``held``: the same name in another
    case, of the file or of a directory on its way, on a volume that ignores case (S3 holds
    both ``Photo.JPG`` and ``photo.jpg``, or ``dir/b.txt`` beside ``Dir/a.txt``).  Written
    as is, it would replace the other key's file (or land under the other directory and be
    sent back as a new key).  The name to download it to instead (:data:`CASE_CLASH_STEPS`,
    ``copies``: the command leaves case-conflict names alone), or a skip: both objects stay
    in S3 as they are.  A copy's name that is itself held in another case (a third key,
    ``PHOTO.jpg``) is a skip too, not two copies taking turns.  None: no clash.

    >>> held = lambda p: None
    >>> case_clash("photo.jpg", "Photo.JPG", copies=True, copy_held=held)
    'photo (case conflict).jpg'
    >>> case_clash("photo.jpg", "Photo.JPG", copies=False, copy_held=held).reason
    'the folder holds Photo.JPG, and its file system ignores case: not downloaded'
    >>> case_clash("photo.jpg", None, copies=True, copy_held=held) is None
    True
    """
    if held is None:
        return None
    why = f"the folder holds {held}, and its file system ignores case: not downloaded"
    if CASE_CLASH_STEPS[copies] is CaseClash.SKIP:
        return Skipped(path, why)
    copy = case_copy_name(path, held)
    other = copy_held(copy)
    return Skipped(path, f"{why} (nor as {copy}: the folder holds {other})") if other else copy


def restored_mtime(last_modified_ns: int, kept_ns: int | None) -> int:
    """The mtime a downloaded file is given: the file's own, kept in the object's metadata
    (ours or rclone's), else LastModified (aws's way: the next run in either direction then
    sees the two as equal).

    >>> restored_mtime(9, 5), restored_mtime(9, None)
    (5, 9)
    """
    return kept_ns if kept_ns is not None else last_modified_ns


def restored_mode(kept_mode: int | None, *, keep_mode: bool) -> int | None:
    """The permission bits a downloaded file is given under ``--keep-mode``: those kept in
    the object's metadata, without setuid, setgid and sticky (metadata anyone with write
    access to the bucket can set is not trusted with those, as rclone does); None leaves
    the file as the umask makes it.

    >>> oct(restored_mode(0o104755, keep_mode=True) or 0), restored_mode(0o100755, keep_mode=False)
    ('0o755', None)
    """
    if not keep_mode or kept_mode is None:
        return None
    return kept_mode & 0o777


def plan_reconcile(
    local: Iterable[LocalEntry],
    remote: Iterable[RemoteEntry | Skipped],
    synced: Iterable[SyncedEntry],
    *,
    opts: ReconcileOptions,
) -> Iterator[Action]:
    """Decide one agent reconcile pass from the folder, the bucket and the last-synced state.

    A side "changed" when it differs from what was last synced; a path missing on one side
    but synced before was deleted there.  Changes beat deletes; a change on both sides is a
    conflict, resolved by keeping both versions.  A key the listing skipped (unsafe as a
    file name) exists in S3 but cannot be compared: its path is left alone, never read as
    deleted there.  So is a path in flight (``opts.in_flight``): until its upload lands it is
    pending, neither new nor deleted on either side, and a path is sent once at a time.

    >>> s = SyncedEntry("x", 1, 5, "e", 5)
    >>> r, o = RemoteEntry("x", 1, 5, "e"), ReconcileOptions(delete=True)
    >>> [a.kind for a in plan_reconcile([], [r], [s], opts=o)]
    [<Kind.DELETE_REMOTE: 'delete-remote'>]
    """
    for path, (lo, ro, so) in join(local, remote, synced):
        if not opts.included(path) or isinstance(ro, Skipped) or opts.volume.refuses(path):
            continue  # a name the folder cannot hold is never a file here: left alone
        loc = lo if isinstance(lo, LocalEntry) else None
        rem = ro if isinstance(ro, RemoteEntry) else None
        syn = so if isinstance(so, SyncedEntry) else None
        action = _reconcile_one(path, loc, rem, syn, opts)
        if action is not None:
            yield action


def unwritable(stream: Iterable[R | Skipped], volume: Volume) -> Iterator[R | Skipped]:
    """A listing with each key whose name ``volume`` refuses turned into a skip (reported
    by whoever reads it; the planners leave such a path alone either way), the other rows
    passed through as they are.

    >>> fat = Volume(refused=":")
    >>> list(unwritable([("a:b", 1, 0, "e"), ("c", 1, 0, "e")], fat))[0].path
    'a:b'
    """
    if not volume.refused and volume.trailing_dot_space:
        yield from stream
        return
    for item in stream:
        if isinstance(item, Skipped):
            yield item
            continue
        path = item[0] if isinstance(item, tuple) else item.path
        why = volume.refuses(path)
        yield Skipped(path, why) if why else item


def unwritable_pages(
    pages: Iterable[list[R | Skipped]], volume: Volume
) -> Iterator[list[R | Skipped]]:
    """:func:`unwritable` a list at a time: the lists pass as they are where ``volume``
    refuses no name.

    >>> list(unwritable_pages([[("a:b", 1, 0, "e")]], Volume(refused=":")))[0][0].path
    'a:b'
    """
    if not volume.refused and volume.trailing_dot_space:
        yield from pages
        return
    for page in pages:
        yield list(unwritable(page, volume))


def plan_listed(
    remote: Iterable[RemoteRow | Skipped],
    synced: Iterable[SyncedRow],
    fresh: Iterable[LocalEntry],
    *,
    looked: Callable[[str], bool] | None,
    opts: ReconcileOptions,
) -> Iterator[Action]:
    """:func:`plan_reconcile` for a pass that lists the prefix while the watcher is trusted:
    the local side is the state as last synced, except at the paths ``looked`` at (None:
    none), whose files are ``fresh`` (a path looked at and not there is gone).

    The listing's rows are compared with the state's rows in bulk: a path whose object is
    the one last synced and whose file was not looked at is as last synced on both sides,
    so nothing is planned and no entry is made; every other path goes through the same
    three-way decision as :func:`plan_reconcile`.

    >>> row, rec = ("x", 1, 5, "e"), ("x", 1, 9, "e", 5, 0, 0)
    >>> list(plan_listed([row], [rec], [], looked=None, opts=ReconcileOptions()))
    []
    >>> [a.reason for a in plan_listed([("x", 1, 6, "f")], [rec], [], looked=None,
    ...                               opts=ReconcileOptions())]
    ['remote changed']
    """
    rit, sit, fit = iter(remote), iter(synced), iter(fresh)
    # The state is read first: its snapshot is then older than the listing, so a path
    # recorded while the listing is read (an upload finishing) is new to this plan, never
    # "synced but gone from S3" (a delete of the file just sent).
    s = next(sit, None)
    r, f = next(rit, None), next(fit, None)
    while r is not None or s is not None or f is not None:
        if r is not None and s is not None and not isinstance(r, Skipped) and r[0] == s[0]:
            # The common row: an object and its record; settled when the object is the one
            # last synced (remote_changed, on rows) and the file was not looked at.
            path, etag = r[0], r[3]
            if (
                (r[1] == s[1] and etag == s[3])
                if etag and s[3]
                else (r[1] == s[1] and r[2] == s[4])
            ) and (looked is None or not looked(path)):
                nr, s = next(rit, None), next(sit, None)
                if nr is not None and (nr.path if isinstance(nr, Skipped) else nr[0]) <= path:
                    raise ValueError(f"listing is not sorted: {nr!r} after {path!r}")
                r = nr
                continue
        rp = None if r is None else r.path if isinstance(r, Skipped) else r[0]
        sp = None if s is None else s[0]
        fp = None if f is None else f.path
        path = min(p for p in (rp, sp, fp) if p is not None)
        rem: RemoteEntry | Skipped | None = None
        syn: SyncedEntry | None = None
        loc: LocalEntry | None = None
        if rp == path:
            assert r is not None
            rem = r if isinstance(r, Skipped) else RemoteEntry(*r)
            r = next(rit, None)
            if r is not None and (r.path if isinstance(r, Skipped) else r[0]) <= path:
                raise ValueError(f"listing is not sorted: {r!r} after {path!r}")
        if sp == path:
            assert s is not None
            syn = SyncedEntry(*s)
            s = next(sit, None)
        if fp == path:
            loc, f = f, next(fit, None)
        elif syn is not None and (looked is None or not looked(path)):
            loc = LocalEntry(path, syn.size, syn.mtime_ns)  # as last synced
        if isinstance(rem, Skipped) or not opts.included(path) or opts.volume.refuses(path):
            continue
        action = _reconcile_one(path, loc, rem, syn, opts)
        if action is not None:
            yield action


class FileLook(Protocol):
    """One look at a file: what :func:`same_file` compares (an entry, a record, an upload)."""

    @property
    def size(self) -> int: ...

    @property
    def mtime_ns(self) -> int: ...

    @property
    def ino(self) -> int: ...

    @property
    def ctime_ns(self) -> int: ...


def same_file(a: FileLook | None, b: FileLook | None, *, by_ctime: bool = True) -> bool:
    """Whether two looks at one path saw the same file: both saw none, or both saw one of
    the same size and mtime and, where both know them (non-zero), the same inode (a file
    renamed over another may carry its size and mtime; only its identity tells it apart)
    and the same ctime (``touch -r`` and ``cp -p`` put the size and mtime back; only the
    ctime moved).  ``by_ctime=False`` where our own link or rename moved the ctime since.

    What this cannot see, a volume without a ctime (FAT, exFAT) rewritten in the same
    tick of its clock, :func:`plan_path` settles by content.

    >>> same_file(LocalEntry("a", 1, 5, ino=7), SyncedEntry("a", 1, 5, "e", 5, ino=8))
    False
    >>> same_file(LocalEntry("a", 1, 5, ino=7), SyncedEntry("a", 1, 5, "e", 5))
    True
    >>> same_file(LocalEntry("a", 1, 5, ctime_ns=9), SyncedEntry("a", 1, 5, "e", 5, ctime_ns=6))
    False
    """
    if a is None or b is None:
        return a is None and b is None
    if a.ino and b.ino and a.ino != b.ino:
        return False
    if by_ctime and a.ctime_ns and b.ctime_ns and a.ctime_ns != b.ctime_ns:
        return False
    return a.size == b.size and a.mtime_ns == b.mtime_ns


def remote_changed(rem: RemoteEntry, syn: SyncedEntry) -> bool:
    """Whether the object differs from the one last synced (by ETag, else by size and time)."""
    if rem.etag and syn.etag:
        return rem.etag != syn.etag or rem.size != syn.size
    return rem.size != syn.size or rem.mtime_ns != syn.remote_mtime_ns


def _reconcile_one(
    path: str,
    loc: LocalEntry | None,
    rem: RemoteEntry | None,
    syn: SyncedEntry | None,
    opts: ReconcileOptions,
) -> Action | None:
    """The three-way decision for one path."""
    if opts.in_flight(path):
        return None  # pending: what lands is recorded by its sender, and looked at again
    push, pull = opts.mode is not Mode.PULL, opts.mode is not Mode.PUSH

    def act(kind: Kind, reason: str) -> Action:
        # Uploads are conditional on the object the listing showed; a same-size pair may
        # already hold the same bytes, so it is compared before anything moves.
        # Remote deletes are conditional too: on the object the listing showed.
        condition = Condition.on(rem) if kind is Kind.UPLOAD else None
        if kind is Kind.DELETE_REMOTE and rem is not None and rem.etag:
            condition = Condition(rem.etag)
        verify = (
            kind in _VERIFIABLE and loc is not None and rem is not None and loc.size == rem.size
        )
        return Action(kind, path, reason, loc, rem, syn, condition=condition, verify=verify)

    if loc is None and rem is None:
        return act(Kind.FORGET, "gone from both sides") if syn is not None else None
    if loc is not None and rem is not None:
        if syn is None:
            return _first_meeting(loc, rem, opts, act)
        lc, rc = not same_file(loc, syn, by_ctime=opts.volume.ctime), remote_changed(rem, syn)
        if lc and rc:
            return act(Kind.CONFLICT, "changed on both sides")
        if lc:
            return act(Kind.UPLOAD, "local changed") if push else None
        if rc:
            return act(Kind.DOWNLOAD, "remote changed") if pull else None
        return None
    if loc is not None:  # not in S3
        if syn is None:
            return act(Kind.UPLOAD, "new local file") if push else None
        if not same_file(loc, syn, by_ctime=opts.volume.ctime):
            return act(Kind.UPLOAD, "local changed, remote deleted") if push else None
        if opts.delete and opts.mode is not Mode.PUSH:
            return act(Kind.DELETE_LOCAL, "deleted in S3")
        return act(Kind.UPLOAD, "missing in S3") if push else None
    assert rem is not None  # only in S3
    if syn is None:
        return act(Kind.DOWNLOAD, "new in S3") if pull else None
    if remote_changed(rem, syn):
        return act(Kind.DOWNLOAD, "remote changed, local deleted") if pull else None
    if opts.delete and opts.mode is not Mode.PULL:
        return act(Kind.DELETE_REMOTE, "deleted locally")
    return act(Kind.DOWNLOAD, "missing locally") if pull else None


_VERIFIABLE = frozenset({Kind.UPLOAD, Kind.DOWNLOAD, Kind.CONFLICT})


def _first_meeting(
    loc: LocalEntry,
    rem: RemoteEntry,
    opts: ReconcileOptions,
    act: Callable[[Kind, str], Action],
) -> Action:
    """Both sides have a path never synced (first run, or the state was lost).

    Same size and the object's exact time (what a download sets): already equal; the same
    second only is compared by content under ``both`` and ``pull``.  Under ``push``, same
    size and a file not newer than the object: equal by aws's upload rule (recorded without
    hashing, so adopting a bucket filled by an earlier sync is cheap).  Same size, other
    times: most often the same
    content (an earlier ``aws s3 sync``), so the action is verified: the executor compares
    content hashes before moving any byte and only records the pair when they agree.
    Otherwise ``push`` copies its way (the ``watchsync sync`` rule; it never writes the
    folder, so nothing local is at stake); ``both`` cannot know which version the user
    wants and keeps both, whatever the sizes (a newer time is no proof of the wanted
    version); ``pull`` never overwrites a local file without a copy, so it keeps both too
    (the local file moves to the conflict name).
    """
    step = opts.volume.mtime_step_ns
    if loc.size == rem.size:
        exact = one_time(loc.mtime_ns, rem.mtime_ns, step)
        if exact or (opts.mode is Mode.PUSH and same_time(loc, rem, step)):
            return act(Kind.RECORD, "already equal")
        if same_time(loc, rem, step):
            # Only a download sets a file's time to LastModified exactly; a file written in
            # the object's second (the state lost in a crash) may hold other bytes.
            return act(Kind.CONFLICT, "same size and second, never synced")
        if opts.mode is Mode.PUSH and not local_newer(loc, rem, step):
            return act(Kind.RECORD, "same size, local not newer")
        if opts.mode is Mode.PUSH:
            return act(Kind.UPLOAD, "same size, times differ")
        return act(Kind.CONFLICT, "same size, times differ, never synced")
    if opts.mode is Mode.PUSH:
        return act(Kind.UPLOAD, "size differs")
    return act(Kind.CONFLICT, "differs on both sides, never synced")


# -- the agent's single-path decisions ----------------------------------------------------


@dataclass(frozen=True)
class PathOptions:
    """What the agent's uploader may do with one path, on what ``volume``: how far its
    stat can be trusted to show a change (:func:`plan_path`)."""

    mode: Mode = Mode.BOTH
    delete: bool = False
    volume: Volume = POSIX_VOLUME


def plan_path(
    local: LocalEntry | None,
    synced: SyncedEntry | None,
    item: Item,
    *,
    opts: PathOptions,
) -> Action | None:
    """Decide a path the watcher (or a reconcile) queued, from the file as it is now and
    what was last synced; None when there is nothing to do.

    >>> plan_path(LocalEntry("a", 1, 5), None, Item("a"), opts=PathOptions()).reason
    'new local file'
    >>> plan_path(None, SyncedEntry("a", 1, 5, "e", 5), Item("a"), opts=PathOptions()) is None
    True

    A file whose stat says nothing new is still compared by content (a hash, no
    transfer) where the stat cannot be trusted to show a write: the watcher saw one on a
    volume without a ctime (FAT, exFAT: a rewrite within one tick of its clock keeps
    size and mtime), or only the ctime moved (``touch -r``, ``cp -p``, ``chmod``).

    >>> fat = PathOptions(volume=Volume(mtime_step_ns=2 * 10**9, ctime=False))
    >>> syn = SyncedEntry("a", 1, 5, "e", 5)
    >>> plan_path(LocalEntry("a", 1, 5), syn, Item("a", reported=True), opts=fat).verify
    True

    So is a changed file of the size last synced (a ``touch``, to any time), against the
    object last synced: the same bytes are recorded, not sent again.

    >>> plan_path(LocalEntry("a", 1, 9), syn, Item("a"), opts=PathOptions()).verify
    True
    """
    if local is None:
        if synced is not None and opts.delete and opts.mode is not Mode.PULL:
            return Action(
                Kind.DELETE_REMOTE,
                synced.path,
                "deleted locally",
                synced=synced,
                condition=Condition(synced.etag) if synced.etag else None,
            )
        return None
    if opts.mode is Mode.PULL:
        return None
    path = local.path
    if item.absent:
        return Action(
            Kind.UPLOAD, path, "not in S3", local, synced=synced, condition=Condition.ABSENT
        )
    condition = Condition(item.expect_etag or (synced.etag if synced is not None else ""))
    ctime = opts.volume.ctime  # FAT's and exFAT's is the mtime again: no evidence
    if synced is not None and same_file(local, synced, by_ctime=ctime):
        if not item.reported or ctime:
            return None  # e.g. the agent's own download landing
        reason = "written, size and mtime as synced: comparing content"
        obj = last_synced_object(synced)
        return Action(Kind.UPLOAD, path, reason, local, obj, synced, condition, verify=True)
    reason = "local changed" if synced is not None else "new local file"
    rem = item.remote
    verify = rem is not None and rem.size == local.size
    if rem is None and synced is not None and local.size == synced.size:
        # A touch (to any time), a cp -p, a rewrite of the same bytes: the file is compared
        # with the object last synced (its hash against that ETag, no transfer) before it is
        # sent, so unchanged content is only recorded, never sent again.
        rem, verify = last_synced_object(synced), True
    return Action(Kind.UPLOAD, path, reason, local, rem, synced, condition=condition, verify=verify)


def last_synced_object(synced: SyncedEntry) -> RemoteEntry:
    """The object as it was when ``synced`` was recorded.

    >>> last_synced_object(SyncedEntry("a", 1, 5, "e", 9)).mtime_ns
    9
    """
    return RemoteEntry(synced.path, synced.size, synced.remote_mtime_ns, synced.etag)


def plan_rename(action: Action, gone: Iterable[SyncedEntry]) -> Action:
    """A new file (no object expected) with the size and mtime of a synced file that is
    gone locally is most likely that file renamed: copy the old object server-side, once
    the content hashes agree (``verify``).  Any other upload stays as it is.

    ``gone`` are synced entries whose files no longer exist (the caller looked).

    >>> new = LocalEntry("new", 3, 7)
    >>> up = Action(Kind.UPLOAD, "new", "new local file", new, condition=Condition.ABSENT)
    >>> plan_rename(up, [SyncedEntry("old", 3, 7, "e", 9)]).reason
    'renamed from old'
    """
    loc = action.local
    if action.kind is not Kind.UPLOAD or loc is None or action.condition != Condition.ABSENT:
        return action
    if action.synced is not None:
        return action
    for cand in gone:
        # Not same_file: a candidate is another path's file, whose inode may differ (a copy
        # kept its mtime, then the original went); the content check settles it.
        if cand.path != loc.path and (cand.size, cand.mtime_ns) == (loc.size, loc.mtime_ns):
            return Action(
                Kind.COPY, loc.path, f"renamed from {cand.path}", loc, synced=cand, verify=True
            )
    return action


def plan_raced(
    local: LocalEntry | None, remote: RemoteEntry | None, synced: SyncedEntry | None
) -> Action | None:
    """A conditional upload lost: someone else wrote (or deleted) the object meanwhile.

    A change beats a delete (the file is sent again, to a key that must not exist); a
    change on both sides keeps both versions.

    >>> plan_raced(LocalEntry("a", 1, 5), None, None).reason
    'deleted in S3 while it changed here'
    """
    if local is None:
        return None
    if remote is None:
        return Action(
            Kind.UPLOAD,
            local.path,
            "deleted in S3 while it changed here",
            local,
            condition=Condition.ABSENT,
        )
    return Action(
        Kind.CONFLICT,
        local.path,
        "S3 object changed meanwhile",
        local,
        remote,
        synced,
        verify=local.size == remote.size,
    )


def plan_delete_lost(
    path: str, remote: RemoteEntry | None, synced: SyncedEntry | None, *, mode: Mode
) -> Action | None:
    """A remote delete found the object other than last synced (its conditional delete
    failed, or the check right before it): someone wrote a newer version meanwhile.

    The change beats the delete: it is downloaded (not under ``push``, which never writes
    the folder; the object then simply stays).  An object already gone is forgotten.

    >>> plan_delete_lost("a", RemoteEntry("a", 1, 5, "e2"), None, mode=Mode.BOTH).reason
    'changed in S3 since synced: the change beats the delete'
    """
    if remote is None:
        return Action(Kind.FORGET, path, "already gone from S3", synced=synced)
    if mode is Mode.PUSH:
        return None
    return Action(
        Kind.DOWNLOAD,
        path,
        "changed in S3 since synced: the change beats the delete",
        remote=remote,
        synced=synced,
    )


def plan_blocked(action: Action) -> Action | None:
    """A download the folder cannot take, still after the pass's deletes: a file stands
    where its directory would be, or a directory where it would be (S3 holds ``a`` and
    ``a/b``).  The folder keeps what is there and the key is reported.  A record of the
    path is given up: it names a version neither side holds (no file can be there, and S3
    holds another, or the download would not be due), and kept it would read as the file
    deleted since synced, a delete of S3's version planned by every pass that trusts the
    record, and held.  Without it the key is downloaded, and blocked, only when S3 is read.

    >>> a = Action(Kind.DOWNLOAD, "a/b", "remote changed", synced=SyncedEntry("a/b", 1, 5, "e", 5))
    >>> plan_blocked(a).kind, plan_blocked(replace(a, synced=None))
    (<Kind.FORGET: 'forget'>, None)
    """
    if action.kind is not Kind.DOWNLOAD or action.synced is None:
        return None
    return Action(
        Kind.FORGET,
        action.path,
        "blocked: the version last synced is on neither side",
        synced=action.synced,
    )


def delete_stands(action: Action, *, still_recorded: bool) -> bool:
    """Whether a delete the agent planned from the record of the last sync ("deleted in S3
    since synced", "deleted locally since synced") may still run: only while the state
    still holds that record (``still_recorded``: the same path and ETag).  A record given
    up meanwhile takes the delete's reason with it: a person rejected the held deletes
    while the pass was planning (the file is kept and sent again by the next pass, which
    meets it without a record).  Deletes planned without a record (``sync``) stand.

    >>> a = Action(Kind.DELETE_LOCAL, "a", "deleted in S3", synced=SyncedEntry("a", 1, 5, "e", 5))
    >>> delete_stands(a, still_recorded=False), delete_stands(a, still_recorded=True)
    (False, True)
    """
    return action.synced is None or still_recorded


def same_content(action: Action) -> Action:
    """What an action becomes once its ``verify`` check found equal bytes on both sides:
    only a record that the pair is synced (nothing is transferred).

    >>> a = Action(Kind.DOWNLOAD, "a", "remote changed", verify=True)
    >>> same_content(a).kind, same_content(a).reason
    (<Kind.RECORD: 'record'>, 'same content')
    """
    return Action(
        Kind.RECORD, action.path, "same content", action.local, action.remote, action.synced
    )


class ConflictStep(enum.Enum):
    """One step of keeping both versions of a path that changed on both sides."""

    COPY_REMOTE_ASIDE = "copy the S3 version to the conflict name, server-side"
    DOWNLOAD_REMOTE_ASIDE = "download the S3 version to the conflict name"
    UPLOAD_ASIDE = "upload the conflict copy"
    MOVE_LOCAL_ASIDE = "rename the local file to the conflict name"
    UPLOAD_LOCAL = "upload the local file over the S3 version it saw"
    DOWNLOAD_REMOTE = "download the S3 version to the path"


#: How each mode keeps both versions.  The local file keeps the name, except under ``pull``
#: (which never writes S3), where the local version moves aside and S3's takes the name.
CONFLICT_STEPS: Mapping[Mode, tuple[ConflictStep, ...]] = {
    Mode.BOTH: (
        ConflictStep.DOWNLOAD_REMOTE_ASIDE,
        ConflictStep.UPLOAD_ASIDE,
        ConflictStep.UPLOAD_LOCAL,
    ),
    Mode.PUSH: (ConflictStep.COPY_REMOTE_ASIDE, ConflictStep.UPLOAD_LOCAL),
    Mode.PULL: (ConflictStep.MOVE_LOCAL_ASIDE, ConflictStep.DOWNLOAD_REMOTE),
}


# -- the folder's runner ----------------------------------------------------------------------

#: The shortest sleep of a paused runner: a probe due now still waits this long, so no
#: loop of a paused folder ever turns without sleeping.
PAUSED_MIN_WAIT = 0.05


def runner_wait(
    now: float, *, pass_at: float, tick: float, paused: bool, probe_at: float | None = None
) -> float:
    """How long the folder's runner sleeps before it looks again (clock seconds): until the
    next periodic pass is due, at most ``tick`` (it publishes the status each time).

    While the folder is paused, a pass that is due waits for the pause to end, so it does not
    decide the sleep: the runner sleeps a whole ``tick`` (paused by a person), or until the
    outage's next probe (``probe_at``, the endpoint not answering), never less than
    :data:`PAUSED_MIN_WAIT`.  A pass due while nothing is paused runs at once (0).

    >>> runner_wait(10.0, pass_at=5.0, tick=1.0, paused=False)
    0.0
    >>> runner_wait(10.0, pass_at=5.0, tick=1.0, paused=True, probe_at=10.5)
    0.5
    >>> runner_wait(10.0, pass_at=5.0, tick=1.0, paused=True, probe_at=9.0)
    0.05
    """
    if not paused:
        return min(tick, max(0.0, pass_at - now))
    if probe_at is None:
        return tick
    return min(tick, max(PAUSED_MIN_WAIT, probe_at - now))


# -- the delete guards' decisions ---------------------------------------------------------

#: A pass that deletes this many files or fewer in one direction is never held by the
#: share alone: in a small folder half of it is a handful of files, deleted by hand (an
#: emptied side is held whatever its size).
SHARE_FLOOR = 10


@dataclass(frozen=True)
class DeleteCaps:
    """How many deletes a pass may make before it is held for a person to confirm.

    ``max_delete``: most deletes in one pass, and how far the synced files may shrink in
    one rolling window (``--max-delete``); ``max_percent``: most deletes in one direction,
    as a share of the files synced (``--max-delete-percent``; 100 turns it off);
    ``window_minutes``: the rolling window.
    """

    max_delete: int = 1000
    max_percent: float = 50.0
    floor: int = SHARE_FLOOR
    window_minutes: int = 60


@dataclass(frozen=True)
class Deletes:
    """The deletes one pass (or one batch of the watcher's) would make, as the guards see
    them, and what the pass saw of each side.

    ``remote`` and ``local`` are the deletes in S3 and here that count; ``moved`` those left
    out because their content lives on at another synced path (a rename: the same ETag
    recorded elsewhere), which lose nothing.  ``synced`` is how many files the state lists;
    ``listed`` how many objects the pass listed (None: S3's side was not listed);
    ``local_empty`` whether the folder holds nothing but ignored names; ``added`` how many
    new files were synced in the last few minutes (a tree replaced within seconds, as by
    ``git checkout``, deletes files and writes others: those offset the deletes);
    ``recent`` how many deletes, net of such files, were allowed in the rolling window
    before this pass (``rm -rf`` in slices adds up, a checkout storm does not).
    """

    remote: int = 0
    local: int = 0
    moved: int = 0
    synced: int = 0
    listed: int | None = None
    local_empty: bool = False
    added: int = 0
    recent: int = 0

    @property
    def counted(self) -> int:
        return self.remote + self.local

    @property
    def net(self) -> int:
        """The deletes that count, less the files added with them."""
        return max(0, self.counted - self.added)


class Hold(enum.Enum):
    """Why a pass's deletes are held back until a person confirms them."""

    EMPTIED_LOCAL = "the folder is empty"
    EMPTIED_REMOTE = "the S3 listing is empty"
    COUNT = "more than --max-delete"
    SHARE = "more than --max-delete-percent of what was synced"
    WINDOW = "more than --max-delete in the rolling window"


@dataclass(frozen=True)
class Held:
    """A hold and its one line."""

    hold: Hold
    why: str


def hold_deletes(
    d: Deletes, caps: DeleteCaps, *, folder: str = "the folder", url: str = "the prefix"
) -> Held | None:
    """Whether a pass's deletes must wait for a person (None: they may run).  One rule a
    row, in order: a side that came back empty while the state lists files (an unmounted
    disk, a prefix emptied by another tool: rclone bisync's "Empty current listing" abort);
    more than ``max_delete`` in the pass; more than ``max_percent`` of what was synced
    deleted in one direction (past ``floor`` deletes; rclone bisync's ``--max-delete``
    50 %); the synced files shrinking by more than ``max_delete`` in the rolling window.
    The share and the window count deletes net of the files added in the window (a tree
    replaced within seconds, as by ``git checkout``, is no mass delete); deletes of moved
    content count nowhere.  The pass is held whole; forcing or approving it is the
    caller's.

    >>> hold_deletes(Deletes(remote=59, synced=60), DeleteCaps()).why
    '59 deletes in S3 are 98% of the 60 files synced, more than --max-delete-percent 50'
    >>> hold_deletes(Deletes(remote=300, moved=300, synced=600), DeleteCaps()) is None
    True
    """
    if d.synced > 0 and d.local_empty and d.counted + d.moved > 0:
        return Held(Hold.EMPTIED_LOCAL, f"{folder} is empty while {d.synced} files were synced")
    if d.synced > 0 and d.listed == 0 and d.local > 0:
        return Held(
            Hold.EMPTIED_REMOTE,
            f"the listing of {url} is empty while {d.synced} files were synced "
            "(emptied by another tool?)",
        )
    if d.counted > caps.max_delete:
        return Held(Hold.COUNT, f"{d.counted} deletes exceed --max-delete {caps.max_delete}")
    for n, where in ((d.remote, "in S3"), (d.local, "here")):
        net = max(0, n - d.added)
        if caps.max_percent < 100 and net > caps.floor and net * 100 > caps.max_percent * d.synced:
            share = min(100, net * 100 // max(d.synced, 1))
            what = f"{n} deletes {where}" + (
                f" ({net} net of {d.added} new files)" if d.added else ""
            )
            return Held(
                Hold.SHARE,
                f"{what} are {share}% of the {d.synced} files synced, more than "
                f"--max-delete-percent {caps.max_percent:g}",
            )
    if d.net and d.recent + d.net > caps.max_delete:
        return Held(
            Hold.WINDOW,
            f"{d.net} deletes after {d.recent} in the last {caps.window_minutes} min exceed "
            f"--max-delete {caps.max_delete}",
        )
    return None


@dataclass(frozen=True)
class RootSeen:
    """The folder's root as it is now: the resolved directory's device and inode, the
    folder id its marker file holds (None: no marker), and whether it holds anything."""

    dev: int
    ino: int
    marker: str | None = None
    empty: bool = False

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"


@dataclass(frozen=True)
class RootRecord:
    """What the state recorded of the root: the directory accepted as the folder
    (``key``: ``dev:ino``, or ``dev:`` from a state that kept only the device), the folder
    id (the marker's), and a different directory already met but not accepted yet."""

    key: str
    folder_id: str = ""
    unaccepted: str = ""


class RootVerdict(enum.Enum):
    """What the root is, as :func:`judge_root` decides."""

    FIRST = "nothing recorded yet: record this directory"
    SAME = "the folder's own directory"
    MOVED = "the same folder (its marker says so) on another device or inode: record it"
    NEW = "a different directory: a new folder, met as on a first run; no deletes"
    UNACCEPTED = "the different directory met before, not accepted yet: still no deletes"
    WAIT = "nothing to sync with: missing, or looks unmounted, or its marker is missing"


def judge_root(recorded: RootRecord | None, seen: RootSeen | None, *, marker: bool) -> RootVerdict:
    """Decide what the folder's root is now, from what was recorded (Syncthing's folder
    marker, a device and inode otherwise).

    A directory whose device and inode were recorded is the folder; with ``marker`` on, so
    is one that holds the folder's marker (moved to a new disk, remounted), and one without
    it is waited for (Syncthing's missing ``.stfolder``).  Without the marker, another
    directory is a new folder (a repointed symlink, another disk at the mount point, a
    restored tree): it is met as on a first run (both versions kept, nothing deleted) and
    its deletes wait until a person accepts it; an empty one looks unmounted and is waited
    for.

    >>> rec = RootRecord("2049:77", folder_id="f1")
    >>> judge_root(rec, RootSeen(2049, 77), marker=False).name
    'SAME'
    >>> judge_root(rec, RootSeen(2049, 90, marker="f1"), marker=True).name
    'MOVED'
    >>> judge_root(rec, RootSeen(2049, 90), marker=False).name
    'NEW'
    """
    if seen is None:
        return RootVerdict.WAIT
    if recorded is None:
        return RootVerdict.FIRST
    dev, _, ino = recorded.key.partition(":")
    same = dev == str(seen.dev) and (not ino or ino == str(seen.ino))
    if same:
        return RootVerdict.SAME
    if marker:
        if seen.marker is not None and seen.marker == recorded.folder_id:
            return RootVerdict.MOVED
        return RootVerdict.WAIT
    if seen.key == recorded.unaccepted:
        return RootVerdict.UNACCEPTED
    return RootVerdict.WAIT if seen.empty else RootVerdict.NEW
