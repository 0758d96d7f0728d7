"""The platform seam (watchsync/fs/platform.py): what macOS and Windows run, run here.

``WATCHSYNC_PORTABLE=1`` forces the portable paths on Linux; the agent's end-to-end tests
that it changes run under it too (tests/test_agent_e2e.py).  Here: the switch takes each
path, the CLI starts without ``fcntl``, the portable mount scan finds a real mount, and a
burst goes through watchdog's generic observer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import assert_in_sync, folder_config, running_agent
from s3server import SeaweedServer

from watchsync import __version__
from watchsync.fs import platform
from watchsync.fs.watcher import TrackingInotifyObserver, _native_observer, _stop_quietly

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Runs its argv[1:] as `watchsync` would, with these modules made unimportable first (as on
# Windows, which has none of them).
_WITHOUT_POSIX = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {"fcntl", "termios", "pwd", "grp", "resource"}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED:
                raise ImportError(f"No module named {name!r} (blocked)")
            return None
    sys.meta_path.insert(0, Blocker())
    import watchsync.cli
    import watchsync.cli.main
    assert not BLOCKED & set(sys.modules), BLOCKED & set(sys.modules)
    sys.exit(watchsync.cli.main.main(sys.argv[1:]))
    """
)


@pytest.fixture
def portable(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(platform.PORTABLE_ENV, "1")
    yield


def run_without_posix(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_POSIX, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_version_without_fcntl() -> None:
    out = run_without_posix("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"watchsync {__version__}"


def test_sync_without_fcntl(
    tmp_path: Path, s3server: SeaweedServer, aws_env: dict[str, str], s3: S3Client, bucket: str
) -> None:
    """``sync`` both ways in a process that cannot import fcntl (nor termios, pwd, ...)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    url = f"s3://{bucket}/p"
    env = os.environ | aws_env | {platform.PORTABLE_ENV: "1"}
    up = run_without_posix("sync", str(src), url, "--endpoint-url", s3server.endpoint, env=env)
    assert up.returncode == 0, up.stderr
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == [
        "p/a.txt",
        "p/sub/b.txt",
    ]
    dst = tmp_path / "dst"
    down = run_without_posix("sync", url, str(dst), "--endpoint-url", s3server.endpoint, env=env)
    assert down.returncode == 0, down.stderr
    assert (dst / "sub" / "b.txt").read_text() == "b"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's own paths")
def test_linux_paths_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platform.PORTABLE_ENV, raising=False)
    assert platform.linux()
    observer = _native_observer(0.1)
    _stop_quietly(observer)
    assert isinstance(observer, TrackingInotifyObserver)
    assert platform.reload_signal() is not None
    assert platform.inotify_watch_limit() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="elsewhere they are the only")
@pytest.mark.usefixtures("portable")
def test_portable_switch_takes_the_portable_paths() -> None:
    from watchdog.observers.inotify import InotifyObserver

    assert not platform.linux()
    observer = _native_observer(0.1)
    _stop_quietly(observer)
    # watchdog's own Observer: InotifyObserver on Linux (FSEvents, ReadDirectoryChangesW...)
    assert type(observer) is InotifyObserver
    assert platform.reload_signal() is None
    assert platform.inotify_watch_limit() is None


@pytest.mark.usefixtures("portable")
def test_read_at_from_many_threads_without_pread(tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    path = tmp_path / "big"
    path.write_bytes(data)
    wrong: list[int] = []
    with open(path, "rb") as f:

        def reader(k: int) -> None:
            for i in range(k, 256, 8):
                off = i * 4096
                if platform.read_at(f.fileno(), 4096, off) != data[off : off + 4096]:
                    wrong.append(i)

        threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert wrong == []
    with open(path, "rb") as f:
        assert platform.read_at(f.fileno(), 10, len(data) - 4) == data[-4:]


def test_pid_alive() -> None:
    assert platform.pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not platform.pid_alive(child.pid)


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/root`` with a tmpfs mounted at ``root/disk/mnt`` (skips where mounting is
    not allowed)."""
    root = tmp_path / "root"
    point = root / "disk" / "mnt"
    point.mkdir(parents=True)
    (root / "plain").mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "watchsync-test", str(point)],
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.decode(errors='replace').strip()}")
    try:
        (point / "inside").mkdir()
        yield root
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)


@pytest.mark.parametrize("paths", ["linux", "portable"])
def test_mount_points_found_both_ways(
    mounted: Path, monkeypatch: pytest.MonkeyPatch, paths: str
) -> None:
    if paths == "portable":
        monkeypatch.setenv(platform.PORTABLE_ENV, "1")
    else:
        monkeypatch.delenv(platform.PORTABLE_ENV, raising=False)
    assert platform.mount_points(mounted) == ["disk/mnt"]
    assert platform.device_changes(mounted) == ["disk/mnt"]


@pytest.mark.usefixtures("portable")
def test_burst_through_the_generic_observer(
    tmp_path: Path, s3server: SeaweedServer, aws_env: dict[str, str], s3: S3Client, bucket: str
) -> None:
    """The observer macOS and Windows get (watchdog's own, not the tracking inotify reader)
    keeps up with a burst of new files in new directories."""
    root = tmp_path / "folder"
    root.mkdir()
    cfg = folder_config(root, f"s3://{bucket}/data", s3server.endpoint)
    with running_agent(cfg, tmp_path / "state") as agent:
        assert not isinstance(agent.watcher._observer, TrackingInotifyObserver)
        for d in range(10):
            for i in range(30):
                path = root / f"d{d}" / f"f{i}.txt"
                path.parent.mkdir(exist_ok=True)
                path.write_text(f"{d}/{i}")
        assert_in_sync(s3, bucket, "data", root, timeout=60)


def test_liveness_is_asked_only_of_the_seam() -> None:
    """``os.kill(pid, 0)`` asks whether a process lives on POSIX and *terminates* it on
    Windows: only the platform seam may call it (where it is kept off Windows)."""
    import ast

    package = Path(platform.__file__).resolve().parent.parent
    callers = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "os.kill"
                and len(node.args) == 2
                and ast.unparse(node.args[1]) == "0"
            ):
                callers.append(path.relative_to(package).as_posix())
    assert callers == ["fs/platform.py"]
