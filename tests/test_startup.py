"""What starting watchsync costs: ``--version``, ``--help`` and a usage error import none of
the SDK (boto3, botocore, s3transfer, awscrt), rich or the agent; only the command that
runs imports its own modules.  The time itself is measured by scripts/bench_sync.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from watchsync import __version__

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


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_alone_builds_no_parser(flag: str) -> None:
    """``--version`` is answered before argparse and the options' modules are imported: it
    prints what the parser's version action would, and exits 0."""
    probe = (
        "import sys\n"
        "from watchsync.cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        "print(sorted(m for m in ('argparse', 'logging', 'watchsync.cli.arguments') "
        "if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, flag], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"watchsync {__version__}", "[]"]
