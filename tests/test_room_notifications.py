"""The notifications room: S3 event notifications read from a queue name paths for the
re-check (a hint, never state), messages are deleted only once their paths are settled,
a message that is not an event is dropped with a warning, and a queue that cannot be read
makes the next pass list the prefix (and the first after it answers again)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pytest

from watchsync.agent.notifications import NotAnEvent, Notifications, event_paths
from watchsync.core.errors import Failure, FailureKind
from watchsync.s3.location import S3Url

WHERE = S3Url("b", "p/")


def _s3(name: str, key: str, bucket: str = "b") -> dict[str, object]:
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def _records(*recs: dict[str, object]) -> str:
    return json.dumps({"Records": list(recs)})


EVENT_TABLE: list[tuple[str, str, list[str]]] = [
    ("created", _records(_s3("ObjectCreated:Put", "p/a.txt")), ["a.txt"]),
    ("removed", _records(_s3("ObjectRemoved:Delete", "p/d/b.txt")), ["d/b.txt"]),
    ("url-encoded-key", _records(_s3("ObjectCreated:Copy", "p/a+b%2Bc.txt")), ["a b+c.txt"]),
    (
        "two-records",
        _records(_s3("ObjectCreated:Put", "p/x"), _s3("ObjectRemoved:Delete", "p/y")),
        ["x", "y"],
    ),
    ("outside-the-prefix", _records(_s3("ObjectCreated:Put", "q/a.txt")), []),
    ("another-bucket", _records(_s3("ObjectCreated:Put", "p/a.txt", bucket="c")), []),
    ("the-feed-object", _records(_s3("ObjectCreated:Put", "p/.watchsync/feed.json")), []),
    ("a-directory-marker", _records(_s3("ObjectCreated:Put", "p/dir/")), []),
    ("restore-event", _records(_s3("ObjectRestore:Completed", "p/a.txt")), []),
    ("test-event", json.dumps({"Event": "s3:TestEvent", "Bucket": "b"}), []),
    (
        "through-sns",
        json.dumps({"Type": "Notification", "Message": _records(_s3("ObjectCreated:Put", "p/s"))}),
        ["s"],
    ),
    (
        "through-eventbridge",
        json.dumps(
            {
                "source": "aws.s3",
                "detail-type": "Object Deleted",
                "detail": {"bucket": {"name": "b"}, "object": {"key": "p/e v"}},
            }
        ),
        ["e v"],
    ),
]


@pytest.mark.parametrize(("body", "want"), [pytest.param(*r[1:], id=r[0]) for r in EVENT_TABLE])
def test_event_paths(body: str, want: list[str]) -> None:
    assert event_paths(body, WHERE) == want


@pytest.mark.parametrize(
    "body",
    ["{not json", "[1, 2]", json.dumps({"hello": 1}), json.dumps({"Records": [{"x": 1}]})],
)
def test_not_an_event(body: str) -> None:
    with pytest.raises(NotAnEvent):
        event_paths(body, WHERE)


@dataclass
class Msg:
    receipt: str
    body: str


@dataclass
class FakeQueue:
    url: str = "http://127.0.0.1:1/000000000000/q"
    inbox: list[Msg] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    broken: bool = False

    def receive(self, *, wait: float) -> list[Msg]:
        if self.broken:
            raise Failure(FailureKind.NOT_FOUND, "QueueDoesNotExist", "queue gone")
        got, self.inbox = self.inbox[:10], self.inbox[10:]
        return got

    def delete(self, receipts: list[str]) -> None:
        self.deleted.extend(receipts)


@dataclass
class Schedule:
    """What the room talks to: the re-check's named paths and the listing's schedule."""

    named: set[str] = field(default_factory=set)
    invalidated: list[str] = field(default_factory=list)
    asked: int = 0

    def room(self, queue: FakeQueue) -> Notifications:
        return Notifications(
            "f",
            queue=queue,
            where=WHERE,
            note=self.named.update,
            named=lambda: frozenset(self.named),
            invalidate=self.invalidated.append,
            request_reconcile=self.ask,
        )

    def ask(self) -> None:
        self.asked += 1


def test_messages_are_deleted_only_once_their_paths_are_settled() -> None:
    """Duplicates and reordered events name the same path: each is held until the
    re-check settles it, then all go."""
    q, sched = FakeQueue(), Schedule()
    room = sched.room(q)
    q.inbox = [
        Msg("1", _records(_s3("ObjectRemoved:Delete", "p/a"))),
        Msg("2", _records(_s3("ObjectCreated:Put", "p/a"))),  # reordered
        Msg("3", _records(_s3("ObjectCreated:Put", "p/a"))),  # duplicate
        Msg("4", _records(_s3("ObjectCreated:Put", "p/b"))),
    ]
    assert room.poll() == 0.0
    assert sched.named == {"a", "b"}
    assert room.settle() == 0 and q.deleted == []
    sched.named.discard("a")  # the re-check settled a (applied, or found stale)
    assert room.settle() == 3 and sorted(q.deleted) == ["1", "2", "3"]
    sched.named.clear()
    assert room.settle() == 1 and sorted(q.deleted) == ["1", "2", "3", "4"]
    assert room.settle() == 0


def test_a_message_that_is_no_event_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    q, sched = FakeQueue(), Schedule()
    room = sched.room(q)
    q.inbox = [Msg("bad", "hello, queue"), Msg("ok", _records(_s3("ObjectCreated:Put", "p/a")))]
    with caplog.at_level(logging.WARNING):
        room.poll()
    assert q.deleted == ["bad"] and sched.named == {"a"}
    assert "ignoring a message that is not an S3 event notification (not JSON)" in caplog.text


def test_an_unreadable_queue_means_listings_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    q, sched = FakeQueue(broken=True), Schedule()
    room = sched.room(q)
    with caplog.at_level(logging.WARNING):
        waits = [room.poll() for _ in range(4)]
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert sched.invalidated == ["the notification queue cannot be read"] and sched.asked == 1
    assert caplog.text.count("listing the prefix instead until the queue answers") == 1
    q.broken = False
    with caplog.at_level(logging.WARNING):
        assert room.poll() == 0.0
    # Whatever was sent while it could not be read is found by a listing.
    assert sched.invalidated[-1] == "the notification queue was unreadable"
    assert sched.asked == 2 and "answers again" in caplog.text
