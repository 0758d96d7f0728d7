"""The packages a user installs: the sdist and the wheel, built once per session as a user
or a distribution would (``python -m build``: the sdist, then the wheel from the sdist),
checked by twine, installed into fresh venvs (by scripts/install-service, staged and moved;
by pipx) and run against the test server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from s3server import SeaweedServer

from watchsync import __version__

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parent.parent
INSTALL = 300  # seconds a venv may take to install the wheel and its dependencies

# Not part of the source: the developer's and the tools' own files.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".s3-local",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    "build",
    "dist",
    "*.egg-info",
)


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist and the wheel, built once from a copy of the source (the build writes
    egg-info beside the sources, which must not land in the checkout)."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE, symlinks=True)
    out = work / "dist"
    # No isolation: the build backend is in the test venv (pyproject's test extras), so the
    # build needs no network and takes seconds.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=INSTALL,
    )
    (sdist,) = out.glob("watchsync-*.tar.gz")
    (wheel,) = out.glob("watchsync-*-py3-none-any.whl")
    return Dist(sdist, wheel)


def _sdist_names(dist: Dist) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(dist.sdist) as tar:
        top = f"watchsync-{__version__}/"
        return {m.name.removeprefix(top): m for m in tar.getmembers() if m.isfile()}


def _tracked(folder: str) -> list[str]:
    """The source files of one folder of the checkout, relative to the repository."""
    return sorted(
        p.relative_to(REPO).as_posix()
        for p in (REPO / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def test_twine_check(dist: Dist) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist.sdist), str(dist.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASSED") == 2


def test_sdist_holds_what_its_tests_and_services_need(dist: Dist) -> None:
    names = _sdist_names(dist)
    wanted = ["LICENSE", "README.md", "Containerfile", ".dockerignore", "pyproject.toml"]
    for folder in ("tests", "scripts", "docs", "examples", "systemd", "launchd", "windows"):
        wanted += _tracked(folder)
    assert "tests/conftest.py" in wanted and "tests/s3server.py" in wanted
    missing = [n for n in wanted if n not in names]
    assert missing == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # The scripts keep their run bits.
    for script in ("scripts/test", "scripts/demo", "scripts/install-service", "scripts/soak"):
        assert names[script].mode & 0o111, script


def test_the_sdists_own_tests_run(dist: Dist, tmp_path: Path) -> None:
    """Unpacked, the sdist's tests collect and pass (conftest, helpers and the server
    fixture are there), against the sdist's own package."""
    with tarfile.open(dist.sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    top = tmp_path / f"watchsync-{__version__}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_filters.py",
        ],
        cwd=top,
        env={**os.environ, "PYTHONPATH": str(top)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "error" not in out.stdout.splitlines()[-1]


def test_wheel_metadata(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        names = whl.namelist()
        info = f"watchsync-{__version__}.dist-info"
        meta = whl.read(f"{info}/METADATA").decode()
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "License-File: LICENSE" in meta
    assert f"{info}/licenses/LICENSE" in names
    assert "watchsync = watchsync.cli.main:main" in entry_points
    assert not [n for n in names if n.startswith("tests/")]


def test_license_is_the_apache_license() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text


# -- installed -------------------------------------------------------------------------------


def smoke(watchsync: Path, tmp_path: Path, endpoint: str, bucket: str, s3: S3Client) -> None:
    """What a user does first with an installed watchsync: the version, a sync up and back
    against the test server, completion and the manual page."""

    def run(*args: str) -> str:
        out = subprocess.run([str(watchsync), *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"watchsync {' '.join(args)}: {out.stderr}"
        return out.stdout

    assert run("--version").strip() == f"watchsync {__version__}"
    src = tmp_path / "smoke-src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "d" / "b.txt").write_text("b")
    url = f"s3://{bucket}/smoke"
    run("sync", str(src), url, "--endpoint-url", endpoint, "--no-progress")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["smoke/a.txt", "smoke/d/b.txt"]
    run("sync", url, str(tmp_path / "smoke-back"), "--endpoint-url", endpoint)
    assert (tmp_path / "smoke-back" / "d" / "b.txt").read_text() == "b"
    assert "watchsync" in run("completion", "bash")
    assert run("manpage").startswith(".TH WATCHSYNC")


@pytest.fixture
def staged(dist: Dist, tmp_path: Path) -> Iterator[Path]:
    """scripts/install-service --user, staged under one prefix from the built wheel and then
    moved to another: the venv's root there."""
    home = tmp_path / "home"
    home.mkdir()
    first, second = tmp_path / "stage-a", tmp_path / "stage-b"
    subprocess.run(
        [
            str(REPO / "scripts" / "install-service"),
            "--user",
            "--prefix",
            str(first),
            "--from",
            str(dist.wheel),
            "--python",
            sys.executable,
        ],
        env={**os.environ, "HOME": str(home)},
        check=True,
        capture_output=True,
        timeout=INSTALL,
    )
    first.rename(second)
    yield Path(f"{second}{home}/.local/share/watchsync/venv")


def test_staged_venv_runs_from_anywhere(
    staged: Path,
    tmp_path: Path,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
    bucket: str,
) -> None:
    """A fresh venv holding the built wheel, staged and moved, passes the smoke test, and
    none of its scripts names the staging directory."""
    stage = str(tmp_path / "stage-a")
    for path in [*(staged / "bin").iterdir(), staged / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            assert stage.encode() not in path.read_bytes(), path
    smoke(staged / "bin" / "watchsync", tmp_path, s3server.endpoint, bucket, s3)


def test_pipx_installs_the_wheel(
    dist: Dist,
    tmp_path: Path,
    s3server: SeaweedServer,
    aws_env: dict[str, str],
    s3: S3Client,
    bucket: str,
) -> None:
    """``pipx install`` (the README's way) of the built wheel puts ``watchsync`` on PATH."""
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    out = subprocess.run(
        [
            *(sys.executable, "-m", "pipx", "install", "--python", sys.executable),
            *("--pip-args=--no-compile", str(dist.wheel)),  # no .pyc: seconds saved, same test
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=INSTALL,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    smoke(tmp_path / "bin" / "watchsync", tmp_path, s3server.endpoint, bucket, s3)


# -- the scripts -----------------------------------------------------------------------------


def test_every_script_with_a_shebang_can_run() -> None:
    for path in (REPO / "scripts").iterdir():
        if path.is_file() and path.read_bytes().startswith(b"#!"):
            assert os.access(path, os.X_OK), f"{path.name} has no run bit"


def test_soak_runs_with_the_checkouts_venv_whatever_python3_starts_it(tmp_path: Path) -> None:
    """Started by a python3 without watchsync's dependencies, soak runs itself again with
    the checkout's .venv (else it dies importing pathspec)."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    out = subprocess.run(
        [str(bare / "bin" / "python"), str(REPO / "scripts" / "soak"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "usage: soak" in out.stdout
