"""The systemd units: `systemd-analyze verify` accepts them, and the key directives are there.

systemd-analyze comes with Debian's ``systemd`` package.  ``verify`` fails when ExecStart's
binary does not exist, so the system unit is verified from a copy whose ExecStart names an
existing executable; the user template is verified unchanged in ``--user`` mode, with a fake
HOME holding a stub ``~/.local/share/watchsync/venv/bin/watchsync``.  Unknown directives only
produce warnings (exit status 0), so any output about our unit counts as a failure.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = REPO / "systemd" / "watchsync.service"
USER_UNIT = REPO / "systemd" / "watchsync@.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze not installed (Debian package: systemd)",
)


def _directives(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> every value given, in order (units repeat keys)."""
    result: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        result.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return result


def _verify(args: list[str], unit_arg: str, *, env: dict[str, str], unit_name: str) -> None:
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, *args, "verify", "--man=no", unit_arg],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    ours = [line for line in output.splitlines() if "watchsync" in line or unit_name in line]
    assert proc.returncode == 0, output
    assert not ours, output


@needs_systemd_analyze
def test_system_unit_verifies(tmp_path: Path) -> None:
    text = SYSTEM_UNIT.read_text()
    assert "/opt/watchsync/venv/bin/watchsync " in text
    copy = tmp_path / "watchsync.service"
    copy.write_text(text.replace("/opt/watchsync/venv/bin/watchsync", "/bin/true"))
    _verify([], str(copy), env=dict(os.environ), unit_name=copy.name)


@needs_systemd_analyze
def test_user_template_verifies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stub = home / ".local/share/watchsync/venv/bin/watchsync"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(USER_UNIT, units / USER_UNIT.name)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    # The instance name loads the template from the same directory.
    _verify(["--user"], str(units / "watchsync@work.service"), env=env, unit_name="watchsync@")


@needs_systemd_analyze
def test_system_unit_exposure_is_low(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--threshold=20", str(SYSTEM_UNIT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Overall exposure level for watchsync.service: 1." in proc.stdout, proc.stdout


COMMON = {
    "Unit.After": "network-online.target",
    "Unit.Wants": "network-online.target",
    "Service.Type": "notify",
    "Service.NotifyAccess": "main",
    "Service.WatchdogSec": "60",
    "Service.Restart": "on-failure",
    "Service.RestartSec": "5",
    "Service.TimeoutStopSec": "45",
    "Service.ExecReload": "/bin/kill -HUP $MAINPID",
    "Service.StateDirectory": "watchsync",
    "Service.NoNewPrivileges": "yes",
    "Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "Service.SystemCallArchitectures": "native",
    "Service.MemoryDenyWriteExecute": "yes",
    "Service.LockPersonality": "yes",
    "Service.RestrictNamespaces": "yes",
    "Service.RestrictRealtime": "yes",
    "Service.RestrictSUIDSGID": "yes",
}
SYSTEM_ONLY = {
    "Service.ExecStart": "/opt/watchsync/venv/bin/watchsync watch --config "
    "/etc/watchsync/config.toml",
    "Service.User": "watchsync",
    "Service.ProtectSystem": "strict",
    "Service.ProtectHome": "read-only",
    "Service.PrivateTmp": "yes",
    "Service.PrivateDevices": "yes",
    "Service.ProtectKernelTunables": "yes",
    "Service.ProtectKernelModules": "yes",
    "Service.ProtectKernelLogs": "yes",
    "Service.ProtectControlGroups": "yes",
    "Service.ProtectClock": "yes",
    "Service.ProtectHostname": "yes",
    "Service.CapabilityBoundingSet": "",
    "Service.UMask": "0007",
    "Install.WantedBy": "multi-user.target",
}
USER_ONLY = {
    "Service.ExecStart": "%h/.local/share/watchsync/venv/bin/watchsync watch --config "
    "%h/.config/watchsync/%i.toml",
    "Install.WantedBy": "default.target",
}


@pytest.mark.parametrize(
    ("unit", "key", "value"),
    [(SYSTEM_UNIT, k, v) for k, v in {**COMMON, **SYSTEM_ONLY}.items()]
    + [(USER_UNIT, k, v) for k, v in {**COMMON, **USER_ONLY}.items()],
    ids=lambda x: x.name if isinstance(x, Path) else None,
)
def test_directive(unit: Path, key: str, value: str) -> None:
    assert value in _directives(unit).get(key, []), f"{unit.name}: want {key}={value}"


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=lambda p: p.name)
def test_syscall_filter(unit: Path) -> None:
    filters = _directives(unit)["Service.SystemCallFilter"]
    assert filters[0] == "@system-service"
    assert "~@privileged @resources" in filters


def test_system_unit_has_no_secrets_or_dynamic_user() -> None:
    d = _directives(SYSTEM_UNIT)
    assert "Service.DynamicUser" not in d  # files it writes must keep an owner that exists
    assert not any("AWS_SECRET" in v for values in d.values() for v in values)


def test_units_are_ini_parsable() -> None:
    for unit in (SYSTEM_UNIT, USER_UNIT):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        assert {"Unit", "Service", "Install"} <= set(parser.sections())
