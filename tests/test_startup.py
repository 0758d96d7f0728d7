"""What starting watchsync costs: ``--version``, ``--help`` and a usage error import none of
the SDK (boto3, botocore, s3transfer, awscrt), rich or the agent; only the command that
runs imports its own modules.  The time itself is measured by scripts/bench_sync.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("boto3", "botocore", "s3transfer", "awscrt", "rich", "watchdog", "watchsync.agent")

_PROBE = """
import contextlib, io, sys
from watchsync.cli.main import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(sys.argv[1:])
heavy = {0}
print(" ".join(sorted(m for m in sys.modules
                      if m.split(".")[0] in heavy or m.startswith("watchsync.agent"))))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["sync", "--help"],
        ["watch", "--help"],
        ["sync", "only-one-argument"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_nothing_heavy_is_imported(argv: list[str]) -> None:
    roots = {m.split(".")[0] for m in HEAVY if "." not in m}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.replace("{0}", repr(roots)), *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == [], f"imported by {argv}: {out.stdout}"
