"""The import contract (pyproject.toml, import-linter): layers import only downward, only
watchsync.s3 imports the SDK and classifies its errors, no import circles.  Checked on the
real tree, and shown to fail on a copy with one wrong-way import, so a broken contract
cannot pass unnoticed."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT = [str(Path(sys.executable).parent / "lint-imports")]


def _lint(package_parent: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [*LINT, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "watchsync", copy / "watchsync", ignore=ignore)
    return copy


def test_the_tree_keeps_the_import_contract(tmp_path: Path) -> None:
    done = _lint(REPO, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout


def test_a_wrong_way_import_breaks_the_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    plan = copy / "watchsync" / "core" / "plan.py"
    plan.write_text(plan.read_text() + "\nfrom watchsync.agent import folder  # the wrong way\n")
    done = _lint(copy, tmp_path)
    assert done.returncode != 0
    assert "Layers import only downward BROKEN" in done.stdout
    assert "watchsync.core.plan -> watchsync.agent.folder" in done.stdout


def test_the_sdk_outside_s3_breaks_the_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    status = copy / "watchsync" / "agent" / "status.py"
    status.write_text(status.read_text() + "\nimport botocore.exceptions  # SDK outside s3/\n")
    done = _lint(copy, tmp_path)
    assert done.returncode != 0
    assert "Only watchsync.s3 imports the SDK BROKEN" in done.stdout


def test_classifying_failures_outside_s3_breaks_the_contract(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    uploader = copy / "watchsync" / "agent" / "uploader.py"
    wrong = "\nfrom watchsync.s3.failures import classify  # SDK shapes outside s3/\n"
    uploader.write_text(uploader.read_text() + wrong)
    done = _lint(copy, tmp_path)
    assert done.returncode != 0
    assert "Only watchsync.s3 classifies failures BROKEN" in done.stdout
    assert "watchsync.agent.uploader -> watchsync.s3.failures" in done.stdout


MAX_CLASS_LINES = 400


def classes_over(package: Path, limit: int) -> list[str]:
    """``file:Class (N lines)`` of every class under ``package`` longer than ``limit``."""
    return [
        f"{path.relative_to(package.parent)}:{node.name} ({size} lines)"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and (size := (node.end_lineno or node.lineno) - node.lineno + 1) > limit
    ]


def test_no_class_is_over_400_lines() -> None:
    """A class past 400 lines does more than one thing: give a part its own collaborator."""
    assert classes_over(REPO / "watchsync", MAX_CLASS_LINES) == []


def test_a_long_class_is_found(tmp_path: Path) -> None:
    package = tmp_path / "watchsync"
    package.mkdir()
    (package / "big.py").write_text("class Big:\n" + "    x = 1\n" * 400)
    (package / "small.py").write_text("class Small:\n    x = 1\n")
    assert classes_over(package, MAX_CLASS_LINES) == ["watchsync/big.py:Big (401 lines)"]
