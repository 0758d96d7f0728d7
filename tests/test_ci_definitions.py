"""The CI definitions a fork runs on GitHub Actions (.github/workflows/ci.yml): valid against
the workflow schema, a matrix of Linux, macOS and Windows on Python 3.11 to 3.13, and in
step with the README's table of what is tested where."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
PYTHONS = ["3.11", "3.12", "3.13"]


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def test_workflow_matches_the_schema() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_matrix_is_every_os_on_every_python() -> None:
    jobs = _workflow()["jobs"]
    assert jobs["linux"]["runs-on"] == "ubuntu-latest"
    assert jobs["linux"]["strategy"]["matrix"]["python"] == PYTHONS
    other = jobs["macos-windows"]["strategy"]["matrix"]
    assert other == {"os": ["macos-latest", "windows-latest"], "python": PYTHONS}
    assert any(step.get("run") == ".ci/run" for step in jobs["linux"]["steps"])


def _tests_run_on(os_name: str) -> set[str]:
    steps = _workflow()["jobs"]["macos-windows"]["steps"]
    (step,) = [s for s in steps if s.get("name") == f"Tests ({os_name})"]
    return set(re.findall(r"tests/test_\w+\.py", step["run"]))


def _readme_row(label: str) -> str:
    (row,) = [
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith(f"| GitHub Actions, {label}")
    ]
    return row


def test_readme_names_what_each_runner_runs() -> None:
    for os_name in ("macOS", "Windows"):
        files = _tests_run_on(os_name)
        assert files and all((REPO / f).is_file() for f in files)
        assert set(re.findall(r"tests/test_\w+\.py", _readme_row(os_name))) == files
    assert "3.11, 3.12, 3.13" in _readme_row("Linux")
