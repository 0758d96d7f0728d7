"""S3 event notifications end to end, on moto's server (S3 and SQS in one process, with
notifications delivered to the queue): another client's writes, overwrites and deletes
reach the folder through the queue long before any listing would (the agent lists every
hour here), a malformed message is a warning, and a queue deleted under the agent is a
warning and a listing, never a crash."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from agent_helpers import AgentProcess
from helpers import wait_until

from watchsync.cli.main import main

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Far beyond a notification's way (about a second), far below the hour between listings.
DEADLINE = 8.0
# What S3 sends a queue when a notification configuration is put.
S3_TEST_EVENT = '{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "nb2"}'
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    pytest.importorskip("moto.server")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return True
            return False

        wait_until(up, timeout=30, interval=0.1, message="moto's server")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def env(moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    values = {
        **CREDS,
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def _clients(endpoint: str) -> tuple[S3Client, Any]:
    kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1", **_keys()}
    return boto3.client("s3", **kw), boto3.client("sqs", **kw)


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _set_up(endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]) -> str:
    s3, _ = _clients(endpoint)
    s3.create_bucket(Bucket=bucket)
    code = main(
        ["notifications", f"s3://{bucket}/p", "--queue", bucket, "--endpoint-url", endpoint]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return out.splitlines()[0]


def _agent(
    tmp_path: Path, bucket: str, endpoint: str, env: dict[str, str], queue: str
) -> AgentProcess:
    root = tmp_path / "folder"
    root.mkdir()
    return AgentProcess(
        root,
        f"s3://{bucket}/p",
        tmp_path / "state",
        env=env,
        endpoint=endpoint,
        log=tmp_path / "agent.log",
        extra=["--delete", "--notifications-queue", queue],
    )


def test_other_writers_reach_the_folder_through_the_queue(
    moto: str, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = _set_up(moto, "nb1", capsys)
    s3, sqs = _clients(moto)
    with _agent(tmp_path, "nb1", moto, env, queue) as agent:
        agent.wait_ready()
        f = agent.root / "new.txt"
        began = time.monotonic()
        s3.put_object(Bucket="nb1", Key="p/new.txt", Body=b"one")
        wait_until(lambda: f.exists() and f.read_bytes() == b"one", timeout=DEADLINE)
        took = time.monotonic() - began
        s3.put_object(Bucket="nb1", Key="p/new.txt", Body=b"two")  # same size
        wait_until(lambda: f.read_bytes() == b"two", timeout=DEADLINE)
        s3.put_object(Bucket="nb1", Key="p/sub/deep.txt", Body=b"deep")
        wait_until((agent.root / "sub" / "deep.txt").exists, timeout=DEADLINE)
        s3.delete_object(Bucket="nb1", Key="p/new.txt")
        wait_until(lambda: not f.exists(), timeout=DEADLINE)
        # Every message was deleted once its path was settled (the agent's own uploads'
        # events included).
        wait_until(lambda: _depth(sqs, queue) == 0, timeout=DEADLINE, message="the queue to empty")
        text = agent.log_text()
        assert "Traceback" not in text and "listed, full list interval" not in text
        print(f"first write reached the folder in {took:.2f}s")


def _depth(sqs: Any, queue: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def test_malformed_messages_and_a_deleted_queue(
    moto: str, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = _set_up(moto, "nb2", capsys)
    s3, sqs = _clients(moto)
    with _agent(tmp_path, "nb2", moto, env, queue) as agent:
        agent.wait_ready()
        sqs.send_message(QueueUrl=queue, MessageBody="this is no S3 event")
        sqs.send_message(
            QueueUrl=queue, MessageBody='{"Records": [{"eventName": "ObjectCreated:Put"}]}'
        )
        wait_until(
            lambda: agent.log_text().count("is not an S3 event notification") == 2,
            timeout=DEADLINE,
        )
        s3.put_object(Bucket="nb2", Key="p/after.txt", Body=b"still heard")
        wait_until((agent.root / "after.txt").exists, timeout=DEADLINE)

        # moto answers a long poll begun before the deletion only at its end, 20 s on; a
        # message that turns visible a second after the delete ends it at once (S3's own
        # test event: nothing to do), so the agent's next receive meets the missing queue.
        sqs.send_message(QueueUrl=queue, MessageBody=S3_TEST_EVENT, DelaySeconds=1)
        sqs.delete_queue(QueueUrl=queue)
        # Written while no queue hears it: found by the listing the queue's loss asks for.
        s3.put_object(Bucket="nb2", Key="p/listed.txt", Body=b"found by a listing")
        wait_until(
            lambda: "listing the prefix instead until the queue answers" in agent.log_text(),
            timeout=30,
        )
        wait_until((agent.root / "listed.txt").exists, timeout=30)
        assert agent.proc is not None and agent.proc.poll() is None
        assert "Traceback" not in agent.log_text()
