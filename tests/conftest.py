"""Shared fixtures: a real SeaweedFS S3 server, fresh buckets, a clean AWS env, leak checks."""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError
from s3server import SeaweedServer
from tlsca import TlsFiles, make_test_ca

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# The room tests' world (tests/world.py): its ``make_world`` fixture, for every test file.
pytest_plugins = ["world"]

# Threads that legitimately outlive a test because they belong to a session-wide pool that
# is created lazily by the first test using it. None are known yet: add a name prefix here
# only together with the reason it is not a leak.
_LONG_LIVED_THREAD_PREFIXES: tuple[str, ...] = ()
_THREAD_GRACE_SECONDS = 5.0


@pytest.fixture(scope="session")
def s3server() -> Iterator[SeaweedServer]:
    """The SeaweedFS server, started on first use (pure unit tests never start it)."""
    with SeaweedServer() as server:
        yield server


@pytest.fixture
def s3(s3server: SeaweedServer) -> Iterator[S3Client]:
    """A boto3 S3 client for the test server, closed after the test."""
    client = s3server.client()
    yield client
    client.close()


@pytest.fixture
def bucket(request: pytest.FixtureRequest, s3: S3Client) -> Iterator[str]:
    """A fresh, empty bucket named after the test; deleted with its content afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem or 'test'}-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    _delete_bucket(s3, name)


def _delete_bucket(s3: S3Client, name: str) -> None:
    """Delete a bucket with its content."""
    try:
        s3.delete_bucket(Bucket=name)  # SeaweedFS deletes non-empty buckets at once
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "BucketNotEmpty":
            raise
    # One by one: DeleteObjects' XML body cannot carry every legal key (e.g. U+FFFF).
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=obj["Key"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def aws_env(
    s3server: SeaweedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Point every AWS client (boto3, aws CLI, s5cmd, our CLI) at the test server via env.

    The developer's ~/.aws and any AWS_PROFILE are hidden, so only these values count.
    Returns the variables that were set.
    """
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    env = {
        **s3server.env(),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never probe 169.254.169.254 for credentials
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves threads running (daemon or not) after it finished.

    Threads get a grace period to finish, as a shutdown that was signalled may still be
    winding down; a thread alive after it is a leak (an un-joined worker, an observer or
    proxy not closed).
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _THREAD_GRACE_SECONDS
    while True:
        leaked = [
            t
            for t in threading.enumerate()
            if t not in before
            and t.is_alive()
            and not t.name.startswith(_LONG_LIVED_THREAD_PREFIXES)
        ]
        if not leaked or time.monotonic() >= deadline:
            break
        leaked[0].join(0.05)  # waits on a real thread instead of a bare sleep
    if leaked:
        names = ", ".join(f"{t.name} (daemon={t.daemon})" for t in leaked)
        pytest.fail(f"test leaked {len(leaked)} thread(s): {names}", pytrace=False)


def _counts_as_leak(thread: threading.Thread) -> bool:
    """Alive and not one of the known session-wide pools."""
    return thread.is_alive() and not thread.name.startswith(_LONG_LIVED_THREAD_PREFIXES)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA made for this session and a server certificate for 127.0.0.1 signed by it."""
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def s3tls(test_ca: TlsFiles) -> Iterator[SeaweedServer]:
    """A second SeaweedFS serving S3 over HTTPS too (``https_endpoint``), with a certificate
    from ``test_ca``; started only by the tests that ask for it."""
    with SeaweedServer(tls=(test_ca.cert_file, test_ca.key_file)) as server:
        yield server


@pytest.fixture
def sync_run(
    aws_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """``sync_run(*args)``: ``watchsync sync *args`` run in-process against the test
    server; returns the exit code, stdout and stderr.  The logging handlers ``main``
    installs are taken back afterwards."""
    from watchsync.cli.main import main

    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["sync", *args])
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.fixture
def sync_cli(
    sync_run: Callable[..., tuple[int, str, str]],
) -> Callable[..., tuple[int, list[str]]]:
    """``sync_cli(*args)``: :func:`sync_run`'s exit code and stdout lines."""

    def run(*args: str) -> tuple[int, list[str]]:
        code, out, _ = sync_run(*args)
        return code, out.splitlines()

    return run
