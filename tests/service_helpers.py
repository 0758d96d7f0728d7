"""Helpers of the service tests: a real ``watchsync watch --config`` child, its config
file, its environment, ``watchsync status --json`` and ``/metrics`` scrapes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError
from helpers import wait_until
from s3server import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

STARTUP = 30.0  # seconds a first sync may take on a slow CI machine
SYNC = 20.0  # seconds one change may take to reach the other side


# -- helpers --------------------------------------------------------------------------------


def toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(
    path: Path,
    *,
    state_dir: Path,
    endpoint: str,
    folders: list[tuple[Path, str]],
    extra: str = "",
) -> Path:
    """A config file with tiny debounce values, JSON logs and the given (path, url) folders."""
    lines = [
        f"state_dir = {toml_str(str(state_dir))}",
        f"endpoint_url = {toml_str(endpoint)}",
        "debounce = 0.1",
        "drain_timeout = 10",
        "log_format = 'json'",
        extra,
    ]
    for folder, url in folders:
        lines += ["", "[[folder]]", f"path = {toml_str(str(folder))}", f"url = {toml_str(url)}"]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # atomic, as an operator's editor or config management would
    return path


def agent_env(s3server: SeaweedServer, tmp_path: Path, **more: str) -> dict[str, str]:
    """The environment of a child process: the test server's credentials, no ~/.aws."""
    env = os.environ | s3server.env()
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "NOTIFY_SOCKET"):
        env.pop(name, None)
    for name in [n for n in env if n.startswith(("WATCHSYNC_", "WATCHDOG_"))]:
        env.pop(name)
    env |= {
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
    }
    return env | more


class Agent:
    """A running ``watchsync watch`` child; stderr goes to a file so it never blocks."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watchsync", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every complete JSON log line so far (a torn last line is skipped)."""
        out = []
        for line in self.text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def count(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for r in self.records() if pred(r))

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; kill if it hangs (the test then fails on the exit code)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._log.close()
        return rc

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def spawn(s3server: SeaweedServer, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Start agents; every one still running at the end is stopped."""
    agents: list[Agent] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Agent:
        n = len(agents)
        agent = Agent(
            list(args),
            env=env if env is not None else agent_env(s3server, tmp_path),
            log=tmp_path / f"agent-{n}.log",
        )
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        agent.stop()


def key_exists(s3: S3Client, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def wait_for_key(s3: S3Client, bucket: str, key: str, timeout: float = SYNC) -> None:
    wait_until(lambda: key_exists(s3, bucket, key), timeout, 0.1, f"s3://{bucket}/{key}")


def status_answer(config: Path, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """``watchsync status --json --config``: its exit code and its answer."""
    out = subprocess.run(
        [sys.executable, "-m", "watchsync", "status", "--json", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    answer: dict[str, Any] = json.loads(out.stdout)
    # The exit code says how the folders are (0 healthy, 3 not running, 4 paused, 5 error).
    assert out.returncode == answer["exit_code"] and out.returncode in (0, 3, 4, 5), out
    return out.returncode, answer


def status_json(config: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``watchsync status --json --config``, keyed by local folder."""
    return {row["folder"]: row for row in status_answer(config, env)[1]["folders"]}


def ctl(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``watchsync ctl --config CONFIG ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "watchsync", "ctl", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ctl_json(config: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    """``ctl ARGS --json``'s answer, which must be a success."""
    done = ctl(config, env, *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def watching(agent: Agent, n: int) -> bool:
    """The agent started ``n`` folders and finished a first reconcile in each."""
    assert agent.alive(), agent.text()
    return agent.count(lambda r: r.get("event") == "reconcile") >= n


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stays_false(pred: Callable[[], bool], seconds: float) -> bool:
    """Poll ``pred`` for ``seconds``; True if it never became true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return False
        time.sleep(0.1)
    return not pred()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    return one, two, tmp_path / "state"


# -- metrics ---------------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as {"name{labels}": value}, label order as served."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def metric(samples: dict[str, float], name: str, **labels: str) -> float | None:
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None
