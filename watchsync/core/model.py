"""Plain, hashable values passed between scanners, the planner and the executors.

Paths are relative, ``/``-separated and valid UTF-8 on both sides, so that one string order
(code points, which equals S3's UTF-8 byte order) sorts the local walk, the S3 listing and
the state alike.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

E = TypeVar("E")


class Direction(enum.Enum):
    """Which way a one-shot sync copies."""

    UP = "up"  # local -> S3
    DOWN = "down"  # S3 -> local


class Mode(enum.Enum):
    """What the watch agent may write: ``push`` never writes the folder, ``pull`` never S3."""

    BOTH = "both"
    PUSH = "push"
    PULL = "pull"


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A regular file under the local root, e.g. ``LocalEntry("a/b.txt", 12, 17 * 10**17)``."""

    path: str
    size: int
    mtime_ns: int
    # The file's identity (st_ino), 0 when unknown: two same-size files written within the
    # file system's time granularity carry one mtime, and one renamed over the other is
    # told apart only by this.
    ino: int = field(default=0, compare=False)
    # st_ctime_ns, 0 when unknown: every write, ``touch -r`` and ``cp -p`` moves it on a
    # POSIX file system even when they put the size and mtime back.
    ctime_ns: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """An object under the S3 prefix; ``path`` is the key with the prefix removed."""

    path: str
    size: int
    mtime_ns: int  # LastModified
    etag: str = ""
    # The file's mtime kept in the object's metadata (rclone's ``mtime``), when it was read
    # (a HEAD or a GET; listings do not carry it): None when unknown or not kept.
    stored_mtime_ns: int | None = field(default=None, compare=False)
    # As the listing gives it ("" when it did not say): archived objects (GLACIER,
    # DEEP_ARCHIVE) cannot be downloaded until restored.
    storage_class: str = field(default="", compare=False)


# A listed object as a plain row, ``(path, size, LastModified ns, etag)``: a listing pass
# compares these with the state's rows in bulk and makes entries only where they differ.
RemoteRow = tuple[str, int, int, str]


@dataclass(frozen=True, slots=True)
class SyncedEntry:
    """What the agent last synced for a path: the local file and the object as they were then."""

    path: str
    size: int
    mtime_ns: int  # local mtime when synced
    etag: str
    remote_mtime_ns: int  # LastModified when synced
    ino: int = field(default=0, compare=False)  # st_ino when synced, 0 when unknown
    ctime_ns: int = field(default=0, compare=False)  # st_ctime_ns when synced, 0: unknown


@dataclass(frozen=True, slots=True)
class Volume:
    """What the file system under a local folder keeps and refuses, as probed when the
    folder is first met (:mod:`watchsync.fs.volume`).  The defaults are a POSIX disk's
    (ext4, XFS, btrfs): nanosecond mtimes, a ctime every write moves, hard links, case in
    names kept apart, any name but NUL and ``/``.

    >>> Volume(mtime_step_ns=2 * 10**9, ctime=False, case_sensitive=False).describe()
    '2 s timestamps, no ctime, case-insensitive names'
    """

    # The granularity of its mtimes: 1 ns on ext4, 100 ns on NTFS, 1 s on exFAT and HFS+,
    # 2 s on FAT; two writes within one step carry one mtime.
    mtime_step_ns: int = 1
    # Whether st_ctime moves with every write and utime (not on FAT and exFAT, where it is
    # the mtime again): ``touch -r`` and ``cp -p`` are told by it alone.
    ctime: bool = True
    case_sensitive: bool = True  # False: ``Report.txt`` and ``report.txt`` are one name
    hard_links: bool = True  # link() works (not on FAT and exFAT)
    # Characters a name may not hold (FAT, exFAT and NTFS refuse ``:*?"<>|``), and whether
    # a name may end in a dot or a space (FAT and NTFS drop them).
    refused: str = ""
    trailing_dot_space: bool = True

    def describe(self) -> str:
        """What sets it apart from the defaults, for the log ("" when nothing does)."""
        step = self.mtime_step_ns
        parts = []
        if step > 1:
            unit = f"{step // 10**9} s" if step % 10**9 == 0 else f"{step} ns"
            parts.append(f"{unit} timestamps")
        if not self.ctime:
            parts.append("no ctime")
        if not self.case_sensitive:
            parts.append("case-insensitive names")
        if not self.hard_links:
            parts.append("no hard links")
        if self.refused:
            parts.append(f"names without {' '.join(self.refused)}")
        if not self.trailing_dot_space:
            parts.append("no trailing dot or space in names")
        return ", ".join(parts)

    def refuses(self, path: str) -> str | None:
        """Why a file cannot be made at ``path`` on this volume (a character it refuses in a
        name, a name it would store without its trailing dot or space), or None.

        >>> fat = Volume(refused=':*?"<>|', trailing_dot_space=False)
        >>> fat.refuses("a/b:c?.txt")
        "the folder's file system refuses : ? in a name"
        >>> fat.refuses("trail."), fat.refuses("a b.txt")
        ("the folder's file system drops a trailing dot or space from a name", None)
        """
        if not self.refused and self.trailing_dot_space:
            return None
        for part in path.split("/"):
            if bad := [c for c in self.refused if c in part]:
                return f"the folder's file system refuses {' '.join(bad)} in a name"
            if not self.trailing_dot_space and part.endswith((".", " ")):
                return "the folder's file system drops a trailing dot or space from a name"
        return None


#: A POSIX disk's volume (ext4, XFS, btrfs): what a folder is taken to be on until probed.
POSIX_VOLUME = Volume()


# A synced record as a plain row, ``(path, size, mtime_ns, etag, remote_mtime_ns, ino,
# ctime_ns)``: :class:`SyncedEntry`'s fields in order.
SyncedRow = tuple[str, int, int, str, int, int, int]


class Kind(enum.Enum):
    """What an action does."""

    UPLOAD = "upload"
    DOWNLOAD = "download"
    DELETE_REMOTE = "delete-remote"
    DELETE_LOCAL = "delete-local"
    COPY = "copy"  # a file renamed locally: copy its old object server-side
    CONFLICT = "conflict"  # both sides changed: keep both versions
    RECORD = "record"  # both sides already equal: only remember it as synced
    FORGET = "forget"  # gone from both sides: drop it from the state


@dataclass(frozen=True, slots=True)
class Condition:
    """What must be at a key for a write or a delete to go ahead: the object with ``etag``
    (the version last seen), or no object at all (:attr:`ABSENT`, an empty ``etag``).  The
    adapters in ``s3/`` turn it into the request's condition; a write that loses raises a
    :class:`~watchsync.core.errors.Failure` of kind ``PRECONDITION``.

    >>> Condition("e1").absent, Condition.ABSENT.absent, Condition.on(None) == Condition.ABSENT
    (False, True, True)
    """

    etag: str = ""

    ABSENT: ClassVar[Condition]

    @property
    def absent(self) -> bool:
        """No object may be there."""
        return not self.etag

    @staticmethod
    def on(remote: RemoteEntry | None) -> Condition:
        """The object as ``remote`` shows it: that version, or none when there is none."""
        return Condition(remote.etag) if remote is not None else Condition.ABSENT


Condition.ABSENT = Condition()


class StoredMtime(enum.Enum):
    """How a same-size copy is settled once the object's kept mtime is read (a HEAD): a
    listing carries only LastModified, which says little of a file whose time was kept."""

    SOURCE_NEWER = "copy when the source's mtime is newer"
    TIMES_DIFFER = "copy unless the mtimes are equal"


@dataclass(frozen=True, slots=True)
class Action:
    """One decision of the planner, with the reason it was taken.

    ``condition`` makes an upload or a remote delete conditional on what S3 holds (see
    :class:`Condition`); None overwrites or deletes whatever is there (``watchsync sync``).
    ``verify``: the sides may already hold the same bytes, so compare content hashes before
    moving any; if they agree, only record the pair as synced.  ``by_stored_mtime``: the
    copy was chosen by LastModified alone; the object's kept mtime, when it has one, decides
    instead (see :func:`~watchsync.core.plan.settle_by_stored_mtime`).  For
    :attr:`Kind.COPY`, ``synced`` is the entry of the path the file was renamed from.
    """

    kind: Kind
    path: str
    reason: str
    local: LocalEntry | None = None
    remote: RemoteEntry | None = None
    synced: SyncedEntry | None = None
    condition: Condition | None = None
    verify: bool = False
    by_stored_mtime: StoredMtime | None = None


class SkipKind(enum.Enum):
    """Why a path was skipped, as far as a one-shot ``sync`` tells them apart in its output."""

    MISSING = "missing"  # gone, or a symlink to nothing
    SPECIAL = "special"  # a FIFO, socket or device
    UNREADABLE = "unreadable"  # no permission to read the file or list the directory
    PARENT = "parent"  # a key with a '..' segment: it would leave the destination
    ARCHIVED = "archived"  # an object in an archive storage class, not restored
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A path a scanner could not use, e.g. an unreadable file or a key that escapes the root."""

    path: str
    reason: str
    kind: SkipKind = field(default=SkipKind.OTHER, compare=False)


def without_skipped(
    stream: Iterable[E | Skipped], on_skip: Callable[[Skipped], None]
) -> Iterator[E]:
    """Pass a scanner's entries through, handing each :class:`Skipped` to ``on_skip``."""
    for item in stream:
        if isinstance(item, Skipped):
            on_skip(item)
        else:
            yield item


@dataclass(frozen=True, slots=True)
class Item:
    """A path queued for the agent's uploader, and what was known of S3 when it was queued.

    ``expect_etag``: the ETag the object had then (None: not known); ``absent``: a
    reconcile saw no object, so the file is sent (``If-None-Match``) even when it is
    unchanged since the last sync; ``remote``: the object a reconcile saw (a same-size one
    may already hold the file's bytes); ``attempt``: how many tries came before;
    ``reported``: the watcher saw it written (on a volume without a ctime the stat may
    keep no trace of that).
    """

    path: str
    expect_etag: str | None = None
    attempt: int = 0
    absent: bool = False
    remote: RemoteEntry | None = None  # the object a reconcile saw, for a content check
    reported: bool = False
