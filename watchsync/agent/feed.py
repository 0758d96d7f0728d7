"""Room: the change feed between agents on one prefix.  An agent that changes the prefix
appends what it changed to one small object in the bucket (``PREFIX/.watchsync/feed.json``,
never synced as a file); the other agents poll it with a conditional GET (a 304 while
nothing changed: one request, whatever the size of the tree) and hand the named paths to
the S3 side's schedule (:class:`~.list_schedule.ListSchedule`), whose re-check (a pass over
those paths alone, :meth:`~.reconcile.Reconcile.recheck`) follows at once, so another
machine's edit arrives in about a second instead of at the next full reconcile.

The object holds the last entries, each ``{"v": 1, "seq": N, "writer": ID, "at": EPOCH,
"paths": [...]}`` under ``{"format": 1, "epoch": TOKEN, "entries": [...]}``.  Writers
append with a conditional PUT (``If-Match`` the ETag read; a lost race reads again and
retries), so many writers never lose each other's entries.  Old entries are dropped on
write (compaction: older than the retention, or past the size caps); a reader that finds
entries missing between the last one it applied and the oldest kept (it was offline longer
than the retention), or a new epoch (the object was replaced), runs a full reconcile.
Entries or objects written by a newer or corrupt agent are ignored with a warning.

Must not touch: threads (the folder's runner calls :meth:`Feed.tick`), the SDK.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from watchsync.core.errors import Failure, FailureKind
from watchsync.core.model import Condition
from watchsync.s3.capabilities import Capabilities, Feature
from watchsync.s3.listing import unsafe_reason
from watchsync.s3.small_object import Fetched, NotModified

logger = logging.getLogger(__name__)

FEED_KEY = ".watchsync/feed.json"  # relative to the prefix; the reserved key space
FORMAT = 1  # the document's format
ENTRY_VERSION = 1  # an entry's format
RETENTION = 24 * 3600.0  # entries older than this are dropped on write
MAX_ENTRIES = 500
MAX_PATHS = 10_000  # paths kept in the whole object (bounds its size, ~1 MB at worst)
MAX_ENTRY_PATHS = 1_000  # more in one entry: readers run a full reconcile instead
START_SKEW = 60.0  # on first sight, entries this much older than the agent are re-checked
_ATTEMPTS = 5  # conditional writes tried per publish before waiting for the next tick


class FeedObject(Protocol):
    """The one object of the feed (:class:`watchsync.s3.client.SmallObject`)."""

    def get(self, *, if_none_match: str | None) -> Fetched | None: ...

    def put(self, body: bytes, *, condition: Condition) -> str: ...


@dataclass(frozen=True)
class _Entry:
    seq: int
    writer: str
    at: float
    paths: tuple[str, ...]
    full: bool


class Feed:
    """Publishes this agent's changes and hands on the paths other agents changed.

    Two agents on one prefix, over an object in memory with S3's conditional GET and PUT:

    >>> import hashlib
    >>> class Memory:
    ...     body, etag = b"", None
    ...     def get(self, *, if_none_match):
    ...         if self.etag is not None and if_none_match == self.etag:
    ...             raise NotModified("feed")
    ...         return None if self.etag is None else Fetched(self.body, self.etag)
    ...     def put(self, body, *, condition):
    ...         if condition.etag != (self.etag or ""):
    ...             raise Failure(FailureKind.PRECONDITION, "PreconditionFailed", "lost")
    ...         self.body, self.etag = body, hashlib.md5(body).hexdigest()
    ...         return self.etag
    >>> obj, named, fulls = Memory(), [], []
    >>> a = Feed("docs", obj=obj, named=print, full=lambda: None, poll_interval=0)
    >>> b = Feed("docs", obj=obj, named=named.extend, full=lambda: fulls.append(1),
    ...          poll_interval=0)
    >>> b.tick(); a.note("a.txt"); a.tick(); b.tick()
    >>> named, fulls
    (['a.txt'], [])
    """

    def __init__(
        self,
        name: str,
        *,
        obj: FeedObject,
        named: Callable[[Iterable[str]], None],
        full: Callable[[], None],
        trouble: Callable[[str | None], None] = lambda _why: None,
        server: Capabilities | None = None,
        writer: str | None = None,
        publish: bool = True,
        poll: bool = True,
        poll_interval: float = 1.0,
        retention: float = RETENTION,
        max_entries: int = MAX_ENTRIES,
        max_paths: int = MAX_PATHS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.obj = obj
        self.named = named  # paths other agents changed: owed a re-check
        self.full = full  # entries may be missing: a full reconcile, soon
        self.trouble = trouble  # why the feed cannot be counted on now (None: it can)
        self.server = server or Capabilities()  # shared: conditional writes refused once
        self.writer = writer or secrets.token_hex(8)
        self.publishing = publish
        self.polling = poll
        self.poll_interval = poll_interval
        self.retention = retention
        self.max_entries = max_entries
        self.max_paths = max_paths
        self.clock = clock
        self.wall = wall
        self.started = wall()
        self.etag: str | None = None  # of the version last read or written
        self.doc: dict[str, Any] | None = None  # that version, when it is ours to extend
        self.newer = False  # that version was written by a newer agent: never overwrite it
        self.epoch: str | None = None
        self.seq = 0  # the last entry applied (or written) in ``epoch``
        self.unreadable: str | None = None  # why the version last read cannot be used
        self._noted: set[str] = set()
        self._lock = threading.Lock()
        self._next_poll = clock()

    # -- this agent's changes ------------------------------------------------------------------

    def note(self, path: str) -> None:
        """This agent changed ``path`` in S3 (thread-safe; published on the next tick)."""
        if self.publishing and self.server.conditional_writes:
            with self._lock:
                self._noted.add(path)

    def tick(self) -> None:
        """Poll when due (handing on what others named), publish what was noted, and say
        whether the feed can be counted on."""
        try:
            if self.polling and self.clock() >= self._next_poll:
                self._next_poll = self.clock() + self.poll_interval
                self.poll()
            self.publish()
        finally:
            self.trouble(self.untrusted())

    def publish(self) -> None:
        """Append one entry with every path noted since the last publish."""
        with self._lock:
            paths, self._noted = sorted(self._noted), set()
        if not paths or not self.server.conditional_writes:
            return  # without conditional writes, writers would lose each other's entries
        try:
            if self._append(paths):
                return
        except Exception as exc:
            if isinstance(exc, Failure) and exc.kind is FailureKind.UNSUPPORTED:
                if self.server.refused(Feature.CONDITIONAL_WRITES):
                    logger.warning(
                        "feed: %s: the server refuses conditional writes; not publishing "
                        "changes (other agents see them at their full reconcile)",
                        self.name,
                    )
                return
            self._keep(paths)
            raise
        self._keep(paths)

    def _keep(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._noted.update(paths)

    def _append(self, paths: list[str]) -> bool:
        """Conditional writes until one wins; False after too many lost races."""
        if self.etag is None:
            self._read()
        for _ in range(_ATTEMPTS):
            if self.newer:
                logger.warning(
                    "feed: %s: the feed was written by a newer agent; not publishing %d paths",
                    self.name,
                    len(paths),
                )
                return True
            doc = self.doc
            if doc is None:  # none yet, or a corrupt one: start a new epoch
                doc = {"format": FORMAT, "epoch": secrets.token_hex(8), "entries": []}
            entries = [e for e in doc["entries"] if _seq(e) is not None]
            seq = max((_seq(e) or 0 for e in entries), default=0) + 1
            entry: dict[str, Any] = {
                "v": ENTRY_VERSION,
                "seq": seq,
                "writer": self.writer,
                "at": round(self.wall(), 3),
                "paths": paths if len(paths) <= MAX_ENTRY_PATHS else [],
            }
            if len(paths) > MAX_ENTRY_PATHS:
                entry["full"] = True
            new = {**doc, "entries": self._compact([*entries, entry])}
            body = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode()
            try:
                etag = self.obj.put(body, condition=Condition(self.etag or ""))
            except Failure as exc:
                if exc.kind is not FailureKind.PRECONDITION:
                    raise
                self._read()  # another writer won: apply its entries, then try again
                continue
            # Everything before this entry was read (a lost race reads again first).
            self.etag, self.doc, self.newer = etag, new, False
            self.epoch, self.seq = new["epoch"], seq
            return True
        return False

    def _compact(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drop the oldest entries past the retention or the size caps (never the newest)."""
        horizon = self.wall() - self.retention
        kept = [e for e in entries[:-1] if _at(e) >= horizon] + entries[-1:]
        total = sum(len(e.get("paths") or ()) for e in kept)
        while len(kept) > 1 and (len(kept) > self.max_entries or total > self.max_paths):
            total -= len(kept.pop(0).get("paths") or ())
        return kept

    def untrusted(self) -> str | None:
        """Why this agent cannot count on the feed for the other agents' changes, or None.
        An agent that does not poll (``push``) has nothing to count on it for."""
        if not self.polling:
            return None
        if not self.server.conditional_writes:
            return "the server refuses conditional writes, so agents publish no changes"
        if self.unreadable is not None:
            return f"the change feed {self.unreadable}"
        return None

    # -- the other agents' changes -------------------------------------------------------------

    def poll(self) -> None:
        """One conditional GET; the paths new entries from other writers name are handed
        on (owed a re-check), and whether the feed can be counted on is said."""
        try:
            self._read()
        finally:
            self.trouble(self.untrusted())

    def _read(self) -> None:
        try:
            fetched = self.obj.get(if_none_match=self.etag)
        except NotModified:
            return
        if fetched is None:
            self.unreadable = None
            if self.epoch is not None:
                logger.warning("feed: %s: the feed object is gone; full reconcile", self.name)
                self.full()
            self.etag, self.doc, self.newer, self.epoch, self.seq = None, None, False, None, 0
            return
        self.etag = fetched.etag
        self.doc, self.newer = None, False
        doc, problem = _parse(fetched.body)
        if doc is None:
            logger.warning("feed: %s: ignoring the feed object: %s", self.name, problem)
            self.newer = problem.startswith("written by a newer agent")
            self.unreadable = f"is {problem}"
            return
        self.doc, self.unreadable = doc, None
        raw: list[Any] = doc["entries"]
        seqs = [s for s in map(_seq, raw) if s is not None]
        top = max(seqs, default=0)
        if self.epoch != doc["epoch"]:
            first = self.epoch is None
            self.epoch, self.seq = doc["epoch"], top
            if not first:
                logger.warning("feed: %s: the feed was replaced; full reconcile", self.name)
                self.full()
                return
            # The agent's first full reconcile may have listed before these were written.
            recent = [e for e in self._entries(raw, after=0) if e.at >= self.started - START_SKEW]
            self._use(recent)
            return
        if top <= self.seq:
            return
        gap = min(seqs) > self.seq + 1
        new = self._entries(raw, after=self.seq)
        self.seq = top
        if gap:
            logger.warning(
                "feed: %s: entries were dropped before this agent read them; full reconcile",
                self.name,
            )
            self.full()
            return
        self._use(new)

    def _entries(self, raw: list[Any], *, after: int) -> list[_Entry]:
        """The entries after ``after`` this agent can read, in order; the others are
        reported and skipped."""
        out: list[_Entry] = []
        for item in raw:
            seq = _seq(item)
            if seq is None:
                logger.warning("feed: %s: ignoring a corrupt entry (no seq)", self.name)
                continue
            if seq <= after:
                continue
            entry, problem = _entry(item, seq)
            if entry is None:
                logger.warning("feed: %s: ignoring entry %d: %s", self.name, seq, problem)
                continue
            out.append(entry)
        return sorted(out, key=lambda e: e.seq)

    def _use(self, entries: Iterable[_Entry]) -> None:
        if not self.polling:
            return
        paths: set[str] = set()
        for e in entries:
            if e.writer == self.writer or not e.writer:
                continue
            if e.full:
                logger.info("feed: %s: a large change elsewhere; full reconcile", self.name)
                self.full()
                return
            paths.update(e.paths)
        if paths:
            self.named(sorted(paths))


def _seq(item: Any) -> int | None:
    seq = item.get("seq") if isinstance(item, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


def _at(item: dict[str, Any]) -> float:
    at = item.get("at")
    return float(at) if isinstance(at, int | float) else 0.0


def _parse(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """The feed document, or None and why it cannot be used."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"corrupt (not JSON: {exc})"
    if not isinstance(doc, dict):
        return None, "corrupt (not an object)"
    fmt = doc.get("format")
    if isinstance(fmt, int) and fmt > FORMAT:
        return None, f"written by a newer agent (format {fmt}, this agent reads {FORMAT})"
    if fmt != FORMAT or not isinstance(doc.get("epoch"), str) or not doc["epoch"]:
        return None, "corrupt (no format or epoch)"
    if not isinstance(doc.get("entries"), list):
        return None, "corrupt (no entries)"
    return doc, ""


def _entry(item: dict[str, Any], seq: int) -> tuple[_Entry | None, str]:
    """One entry, or None and why it cannot be used."""
    v = item.get("v")
    if isinstance(v, int) and v > ENTRY_VERSION:
        return None, f"written by a newer agent (version {v})"
    writer, at, paths = item.get("writer"), item.get("at"), item.get("paths")
    if (
        v != ENTRY_VERSION
        or not isinstance(writer, str)
        or not writer
        or not isinstance(at, int | float)
        or not isinstance(paths, list)
        or not all(isinstance(p, str) and unsafe_reason(p) is None for p in paths)
    ):
        return None, "corrupt"
    return _Entry(seq, writer, float(at), tuple(paths), item.get("full") is True), ""
