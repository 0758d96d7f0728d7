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


# A synced record as a plain row, ``(path, size, mtime_ns, etag, remote_mtime_ns, ino)``:
# :class:`SyncedEntry`'s fields in order.
SyncedRow = tuple[str, int, int, str, int, int]


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
    may already hold the file's bytes); ``attempt``: how many tries came before.
    """

    path: str
    expect_etag: str | None = None
    attempt: int = 0
    absent: bool = False
    remote: RemoteEntry | None = None  # the object a reconcile saw, for a content check
