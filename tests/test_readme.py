"""Every command block of the README runs as written, or is listed below with the reason it
is not run here (and where it is tested instead).

A block is found by its first line; a block this file does not know fails the test, so a
new one is either run or given its reason.  Blocks run in bash with ``set -e``, a HOME of
their own, watchsync on PATH, and the AWS variables pointing at the test server, whose
bucket ``my-bucket`` exists.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import wait_until
from s3server import SeaweedServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```", re.M | re.S)

# First line of a block -> why it does not run here.
NOT_RUN = {
    "scripts/demo     # starts a local S3 server, syncs a sample folder up and back, runs the "
    "agent": "the set-up commands themselves: scripts/test runs this suite, the demo is "
    "run by hand (it installs into the checkout's .venv)",
    "pipx install .": "installs into the user's home from source: tests/test_packaging.py "
    "installs the built wheel with pipx the same way",
    "python3 -m venv ~/.local/share/watchsync/venv": "installs into the user's home from "
    "source: tests/test_packaging.py installs the built wheel into a fresh venv",
    "watchsync sync ./site s3://www.example.com --delete --exclude '*.psd' --profile web": (
        "AWS buckets and a profile of the reader's; the flags run against SeaweedFS in "
        "tests/test_sync_e2e.py"
    ),
    "watchsync sync SRC DST [options]": "syntax, not a command",
    "upload: photos/a.jpg to s3://bucket/photos/a.jpg": "output, not a command",
    "upload: photos/2019/img_0412.jpg to s3://bucket/photos/2019/img_0412.jpg": "output",
    "Completed 908 uploads, 12 deletes: 3.6 GiB in 91.2s (40.5 MiB/s); 1 failed, 2 skipped": (
        "output, not a command"
    ),
    '{"uploaded": 908, "downloaded": 0, "deleted": 12, "bytes": 3865470566, "failed": 1, '
    '"skipped": 2, "seconds": 91.214, "dryrun": false, "exit_code": 1}': "output",
    "watchsync watch LOCAL_DIR s3://bucket[/prefix] [options]": "syntax, not a command",
    "watchsync notifications s3://my-bucket/laptop --queue watchsync-laptop   # prints the URL": (
        "needs SQS beside S3: tests/test_notifications_e2e.py runs both commands against "
        "moto's server (S3 and SQS in one process)"
    ),
    "sudo scripts/install-service            # /opt/watchsync/venv, /etc/watchsync/config.toml,"
    " the unit": "installs system-wide and enables a unit: tests/test_install_service.py and "
    "tests/test_packaging.py stage it under a prefix",
    "cp launchd/watchsync.plist ~/Library/LaunchAgents/": "macOS's launchctl: "
    "tests/test_service_recipes.py runs the job's command as launchd would",
    "docker build -t watchsync -f Containerfile .": "needs a container engine: "
    "tests/test_service_recipes.py builds and runs the image where one answers",
    "watchsync ctl --config /etc/watchsync/config.toml status   # what each folder does now": (
        "steers a running service: tests/test_control.py runs ctl against a real agent "
        "process (pause, resume, deletes approve) and tests/test_status_truth.py finds a "
        "unit-started one from its config"
    ),
}


def shell_blocks() -> list[str]:
    return [
        m["body"] for m in FENCE.finditer(README.read_text()) if m["lang"] in ("", "sh", "bash")
    ]


def first_line(block: str) -> str:
    return block.splitlines()[0].strip()


@pytest.fixture
def readme_env(
    tmp_path: Path, s3server: SeaweedServer, aws_env: dict[str, str], s3: S3Client
) -> Iterator[dict[str, str]]:
    """The README's bucket, empty, and an environment in which its commands reach it."""
    s3.create_bucket(Bucket="my-bucket")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = Path(sys.executable).parent
    yield {
        **os.environ,
        **aws_env,
        "HOME": str(home),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_ENDPOINT_URL": s3server.endpoint,
    }
    for obj in s3.list_objects_v2(Bucket="my-bucket").get("Contents", []):
        s3.delete_object(Bucket="my-bucket", Key=obj["Key"])
    s3.delete_bucket(Bucket="my-bucket")


def run_block(block: str, *, cwd: Path, env: dict[str, str]) -> None:
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{block}\n{out.stdout}\n{out.stderr}"


def test_every_block_is_run_or_has_a_reason() -> None:
    known = {*NOT_RUN, *RUN}
    unknown = [first_line(b) for b in shell_blocks() if first_line(b) not in known]
    assert unknown == [], "a README block neither run nor listed: add it to RUN or NOT_RUN"
    gone = known - {first_line(b) for b in shell_blocks()}
    assert gone == set(), "listed here, gone from the README"


def run_intro(tmp_path: Path, env: dict[str, str], block: str, s3: S3Client) -> None:
    """``sync`` runs; ``watch`` is an agent: it must start and serve until stopped."""
    work = tmp_path / "work"
    (work / "photos").mkdir(parents=True)
    (work / "photos" / "p1.jpg").write_bytes(b"jpeg")
    sync, watch = (line.split("#")[0].strip() for line in block.splitlines())
    run_block(sync, cwd=work, env=env)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="my-bucket")["Contents"]] == [
        "photos/p1.jpg"
    ]
    agent = subprocess.Popen(
        ["bash", "-c", f"exec {watch}"], cwd=work, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        (work / "photos" / "p2.jpg").write_bytes(b"jpeg 2")
        wait_until(
            lambda: s3.list_objects_v2(Bucket="my-bucket").get("KeyCount") == 2,
            timeout=60,
            interval=0.2,
            message="the agent's upload",
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(60) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.communicate()


def run_completion(tmp_path: Path, env: dict[str, str], block: str, s3: S3Client) -> None:
    run_block(block, cwd=tmp_path, env=env)
    home = Path(env["HOME"])
    for path in (
        ".local/share/bash-completion/completions/watchsync",
        ".config/fish/completions/watchsync.fish",
        ".zfunc/_watchsync",
    ):
        assert "watchsync" in (home / path).read_text()
    assert (home / ".local/share/man/man1/watchsync.1").read_text().startswith(".TH")


# First line of a block -> how it runs.
RUN: dict[str, Callable[[Path, dict[str, str], str, S3Client], None]] = {
    "watchsync sync  ./photos s3://my-bucket/photos          # one-shot, a drop-in for aws s3 "
    "sync": run_intro,
    "mkdir -p ~/.local/share/bash-completion/completions ~/.config/fish/completions ~/.zfunc": (
        run_completion
    ),
}


@pytest.mark.parametrize("first", sorted(RUN))
def test_block_runs_as_written(
    first: str, tmp_path: Path, readme_env: dict[str, str], s3: S3Client
) -> None:
    (block,) = [b for b in shell_blocks() if first_line(b) == first]
    RUN[first](tmp_path, readme_env, block, s3)
