"""scripts/install-service, staged into a temporary root with --prefix.

``--no-venv`` skips the venv + pip step here; unit files, sample config, idempotence and
systemctl detection are real.  The venv step, staged and then moved, is tested with the
built wheel in tests/test_packaging.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install-service"


def _run(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"} | {"HOME": str(home)}
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_commented_out_sample(config: Path, state_dir: str) -> None:
    """Every line of the installed sample but the state directory is a comment: nothing
    syncs (least of all deletes) until the admin says what; yet uncommented it is the
    example, every key documented.  The state directory is the unit's, so that
    ``watchsync status --config`` finds the service."""
    text = config.read_text()
    active = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert active == [f'state_dir = "{state_dir}"']
    assert tomllib.loads(text) == {"state_dir": state_dir}
    example = (REPO / "examples/config.toml").read_text().splitlines()
    uncommented = [line[2:] if line.startswith("# ") else line for line in text.splitlines()]
    for line in example:
        assert line in uncommented or line.startswith("#")


def test_sample_config_refuses_to_start(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _run("--prefix", str(root), "--no-venv", home=tmp_path)
    config = root / "etc/watchsync/config.toml"
    out = subprocess.run(
        [sys.executable, "-m", "watchsync", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "no [[folder]] tables" in out.stderr


def test_script_is_executable_bash() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_system_install_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    unit = root / "etc/systemd/system/watchsync.service"
    config = root / "etc/watchsync/config.toml"

    first = _run("--prefix", str(root), "--no-venv", home=tmp_path)
    assert unit.read_bytes() == (REPO / "systemd/watchsync.service").read_bytes()
    assert_commented_out_sample(config, "/var/lib/watchsync")
    assert config.stat().st_mode & 0o777 == 0o640
    assert "config: installing sample" in first.stdout
    assert "skipped daemon-reload (--prefix)" in first.stdout
    assert "systemctl enable --now watchsync" in first.stdout
    assert "ReadWritePaths=" in first.stdout
    assert not (root / "opt").exists()  # --no-venv

    config.write_text("# edited by the admin\n")
    unit.write_text("stale\n")
    second = _run("--prefix", str(root), "--no-venv", home=tmp_path)
    assert config.read_text() == "# edited by the admin\n"
    assert f"config: kept existing {config}" in second.stdout
    assert 'has no state_dir; add state_dir = "/var/lib/watchsync"' in second.stdout
    assert unit.read_bytes() == (REPO / "systemd/watchsync.service").read_bytes()

    third = _run("--prefix", str(root), "--no-venv", home=tmp_path)
    assert f"unit: {unit} is up to date" in third.stdout
    assert config.read_text() == "# edited by the admin\n"


def test_user_install_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = tmp_path / "root"
    base = Path(f"{root}{home}")
    unit = base / ".config/systemd/user/watchsync@.service"
    config = base / ".config/watchsync/default.toml"

    first = _run("--user", "--prefix", str(root), "--no-venv", home=home)
    assert unit.read_bytes() == (REPO / "systemd/watchsync@.service").read_bytes()
    assert_commented_out_sample(config, f"{home}/.local/state/watchsync")
    assert config.stat().st_mode & 0o777 == 0o600
    assert "systemctl --user enable --now watchsync@default" in first.stdout

    config.write_text("# mine\n")
    _run("--user", "--prefix", str(root), "--no-venv", home=home)
    assert config.read_text() == "# mine\n"
    assert not (root / "etc").exists()


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = _run("--prefix", str(root), "--dry-run", home=tmp_path)
    assert "would run:" in proc.stdout
    assert "-m venv" in proc.stdout and "pip install" in proc.stdout
    assert not root.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument: --bogus"),
        (["--prefix"], "--prefix needs a directory"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _run(*args, home=tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_help(tmp_path: Path) -> None:
    proc = _run("--help", home=tmp_path)
    assert "--prefix DIR" in proc.stdout and "--no-venv" in proc.stdout
