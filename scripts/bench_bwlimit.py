#!/usr/bin/env python3
"""How closely ``--bwlimit`` holds, as a user meets it: the whole ``sync`` process's wall time.

    scripts/bench_bwlimit.py                       # the default cases, watchsync and rclone
    scripts/bench_bwlimit.py --tools watchsync --repeat 3 --json /tmp/bw.json

Starts its own SeaweedFS on 127.0.0.1 pinned to --server-cpu; each tool runs pinned to
--client-cpu.  Every case uploads a fresh tree into an empty prefix, then downloads it into
an empty folder, once unlimited and once at each cap given for it.  Each row: the wall
seconds, the bytes over the wall time, and that rate as a share of the cap (1.00 = exactly
the cap; the process's start-up counts, as it does for a user, so a short run reads low).

rclone is compared with ``rclone copy --bwlimit`` where it is installed
(Debian: ``apt-get install -y rclone``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import uuid  # noqa: E402

from bench_common import (  # noqa: E402
    check_cpus,
    fmt_table,
    make_tree,
    pinned_server,
    run_measured,
    save_json,
    tool_env,
    which,
)
from bench_sync import _rclone_env  # noqa: E402

KiB, MiB = 1024, 1024 * 1024

# (name, files, bytes each, caps): the figures were 2,000 x 4 KiB and one 6 MiB
# file at 1M, and 2,000 x 4 KiB at 100M.
CASES = [
    ("2,000 x 4 KiB", 2000, 4 * KiB, ["1M", "100M"]),
    ("1 x 6 MiB", 1, 6 * MiB, ["1M"]),
    ("1 x 40 MiB (multipart)", 1, 40 * MiB, ["5M"]),
]


HEADERS = ["case", "tool", "way", "cap", "wall", "MiB/s", "of cap"]


class Run:
    """One tool's runs against the benchmark's server, each measured as a whole process."""

    def __init__(self, tool: str, exe: str, env: dict[str, str], endpoint: str, cpu: int) -> None:
        self.tool, self.exe, self.env, self.endpoint, self.cpu = tool, exe, env, endpoint, cpu

    def once(self, src: Path, prefix: str, way: str, cap: str | None) -> float:
        """Wall seconds of one upload of ``src`` to ``prefix`` (``up``), or of one download
        of it from there into an empty folder (``down``, after an unmeasured upload)."""
        if way == "down":
            self._measured(str(src), prefix, None)
            return self._measured(prefix, f"{src}-{uuid.uuid4().hex[:8]}", cap)
        return self._measured(str(src), prefix, cap)

    def _measured(self, src: str, dst: str, cap: str | None) -> float:
        m = run_measured(_argv(self.tool, self.exe, src, dst, self.endpoint, cap),
                         env=self.env, cpu=self.cpu)  # fmt: skip
        if m.returncode != 0:
            raise SystemExit(f"{self.tool} failed: {m.stderr_tail[-500:]}")
        return m.wall


def _cap_bytes(text: str) -> int:
    return int(float(text[:-1]) * {"K": KiB, "M": MiB, "G": 1024 * MiB}[text[-1]])


def _argv(tool: str, exe: str, src: str, dst: str, endpoint: str, cap: str | None) -> list[str]:
    if tool == "watchsync":
        limit = ["--bwlimit", cap] if cap else []
        return [exe, "sync", src, dst, "--endpoint-url", endpoint, "--no-progress", *limit]
    limit = ["--bwlimit", cap] if cap else []
    src = src.replace("s3://", "s3:")
    dst = dst.replace("s3://", "s3:")
    return [exe, "copy", src, dst, "--transfers", "16", "--checkers", "16", *limit]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--tools", default="watchsync,rclone", help="comma-separated (%(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each cell; medians shown (1)")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for SeaweedFS (0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for the tool under test (1)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    check_cpus(args.server_cpu, args.client_cpu)
    tools = {t: which(t) for t in args.tools.split(",") if t}
    for name, exe in list(tools.items()):
        if exe is None:
            print(f"skipping {name}: not installed")
            del tools[name]
    rows: list[list[object]] = []
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch, pinned_server(cpu=args.server_cpu) as server:
        base_env = tool_env(server, Path(scratch))
        bucket = f"bench-bwlimit-{uuid.uuid4().hex[:8]}"
        server.client().create_bucket(Bucket=bucket)
        for case, files, size, caps in CASES:
            src = Path(scratch) / f"src-{files}-{size}"
            make_tree(src, files=files, size=size, dirs=max(1, files // 100))
            for tool, exe in tools.items():
                assert exe is not None
                rclone = _rclone_env(server.endpoint, base_env) if tool == "rclone" else {}
                run = Run(tool, exe, base_env | rclone, server.endpoint, args.client_cpu)
                for cap, way in [(c, w) for c in [None, *caps] for w in ("up", "down")]:
                    walls = [
                        run.once(src, f"s3://{bucket}/{uuid.uuid4().hex[:8]}", way, cap)
                        for _ in range(args.repeat)
                    ]
                    wall, rate = statistics.median(walls), files * size / statistics.median(walls)
                    share = f"{rate / _cap_bytes(cap):.2f}" if cap else ""
                    row = [case, tool, way, cap or "none", f"{wall:.1f} s", f"{rate / MiB:.2f}"]
                    rows.append([*row, share])
                    results.append(
                        {"case": case, "tool": tool, "way": way, "cap": cap, "wall": wall}
                    )
                    print(fmt_table(HEADERS, rows[-1:]), flush=True)
    print()
    print(fmt_table(HEADERS, rows))
    if args.json:
        save_json(args.json, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
