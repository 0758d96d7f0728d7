"""The watcher side of the agent: filesystem events in, quiet relative paths out.

The pipeline is ``watchdog observer -> ChangeHandler -> Debouncer -> DebounceThread ->
on_ready(paths)``.  With inotify, the handler runs in the observer's reader thread, as each
event is read (:class:`TrackingInotifyObserver`); it only converts and enqueues.  The
debouncer holds each path until it has been quiet for ``debounce`` seconds; the thread
hands ready paths to the consumer outside any lock.

Ready paths are relative and ``/``-separated.  A path ending in ``/`` (``"photos/"``)
marks a *directory* that was created, deleted or moved: the consumer must rescan that
subtree (local walk vs. state), because inotify reports a directory move as one event and
a recursive watch misses whatever happened before the watch was added.  A plain path is a
file that may have been created, changed or deleted; the consumer stats it to find out.

Two more signals bypass the debouncer: ``on_overflow()`` (events were lost — inotify's
queue overflowed or a watch could not be added; do a full rescan) and ``on_root_gone()``
(the watched folder was deleted, moved away or replaced; stop syncing it).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers.api import (
    DEFAULT_OBSERVER_TIMEOUT,
    BaseObserver,
    EventDispatcher,
    ObservedWatch,
)
from watchdog.observers.polling import PollingObserver

from watchsync.core.filters import DEFAULT_IGNORES, IgnoreRules
from watchsync.core.model import Skipped
from watchsync.fs import platform
from watchsync.fs.debounce import Debouncer

logger = logging.getLogger(__name__)


# Errors from inotify_init/inotify_add_watch that mean "use polling instead".
_INOTIFY_UNAVAILABLE = {errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOSYS}
_MOVE_COOKIES = 1024  # directories moved out, remembered until their move-in arrives

FALLBACK_HINT = (
    "Raise fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=524288) to fix."
)


class OverflowEvent(FileSystemEvent):
    """Synthetic event: the kernel dropped events or a watch could not be added."""

    event_type = "watchsync_overflow"
    is_synthetic = True


class RootGoneEvent(FileSystemEvent):
    """Synthetic event: the watched root was deleted, moved away or replaced."""

    event_type = "watchsync_root_gone"
    is_synthetic = True


class UnmountedEvent(FileSystemEvent):
    """Synthetic event: a filesystem in the watched tree (the root's own, or one mounted
    below it) was unmounted: its watches are gone, and a disk mounted there again would
    never be heard of through them."""

    event_type = "watchsync_unmounted"
    is_synthetic = True


class ChangeHandler(FileSystemEventHandler):
    """Turns watchdog events into debouncer touches; does nothing else.

    * file created / modified / closed / attrib / deleted: ``touch(rel)``
      (``closed=True`` for a close after write);
    * file moved: both the source and the destination;
    * directory created / deleted / moved: ``touch(rel, is_dir=True)`` for each side —
      watchdog's synthetic per-child events for the same move are dropped, since the
      consumer rescans the subtree anyway;
    * ignored paths (:class:`IgnoreRules`) are dropped; a move from an ignored temp file
      onto a real name (an editor's atomic save) touches only the real name;
    * paths that are not valid UTF-8 are reported once (warning + ``on_skipped``);
    * the root deleted or moved: ``on_root_gone()`` once; events lost: ``on_overflow()``;
      a filesystem in the tree unmounted: ``on_unmounted()`` once.

    If the ignore file itself changes, the rules are reloaded and ``on_ignore_changed``
    (if given) is called so the agent can rescan.
    """

    def __init__(
        self,
        root: Path,
        debouncer: Debouncer,
        *,
        ignore: IgnoreRules | None = None,
        on_overflow: Callable[[], None] = lambda: None,
        on_root_gone: Callable[[], None] = lambda: None,
        on_unmounted: Callable[[], None] = lambda: None,
        on_skipped: Callable[[Skipped], None] = lambda _s: None,
        on_ignore_changed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.root = os.path.abspath(root)
        self._prefix = self.root.rstrip(os.sep) + os.sep
        self.debouncer = debouncer
        self.ignore = ignore if ignore is not None else IgnoreRules(DEFAULT_IGNORES)
        self._ignore_rel = self._relative_ignore_file()
        self.on_overflow = on_overflow
        self.on_root_gone = on_root_gone
        self.on_unmounted = on_unmounted
        self._unmounted = False
        self.on_skipped = on_skipped
        self.on_ignore_changed = on_ignore_changed
        self._root_gone = False
        self._skipped: set[str] = set()

    def _relative_ignore_file(self) -> str | None:
        if self.ignore.ignore_file is None:
            return None
        path = os.path.abspath(self.ignore.ignore_file)
        if not path.startswith(self._prefix):
            return None
        return path[len(self._prefix) :].replace(os.sep, "/")

    def dispatch(self, event: FileSystemEvent) -> None:
        """Entry point called by the observer thread for every event."""
        try:
            self._dispatch(event)
        except Exception:
            # An exception here would kill watchdog's dispatcher thread; lose one event
            # instead, and make the agent rescan.
            logger.exception("watch: failed to handle %r", event)
            self.on_overflow()

    def _dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, OverflowEvent):
            logger.warning("watch: events were lost (%s); a full rescan is needed", event.src_path)
            self.on_overflow()
            return
        if isinstance(event, UnmountedEvent):
            if not self._unmounted:
                self._unmounted = True
                logger.warning("watch: a filesystem in %s was unmounted", self.root)
                self.on_unmounted()
            return
        if isinstance(event, RootGoneEvent) or (
            isinstance(event, DirDeletedEvent) and self._abs(event.src_path) == self.root
        ):
            self._report_root_gone()
            return
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_synthetic and event.event_type in ("moved", "created", "deleted"):
            # Children of a directory event we report as a whole (watchdog >= 7.1 also sends
            # a deleted event for each watched subdirectory of a directory moved out).
            return
        if event.is_directory and not isinstance(
            event, DirCreatedEvent | DirDeletedEvent | DirMovedEvent
        ):
            return  # a directory's own mtime/attrib: its children's events carry the news
        closed = isinstance(event, FileClosedEvent)
        self._touch(event.src_path, is_dir=event.is_directory, closed=closed)
        if isinstance(event, FileSystemMovedEvent) and event.dest_path:
            self._touch(event.dest_path, is_dir=event.is_directory, closed=False)

    def _abs(self, path: bytes | str) -> str:
        return os.path.abspath(os.fsdecode(path))

    def _rel(self, path: bytes | str) -> str | None:
        """Relative ``/`` path under the root, or None for the root itself or outside it."""
        text = os.fsdecode(path)
        if not text.startswith(self._prefix):
            return None
        rel = text[len(self._prefix) :]
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        return rel or None

    def _touch(self, path: bytes | str, *, is_dir: bool, closed: bool) -> None:
        rel = self._rel(path)
        if rel is None:
            return
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            self._skip(rel)
            return
        if self._ignore_rel is not None and rel == self._ignore_rel:
            self.ignore = self.ignore.reload()
            logger.info("watch: reloaded ignore rules from %s", self.ignore.ignore_file)
            if self.on_ignore_changed is not None:
                self.on_ignore_changed()
        if self.ignore.matches(rel, is_dir=is_dir):
            return
        self.debouncer.touch(rel, closed=closed, is_dir=is_dir)

    def _skip(self, rel: str) -> None:
        if rel in self._skipped:
            return
        if len(self._skipped) < 100_000:
            self._skipped.add(rel)
        shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        logger.warning("watch: skipping path that is not valid UTF-8: %s", shown)
        self.on_skipped(Skipped(shown, "path is not valid UTF-8"))

    def _report_root_gone(self) -> None:
        if self._root_gone:
            return
        self._root_gone = True
        logger.error("watch: the watched folder %s was deleted or moved", self.root)
        self.on_root_gone()


# -- observers ---------------------------------------------------------------------------

# The events the handler uses.  The others are not even asked of inotify: opens and closes
# after reading (the agent's own reads of every file it uploads would come back as events)
# and a directory's own changes (its children's events carry the news).
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,  # a new mtime alone (touch, a restored backup) is a change to sync
    FileMovedEvent,
    DirMovedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileClosedEvent,
]


# One read(2) takes up to this much: 16,384 events (the kernel's default queue) of names up
# to 47 bytes.  watchdog reads 2,048 events at a time; under a burst each read waits for the
# GIL, and eight of them could not keep up with the queue.
_READ_SIZE = 1 << 20


class _Outbox:
    """What the inotify reader thread read, handed raw to the observer's dispatcher thread.

    The reader only reads: parsing the events, keeping the watches in step, building
    watchdog's events and running the handler all happen on the dispatcher thread, with one
    queue hand-off per read(2) of up to :data:`_READ_SIZE` bytes: the kernel's whole queue
    (16,384 events by default) in one read, so a reader that gets the CPU and the GIL
    only now and then (a burst's writer beside busy upload workers) still drains it before
    it overflows.  While ``limit`` bytes wait, the reader waits too: the kernel's queue then
    overflows, which the agent answers with a rescan, instead of memory growing without
    bound."""

    def __init__(self, put: Callable[[bytes], None], *, limit: int = 4 << 20) -> None:
        self._put = put
        self._limit = limit
        self._cond = threading.Condition()
        self._waiting = 0  # bytes handed over, not yet handled
        self._closed = False

    def hand(self, buffer: bytes) -> None:
        """Hand a read's bytes to the dispatcher; waits while too much is waiting."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting < self._limit or self._closed)
            if self._closed:
                return
            self._waiting += len(buffer)
        self._put(buffer)

    def done(self, buffer: bytes) -> None:
        with self._cond:
            self._waiting -= len(buffer)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _SignalSink:
    """Hands our synthetic events to the handlers of an observer's watches, in order with
    the other events (they are raised on the dispatcher thread, which handles the events).

    The hooks may run while watchdog holds a watch group's lock, and ``observer.stop()``
    takes the observer's lock and then the group's: taking the observer's lock here could
    deadlock, so this keeps its own list of watches.
    """

    def __init__(self, dispatch: Callable[[FileSystemEvent, ObservedWatch], None]) -> None:
        self._dispatch = dispatch
        self._lock = threading.Lock()
        self._roots: list[tuple[ObservedWatch, tuple[int, int] | None]] = []
        self._live = threading.Event()  # no signals for a startup we may abandon

    @property
    def live(self) -> bool:
        """The observer started and has not stopped."""
        return self._live.is_set()

    def started(self) -> None:
        self._live.set()

    def stopped(self) -> None:
        self._live.clear()

    def add(self, watch: ObservedWatch) -> None:
        with self._lock:
            self._roots.append((watch, _identity(str(watch.path))))

    def overflow(self) -> None:
        if self._live.is_set():
            self._emit(OverflowEvent)

    def unmounted(self) -> None:
        if self._live.is_set():
            self._emit(UnmountedEvent)

    def check_roots(self) -> None:
        if not self._live.is_set():
            return
        with self._lock:
            gone = [w for w, ident in self._roots if _identity(str(w.path)) != ident]
        for watch in gone:
            self._dispatch(RootGoneEvent(watch.path), watch)

    def _emit(self, cls: type[FileSystemEvent]) -> None:
        with self._lock:
            watches = [w for w, _ in self._roots]
        for watch in watches:
            self._dispatch(cls(watch.path), watch)


def _identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of a directory, or None if it is gone or not a directory."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


# inotify(7)'s event bits (the kernel's ABI): the events that only say a file's content or
# attributes changed.  Several of them for one file in one read tell the handler no more
# than the last one does.
_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE, _IN_CREATE = 0x2, 0x4, 0x8, 0x100
_TOUCHES = frozenset({_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE, _IN_CREATE})

RawEvent = TypeVar("RawEvent", bound=tuple[int, int, int, bytes])  # wd, mask, cookie, name


def coalesce_touches(events: Sequence[RawEvent]) -> list[RawEvent]:
    """The events of one read, minus each file's create/modify/attrib/close events that a
    later one of those four for the same file makes redundant, as long as nothing else
    happened to that name (a move, a delete) or to its directory in between.

    A file written in place comes as IN_CREATE, IN_MODIFY and IN_CLOSE_WRITE; the handler
    only needs the last (it sets the file's debounce deadline), so a burst costs one event
    a file instead of three.  Directories' events are all kept (their watches follow them).

    >>> coalesce_touches([(1, 0x100, 0, b"a"), (1, 0x2, 0, b"a"), (1, 0x8, 0, b"a")])
    [(1, 8, 0, b'a')]
    >>> coalesce_touches([(1, 0x2, 0, b"a"), (1, 0x40, 7, b"a"), (1, 0x8, 0, b"a")])
    [(1, 2, 0, b'a'), (1, 64, 7, b'a'), (1, 8, 0, b'a')]
    """
    keep = [True] * len(events)
    last: dict[tuple[int, bytes], int] = {}  # a file's latest touch since its last other event
    for i, (wd, mask, _cookie, name) in enumerate(events):
        if not name:  # about a watched directory itself (gone, moved, unwatched): start over
            last.clear()
        elif mask in _TOUCHES:  # exactly one bit: not a directory's, nor a flagged event
            before = last.get((wd, name))
            if before is not None:
                keep[before] = False
            last[(wd, name)] = i
        else:
            last.pop((wd, name), None)
    return [e for e, k in zip(events, keep, strict=True) if k]


if sys.platform.startswith("linux"):
    try:
        from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
        from watchdog.observers.inotify_c import (
            CallbackId,
            InotifyConstants,
            InotifyEvent,
            InotifyFD,
            Mask,
            WatchCallback,
            WatchDescriptor,
        )
        from watchdog.observers.inotify_move_event_grouper import PathedInotifyEvent
    except Exception as exc:  # watchdog.utils.UnsupportedLibcError: a libc without inotify
        HAVE_INOTIFY = False
        NO_INOTIFY_WHY = f"{type(exc).__name__}: {exc}"  # or watchdog's internals moved
    else:
        HAVE_INOTIFY = True
        NO_INOTIFY_WHY = ""
else:  # pragma: no cover
    HAVE_INOTIFY = False
    NO_INOTIFY_WHY = f"no inotify on {sys.platform}"


if HAVE_INOTIFY:

    class _TrackingInotifyFD(InotifyFD):
        """watchdog's inotify reader, plus what watchdog 7 keeps to itself: it only logs a
        queue overflow (and re-adds its watches), silently skips subdirectories it cannot
        watch (ENOSPC), and does not report the root being moved away (IN_MOVE_SELF)."""

        def __init__(self, sink: _SignalSink, outbox: _Outbox) -> None:
            super().__init__()
            self._sink = sink
            self._outbox = outbox
            self.watch_limit_error: OSError | None = None

        def add_callback(
            self, path: bytes, mask: Mask, callback: WatchCallback, id_: CallbackId
        ) -> WatchDescriptor:
            # watchdog 7 does not ask for IN_MOVE_SELF; we need it to see the root move away.
            # Its emitter ignores the extra events.
            mask = Mask(mask | InotifyConstants.IN_MOVE_SELF)
            try:
                # As watchdog's add_callback, minus its RuntimeWarning when a directory
                # created right after its parent is added twice (a benign race that
                # pytest's filterwarnings=error turns into a dead reader thread).
                with self._lock:
                    watch = self._get_or_create_watch(path, mask)
                    watch.callbacks[id_] = callback
                    return watch.wd
            except OSError as exc:
                if exc.errno in _INOTIFY_UNAVAILABLE:
                    if self.watch_limit_error is None:
                        self.watch_limit_error = exc
                        if self._sink.live:
                            logger.warning(
                                "watch: cannot watch %s (%s); changes below it are seen only "
                                "by the periodic reconcile. %s",
                                os.fsdecode(path),
                                exc,
                                FALLBACK_HINT,
                            )
                    self._sink.overflow()
                raise

        def remove_callbacks(self, callbacks: list[tuple[WatchDescriptor, CallbackId]]) -> None:
            # Same race as above, on removal: skip callbacks that are already gone.
            with self._lock:
                for wd, id_ in callbacks:
                    watch = self._watch_for_wd.get(wd)
                    if watch is None or id_ not in watch.callbacks:
                        continue
                    self._remove_callback(wd, id_)

        def run(self) -> None:
            # Only reads; :meth:`handle_buffer` does the rest on the dispatcher thread.
            while self.should_keep_running():
                buffer = self._read_event_buffer(_READ_SIZE)
                if buffer:
                    self._outbox.hand(buffer)

        def handle_buffer(self, buffer: bytes) -> None:
            """The events of one read, as watchdog's reader thread would handle them."""
            events = list(InotifyFD._parse_event_buffer(buffer))
            for wd, mask, cookie, name in coalesce_touches(events):
                # The kernel reports IN_Q_OVERFLOW with wd=-1; other global events are not ours.
                if wd != -1 or mask & InotifyConstants.IN_Q_OVERFLOW:
                    self.handle_event(InotifyEvent(wd, mask, cookie, name))

        def handle_event(self, event: InotifyEvent) -> None:
            try:
                super().handle_event(event)  # watchdog re-adds its watches on overflow first
            except KeyError:
                # An event queued for a directory whose watch watchdog already dropped (it
                # was removed or moved away meanwhile): a known race, not a bug; rescan.
                logger.warning(
                    "watch: an event for a directory no longer watched (%r); rescanning", event
                )
                self._sink.overflow()
                return
            except Exception:
                # Uncaught, this would end the reader thread and all watching with it.
                logger.exception("watch: failed to handle inotify event %r", event)
                self._sink.overflow()
                return
            if event.is_queue_overflow:
                self._sink.overflow()
            elif event.mask & InotifyConstants.IN_UNMOUNT:
                self._sink.unmounted()  # sent whatever the mask, before the watch's IN_IGNORED
            elif event.is_move_self or event.is_delete_self:
                self._sink.check_roots()

    Dispatch = Callable[[FileSystemEvent, ObservedWatch], None]

    @dataclass
    class _DirectWatchGroup(InotifyWatchGroup):
        """watchdog's watch group, minus its move grouper: each event goes on to
        ``deliver`` at once, on the thread that handles the events (the dispatcher's).

        watchdog passes every event through the grouper's queue, an emitter thread, the
        observer's queue and its dispatcher thread.  Behind busy upload workers each of
        those hand-offs waits for the GIL, and a burst's events reached the agent at a
        fraction of the rate they were written while the uploaders sat idle.  Moves are
        not paired (the handler touches both sides of a move anyway); a moved directory's
        watches still follow it, found by the cookie of its IN_MOVED_FROM."""

        deliver: Callable[[PathedInotifyEvent], None] | None = None
        _moved_dirs: dict[int, bytes] = field(default_factory=dict, init=False)

        def on_event(self, event: InotifyEvent) -> None:
            with self._lock:
                if not self.is_active or self.deliver is None:
                    return
                src_path = self._build_event_source_path(event)
                if src_path is None:
                    return
                if event.is_moved_from and event.is_directory:
                    if len(self._moved_dirs) >= _MOVE_COOKIES:
                        self._moved_dirs.pop(next(iter(self._moved_dirs)))
                    self._moved_dirs[event.cookie] = src_path
                elif event.is_moved_to:
                    source = self._moved_dirs.pop(event.cookie, None)
                    followed = source is not None and self._move_watches(source, src_path)
                    if event.is_directory and self.is_recursive and not followed:
                        self._add_all_callbacks(src_path)
                elif event.is_create and event.is_directory and self.is_recursive:
                    # Its files from before the watch: the handler's directory mark has the
                    # agent rescan it, so watchdog's simulated events are not made.
                    self._add_all_callbacks(src_path)
                deliver = self.deliver
            # Outside the lock: the root deleted stops its emitter, which takes it.
            deliver(PathedInotifyEvent(event, src_path))

    class _DirectEmitter(InotifyEmitter):
        """An inotify emitter fed by a :class:`_DirectWatchGroup`: its events are built
        and dispatched as they are handled; the emitter's own thread only waits to be
        stopped."""

        def __init__(self, *args: Any, dispatch: Dispatch, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._dispatch = dispatch
            self._wanted = frozenset(self._event_filter or ())

        def on_thread_start(self) -> None:
            self._inotify = _DirectWatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
                deliver=self._deliver,
            )

        def _deliver(self, event: PathedInotifyEvent) -> None:
            with self._lock:
                if self._inotify is None:
                    return  # stopped meanwhile
            self.build_and_queue_event(event)

        def build_and_queue_event(
            self, event: PathedInotifyEvent | Any, *, full_events: bool = False
        ) -> None:
            if isinstance(event, PathedInotifyEvent) and event.ev.is_moved_to:
                # Not watchdog's walk of a moved-in tree: the handler's mark has the agent
                # rescan it.
                cls = DirCreatedEvent if event.ev.is_directory else FileCreatedEvent
                self.queue_event(cls(self._decode_path(event.path)))
                return
            super().build_and_queue_event(event, full_events=full_events)

        def queue_event(self, event: FileSystemEvent) -> None:
            if self._event_filter is None or type(event) in self._wanted:
                self._dispatch(event, self.watch)

    class TrackingInotifyObserver(BaseObserver):
        """An inotify observer whose handler also receives :class:`OverflowEvent` and
        :class:`RootGoneEvent`; ``watch_limit_error`` keeps the first ENOSPC/EMFILE seen
        while adding watches."""

        def __init__(self, *, timeout: float = DEFAULT_OBSERVER_TIMEOUT) -> None:
            self._outbox = _Outbox(self._queue_read)
            self._sink = _SignalSink(self.dispatch_now)
            self._inotify_fd = _TrackingInotifyFD(self._sink, self._outbox)
            super().__init__(
                _DirectEmitter,
                timeout=timeout,
                inotify_fd=self._inotify_fd,
                dispatch=self.dispatch_now,
            )
            self._inotify_fd.start()

        def _queue_read(self, buffer: bytes) -> None:
            self.event_queue.put(buffer)  # our entries: see dispatch_events

        def dispatch_events(self, event_queue: Any) -> None:
            """Handle the events of one read (:class:`_Outbox`), in order."""
            entry = event_queue.get(block=True)
            try:
                if entry is not EventDispatcher.stop_event:
                    try:
                        self._inotify_fd.handle_buffer(entry)
                    finally:
                        self._outbox.done(entry)
            finally:
                event_queue.task_done()

        def dispatch_now(self, event: FileSystemEvent, watch: ObservedWatch) -> None:
            """Hand ``event`` to the watch's handlers in this thread, as watchdog's
            dispatcher does, but not under the observer's lock: handling a root deleted
            stops its emitter, which ``stop()`` waits for while holding that lock."""
            for handler in list(self._handlers.get(watch, ())):
                handler.dispatch(event)

        @property
        def watch_limit_error(self) -> OSError | None:
            return self._inotify_fd.watch_limit_error

        def schedule(
            self,
            event_handler: FileSystemEventHandler,
            path: str | Path,
            *,
            recursive: bool = False,
            event_filter: list[type[FileSystemEvent]] | None = None,
            follow_symlink: bool = False,
        ) -> ObservedWatch:
            watch = super().schedule(
                event_handler,
                path,
                recursive=recursive,
                event_filter=event_filter,
                follow_symlink=follow_symlink,
            )
            self._sink.add(watch)
            return watch

        def start(self) -> None:
            super().start()
            self._sink.started()

        def on_thread_stop(self) -> None:
            self._sink.stopped()
            self._outbox.close()  # a reader waiting for room must not wait for a dispatcher gone
            super().on_thread_stop()
            self._inotify_fd.stop()
            if self._inotify_fd.ident is not None:
                self._inotify_fd.join()


def _native_observer(timeout: float) -> BaseObserver:
    """The tracking inotify observer on Linux, watchdog's native observer elsewhere (and
    under ``WATCHSYNC_PORTABLE=1``)."""
    if HAVE_INOTIFY and platform.linux():
        return TrackingInotifyObserver(timeout=timeout)
    from watchdog.observers import Observer

    return Observer(timeout=timeout)


def _inotify_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the native backend cannot be used here (so poll instead)."""
    if isinstance(exc, OSError):
        return exc.errno in _INOTIFY_UNAVAILABLE
    # watchdog.utils.UnsupportedLibcError: a libc without inotify
    return isinstance(exc, ImportError) or type(exc).__name__ == "UnsupportedLibcError"


def _stop_quietly(observer: BaseObserver) -> None:
    """Stop an observer that may never have started, joining it if it did."""
    try:
        observer.stop()
    except Exception:  # pragma: no cover - best effort on a half-built observer
        logger.debug("watch: error stopping a failed observer", exc_info=True)
    if observer.ident is not None:
        observer.join()


def start_observer(
    root: Path,
    handler: FileSystemEventHandler,
    *,
    force_polling: bool = False,
    polling_interval: float = 1.0,
    observer_factory: Callable[[], BaseObserver] | None = None,
    polling_factory: Callable[[float], BaseObserver] | None = None,
) -> tuple[BaseObserver, bool]:
    """Watch ``root`` recursively; returns ``(observer, is_polling)``.

    Uses inotify on Linux.  If inotify cannot be used — the watch limit
    (``ENOSPC``) or instance limit (``EMFILE``) is reached, at start or for any
    subdirectory, or the platform has none — logs a warning and polls every
    ``polling_interval`` seconds instead.  Other errors (the root is missing) are raised.
    The caller stops and joins the observer.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     observer, polling = start_observer(Path(d), FileSystemEventHandler())
    ...     observer.stop(); observer.join()
    >>> polling  # inotify was there (Linux)
    False
    """
    path = os.path.abspath(root)
    if not os.path.isdir(path):
        raise FileNotFoundError(errno.ENOENT, "watched folder does not exist", path)
    make_polling = polling_factory or (lambda interval: PollingObserver(timeout=interval))
    if not force_polling:
        factory = observer_factory or (lambda: _native_observer(DEFAULT_OBSERVER_TIMEOUT))
        observer: BaseObserver | None = None
        try:
            observer = factory()  # EMFILE: no inotify instance left
            observer.schedule(handler, path, recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()  # ENOSPC for the root: no watch left
            # watchdog swallows errors for subdirectories; the tracking observer keeps them.
            limit_error: OSError | None = getattr(observer, "watch_limit_error", None)
            if limit_error is not None:
                raise limit_error
            return observer, False
        except Exception as exc:
            if observer is not None:
                _stop_quietly(observer)
            if not _inotify_unavailable(exc):
                raise
            logger.warning(
                "watch: inotify unavailable (%s); falling back to polling. %s", exc, FALLBACK_HINT
            )
    polling = make_polling(polling_interval)
    polling.schedule(handler, path, recursive=True, event_filter=WATCHED_EVENTS)
    polling.start()
    return polling, True
