"""Helpers for the agent's end-to-end tests: snapshots of both sides, and ways to run the
agent in-process (:func:`running_agent`) or as a real process (:class:`AgentProcess`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from helpers import wait_until

from watchsync.agent.config import FolderConfig, S3Settings
from watchsync.agent.folder import Folder
from watchsync.core.filters import is_reserved
from watchsync.state.store import StateStore, store_name

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AGENT_JOIN_TIMEOUT = 15.0


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_snapshot(
    root: Path, *, exclude: Callable[[str], bool] = lambda _rel: False
) -> dict[str, str]:
    """``{relative path: sha256}`` of every regular file under ``root``."""
    result: dict[str, str] = {}
    if not root.is_dir():
        return result
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if exclude(rel):
                continue
            try:
                result[rel] = sha256_bytes(full.read_bytes())
            except FileNotFoundError:
                continue  # vanished while we looked
    return result


def _prefix(prefix: str) -> str:
    return prefix.strip("/") + "/" if prefix.strip("/") else ""


def bucket_listing(
    s3: S3Client, bucket: str, prefix: str = "", *, reserved: bool = False
) -> dict[str, dict[str, Any]]:
    """``{key relative to prefix: listing entry}`` (Size, ETag, LastModified); the reserved
    key space (the agents' change feed) only with ``reserved``."""
    pre = _prefix(prefix)
    result: dict[str, dict[str, Any]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=pre):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(pre) :]
            if reserved or not is_reserved(rel):
                result[rel] = dict(obj)
    return result


def bucket_snapshot(s3: S3Client, bucket: str, prefix: str = "") -> dict[str, str]:
    """``{key relative to prefix: sha256 of the content}`` of every object under ``prefix``."""
    pre = _prefix(prefix)
    keys = list(bucket_listing(s3, bucket, prefix))

    def fetch(rel: str) -> tuple[str, str]:
        body = s3.get_object(Bucket=bucket, Key=pre + rel)["Body"]
        try:
            return rel, sha256_bytes(body.read())
        finally:
            body.close()

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(fetch, keys))


def _md5(path: Path) -> str | None:
    try:
        return hashlib.md5(path.read_bytes()).hexdigest()
    except OSError:
        return None


def quick_in_sync(
    s3: S3Client,
    bucket: str,
    prefix: str,
    root: Path,
    *,
    exclude: Callable[[str], bool] = lambda _rel: False,
) -> bool:
    """Cheap check for polling: same keys, and each listing ETag is the file's MD5 (all
    test files are single-part)."""
    listing = {k: v for k, v in bucket_listing(s3, bucket, prefix).items() if not exclude(k)}
    local = {
        p.relative_to(root).as_posix(): p
        for p in (root.rglob("*") if root.is_dir() else [])
        if p.is_file() and not exclude(p.relative_to(root).as_posix())
    }
    if set(listing) != set(local):
        return False
    return all(listing[rel]["ETag"].strip('"') == _md5(path) for rel, path in local.items())


def assert_in_sync(
    s3: S3Client,
    bucket: str,
    prefix: str,
    root: Path,
    *,
    timeout: float = 30.0,
    exclude: Callable[[str], bool] = lambda _rel: False,
) -> None:
    """Wait until the bucket holds exactly the folder, then compare content hashes.

    ``exclude`` leaves paths out on both sides."""
    wait_until(
        lambda: quick_in_sync(s3, bucket, prefix, root, exclude=exclude),
        timeout=timeout,
        interval=0.1,
        message=f"s3://{bucket}/{prefix} to equal {root}",
    )
    remote = {k: v for k, v in bucket_snapshot(s3, bucket, prefix).items() if not exclude(k)}
    assert remote == tree_snapshot(root, exclude=exclude)


def folder_config(
    root: Path,
    url: str,
    endpoint: str,
    **overrides: Any,
) -> FolderConfig:
    """A config with test-sized timings: tiny debounce, no periodic reconcile by default."""
    s3 = S3Settings(endpoint_url=endpoint, max_concurrency=8)
    options: dict[str, Any] = {
        "debounce": 0.05,
        "reconcile_interval": 3600.0,
        "upload_workers": 4,
        "drain_timeout": 10.0,
        "s3": s3,
    }
    options.update(overrides)
    return FolderConfig(path=root, url=url, **options)


@contextlib.contextmanager
def running_agent(
    cfg: FolderConfig,
    state_dir: Path,
    *,
    force_polling: bool = False,
    wait_ready: bool = True,
) -> Iterator[Folder]:
    """A started :class:`Folder`, after its first reconcile; stopped and joined after."""
    agent = Folder(cfg, state_dir=state_dir, force_polling=force_polling)
    agent.start()
    try:
        if wait_ready:
            wait_until(
                lambda: agent.reconciles >= 1,
                timeout=60,
                interval=0.05,
                message="the agent's first reconcile",
            )
        yield agent
    finally:
        agent.stop()
        joined = agent.join(AGENT_JOIN_TIMEOUT)
        assert joined, "the agent's threads did not finish"


def counters(agent: Folder) -> dict[str, int]:
    """The running agent's counters."""
    counts: dict[str, int] = agent.store_().status.counters()
    return counts


def wait_idle(agent: Folder, timeout: float = 30.0) -> None:
    """Until nothing is debouncing, queued, in flight or waiting to be deleted."""
    wait_until(
        agent.idle,
        timeout=timeout,
        interval=0.05,
        message="the agent to be idle",
    )


def state_db(state_dir: Path, root: Path, url: str) -> Path:
    return state_dir / (store_name(root, url) + ".db")


def read_state(state_dir: Path, root: Path, url: str) -> tuple[dict[str, Any], dict[str, int]]:
    """(status, counters) from the state database, read-only (works while an agent runs)."""
    db = state_db(state_dir, root, url)
    if not db.exists():
        return {}, {}
    try:
        with StateStore.read_only(db) as store:
            return dict(store.status.fields()), store.status.counters()
    except sqlite3.OperationalError:  # created but its schema not yet committed
        return {}, {}


class AgentProcess:
    """``python -m watchsync watch ...`` as a real process, logging to a file: used as
    ``with AgentProcess(root, url, state_dir, env, endpoint) as proc:`` then
    ``proc.wait_ready()`` before the test acts on the folder."""

    def __init__(
        self,
        root: Path,
        url: str,
        state_dir: Path,
        *,
        env: Mapping[str, str],
        endpoint: str,
        log: Path,
        extra: list[str] | None = None,
    ) -> None:
        self.root, self.url, self.state_dir = root, url, state_dir
        self.log = log
        self.argv = [
            sys.executable,
            "-m",
            "watchsync",
            "watch",
            str(root),
            url,
            "--endpoint-url",
            endpoint,
            "--state-dir",
            str(state_dir),
            "--debounce",
            "0.05",
            "--reconcile-interval",
            "3600",
            *(extra or []),
        ]
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> AgentProcess:
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def state(self) -> tuple[dict[str, Any], dict[str, int]]:
        return read_state(self.state_dir, self.root, self.url)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until this process has finished its first reconcile."""

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}:\n{self.log_text()}")
            status, _ = self.state()
            return status.get("pid") == self.pid and status.get("last_reconcile_at") is not None

        # last_reconcile_at may be left from an earlier run: also wait for this run's state.
        wait_until(ready, timeout=timeout, interval=0.05, message="the agent to be ready")
        wait_until(
            lambda: self.log_text().count("reconcile: ") > self._reconciles_before,
            timeout=timeout,
            interval=0.05,
            message="this run's first reconcile",
        )

    _reconciles_before = 0

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> AgentProcess:
        self._reconciles_before = self.log_text().count("reconcile: ")
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
