"""Room: S3 event notifications through an SQS queue, a source of changes besides the
listing and the change feed (optional: ``notifications_queue``).

A notification is a hint, never trusted as state: delivery is at least once, in no order,
and may come long after the change.  Each ObjectCreated/ObjectRemoved record under the
prefix names a path, which goes to the same re-check as the change feed's paths (the
object's HEAD, the file and the state through the planner: see
:meth:`~.reconcile.Reconcile.recheck`).  A message is deleted only once every path it named
is settled (applied, or found already as S3 has it: a duplicate or a stale event), or when
it is not an S3 event at all (a warning says so).  When the queue cannot be read, changes
may go unheard: the next pass lists the prefix, and so does the first after the queue
answers again.

Must not touch: threads (the folder runs :meth:`Notifications.poll` on a thread of its own
and :meth:`Notifications.settle` on its runner), the SDK (the queue is injected).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from watchsync.core.errors import failure_of
from watchsync.core.filters import is_reserved
from watchsync.s3.location import S3Url

logger = logging.getLogger(__name__)

WAIT = 20.0  # seconds a receive waits for a message: 4,320 requests a day when idle
BACKOFF = (1.0, 60.0)  # first and longest wait between reads of a queue that fails


class Message(Protocol):
    @property
    def receipt(self) -> str: ...

    @property
    def body(self) -> str: ...


class Queue(Protocol):
    """What the room needs of the queue (:class:`~watchsync.s3.queue.NotificationQueue`)."""

    url: str

    def receive(self, *, wait: float) -> list[Any]: ...

    def delete(self, receipts: list[str]) -> None: ...


class NotAnEvent(ValueError):
    """A message that is not an S3 event notification."""


def event_paths(body: str, where: S3Url) -> list[str]:
    """The paths under ``where`` that a message names (S3's own records, or the same
    wrapped by SNS or EventBridge); [] for a test event or records elsewhere.

    >>> rec = {"eventName": "ObjectCreated:Put",
    ...        "s3": {"bucket": {"name": "b"}, "object": {"key": "p/a+b%C3%BC.txt"}}}
    >>> event_paths(json.dumps({"Records": [rec]}), S3Url("b", "p/"))
    ['a bü.txt']
    >>> event_paths("{not json", S3Url("b", "p/"))
    Traceback (most recent call last):
    ...
    watchsync.agent.notifications.NotAnEvent: not JSON
    """
    try:
        doc = json.loads(body)
    except ValueError:
        raise NotAnEvent("not JSON") from None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        return event_paths(str(doc["Message"]), where)  # through SNS
    if not isinstance(doc, dict):
        raise NotAnEvent("not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []  # what S3 sends when a configuration is put
    if doc.get("source") == "aws.s3" and isinstance(doc.get("detail"), dict):
        detail = doc["detail"]  # through EventBridge: keys as they are, not URL-encoded
        kind = str(doc.get("detail-type", ""))
        if kind not in ("Object Created", "Object Deleted"):
            return []
        return _under(where, _field(detail, "bucket", "name"), _field(detail, "object", "key"))
    records = doc.get("Records")
    if not isinstance(records, list):
        raise NotAnEvent("no Records")
    paths: list[str] = []
    for rec in records:
        if not isinstance(rec, dict) or not isinstance(rec.get("s3"), dict):
            raise NotAnEvent("a record without s3")
        name = str(rec.get("eventName", ""))
        if not name.startswith(("ObjectCreated:", "ObjectRemoved:")):
            continue
        s3 = rec["s3"]
        key = urllib.parse.unquote_plus(_field(s3, "object", "key"))
        paths.extend(_under(where, _field(s3, "bucket", "name"), key))
    return paths


def _field(doc: dict[str, Any], outer: str, inner: str) -> str:
    part = doc.get(outer)
    value = part.get(inner) if isinstance(part, dict) else None
    if not isinstance(value, str):
        raise NotAnEvent(f"no {outer}.{inner}")
    return value


def _under(where: S3Url, bucket: str, key: str) -> list[str]:
    if bucket != where.bucket or not key.startswith(where.prefix):
        return []
    path = key[len(where.prefix) :]
    if not path or path.endswith("/") or is_reserved(path):
        return []  # the prefix, a directory marker, the feed's own object
    return [path]


class Notifications:
    """Reads the queue, names the paths its events name, deletes what is settled.

    ``note`` names paths for the re-check and ``named`` says which are still waiting for
    one; ``invalidate`` makes the next pass list the prefix and ``request_reconcile`` asks
    for a pass now.
    """

    def __init__(
        self,
        name: str,
        *,
        queue: Queue,
        where: S3Url,
        note: Callable[[Iterable[str]], None],
        named: Callable[[], frozenset[str]],
        invalidate: Callable[[str], None],
        request_reconcile: Callable[[], None] = lambda: None,
        wait: float = WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.queue = queue
        self.where = where
        self.note = note
        self.named = named
        self.invalidate = invalidate
        self.request_reconcile = request_reconcile
        self.wait = wait
        self.clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, frozenset[str]] = {}  # receipt -> the paths it named
        self.trouble: str | None = None  # why the queue cannot be read, while it cannot
        self._failures = 0
        self.received = 0  # messages taken (for tests and status)

    def poll(self) -> float:
        """One receive: each event's paths named for a re-check, a message that is not an
        event deleted with a warning.  Returns how long to wait before the next one (0 when
        the queue answered)."""
        try:
            messages = self.queue.receive(wait=self.wait)
        except Exception as exc:
            return self._failed(failure_of(exc).text)
        if self.trouble is not None:
            logger.warning(
                "notifications: %s: queue %s answers again; listing the prefix for what "
                "it may have missed",
                self.name,
                self.queue.url,
            )
            self.trouble, self._failures = None, 0
            self.invalidate("the notification queue was unreadable")
            self.request_reconcile()
        junk: list[str] = []
        for message in messages:
            self.received += 1
            try:
                paths = event_paths(message.body, self.where)
            except NotAnEvent as exc:
                logger.warning(
                    "notifications: %s: ignoring a message that is not an S3 event "
                    "notification (%s): %.200r",
                    self.name,
                    exc,
                    message.body,
                )
                junk.append(message.receipt)
                continue
            with self._lock:
                self._held[message.receipt] = frozenset(paths)
            if paths:
                self.note(paths)
        if junk:
            self._delete(junk)
        return 0.0

    def _failed(self, why: str) -> float:
        first, cap = BACKOFF
        self._failures += 1
        if self.trouble is None:
            logger.warning(
                "notifications: %s: %s; listing the prefix instead until the queue answers",
                self.name,
                why,
            )
            self.invalidate("the notification queue cannot be read")
            self.request_reconcile()
        self.trouble = why
        return float(min(cap, first * 2 ** (self._failures - 1)))

    def settle(self) -> int:
        """Delete the messages whose paths are all settled (none waits for a re-check);
        returns how many.  A failed delete is left for the next call, or for the message's
        return after its visibility timeout (then it is re-checked again: harmless)."""
        waiting = self.named()
        with self._lock:
            done = [r for r, paths in self._held.items() if not (paths & waiting)]
        if done:
            self._delete(done)
        return len(done)

    def _delete(self, receipts: list[str]) -> None:
        try:
            self.queue.delete(receipts)
        except Exception as exc:
            logger.debug("notifications: %s: %s", self.name, failure_of(exc).text)
            return
        with self._lock:
            for r in receipts:
                self._held.pop(r, None)
