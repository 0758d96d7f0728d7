"""One clear line instead of a traceback: bad endpoint URL, region and destination,
``--debug`` after the command, local errors in the agent, unusable state directories."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from world import World

from watchsync.cli.main import main
from watchsync.core.errors import WatchsyncError
from watchsync.core.model import Item
from watchsync.state.store import StateStore


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., tuple[int, list[str], list[str]]]]:
    """``cli(*argv)`` runs main() with fake credentials and no network: (code, out, err)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(*argv: str) -> tuple[int, list[str], list[str]]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out.splitlines(), err.splitlines()

    yield run
    root.handlers[:], level = saved
    root.setLevel(level)


DEAD = "http://127.0.0.1:9"  # nothing listens: these runs must stop before any request


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{src}", "s3://bkt-a", "--endpoint-url", "notaurl"], "invalid endpoint URL 'notaurl'"),
        (["{src}", "s3://bkt-a", "--region", "bad_region!"], "invalid region 'bad_region!'"),
        (["s3://bkt-a", "/dev/null/x", "--endpoint-url", DEAD], "'/dev/null/x': Not a directory"),
        (["s3://bkt-a", "/proc/watchsync-x", "--endpoint-url", DEAD], "'/proc/watchsync-x'"),
    ],
    ids=["endpoint", "region", "dev-null", "proc"],
)
def test_bad_arguments_are_one_line_and_exit_255(
    cli: Callable[..., tuple[int, list[str], list[str]]],
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "src").mkdir()
    code, out, err = cli("sync", *[a.format(src=tmp_path / "src") for a in argv])
    assert (code, out) == (255, []), err  # aws's code for a command that could not start
    assert len(err) == 1 and err[0].startswith("watchsync: error: "), err
    assert message in err[0], err


def test_debug_after_the_command(
    cli: Callable[..., tuple[int, list[str], list[str]]], tmp_path: Path
) -> None:
    code, _, err = cli("sync", str(tmp_path), "s3://BAD_bucket", "--debug")
    assert code == 255 and "invalid bucket name" in err[-1], err
    assert logging.getLogger().level == logging.DEBUG
    code, _, err = cli("--debug", "sync", str(tmp_path), "s3://BAD_bucket")
    assert code == 255 and logging.getLogger().level == logging.DEBUG


@pytest.mark.parametrize(
    "exc",
    [
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        sqlite3.OperationalError("disk I/O error"),
        OSError(5, "Input/output error"),
    ],
)
def test_agent_reports_local_errors_as_local(
    make_world: Callable[..., World],
    exc: Exception,
) -> None:
    w = make_world()
    (w.root / "a.txt").write_bytes(b"x")
    w.objects.fail["a.txt"] = exc
    w.rooms.uploader.process(Item("a.txt"))
    text = w.status.last_error or ""
    assert text.startswith("local error: "), text
    assert "S3 refused" not in text


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(WatchsyncError, match=r"is a file, not a directory: move it away"):
        StateStore.open(tmp_path / "state", local_root=tmp_path, url="s3://bkt/p")


def test_state_dir_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(WatchsyncError, match=r"cannot create state dir .*--state-dir"):
        StateStore.open(tmp_path / "f" / "state", local_root=tmp_path, url="s3://bkt/p")


def test_read_only_state_dir(tmp_path: Path) -> None:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("root without setpriv: permission bits do not apply")
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o555)
    code = (
        "import sys; from pathlib import Path; from watchsync.state.store import StateStore\n"
        "from watchsync.core.errors import WatchsyncError\n"
        "try:\n"
        f"    StateStore.open(Path({str(state)!r}), local_root=Path('/x'), url='s3://bkt/p')\n"
        "except WatchsyncError as exc:\n"
        "    print(exc); sys.exit(2)\n"
    )
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    finally:
        state.chmod(0o755)
    assert proc.returncode == 2, proc
    assert "is read-only" in proc.stdout and "--state-dir" in proc.stdout, proc
