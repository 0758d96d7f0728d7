"""Failing fast: timeouts of both clients, and the count of attempts that found no
connection, which ends a ``sync`` once the endpoint is plainly gone."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from watchsync.core.errors import FailureKind
from watchsync.s3 import native as crt
from watchsync.s3.client import make_client
from watchsync.s3.failures import classify
from watchsync.s3.location import S3Settings
from watchsync.s3.reachability import EndpointGone, Reachability


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


REFUSED = classify(botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))


def test_gone_after_enough_failures_over_enough_time() -> None:
    clock = Clock()
    r = Reachability(3, what="http://e", min_seconds=10, clock=clock)
    r.failed(REFUSED)
    r.failed(REFUSED)
    r.failed(REFUSED)  # three at once: a blip, not gone
    assert r.gone is None
    clock.now += 11
    with pytest.raises(EndpointGone, match="S3 endpoint http://e stopped answering"):
        r.failed(REFUSED)
    with pytest.raises(EndpointGone):
        r.check()  # every later attempt gives up at once


def test_a_success_or_an_s3_answer_resets_or_does_not_count() -> None:
    clock = Clock()
    r = Reachability(2, what="e", min_seconds=0, clock=clock)
    r.failed(REFUSED)
    r.ok()
    r.failed(REFUSED)
    assert r.gone is None
    denied = botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "PutObject")
    r2 = Reachability(1, what="e", min_seconds=0, clock=clock)
    r2.failed(classify(denied))
    r2.failed(classify(ValueError("local")))
    assert r2.gone is None


def test_without_a_limit_it_never_gives_up() -> None:
    r = Reachability(None, what="e", min_seconds=0)
    for _ in range(100):
        r.failed(REFUSED)
    r.check()


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (botocore.exceptions.EndpointConnectionError(endpoint_url="x"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="x"), True),
        (ConnectionResetError(), True),
        (crt.CrtError(0, "AWS_IO_SOCKET_CLOSED", "closed"), True),
        (crt.CrtError(503, "SlowDown", "busy"), False),
        (OSError(28, "No space left on device"), False),
    ],
)
def test_unreachable(exc: BaseException, expected: bool) -> None:
    assert (classify(exc).kind is FailureKind.UNREACHABLE) is expected


def test_client_timeouts_are_short() -> None:
    client = make_client(S3Settings(endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    config: Any = client.meta.config
    assert config.connect_timeout <= 5
    assert config.read_timeout <= 30
    client.close()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, name="silent-server")
    t.start()
    yield listener.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    listener.close()


@pytest.mark.skipif(not crt.available(), reason="awscrt is not importable here")
def test_native_upload_times_out_on_a_silent_endpoint(silent_server: int, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    session = boto3.session.Session(
        aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    with (
        crt.CrtUploader(
            endpoint_url=f"http://127.0.0.1:{silent_server}", region="us-east-1", session=session
        ) as up,
        pytest.raises(crt.CrtError, match="Timeout"),
    ):
        up.put_file("bkt", "f", str(tmp_path / "f"), size=1, headers={}, timeout=0.5)
