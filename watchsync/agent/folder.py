"""Room: one folder kept in step with one S3 prefix.  The only room with threads: it owns
them and their one stop event, opens what the rooms need of the world (the state, the
transfer, the status and the outage watch on them) and has :func:`~.wiring.wire` build the
rooms on it, then runs the schedule (first pass, periodic passes, the change feed's ticks
and re-checks, passes asked for after an overflow, a pause while the folder is missing).

Threads: the watchdog observer and the debouncer (fs/watcher.py, fs/debounce.py),
``upload_workers`` uploaders (each calls :meth:`Uploader.process_many`), a delete thread
(:meth:`DeleteGuards.run`) and a runner (:meth:`Reconcile.run`); the executor has its own
transfer pool.  Every loop waits on the stop event or on a queue that :meth:`Folder.stop`
wakes.  While the endpoint does not answer (outage.py) the workers wait and the runner only
probes.

Events are only hints: every path is decided from what the file system, the state and (on
reconcile) the listing say when it is looked at.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from watchsync.agent.config import FolderConfig
from watchsync.agent.effects import SkipLog
from watchsync.agent.feed import FEED_KEY
from watchsync.agent.metrics import FolderMetrics, Metrics
from watchsync.agent.outage import Outage, no_answer
from watchsync.agent.reconcile import Progress, Reconcile
from watchsync.agent.scope import Scope
from watchsync.agent.status import State, Status
from watchsync.agent.steering import Steering
from watchsync.agent.uploader import SETTLED, Result, Retry
from watchsync.agent.wiring import Rooms, wire
from watchsync.core.errors import Failure, FailureKind, WatchsyncError, failure_of
from watchsync.core.model import Item, Mode
from watchsync.core.plan import RootVerdict, runner_wait
from watchsync.fs.debounce import Debouncer, DebounceThread
from watchsync.fs.tempfiles import remove_temp_files
from watchsync.fs.volume import FolderVolume
from watchsync.fs.watcher import ChangeHandler, start_observer
from watchsync.s3.client import S3Client
from watchsync.s3.queue import NotificationQueue
from watchsync.s3.retry import RetryPolicy
from watchsync.s3.small_object import SmallObject
from watchsync.s3.transfer import open_transfer
from watchsync.state.db import disk_full
from watchsync.state.store import StateStore

logger = logging.getLogger(__name__)

_DELETE_WAIT_MAX = 60.0  # longest a delete batch waits for the uploads before it
_UPLOAD_BATCH = 32  # paths an upload worker takes at once when that many are ready
ROOT_REMINDER = 600.0  # seconds between warnings while the folder is missing
_TICK = 1.0  # the runner's longest sleep: status publishing and the root check
# Connection failures in a row (any thread) after which the agent pauses and probes: a few,
# so that requests in flight stop retrying each on its own once the endpoint is plainly gone.
_PAUSE_AFTER = 3
# A multipart upload under the prefix older than this is taken as dead (ours or another
# writer's, killed or cut off) and aborted on start; younger ones may be live or resumable.
STALE_UPLOAD_AGE = 24 * 3600.0


class Folder:
    """Keeps ``cfg.path`` and ``cfg.url`` in sync until stopped.

    Used as a context manager: entering opens and locks the state and starts the threads;
    leaving stops them, draining in-flight transfers when left normally and cancelling them
    when left on an error.  The supervisor builds one per configured folder.
    """

    def __init__(
        self,
        cfg: FolderConfig,
        *,
        state_dir: Path,
        metrics: FolderMetrics | None = None,
        client: S3Client | None = None,
        force_polling: bool = False,
        on_progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.root = cfg.path
        self.state_dir = state_dir
        self.metrics = metrics or Metrics().folder(cfg.name)
        self.force_polling = force_polling
        self.on_progress = on_progress
        self.clock = clock
        self.wall = wall
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # set once watching (or paused waiting for the folder)
        settings = replace(cfg.s3, max_concurrency=max(cfg.s3.max_concurrency, cfg.upload_workers))
        # What the folder's disk keeps and refuses: probed once it is there (see _run).
        self.volume = FolderVolume(self.root)
        # Each path the folder cannot sync said once, by the scanners and the executor alike.
        self.skip_log = SkipLog(cfg.name)
        self.transfer = open_transfer(
            settings,
            cfg.where,
            self.root,
            client=client,
            retry=RetryPolicy(attempts=3, max_wait=2.0),
            give_up_after=_PAUSE_AFTER,
            # No minimum duration: the pause is cheap (one probe a second at first) and
            # ends by itself, unlike sync's stop.
            give_up_min_seconds=0.0,
            volume=self.volume,
        )
        # S3 event notifications, where a queue receives them (read by a thread of its own).
        self.queue = (
            NotificationQueue(cfg.notifications_queue, settings=cfg.s3)
            if cfg.notifications_queue
            else None
        )
        self.scope = Scope(cfg, state_dir=state_dir)
        self.debouncer = Debouncer(cfg.debounce, clock=clock)
        self.store: StateStore | None = None  # open from start() to join()
        self._started: _Started | None = None  # built by start(), on the state it opens
        self._reconcile_now = threading.Event()
        self._going = threading.Event()  # clear while paused by the control channel
        self._going.set()
        self._threads: list[threading.Thread] = []
        self.watcher = _Watcher(self)
        self.passes = _Passes(self)
        self.workers = _Workers(self)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open and lock the state, build the rooms on it, then run everything in
        background threads."""
        store = StateStore.open(self.state_dir, local_root=self.root, url=self.cfg.url)
        try:
            store.lock()
            status = Status(
                self.cfg.name, store=store, metrics=self.metrics, wall=self.wall, sizes=self._sizes
            )
            outage = Outage(
                self.cfg.name,
                status=status,
                probe=self.transfer.probe,
                hold=self.transfer.reachability.hold,
                release=self.transfer.reachability.reset,
                endpoint=str(self.transfer.client.meta.endpoint_url),
                clock=self.clock,
            )
            rooms = wire(
                self.cfg,
                store=store,
                transfer=self.transfer,
                scope=self.scope,
                status=status,
                metrics=self.metrics,
                stop=self.stop_event,
                on_skip=self.skip_log,
                clock=self.clock,
                wall=self.wall,
                feed_object=SmallObject(
                    self.transfer.client, self.cfg.where.bucket, self.cfg.where.key(FEED_KEY)
                ),
                request_reconcile=self.request_reconcile,
                outage=outage,
                queue=self.queue,
                volume=self.volume,
            )
        except BaseException:
            store.close()
            raise
        steering = Steering(
            self.cfg,
            status=status,
            store=store,
            refused=rooms.refused,
            recent=rooms.recent,
            sizes=self._sizes,
            going=self._going,
            wake=self._reconcile_now.set,
            rescan=self.rescan,
        )
        self.store, self._started = store, _Started(outage, rooms, steering)
        store.status.set(
            state=State.STARTING.value,
            pid=os.getpid(),
            name=self.cfg.name,
            folder=str(self.root),
            url=self.cfg.url,
            last_error=None,
        )
        if store.recovered:
            # The state is gone: the first pass meets the pair as new (sync rules), and no
            # delete runs until a whole pass has rebuilt the state (the guards hold them).
            self.status.error(
                f"{store.recovered}; starting again as on a first meeting, "
                "with no deletes until a full pass has rebuilt the state",
                keep_state=True,
            )
        self._spawn(self._run, "runner")
        if rooms.notifications is not None:
            # Not joined on stop: a long poll holds no work and may wait 20 s to return.
            threading.Thread(
                target=self._notifications,
                name=f"watchsync-notifications-{self.cfg.name}",
                daemon=True,
            ).start()

    def _notifications(self) -> None:
        """Read the notification queue until stopped (paused with the folder)."""
        notifications, outage = self.rooms.notifications, self.outage
        assert notifications is not None
        while not self.stop_event.is_set():
            if not self._going.is_set() or outage.is_down:
                self.stop_event.wait(1.0)
                continue
            pause = notifications.poll()
            if pause:
                self.stop_event.wait(pause)

    def __enter__(self) -> Folder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leaving normally drains (up to ``drain_timeout``); leaving on error cancels."""
        self.stop()
        self.join(self.cfg.drain_timeout if exc is None else 0)

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        t = threading.Thread(target=target, name=f"watchsync-{role}-{self.cfg.name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Ask every thread to finish (non-blocking)."""
        self.stop_event.set()
        self.debouncer.wake()
        if self._started is not None:
            self.rooms.pending.close()
            self.rooms.guards.batcher.wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads (in-flight transfers drain) up to ``timeout``; True if done.

        The state is closed only once every thread is done: a thread still running may
        still record what it finished (its journal entry keeps it otherwise)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(left)
        done = not any(t.is_alive() for t in self._threads)
        self.watcher.stop()
        if not done:
            logger.warning("folder %s: threads still running after the drain", self.cfg.name)
            # Downloads cut short by the stop leave no partial files behind.
            me = os.getpid() & 0xFFFFFFFF
            with contextlib.suppress(OSError):
                remove_temp_files(self.root, pids=lambda pid: pid == me)
            return False
        self.transfer.close()
        store, self.store = self.store, None
        if store is not None:
            self.status.set(State.STOPPED)
            store.close()
        return True

    def request_reconcile(self) -> None:
        """Run a full reconcile as soon as possible (watch overflow, root trouble, the
        feed missed entries, asked for): it lists the prefix whatever the feed says."""
        if self._started is not None:
            self.rooms.listed.invalidate("a full pass was asked for")
        self._reconcile_now.set()

    def rescan(self) -> None:
        """A full pass now: the folder walked and the prefix listed."""
        if self.store is not None:
            self.watcher.lost("a rescan was asked for")
        self.request_reconcile()

    def request_walk(self) -> None:
        """Run a pass as soon as possible for what only the local side may have lost (the
        watcher overflowed): it walks the folder (see ``Dirty.invalidate``) and lists the
        prefix only if a listing is due anyway."""
        self._reconcile_now.set()

    # -- what callers read ------------------------------------------------------------------

    def _on(self) -> _Started:
        if self._started is None:
            raise WatchsyncError(f"folder {self.cfg.name} is not started")
        return self._started

    @property
    def rooms(self) -> Rooms:
        """The folder's rooms, built by :meth:`start`."""
        return self._on().rooms

    @property
    def outage(self) -> Outage:
        return self._on().outage

    @property
    def steering(self) -> Steering:
        """The folder as the control channel sees it."""
        return self._on().steering

    @property
    def status(self) -> Status:
        return self.rooms.status

    @property
    def reconcile(self) -> Reconcile:
        return self.rooms.reconcile

    @property
    def state(self) -> State:
        return self.status.state if self._started is not None else State.STARTING

    @property
    def last_error(self) -> str | None:
        return self.status.last_error if self._started is not None else None

    @property
    def polling(self) -> bool:
        return self.status.polling if self._started is not None else False

    @property
    def reconciles(self) -> int:
        """Full passes completed."""
        return self.reconcile.count if self._started is not None else 0

    @property
    def client(self) -> S3Client:
        return self.transfer.client

    def store_(self) -> StateStore:
        store = self.store
        if store is None:
            raise WatchsyncError("state is not open")
        return store

    def pending_count(self) -> int:
        """Paths debouncing, queued or waiting to be deleted."""
        rooms = self._started.rooms if self._started is not None else None
        if rooms is None:
            return self.debouncer.pending()
        return len(rooms.pending) + rooms.guards.pending() + self.debouncer.pending()

    def idle(self) -> bool:
        """Nothing debouncing, being handed over, queued, in flight or waiting to be deleted."""
        # In pipeline order, so a path moving downstream meanwhile is still seen.
        return (
            self._watch_settled()
            and self.rooms.pending.idle()
            and self.rooms.guards.pending() == 0
            and not self.workers.deleting.is_set()
        )

    def _watch_settled(self) -> bool:
        """No path waits in the debouncer or is being handed to the queue."""
        return self.debouncer.pending() == 0 and not self.watcher.busy()

    def _sizes(self) -> tuple[int, int]:
        rooms = self._started.rooms if self._started is not None else None
        return self.pending_count(), rooms.pending.in_flight if rooms is not None else 0

    # -- the runner ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._wait_for_root()
            if self.stop_event.is_set():
                return
            store = self.store_()
            remove_temp_files(self.root)  # partial downloads of a run that was killed
            self.volume.learn()
            self.watcher.start()
            self.status.set(State.RECONCILING)
            self.ready.set()
            for _ in range(self.cfg.upload_workers):
                self._spawn(self.workers.upload, "upload")
            self._spawn(self.workers.delete, "delete")
            left_over = store.journal.pending()
            self.passes.abort_stale_uploads()
            self.passes.reconcile()
            self.rooms.pending.resume(left_over)
            self._schedule()
        except Exception as exc:
            logger.exception("folder %s: stopped by an unexpected error", self.cfg.name)
            self.status.error(f"agent error: {exc}")
        finally:
            with contextlib.suppress(Exception):
                self.status.publish()

    def _schedule(self) -> None:
        """Periodic passes, passes asked for, and the pause while the folder is missing."""
        next_at = self.clock() + self.cfg.reconcile_interval
        while not self.stop_event.wait(self._wait(next_at)):
            self.status.publish()
            if not self._going.is_set():
                continue  # paused by ctl: events are still collected, nothing is sent
            if self.rooms.root.check() is RootVerdict.WAIT:
                self._pause_until_root_returns()
                next_at = self.clock()
            else:
                self.watcher.follow()
            if self.outage.is_down:
                if not self.outage.tick():
                    continue  # nothing else reaches S3 while it does not answer
                self._reconcile_now.set()  # back: what changed meanwhile, on both sides
            if self.passes.retry_due():
                self._reconcile_now.set()
            if self._reconcile_now.is_set() or self.clock() >= next_at:
                self._reconcile_now.clear()
                self.passes.reconcile()
                next_at = self.clock() + self.cfg.reconcile_interval
            self.passes.feed_tick()

    def _wait(self, pass_at: float) -> float:
        """The runner's next sleep: the pass decides it, unless the folder is paused (by a
        person, or by an outage, whose probes decide it then)."""
        probe_at = self.outage.next_probe
        return runner_wait(
            self.clock(),
            pass_at=pass_at,
            tick=_TICK,
            paused=probe_at is not None or not self._going.is_set(),
            probe_at=probe_at,
        )

    def _wait_for_root(self, what: str = "does not exist") -> None:
        """Pause while the root is missing or not the folder's (looks unmounted, lacks its
        marker: see folder_root.py), saying so now and every ``ROOT_REMINDER`` s (a disk
        mounted late, a network share down: someone should hear of it)."""
        said_at: float | None = None
        root = self.rooms.root
        while not self.stop_event.is_set() and root.check() is RootVerdict.WAIT:
            if said_at is None or self.clock() - said_at >= ROOT_REMINDER:
                text = root.waiting_text(what)
                if said_at is None:
                    self.status.pause(text)
                else:
                    logger.warning("folder %s: %s", self.cfg.name, text)
                said_at = self.clock()
            self.ready.set()
            self.stop_event.wait(_TICK)

    def _pause_until_root_returns(self) -> None:
        self.watcher.stop()
        self._wait_for_root("disappeared")
        if not self.stop_event.is_set():
            logger.info("folder %s: %s is back; rescanning", self.cfg.name, self.root)
            self.volume.learn()  # another disk may be in its place
            self.watcher.start()
            self.status.set(State.WATCHING, only_from=State.PAUSED)


@dataclass(frozen=True)
class _Started:
    """What :meth:`Folder.start` built on the state it opened."""

    outage: Outage
    rooms: Rooms
    steering: Steering


class _Workers:
    """The folder's upload and delete threads: each waits while the endpoint does not
    answer, and on the stop event or its queue."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.deleting = threading.Event()  # a delete batch is being sent

    def _wait_for_endpoint(self) -> bool:
        """Wait while the endpoint does not answer or the folder is paused; False once
        stopping."""
        f = self.folder
        while not (f._going.wait(_TICK) and f.outage.up.wait(_TICK)):
            if f.stop_event.is_set():
                return False
        return not f.stop_event.is_set()

    def upload(self) -> None:
        f = self.folder
        pending, uploader = f.rooms.pending, f.rooms.uploader
        while self._wait_for_endpoint() and (items := pending.take_many(_UPLOAD_BATCH)):
            if not self._wait_for_endpoint():  # paused (or cut off) while waiting for work
                return  # stopping: the journal keeps the paths taken
            try:
                results = uploader.process_many(items)
            except Exception:
                logger.exception("folder %s: unexpected error on a batch", f.cfg.name)
                results = [self._process_alone(item) for item in items]
            for item, result in zip(items, results, strict=True):
                if isinstance(result, Retry):
                    if result.counted:
                        f.metrics.retried()
                    pending.retry(item, result.delay)
                else:
                    pending.settle(item.path)

    def _process_alone(self, item: Item) -> Result:
        """One path after its batch failed unexpectedly; a path that fails so too is
        reported and left to the next walk."""
        f = self.folder
        try:
            return f.rooms.uploader.process(item)
        except Exception:
            logger.exception("folder %s: unexpected error on %s", f.cfg.name, item.path)
            f.status.error(f"unexpected error on {item.path}")
            return SETTLED

    def delete(self) -> None:
        f = self.folder
        guards = f.rooms.guards
        while not f.stop_event.is_set():
            batch = guards.take(f.stop_event)
            if not batch:
                continue
            self.deleting.set()
            try:
                if not self._wait_for_endpoint():
                    return
                self._wait_for_uploads()
                if f.stop_event.is_set():
                    return
                guards.run(batch, f.rooms.executor)
            except Exception as exc:
                f.status.error(f"delete failed: {failure_of(exc).text}")
            finally:
                self.deleting.clear()

    def _wait_for_uploads(self) -> None:
        """Deletes go after transfers: a renamed file or directory is copied server-side from
        the old object, so the old one must stay until the new paths are looked at."""
        f = self.folder
        deadline = f.clock() + _DELETE_WAIT_MAX
        while not f.stop_event.is_set() and f.clock() < deadline:
            if f._watch_settled() and f.rooms.pending.idle():
                return
            f.stop_event.wait(0.05)


class _Passes:
    """The folder's S3-facing passes, run by its runner thread: the full reconcile (and what
    a failed one means), the change feed's tick and the clean-up of stale uploads."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self._retry_at: float | None = None  # when a failed reconcile is tried again
        self.feed_error: str | None = None

    def retry_due(self) -> bool:
        """A failed pass is to be tried again now (once)."""
        if self._retry_at is None or self.folder.clock() < self._retry_at:
            return False
        self._retry_at = None
        return True

    def feed_tick(self) -> None:
        """Publish this agent's changes, hand on the other agents' and re-check what they
        named (see feed.py, :meth:`Reconcile.recheck`); S3 trouble is logged and left for
        the next tick."""
        f = self.folder
        feed, notifications = f.rooms.feed, f.rooms.notifications
        if (feed is None and notifications is None) or f.outage.is_down:
            return
        try:
            if feed is not None:
                feed.tick()
            f.reconcile.recheck()
            if notifications is not None:
                notifications.settle()  # the messages whose paths are now settled
        except Exception as exc:
            if no_answer(exc):
                f.outage.down(exc)
                return
            why = failure_of(exc).text
            if why != self.feed_error:  # once per distinct trouble, not every second
                logger.warning("feed: %s: %s", f.cfg.name, why)
            self.feed_error = why
        else:
            self.feed_error = None

    def abort_stale_uploads(self) -> None:
        """Parts of long-dead multipart uploads cost storage and are never listed: abort
        them (see STALE_UPLOAD_AGE).  Failing that is logged; the folder goes on."""
        f = self.folder
        if f.cfg.direction is Mode.PULL:
            return  # a pull-only agent writes nothing to S3, aborts included
        try:
            f.transfer.abort_stale_uploads(older_than=STALE_UPLOAD_AGE, now=f.wall())
        except Exception as exc:
            failure = failure_of(exc)
            if no_answer(exc):
                f.outage.down(failure)
            elif failure.kind is FailureKind.REFUSED:  # the first S3 request: say it clearly
                logger.warning(
                    "folder %s: S3 refused %s: %s (does the bucket exist, and may this agent "
                    "use it?); nothing is synced until it does",
                    f.cfg.name,
                    f.cfg.url,
                    failure.text,
                )
            else:
                logger.warning("folder %s: stale uploads: %s", f.cfg.name, failure.text)

    def reconcile(self) -> None:
        """One full pass now, unless the folder is missing or S3 does not answer."""
        f = self.folder
        if f.rooms.root.waiting() or f.outage.is_down or not f._going.is_set():
            return
        progress = f.on_progress if f.reconcile.count == 0 else None
        try:
            f.reconcile.run(progress=progress)
            f.rooms.guards.rebuilt()
        except Exception as exc:
            if not no_answer(exc):
                self._failed(exc)
                return
            f.outage.down(exc)  # the runner probes, and reconciles once it is back
        if f.outage.is_down:  # it went away during the pass (the pass said so itself)
            f.status.set(State.PAUSED)

    def _failed(self, exc: Exception) -> None:
        f = self.folder
        if isinstance(exc, Failure):  # S3 refused or failed, e.g. the listing
            f.metrics.error(exc.code or "reconcile")
            f.status.error(str(exc), s3=True)
        elif isinstance(exc, WatchsyncError):
            f.metrics.error("reconcile")
            f.status.error(str(exc))
        elif disk_full(exc):
            f.metrics.error("local")
            f.status.error(f"reconcile waits for space on the state's disk: {exc}")
        else:
            f.metrics.error(failure_of(exc).code)
            logger.error("folder %s: reconcile failed", f.cfg.name, exc_info=exc)
            f.status.error(f"reconcile failed: {exc}")
        self._later()

    def _later(self) -> None:
        """After a failed pass, try again soon rather than at the full interval (the
        runner checks ``retry_at``: a timer thread would outlive stop())."""
        f = self.folder
        self._retry_at = f.clock() + min(30.0, f.cfg.reconcile_interval)


class _Watcher:
    """The folder's watchdog observer and debounce thread (started again after a pause)."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self._observer: Any = None
        self._debounce: DebounceThread | None = None
        self._full = False  # the state's disk refused the last ready paths (said once)
        self._on: tuple[int, int] | None = None  # the root's device and inode when started
        self._unmounted = False  # a filesystem in the tree was unmounted since it started

    def start(self) -> None:
        f = self.folder
        handler = ChangeHandler(
            f.root,
            f.debouncer,
            ignore=f.scope.ignore,
            on_overflow=self._on_overflow,
            on_root_gone=self._on_root_gone,
            on_unmounted=self._on_unmounted,
            on_skipped=f.skip_log,
            on_ignore_changed=self._on_ignore_changed,
        )
        t0 = time.monotonic()
        self._on = _identity(f.root)
        self._unmounted = False
        self._observer, polling = start_observer(f.root, handler, force_polling=f.force_polling)
        f.status.watching(polling=polling)
        logger.info(
            "watch: %s: %s %s in %.1fs",
            f.cfg.name,
            "polling" if f.status.polling else "watching",
            f.root,
            time.monotonic() - t0,
        )
        self.lost("the watcher (re)started")
        if self._debounce is None:
            self._debounce = DebounceThread(
                f.debouncer,
                self._ready,
                f.stop_event,
                name=f"watchsync-debounce-{f.cfg.name}",
            )
            self._debounce.start()
            f._threads.append(self._debounce)

    def stop(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(5)
            self._observer = None

    def moved(self) -> bool:
        """The root is another directory or mount than the one being watched, or a disk in
        the tree was unmounted (mounted again, it may show the same device and inode)."""
        now = _identity(self.folder.root)
        if self._observer is None:
            return False
        return self._unmounted or (now is not None and now != self._on)

    def follow(self) -> None:
        """Watch the root again when it came back through a new mount (a card swapped, a
        FUSE daemon restarted) or is another directory: the watches on the old one would
        never report again, and what changed meanwhile is found by a full pass."""
        if not self.moved():
            return
        f = self.folder
        logger.info(
            "folder %s: %s is another directory or mount than the one watched; "
            "watching it again and rescanning",
            f.cfg.name,
            f.root,
        )
        self.stop()
        f.volume.learn()  # another disk may be in its place
        self.start()
        f.request_reconcile()

    def _ready(self, paths: list[str]) -> None:
        """Hand ready paths to the queue.  While the state's disk is full they cannot be
        journaled; they are noted for the next pass (which retries until there is space),
        and that is said once, not with a traceback per batch."""
        f = self.folder
        try:
            f.rooms.changes.ready(paths)
        except Exception as exc:
            if not disk_full(exc):
                raise
            f.rooms.dirty.note(paths)
            f.request_reconcile()
            if not self._full:
                self._full = True
                f.metrics.error("local")
                f.status.error(f"changes wait for space on the state's disk: {exc}")
        else:
            self._full = False

    def busy(self) -> bool:
        """Ready paths are being handed to the queue right now."""
        return self._debounce is not None and self._debounce.busy.is_set()

    def lost(self, why: str) -> None:
        """Events may have been lost: the next pass walks the whole folder."""
        self.folder.rooms.dirty.invalidate(why)

    def _on_overflow(self) -> None:
        self.folder.metrics.overflow()
        self.lost("the watcher overflowed")
        # Only inotify's events were lost: S3's side is as the feed and the state say.
        self.folder.request_walk()

    def _on_unmounted(self) -> None:
        self._unmounted = True
        self.lost("a filesystem in the folder was unmounted")
        self.folder.request_reconcile()

    def _on_root_gone(self) -> None:
        self.lost("the folder's root went away")
        self.folder.request_reconcile()

    def _on_ignore_changed(self) -> None:
        self.folder.scope.reload()
        self.lost("the ignore rules changed")
        self.folder.request_reconcile()


def _identity(root: Path) -> tuple[int, int] | None:
    """The root's device and inode (through a symlink), or None when it cannot be read."""
    try:
        st = os.stat(root)
    except OSError:
        return None
    return st.st_dev, st.st_ino
