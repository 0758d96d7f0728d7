"""One folder kept in step with one S3 prefix: the watch pipeline, the uploaders, the
periodic reconcile and the delete guards.

Events are only hints: every path is decided from what the file system, the state and (on
reconcile) the listing say when it is looked at.  Threads: the watchdog observer, the
debouncer, ``upload_workers`` uploaders, a delete batcher and a runner that reconciles;
all stop on one event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import botocore.exceptions

from . import etag as etags
from .config import FolderConfig
from .errors import FileError, RemoteError, WatchsyncError
from .filters import Filters
from .guards import DeleteBatcher, conflict_name, delete_refusal
from .local import WalkOptions, stat_entry, walk
from .metrics import FolderMetrics, Metrics
from .model import (
    Action,
    Kind,
    LocalEntry,
    Mode,
    RemoteEntry,
    Skipped,
    SyncedEntry,
    without_skipped,
)
from .plan import ReconcileOptions, local_changed, plan_reconcile
from .ratelimit import shared_limiter
from .remote import (
    ClientSettings,
    S3Url,
    describe,
    error_code,
    list_entries,
    make_client,
    mtime_ns,
)
from .retry import RetryPolicy, is_transient
from .state import StateStore
from .transfer import (
    MULTIPART_THRESHOLD,
    PreconditionFailed,
    Transfer,
    Uploaded,
    UploadOptions,
    native_uploader,
)
from .watch import (
    ChangeHandler,
    Debouncer,
    DebounceThread,
    IgnoreRules,
    is_dir_mark,
    start_observer,
)
from .workqueue import Item, PathQueue

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

logger = logging.getLogger(__name__)


_PERMANENT_BACKOFF = (30.0, 300.0)  # first and longest wait after a permanent S3 error
_TRANSIENT_BACKOFF = (0.5, 30.0)
_DELETE_WAIT_MAX = 60.0  # longest a delete batch waits for the uploads before it


class FolderAgent:
    """Keeps ``cfg.path`` and ``cfg.url`` in sync until :meth:`stop`.

    >>> agent = FolderAgent(cfg, state_dir=Path("~/.local/state/watchsync"))  # doctest: +SKIP
    >>> agent.start(); ...; agent.stop(); agent.join()  # doctest: +SKIP
    """

    def __init__(
        self,
        cfg: FolderConfig,
        *,
        state_dir: Path,
        metrics: FolderMetrics | None = None,
        client: S3Client | None = None,
        force_polling: bool = False,
        on_progress: Callable[[str, int, int, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.root = cfg.path
        self.where = S3Url.parse(cfg.url)
        self.state_dir = state_dir
        self.metrics = metrics or Metrics().folder(cfg.name)
        self.mode = cfg.direction
        self.stop_event = threading.Event()
        self.force_polling = force_polling
        self.clock = clock
        self.wall = wall
        s3 = cfg.s3
        settings = ClientSettings(
            endpoint_url=s3.endpoint_url,
            profile=s3.profile,
            region=s3.region,
            max_concurrency=max(s3.max_concurrency, cfg.upload_workers),
        )
        self.client = client or make_client(settings)
        # An injected client is the whole S3 connection (tests, proxies): no native side door.
        uploader = (
            native_uploader(settings, self.client) if client is None and not s3.bwlimit else None
        )
        self.transfer = Transfer(
            self.client,
            self.where,
            self.root,
            options=UploadOptions(
                sse=s3.sse, sse_kms_key_id=s3.sse_kms_key_id, storage_class=s3.storage_class
            ),
            retry=RetryPolicy(attempts=3, max_wait=2.0),
            limiter=shared_limiter(s3.bwlimit) if s3.bwlimit else None,
            max_concurrency=s3.max_concurrency,
            crt=uploader,
        )
        self.filters = Filters.of(cfg.filters)
        self.ignore = IgnoreRules.load(self.root, cfg.ignore_file, state_dir=state_dir)
        self.store: StateStore | None = None
        self.queue = PathQueue(maxsize=10_000, clock=clock)
        self.debouncer = Debouncer(cfg.debounce, clock=clock)
        self.deletes = DeleteBatcher(2 * cfg.debounce, clock=clock)
        self._reconcile_now = threading.Event()
        self._debounce: DebounceThread | None = None
        self._deleting = threading.Event()  # a delete batch is being sent
        self._retry_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._observer: Any = None
        self._journal: dict[str, int] = {}
        self._journal_lock = threading.Lock()
        self._backoff: dict[str, float] = {}
        self._status: dict[str, Any] = {}
        self.state = "starting"
        self.polling = False
        self.conditional = True  # cleared if the server rejects conditional writes
        self.last_error: str | None = None
        self.reconciles = 0
        self.on_progress = on_progress  # (folder, paths scanned, actions, done): first pass
        self.ready = threading.Event()  # set once watching (or paused waiting for the folder)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open and lock the state, then run everything in background threads."""
        self.store = StateStore.open(self.state_dir, local_root=self.root, url=self.cfg.url)
        try:
            self.store.lock()
        except BaseException:
            self.store.close()
            self.store = None
            raise
        self.store.set_status(
            state="starting",
            pid=os.getpid(),
            folder=str(self.root),
            url=self.cfg.url,
            last_error=None,
        )
        self._spawn(self._run, "runner")

    def _spawn(self, target: Callable[[], None], role: str) -> None:
        t = threading.Thread(target=target, name=f"watchsync-{role}-{self.cfg.name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """Ask every thread to finish (non-blocking)."""
        self.stop_event.set()
        self.debouncer.wake()
        self.queue.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads (in-flight transfers drain) up to ``timeout``; True if done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(left)
        done = not any(t.is_alive() for t in self._threads)
        self._stop_observer()
        self.transfer.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.set_status(state="stopped", pending=self._pending_count(), in_flight=0)
            self.store.close()
            self.store = None
        return done

    def request_reconcile(self) -> None:
        """Run a full reconcile as soon as possible (watch overflow, root trouble)."""
        self._reconcile_now.set()

    # -- the runner ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._wait_for_root()
            if self.stop_event.is_set():
                return
            if not self.store_().meta().get("root_dev"):
                self.store_().set_meta("root_dev", str(self.root.stat().st_dev))
            self._start_watching()
            self._set_state("reconciling")
            self.ready.set()
            for _ in range(self.cfg.upload_workers):
                self._spawn(self._upload_worker, "upload")
            self._spawn(self._delete_worker, "delete")
            pending = self.store_().journal_pending()
            self._reconcile_safely()
            for entry in pending:
                self._enqueue(entry.path, journal_id=entry.id)
            next_at = self.clock() + self.cfg.reconcile_interval
            while not self.stop_event.wait(min(1.0, max(0.0, next_at - self.clock()))):
                self._publish_status()
                if not self._root_ok():
                    self._pause_until_root_returns()
                    next_at = self.clock()
                retry_at = self._retry_at
                if retry_at is not None and self.clock() >= retry_at:
                    self._retry_at = None
                    self._reconcile_now.set()
                if self._reconcile_now.is_set() or self.clock() >= next_at:
                    self._reconcile_now.clear()
                    self._reconcile_safely()
                    next_at = self.clock() + self.cfg.reconcile_interval
        except Exception as exc:
            logger.exception("folder %s: stopped by an unexpected error", self.cfg.name)
            self._error(f"agent error: {exc}")
        finally:
            self._publish_status(force=True)

    def _wait_for_root(self) -> None:
        warned = False
        while not self.stop_event.is_set() and not self.root.is_dir():
            if not warned:
                self._set_state("paused", f"folder {self.root} is missing; waiting for it")
                warned = True
            self.ready.set()
            self.stop_event.wait(1.0)

    def _start_watching(self) -> None:
        handler = ChangeHandler(
            self.root,
            self.debouncer,
            ignore=self.ignore,
            on_overflow=self._on_overflow,
            on_root_gone=self._on_root_gone,
            on_skipped=lambda s: self._skipped(s),
            on_ignore_changed=self._on_ignore_changed,
        )
        self._observer, self.polling = start_observer(
            self.root, handler, force_polling=self.force_polling
        )
        if not any(t.name.startswith("watchsync-debounce") for t in self._threads):
            debounce = DebounceThread(
                self.debouncer,
                self._on_ready,
                self.stop_event,
                name=f"watchsync-debounce-{self.cfg.name}",
            )
            debounce.start()
            self._threads.append(debounce)
            self._debounce = debounce

    def _stop_observer(self) -> None:
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(5)
            self._observer = None

    def _root_ok(self) -> bool:
        return self.root.is_dir()

    def _pause_until_root_returns(self) -> None:
        logger.warning(
            "folder %s: %s disappeared; pausing (no deletes) until it returns",
            self.cfg.name,
            self.root,
        )
        self._stop_observer()
        self._wait_for_root()
        if not self.stop_event.is_set():
            logger.info("folder %s: %s is back; rescanning", self.cfg.name, self.root)
            self._start_watching()

    def _on_overflow(self) -> None:
        self.metrics.overflow()
        self.request_reconcile()

    def _on_root_gone(self) -> None:
        self.request_reconcile()

    def _on_ignore_changed(self) -> None:
        self.ignore = self.ignore.reload()
        self.request_reconcile()

    # -- what takes part -------------------------------------------------------------------

    def included(self, path: str) -> bool:
        """Neither ignored (ignore file, editor temp files) nor excluded by the filters."""
        return not self.ignore.matches(path) and (not self.filters or self.filters.included(path))

    def _prune(self, rel_dir: str) -> bool:
        return self.ignore.matches(rel_dir, is_dir=True)

    # -- events -> queue -------------------------------------------------------------------

    def _on_ready(self, paths: list[str]) -> None:
        files = [Item(p) for p in paths if not is_dir_mark(p)]
        self._enqueue_many(files)
        for path in paths:
            if is_dir_mark(path):
                self._rescan_dir(path.rstrip("/"))

    def _rescan_dir(self, rel: str) -> None:
        """A directory appeared, vanished or moved: look at everything under it."""
        store = self.store_()
        batch = _Batch(self._enqueue_many)
        for entry in without_skipped(
            walk(self.root, options=self._walk_options(), start=rel), self._skipped
        ):
            batch.add(Item(entry.path))
        for syn in store.iter_sorted(prefix=rel + "/"):
            if not (self.root / syn.path).exists():
                batch.add(Item(syn.path))
        batch.flush()

    def _walk_options(self) -> WalkOptions:
        return WalkOptions(follow_symlinks=True, prune=self._prune)

    def _enqueue(
        self,
        path: str,
        *,
        expect_etag: str | None = None,
        absent: bool = False,
        journal_id: int | None = None,
    ) -> None:
        if not self.included(path):
            if journal_id is not None:
                self.store_().journal_done(journal_id)
            return
        if journal_id is None:
            self._enqueue_many([Item(path, expect_etag, absent=absent)])
            return
        with self._journal_lock:
            if path not in self._journal:
                self._journal[path] = journal_id
            elif journal_id != self._journal[path]:
                self.store_().journal_done(journal_id)
        self.queue.put(Item(path, expect_etag, absent=absent), stop=self.stop_event)

    def _enqueue_many(self, items: Sequence[Item]) -> None:
        """Journal every new path in one transaction, then queue them (with backpressure)."""
        items = [i for i in items if self.included(i.path)]
        if not items:
            return
        with self._journal_lock:
            new = list(dict.fromkeys(i.path for i in items if i.path not in self._journal))
            if new:
                ids = self.store_().journal_add_many("sync", new)
                self._journal.update(zip(new, ids, strict=True))
        for item in items:
            self.queue.put(item, stop=self.stop_event)

    def _finish(self, path: str) -> None:
        """The worker is done with ``path``: release it, and close its journal entry unless
        a newer event queued it again meanwhile (that entry then stays until it is done)."""
        store = self.store_()
        with self._journal_lock:
            again = self.queue.has_again(path)
            if not again:
                jid = self._journal.pop(path, None)
                if jid is not None:
                    store.journal_done(jid)
            # Released last, so the path never looks idle before its entry is closed.
            if self.queue.done(path) and not again:
                self._journal[path] = store.journal_add("sync", path)

    # -- uploaders -------------------------------------------------------------------------

    def _upload_worker(self) -> None:
        while True:
            item = self.queue.get(self.stop_event)
            if item is None:
                return
            requeue: float | None = None
            try:
                requeue = self._process(item)
            except Exception:
                logger.exception("folder %s: unexpected error on %s", self.cfg.name, item.path)
                self._error(f"unexpected error on {item.path}")
            finally:
                if requeue is None:
                    self._finish(item.path)
                else:
                    self.queue.done(item.path)
            if requeue is not None and not self.stop_event.is_set():
                self.metrics.retried()
                self.queue.put(
                    Item(item.path, item.expect_etag, item.attempt + 1, item.absent),
                    delay=requeue,
                    block=False,
                )

    def _process(self, item: Item) -> float | None:
        """Bring one path in line; returns a delay to retry after, or None when settled."""
        try:
            self._sync_path(item)
        except FileError as exc:
            self.metrics.error("file")
            self._error(f"{exc.path}: {exc.reason}", level=logging.WARNING)
        except PreconditionFailed:
            self._on_precondition_failed(item.path)
        except Exception as exc:
            return self._s3_failure(item, exc)
        self._backoff.pop(item.path, None)
        if self.state == "error" and self._error_from_s3:
            self._set_state("watching")  # S3 works again; refusals and bugs stay visible
        return None

    _error_from_s3 = False

    def _s3_failure(self, item: Item, exc: Exception) -> float:
        """Transient errors retry soon, permanent ones slowly; the agent keeps watching."""
        transient = is_transient(exc)
        first, cap = _TRANSIENT_BACKOFF if transient else _PERMANENT_BACKOFF
        delay = min(cap, self._backoff.get(item.path, first / 2) * 2)
        self._backoff[item.path] = delay
        kind = "transient" if transient else error_code(exc) or "s3"
        self.metrics.error(kind)
        what = "S3 unreachable" if transient else "S3 refused"
        self._error(
            f"{what}: {describe(exc)} ({item.path}; retrying in {delay:.0f}s)",
            level=logging.WARNING if transient else logging.ERROR,
            s3=True,
        )
        return delay

    def _sync_path(self, item: Item) -> None:
        """Decide one path from the truth: the file as it is now and the last sync."""
        path = item.path
        store = self.store_()
        loc = stat_entry(self.root, path)
        syn = store.get(path)
        if loc is None:
            deletable = syn is not None and self.cfg.delete and self.mode is not Mode.PULL
            if deletable and not (self.root / path).exists():
                self.deletes.add(path)
            return
        if self.mode is Mode.PULL:
            return
        if item.absent:  # no object in S3 when the reconcile looked
            if syn is None and self._copy_renamed(loc):
                return
            self._upload(path, None)
            return
        if syn is not None and not local_changed(loc, syn):
            return  # e.g. the agent's own download landing
        expect = item.expect_etag or (syn.etag if syn else None)
        if syn is None and expect is None and self._copy_renamed(loc):
            return
        self._upload(path, expect)

    def _upload(self, path: str, expect: str | None) -> None:
        """Upload with a conditional write, then re-stat: a file that changed while it was
        being read is uploaded again, and only what was really sent is recorded."""
        while True:
            up = self._conditional_upload(path, expect)
            self._record_upload(path, up)
            after = stat_entry(self.root, path)
            if after is None or (after.size, after.mtime_ns) == (up.size, up.mtime_ns):
                return
            logger.info("upload: %s changed while uploading; sending it again", path)
            expect = up.etag
            if self.stop_event.is_set():
                return

    def _conditional_upload(self, path: str, expect: str | None) -> Uploaded:
        if not self.conditional:
            return self.transfer.upload(path)
        try:
            return self.transfer.upload(path, if_match=expect, if_none_match=expect is None)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("NotImplemented", "501"):
                logger.warning(
                    "upload: the server rejects conditional writes; "
                    "uploading without overwrite protection"
                )
                self.conditional = False
                return self.transfer.upload(path)
            raise

    def _record_upload(self, path: str, up: Uploaded) -> None:
        self.store_().record(
            SyncedEntry(path, up.size, up.mtime_ns, up.etag, int(self.wall() * 1e9)),
            counters={"uploaded_files": 1, "uploaded_bytes": up.size},
        )
        self.metrics.transferred("up", up.size)
        logger.info(
            "upload: %s",
            path,
            extra={"folder": self.cfg.name, "event": "upload", "path": path, "bytes": up.size},
        )

    def _copy_renamed(self, loc: LocalEntry) -> bool:
        """A new file with the size and mtime of a synced file that is gone is most likely
        that file renamed: copy the object server-side, once the content hash agrees."""
        store = self.store_()
        for cand in store.find_by_stat(loc.size, loc.mtime_ns):
            if cand.path == loc.path or (self.root / cand.path).exists():
                continue
            try:
                same = etags.matches(
                    self.root / loc.path,
                    cand.etag,
                    part_size=MULTIPART_THRESHOLD,
                    threshold=MULTIPART_THRESHOLD,
                )
            except OSError:
                return False
            if not same:
                continue
            try:
                new_etag = self.transfer.copy(cand.path, loc.path)
            except botocore.exceptions.ClientError as exc:
                if error_code(exc) in ("NoSuchKey", "404"):
                    continue
                raise
            store.put(
                SyncedEntry(
                    loc.path, loc.size, loc.mtime_ns, new_etag or cand.etag, int(self.wall() * 1e9)
                )
            )
            store.incr("copied_files")
            logger.info(
                "copy: %s -> %s (renamed)",
                cand.path,
                loc.path,
                extra={"folder": self.cfg.name, "event": "copy", "path": loc.path},
            )
            return True
        return False

    def _on_precondition_failed(self, path: str) -> None:
        """Someone else wrote the object since we looked: keep both versions."""
        try:
            head = self.client.head_object(Bucket=self.where.bucket, Key=self.where.key(path))
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                # Deleted in S3 while it changed here: a change beats a delete.
                try:
                    self._upload(path, None)
                    return
                except PreconditionFailed:
                    pass  # created again meanwhile: look once more, shortly
            self.queue.put(Item(path), delay=1.0, block=False)
            return
        rem = RemoteEntry(
            path,
            head["ContentLength"],
            mtime_ns(head["LastModified"]),
            head.get("ETag", "").strip('"'),
        )
        loc = stat_entry(self.root, path)
        if loc is None:
            return
        self._resolve_conflict(
            Action(
                Kind.CONFLICT,
                path,
                "S3 object changed meanwhile",
                loc,
                rem,
                self.store_().get(path),
            )
        )

    # -- deletes ---------------------------------------------------------------------------

    def _delete_worker(self) -> None:
        while not self.stop_event.is_set():
            batch = self.deletes.take(self.stop_event)
            if not batch:
                continue
            self._deleting.set()
            try:
                self._wait_for_uploads()
                if self.stop_event.is_set():
                    return
                gone = [p for p in batch if not (self.root / p).exists() and self.included(p)]
                if gone:
                    self._delete_remote(gone)
            except Exception as exc:
                self._error(f"delete failed: {describe(exc)}")
            finally:
                self._deleting.clear()

    def _wait_for_uploads(self) -> None:
        """Deletes go after transfers: a renamed file or directory is copied server-side from
        the old object, so the old one must stay until the new paths are looked at."""
        deadline = self.clock() + _DELETE_WAIT_MAX
        while not self.stop_event.is_set() and self.clock() < deadline:
            if self._watch_settled() and self.queue.idle():
                return
            self.stop_event.wait(0.05)

    def delete_refusal(self, count: int) -> str | None:
        """Why ``count`` deletes must not run now, or None when they may."""
        store = self.store_()
        return delete_refusal(
            self.root,
            count=count,
            synced=store.count,
            root_dev=store.meta().get("root_dev", ""),
            ignored=self.ignore.matches,
            max_delete=self.cfg.max_delete,
            force=self.cfg.force_delete,
        )

    def _delete_remote(self, paths: list[str]) -> None:
        refusal = self.delete_refusal(len(paths))
        if refusal:
            self._error(f"delete: refused {len(paths)} deletes in S3: {refusal}")
            return
        store = self.store_()
        failed = dict(self.transfer.delete_remote(paths))
        done = [p for p in paths if p not in failed]
        for path in done:
            store.delete(path)
            logger.info(
                "delete: %s",
                self.where.url(path),
                extra={"folder": self.cfg.name, "event": "delete-remote", "path": path},
            )
        for path, code in failed.items():
            self._error(f"delete failed: {self.where.url(path)} {code}")
        store.incr("deleted_remote", len(done))
        self.metrics.deleted("remote", len(done))

    def _delete_local(self, actions: Iterable[Action]) -> None:
        store = self.store_()
        for action in actions:
            now = stat_entry(self.root, action.path)
            syn = action.synced
            if now is None or syn is None or local_changed(now, syn):
                continue  # changed since: a change beats a delete
            try:
                self.transfer.delete_local(action.path)
            except FileError as exc:
                self._error(f"{exc.path}: {exc.reason}", level=logging.WARNING)
                continue
            store.delete(action.path)
            store.incr("deleted_local")
            self.metrics.deleted("local")
            logger.info(
                "delete: %s",
                self.root / action.path,
                extra={"folder": self.cfg.name, "event": "delete-local", "path": action.path},
            )

    # -- reconcile -------------------------------------------------------------------------

    def _reconcile_safely(self) -> None:
        try:
            self.reconcile()
        except WatchsyncError as exc:  # e.g. RemoteError: the listing failed
            self.metrics.healthy(False)
            self.metrics.error(error_code(exc.__cause__) if exc.__cause__ else "reconcile")
            self._error(str(exc), s3=isinstance(exc, RemoteError))
            self._reconcile_later()
        except Exception as exc:
            self.metrics.healthy(False)
            self.metrics.error(error_code(exc) or "reconcile")
            if is_transient(exc) or isinstance(exc, botocore.exceptions.ClientError):
                self._error(f"reconcile failed: {describe(exc)}", s3=True)
            else:
                logger.exception("folder %s: reconcile failed", self.cfg.name)
                self._error(f"reconcile failed: {exc}")
            self._reconcile_later()

    def _reconcile_later(self) -> None:
        """After a failed reconcile, try again soon rather than at the full interval.

        The runner checks ``_retry_at``; a timer thread would outlive stop() by up to 30 s
        and hold up join()."""
        self._retry_at = self.clock() + min(30.0, self.cfg.reconcile_interval)

    def reconcile(self) -> None:
        """One full pass: folder, listing and state through the planner, then act."""
        if not self._root_ok():
            return
        started, t0 = self.wall(), time.monotonic()
        self._set_state("reconciling")
        store = self.store_()
        local = without_skipped(walk(self.root, options=self._walk_options()), self._skipped)
        progress = self.on_progress if self.reconciles == 0 else None
        scanned = [0]
        if progress is not None:
            local = _counted(local, scanned)
        remote = without_skipped(
            list_entries(self.client, self.where, for_download=True), self._skipped
        )
        opts = ReconcileOptions(mode=self.mode, delete=self.cfg.delete, included=self.included)
        remote_deletes: list[str] = []
        local_deletes: list[Action] = []
        records: list[SyncedEntry] = []
        uploads = _Batch(self._enqueue_many)
        counts: dict[Kind, int] = {}
        with ThreadPoolExecutor(
            self.cfg.s3.max_concurrency, thread_name_prefix=f"watchsync-pull-{self.cfg.name}"
        ) as pool:
            slots = threading.BoundedSemaphore(self.cfg.s3.max_concurrency * 2)
            for action in plan_reconcile(local, remote, store.iter_sorted(), opts=opts):
                if self.stop_event.is_set():
                    break
                counts[action.kind] = counts.get(action.kind, 0) + 1
                if progress is not None and sum(counts.values()) % 200 == 0:
                    progress(self.cfg.name, scanned[0], sum(counts.values()), False)
                kind = action.kind
                if kind is Kind.UPLOAD and (
                    action.remote is None
                    or action.local is None
                    or action.local.size != action.remote.size
                ):
                    expect = action.remote.etag if action.remote else None
                    uploads.add(Item(action.path, expect, absent=action.remote is None))
                elif kind is Kind.RECORD:
                    assert action.local is not None and action.remote is not None
                    records.append(_synced(action.local, action.remote))
                    if len(records) >= 500:  # one transaction per batch, not per file
                        store.put_many(records)
                        records = []
                elif kind is Kind.FORGET:
                    store.delete(action.path)
                elif kind is Kind.DELETE_REMOTE:
                    remote_deletes.append(action.path)
                elif kind is Kind.DELETE_LOCAL:
                    local_deletes.append(action)
                else:
                    slots.acquire()
                    fut = pool.submit(self._pull_one, action)
                    fut.add_done_callback(lambda _f: slots.release())
            store.put_many(records)
            uploads.flush()
        if not self.stop_event.is_set():
            self._reconcile_deletes(remote_deletes, local_deletes)
        duration = time.monotonic() - t0
        if progress is not None:
            progress(self.cfg.name, scanned[0], sum(counts.values()), True)
        self.reconciles += 1
        store.set_status(
            last_reconcile_at=started + duration, last_reconcile_duration=round(duration, 3)
        )
        self.metrics.reconciled(started + duration, duration)
        self.metrics.healthy(True)
        logger.info(
            "reconcile: %s done in %.2fs (planned: %s)",
            self.cfg.name,
            duration,
            ", ".join(f"{k.value} {n}" for k, n in counts.items()) or "no changes",
            extra={"folder": self.cfg.name, "event": "reconcile", "duration": duration},
        )
        if self.state == "reconciling":
            self._set_state("watching")

    def _reconcile_deletes(self, remote_paths: list[str], local: list[Action]) -> None:
        total = len(remote_paths) + len(local)
        if not total:
            return
        refusal = self.delete_refusal(total)
        if refusal:
            self._error(f"delete: refused {total} deletes: {refusal}")
            return
        gone = [p for p in remote_paths if not (self.root / p).exists()]
        for i in range(0, len(gone), 1000):
            self._delete_remote(gone[i : i + 1000])
        self._delete_local(local)

    def _pull_one(self, action: Action) -> None:
        try:
            if action.kind is Kind.CONFLICT:
                self._resolve_conflict(action)
            elif action.kind is Kind.UPLOAD:
                self._upload_checked(action)
            else:
                self._download_checked(action)
        except FileError as exc:
            self.metrics.error("file")
            self._error(f"{exc.path}: {exc.reason}", level=logging.WARNING)
        except Exception as exc:
            self.metrics.error(error_code(exc) or "s3")
            self._error(f"{action.kind.value} {action.path} failed: {describe(exc)}", s3=True)

    def _unchanged_since_plan(self, action: Action) -> bool:
        now = stat_entry(self.root, action.path)
        was = action.local
        if now is None or was is None:
            return now is None and was is None
        return (now.size, now.mtime_ns) == (was.size, was.mtime_ns)

    def _download_checked(self, action: Action) -> None:
        """Download unless the file changed since the plan looked (the watcher has it)."""
        rem = action.remote
        assert rem is not None
        if not self._unchanged_since_plan(action):
            return
        loc = action.local
        if loc is not None and self._same_content(loc, rem):
            self.store_().put(_synced(loc, rem))
            return
        self._download(action.path, rem)

    def _upload_checked(self, action: Action) -> None:
        """A same-size object: compare content before sending the file again."""
        loc, rem = action.local, action.remote
        assert loc is not None and rem is not None
        if self._unchanged_since_plan(action) and self._same_content(loc, rem):
            self.store_().put(_synced(loc, rem))
            return
        self._enqueue(action.path, expect_etag=rem.etag)

    def _same_content(self, loc: LocalEntry, rem: RemoteEntry) -> bool:
        if loc.size != rem.size:
            return False
        try:
            return bool(
                etags.matches(
                    self.root / loc.path,
                    rem.etag,
                    part_size=MULTIPART_THRESHOLD,
                    threshold=MULTIPART_THRESHOLD,
                )
            )
        except OSError:
            return False

    def _download(self, path: str, rem: RemoteEntry, *, dest: str | None = None) -> None:
        store = self.store_()
        target_path = dest or path
        jid = store.journal_add("download", target_path, rem.etag)
        try:
            target = self.transfer.download(
                path, size=rem.size, mtime_ns=rem.mtime_ns, etag=rem.etag, dest=dest
            )
            st = target.stat()
        except BaseException:
            store.journal_done(jid)
            raise
        store.record(
            SyncedEntry(target_path, st.st_size, st.st_mtime_ns, rem.etag, rem.mtime_ns),
            counters={"downloaded_files": 1, "downloaded_bytes": rem.size},
            journal_id=jid,
        )
        self.metrics.transferred("down", rem.size)
        logger.info(
            "download: %s",
            target_path,
            extra={
                "folder": self.cfg.name,
                "event": "download",
                "path": target_path,
                "bytes": rem.size,
            },
        )

    def _resolve_conflict(self, action: Action) -> None:
        """Both sides changed: keep both.  The local file keeps the name; the S3 version is
        saved beside it as ``NAME.conflict-YYYYMMDD-HHMMSS.EXT`` (on both sides under
        ``both``, in S3 only under ``push``; under ``pull`` the local file is set aside)."""
        loc, rem = action.local, action.remote
        assert loc is not None and rem is not None
        if not self._unchanged_since_plan(action):
            return
        if self._same_content(loc, rem):
            self.store_().put(_synced(loc, rem))
            return
        name = self._conflict_name(action.path)
        self.metrics.conflict()
        logger.warning(
            "conflict: %s changed on both sides; the S3 version is kept as %s",
            action.path,
            name,
            extra={"folder": self.cfg.name, "event": "conflict", "path": action.path},
        )
        self.store_().incr("conflicts")
        if self.mode is Mode.PUSH:
            self.transfer.copy(action.path, name)
            self._upload(action.path, rem.etag)
        elif self.mode is Mode.PULL:
            os.replace(self.root / action.path, self.root / name)
            self._download(action.path, rem)
        else:
            self._download(action.path, rem, dest=name)
            self._upload(name, None)
            self._upload(action.path, rem.etag)

    def _conflict_name(self, path: str) -> str:
        return conflict_name(path, self.wall(), taken=self._conflict_taken)

    def _conflict_taken(self, path: str) -> bool:
        """Whether a name is used locally, or in S3 under push (its conflict copies live
        only there)."""
        if (self.root / path).exists():
            return True
        if self.mode is not Mode.PUSH:
            return False
        try:
            self.client.head_object(Bucket=self.where.bucket, Key=self.where.key(path))
        except botocore.exceptions.ClientError:
            return False
        return True

    # -- status ----------------------------------------------------------------------------

    def store_(self) -> StateStore:
        store = self.store
        if store is None:
            raise WatchsyncError("state is not open")
        return store

    def idle(self) -> bool:
        """Nothing debouncing, being handed over, queued, in flight or waiting to be deleted."""
        # In pipeline order, so a path moving downstream meanwhile is still seen.
        return (
            self._watch_settled()
            and self.queue.idle()
            and self.deletes.pending() == 0
            and not self._deleting.is_set()
        )

    def _watch_settled(self) -> bool:
        """No path waits in the debouncer or is being handed to the queue."""
        debounce = self._debounce
        return self.debouncer.pending() == 0 and not (debounce and debounce.busy.is_set())

    def _pending_count(self) -> int:
        return len(self.queue) + self.deletes.pending() + self.debouncer.pending()

    def _set_state(self, state: str, error: str | None = None) -> None:
        self.state = state
        if error:
            self._error(error, level=logging.WARNING, state=state)
        self._publish_status(force=True)

    def _error(
        self,
        text: str,
        *,
        level: int = logging.ERROR,
        state: str | None = None,
        s3: bool = False,
    ) -> None:
        """Record and log an error; ``s3``: S3 trouble, which a later success clears."""
        self.last_error = text
        logger.log(
            level,
            "folder %s: %s",
            self.cfg.name,
            text,
            extra={"folder": self.cfg.name, "event": "error", "error": text},
        )
        if state is None and level >= logging.ERROR:
            self.state = "error"
            self._error_from_s3 = s3
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.set_status(last_error=text, last_error_at=self.wall())
                self.store.incr("errors")
                self._publish_status(force=True)

    def _skipped(self, item: Skipped) -> None:
        logger.warning(
            "skip: %s: %s",
            item.path,
            item.reason,
            extra={"folder": self.cfg.name, "event": "skip", "path": item.path},
        )

    def _publish_status(self, force: bool = False) -> None:
        store = self.store
        if store is None:
            return
        oldest = store.journal_oldest_age(self.wall()) or 0.0
        pending, in_flight = self._pending_count(), self.queue.in_flight
        status: dict[str, str | int] = {
            "state": self.state,
            "pending": pending,
            "in_flight": in_flight,
            "polling": int(self.polling),
        }
        self.metrics.queue(pending, in_flight, oldest)
        if force or status != self._status:
            self._status = status
            with contextlib.suppress(Exception):
                store.set_status(**status)

    def summary(self) -> str:
        """One line for systemd's STATUS=."""
        return f"{self.cfg.name}: {self.state}, {self._pending_count()} pending"


class _Batch:
    """Collects queue items and hands them on 500 at a time (one journal transaction each)."""

    def __init__(self, sink: Callable[[Sequence[Item]], None]) -> None:
        self._sink = sink
        self._items: list[Item] = []

    def add(self, item: Item) -> None:
        self._items.append(item)
        if len(self._items) >= 500:
            self.flush()

    def flush(self) -> None:
        items, self._items = self._items, []
        if items:
            self._sink(items)


def _counted(stream: Iterable[LocalEntry], box: list[int]) -> Iterator[LocalEntry]:
    """Count entries as they stream past (for the progress display)."""
    for entry in stream:
        box[0] += 1
        yield entry


def _synced(loc: LocalEntry, rem: RemoteEntry) -> SyncedEntry:
    return SyncedEntry(loc.path, loc.size, loc.mtime_ns, rem.etag, rem.mtime_ns)
