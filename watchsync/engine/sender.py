"""The upload side of the executor: a file sent (under the planner's condition on the object
last seen, while the server takes conditional writes), recorded, and sent again if it
changed while it was read; or the plain uploads of a batch, sent side by side from one
thread and recorded in one commit.  What is on its way to S3 meanwhile is held in
:class:`Sending`, so that nobody else plans or sends those paths until their uploads land."""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from watchsync.core.errors import Failure, FailureKind, StillChanging
from watchsync.core.model import Action, Condition, Kind, SyncedEntry
from watchsync.core.plan import same_file
from watchsync.engine.local_files import LocalFiles
from watchsync.engine.reporting import Events, Recorder
from watchsync.s3.capabilities import Capabilities, Feature
from watchsync.s3.transfer import Objects, Started, Uploaded

logger = logging.getLogger(__name__)

_RESENDS = 3  # a file still changing after this many uploads is reported, not chased


class Sent(enum.Enum):
    """How an upload of :meth:`Sender.send_together` went, other than plainly."""

    NOT = "not sent this way"
    CHANGED = "sent as read, changed since"


class Sending:
    """The paths whose bytes are on their way to S3 now: held from the moment the executor
    starts sending them (a conflict copy from the moment its download starts) until their
    upload has landed and is recorded, or failed.  A pass leaves such a path to its sender
    and the uploader waits for it: a path is in flight at most once.  Thread-safe.

    >>> sending = Sending()
    >>> with sending.hold(["a.txt"]):
    ...     "a.txt" in sending
    True
    >>> "a.txt" in sending
    False
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()  # a path held twice (nested) is let go twice

    def __contains__(self, path: object) -> bool:
        with self._lock:
            return path in self._held

    @contextlib.contextmanager
    def hold(self, paths: Iterable[str]) -> Iterator[None]:
        """Hold ``paths`` as in flight for the ``with`` block."""
        held = list(paths)
        with self._lock:
            self._held.update(held)
        try:
            yield
        finally:
            with self._lock:
                self._held.subtract(held)
                for path in held:
                    if self._held[path] <= 0:
                        del self._held[path]


class Sender:
    """Sends files through ``transfer``, re-checked in ``files``, recorded in ``recorder``,
    told to ``events``; conditions are sent while ``server`` takes them."""

    def __init__(
        self,
        transfer: Objects,
        *,
        files: LocalFiles,
        recorder: Recorder,
        events: Events,
        server: Capabilities,
        sending: Sending,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.transfer = transfer
        self.files = files
        self.recorder = recorder
        self.events = events
        self.server = server
        self.sending = sending
        self.wall = wall

    def upload(
        self, path: str, condition: Condition | None, action: Action | None = None
    ) -> Uploaded:
        """Upload ``path`` (under ``condition``, where the server takes one), record it,
        then re-stat: a file that changed while it was read is sent again."""
        with self.sending.hold([path]):
            return self._upload(path, condition, action or Action(Kind.UPLOAD, path, "upload"))

    def _upload(self, path: str, condition: Condition | None, shown: Action) -> Uploaded:
        for _ in range(_RESENDS):
            up, counted = self._send(path, condition)
            self.recorder.synced(
                SyncedEntry(
                    path, up.size, up.mtime_ns, up.etag, self._now_ns(), up.ino, up.ctime_ns
                ),
                counters=None if counted else {"uploaded_files": 1, "uploaded_bytes": up.size},
            )
            if not counted:  # an upload is told and counted once
                self.events.finished(shown, up.size)
            after = self.files.now(path)
            if after is None or same_file(after, up):
                return up
            logger.info("upload: %s changed while uploading; sending it again", path)
            if condition is not None:
                condition = Condition(up.etag)
        raise StillChanging(path)

    def send_together(self, actions: Sequence[Action]) -> list[Uploaded | Exception | Sent]:
        """Plain uploads (a burst's new and changed files), sent side by side from this
        thread, conditional as in :meth:`upload`, and recorded in one commit.  Per action:
        the upload as stored; the error of its one attempt; :attr:`Sent.NOT` where it must
        take :meth:`upload` (a file too large to go this way); or :attr:`Sent.CHANGED`:
        stored and recorded as it was read, but the file changed or went since."""
        with self.sending.hold(a.path for a in actions):
            return self._send_together(actions)

    def _send_together(self, actions: Sequence[Action]) -> list[Uploaded | Exception | Sent]:
        started: list[Started | Exception | None] = []
        conditional = self.server.conditional_writes
        for action in actions:
            condition = action.condition if conditional else None
            try:
                started.append(self.transfer.start_upload(action.path, condition=condition))
            except Exception as exc:
                started.append(exc)
        results: list[Uploaded | Exception | Sent] = []
        for sending in started:
            if sending is None or isinstance(sending, Exception):
                results.append(Sent.NOT if sending is None else sending)
                continue
            try:
                results.append(sending.result())
            except Exception as exc:
                results.append(exc)
        done = [(a, up) for a, up in zip(actions, results, strict=True) if isinstance(up, Uploaded)]
        if not done:
            return results
        now = self._now_ns()
        self.recorder.synced_many(
            [
                SyncedEntry(a.path, up.size, up.mtime_ns, up.etag, now, up.ino, up.ctime_ns)
                for a, up in done
            ],
            counters={
                "uploaded_files": len(done),
                "uploaded_bytes": sum(up.size for _, up in done),
            },
        )
        for action, up in done:
            self.events.finished(action, up.size)
        for i, outcome in enumerate(results):
            if isinstance(outcome, Uploaded) and not self._still(actions[i].path, outcome):
                results[i] = Sent.CHANGED
        return results

    def copy(self, src_path: str, dst_path: str, condition: Condition | None) -> str:
        """Server-side copy of the object at ``src_path`` to ``dst_path`` (only while the
        source is as ``condition`` says, where the server takes conditions); its ETag."""
        if condition is None or not self.server.conditional_writes:
            return self.transfer.copy(src_path, dst_path)
        try:
            return self.transfer.copy(src_path, dst_path, condition=condition)
        except Failure as exc:
            if exc.kind is not FailureKind.UNSUPPORTED:
                raise
            self._refused()
            return self.transfer.copy(src_path, dst_path)

    def _still(self, path: str, up: Uploaded) -> bool:
        """Whether ``path`` is still the file that was sent as ``up``."""
        after = self.files.now(path)
        return after is not None and same_file(after, up)

    def _send(self, path: str, condition: Condition | None) -> tuple[Uploaded, bool]:
        """The upload as stored, and whether it was already counted: sent and recorded
        before (a second send of the same bytes, e.g. a pass's stale plan, found it stored)."""
        if condition is None or not self.server.conditional_writes:
            return self.transfer.upload(path), False
        try:
            return self.transfer.upload(path, condition=condition), False
        except Failure as exc:
            if exc.kind is FailureKind.UNSUPPORTED:
                self._refused()
                return self.transfer.upload(path), False
            if exc.kind is not FailureKind.PRECONDITION:
                raise
            mine = self._already_stored(path)
            if mine is not None:
                return mine, self.recorder.recorded(path, mine.etag)
            if not condition.absent or self.transfer.head(path) is not None:
                raise
            # "Only if absent" refused with no object there: a filer-backed server (SeaweedFS)
            # keeps a directory entry for a key that was a prefix (``a/`` of ``a/b``, even
            # once empty), so a directory replaced by a file could never be sent.  Another
            # writer could only have slipped in since the HEAD just now.
            logger.info("upload: %s is a directory name on the server; sending it anyway", path)
            return self.transfer.upload(path), False

    def _refused(self) -> None:
        if self.server.refused(Feature.CONDITIONAL_WRITES):
            logger.warning(
                "upload: the server rejects conditional writes; "
                "uploading without overwrite protection"
            )

    def _already_stored(self, path: str) -> Uploaded | None:
        """A conditional write lost to an object holding exactly this file's bytes: most
        often our own first attempt, stored although its answer was lost before a retry.
        Then the upload is done (nothing to keep twice)."""
        before = self.files.now(path)
        head = self.transfer.head(path)
        if before is None or head is None or head.size != before.size:
            return None
        if not self.files.holds(path, head.etag):
            return None
        if not self.files.still(path, before):
            return None
        # Its upload line follows (or came with the send that stored it): one line per upload.
        logger.debug("upload: %s is already stored (an earlier answer was lost)", path)
        return Uploaded(before.size, before.mtime_ns, head.etag, before.ino, before.ctime_ns)

    def _now_ns(self) -> int:
        return int(self.wall() * 1e9)
