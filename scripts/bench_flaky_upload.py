#!/usr/bin/env python3
"""A large upload over a flaky link: does it finish, and how many bytes did it cost?

Starts its own SeaweedFS, puts ``tests/netproxy.py`` in front of it, and runs
``watchsync sync`` of one large file through the proxy while the link is cut every
``--every`` seconds (open connections die, new ones are reset for ``--down`` seconds).  A run
that ends with an error is started again, as a user or a timer would; interrupted multipart
uploads are resumed, so the bytes sent should stay well under 1.5x the file (issue 9, item 10).

Example::

    scripts/bench_flaky_upload.py --size-mib 1024 --every 20
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
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from bench_common import MIB, SeaweedServer, tool_env  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from netproxy import NetProxy  # noqa: E402


def _make_file(path: Path, size: int) -> None:
    """Incompressible content, written in 8 MiB blocks."""
    block = os.urandom(8 * MIB)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def _flap(
    proxy: NetProxy, stop: threading.Event, every: float, down: float, cuts: list[int]
) -> None:
    """Cut the link every ``every`` seconds for ``down`` seconds, until ``stop``."""
    while not stop.wait(every):
        proxy.cut()
        cuts[0] += 1
        stop.wait(down)
        proxy.restore()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between cuts")
    ap.add_argument("--down", type=float, default=2.0, help="seconds each cut lasts")
    ap.add_argument(
        "--delay-ms",
        type=float,
        default=100.0,
        help="hold each forwarded chunk (up to 64 KiB) this long: a slow link, so that the "
        "upload lasts long enough to be cut several times",
    )
    ap.add_argument("--max-runs", type=int, default=30)
    args = ap.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-flaky-") as tmp:
        scratch = Path(tmp)
        src = scratch / "src"
        src.mkdir()
        _make_file(src / "big.bin", size)
        with SeaweedServer() as server, NetProxy("127.0.0.1", server.port) as proxy:
            client = server.client()
            client.create_bucket(Bucket="bench")
            env = tool_env(server, scratch)
            env["PYTHONPATH"] = str(REPO)
            argv = [
                sys.executable,
                "-m",
                "watchsync",
                "sync",
                str(src),
                "s3://bench/flaky",
                "--endpoint-url",
                proxy.endpoint,
                "--no-progress",
            ]
            proxy.delay(args.delay_ms / 1000)
            stop, cuts = threading.Event(), [0]
            flapper = threading.Thread(
                target=_flap, args=(proxy, stop, args.every, args.down, cuts)
            )
            t0 = time.monotonic()
            flapper.start()
            runs, rc = 0, -1
            try:
                while runs < args.max_runs:
                    runs += 1
                    done = subprocess.run(argv, env=env, capture_output=True, text=True)
                    rc = done.returncode
                    if rc == 0:
                        break
                    last = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"run {runs}: exit {rc}: {last}", flush=True)
            finally:
                stop.set()
                flapper.join()
            wall = time.monotonic() - t0
            head = client.head_object(Bucket="bench", Key="flaky/big.bin")
            complete = rc == 0 and head["ContentLength"] == size
            pending = client.list_multipart_uploads(Bucket="bench").get("Uploads", [])
            ratio = proxy.sent / size
            print(f"file size            {args.size_mib} MiB")
            cut = f"every {args.every:.0f} s for {args.down:.0f} s ({cuts[0]} cuts)"
            print(f"link                 {args.delay_ms:.0f} ms per chunk, cut {cut}")
            print(f"completed            {'yes' if complete else 'NO'}", end=" ")
            print(f"after {runs} run(s), {wall:.0f} s")
            print(f"bytes sent           {proxy.sent / MIB:.0f} MiB = {ratio:.2f}x the file")
            print(f"pending uploads left {len(pending)}")
            ok = complete and ratio < 1.5
            print(f"{'PASS' if ok else 'FAIL'}: bytes sent < 1.5x the file")
            return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
