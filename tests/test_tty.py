"""What a person at a terminal sees: progress displays, through a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

from s3server import SeaweedServer


def run_in_pty(argv: list[str], env: dict[str, str], *, until: bytes, timeout: float = 60) -> bytes:
    """Run ``argv`` on a pseudo-terminal until ``until`` was printed and the process ended
    (SIGTERM after ``until``, for long-running commands); returns everything it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing here may return into pytest
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    signalled = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if until in out and not signalled:
                os.kill(pid, signal.SIGTERM)
                signalled = True
    finally:
        if not signalled:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return out


def _env(server: SeaweedServer, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        **server.env(),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "COLUMNS": "160",
    }


def _tree(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 5}" / f"f{i}").write_bytes(os.urandom(2048))


def test_sync_shows_a_progress_bar_on_a_terminal(
    s3server: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _tree(src, 300)
    watchsync = [sys.executable, "-m", "watchsync"]
    out = run_in_pty(
        [*watchsync, "sync", str(src), f"s3://{bucket}/p"],
        _env(s3server, tmp_path),
        until=b"\x00never",  # runs to its end
    )
    text = out.decode("utf-8", "replace")
    assert "300/300 files" in text  # the bar's counter reached the total
    # The plan is read ahead: the bar shows a fraction only once the walk and the listing
    # have ended, and then of the whole plan (never "12/40 files" with a total still growing).
    totals = {int(total) for _done, total in re.findall(r"(\d+)/(\d+) files", text)}
    assert totals == {300}, totals
    assert re.search(r"\d+\.\d (KiB|MiB)/s", text)  # a rate, in --bwlimit's binary units
    assert text.count("upload: ") == 300  # and every aws-format line is still there
    # A closing line once the bar has gone: counts, bytes, time and rate.
    assert re.search(
        r"Completed 300 uploads: 600\.0 KiB in \d+\.\ds \(\d+(\.\d)? (B|KiB|MiB)/s\)", text
    )


def test_sync_on_a_terminal_is_quiet_about_progress_when_asked(
    s3server: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _tree(src, 3)
    watchsync = [sys.executable, "-m", "watchsync"]
    out = run_in_pty(
        [*watchsync, "sync", str(src), f"s3://{bucket}/p", "--no-progress"],
        _env(s3server, tmp_path),
        until=b"\x00never",
    )
    text = out.decode("utf-8", "replace")
    assert text.count("upload: ") == 3
    assert not re.search(r"\d+/\d+\+? files", text)  # no bar
    assert "Completed" not in text  # and no summary line


def test_first_reconcile_shows_progress_on_a_terminal(
    s3server: SeaweedServer, bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "folder"
    _tree(folder, 500)
    argv = [
        sys.executable,
        "-m",
        "watchsync",
        "watch",
        str(folder),
        f"s3://{bucket}/p",
        "--state-dir",
        str(tmp_path / "state"),
    ]
    out = run_in_pty(argv, _env(s3server, tmp_path), until=b"done in")
    text = out.decode("utf-8", "replace")
    assert "first reconcile folder-" in text and "local files scanned" in text
    assert "reconcile: folder-" in text  # log lines print cleanly beside it
