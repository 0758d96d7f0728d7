#!/usr/bin/env python3
"""Benchmark the ``watchsync watch`` agent: latency, burst throughput, idle cost.

    scripts/bench_watch.py                                    # full run (~10 min)
    scripts/bench_watch.py --idle-files 2000 --idle-seconds 10 --burst-files 1000   # quick look

Starts its own SeaweedFS on 127.0.0.1 pinned to --server-cpu and runs the agent pinned to
--client-cpu (``taskset -c``). This harness pins itself to --harness-cpu (default: the
server's CPU) so its polling never competes with the agent for the agent's CPU.

  (a) latency  write one small file, then poll head_object every --poll-ms until it is
               visible; --samples samples (after one unrecorded warm-up) at --debounce,
               for two writers: in place (the close-after-write event lets the agent skip
               most of the debounce) and atomic rename (a moved-in event: full debounce)
  (b) burst    write --burst-files files of --burst-size bytes into --burst-dirs existing
               directories as fast as possible (the writer on the agent's CPU, as a
               user's tool would be, at a higher priority); time from the first write to
               the timestamp of the agent's last ``upload:`` line (one listing at the end
               checks S3 holds them all); --burst-rounds rounds.  The watched folder is on
               --live-parent (a tmpfs by default): on this machine's disk, writeback held
               the writer itself for up to 10 s at times, counted against the agent alone
  (b') sync    after each round, the same files uploaded by ``watchsync sync`` (pinned
               like the agent) to a fresh prefix: wall and CPU beside the agent's
  (c) idle     --idle-files files in --idle-dirs directories exist BEFORE the measured
               agents start (a first agent uploaded them and stopped; the others start on
               its state).  Once ``watchsync status --json`` says watching with nothing
               pending, sample /proc/PID/stat (utime+stime) and /proc/PID/status (VmRSS)
               every second and count the passes in the log:
               - at default settings for two default intervals (600 s; --idle-seconds):
                 the background and the periodic passes, each listing the prefix;
               - listing every pass (``--full-list-interval 0``) and walking every pass
                 (``--full-walk-interval 0``), at --idle-interval, for the CPU of one
                 listing pass and of the daily walk.
               Idle at defaults = the default window's CPU (its listings included; where
               the CPU budget would stretch their interval, a listing per the stretched
               interval instead) + a walk a day
  (e) adopt    a third agent, new state, ``--direction push``, on the same folder and
               bucket: time and CPU of its first reconcile (adopting every equal file)
               against the no-op first reconcile of the second agent (existing state)
  (d) feed     two agents at default settings (reconcile every 300 s) on two folders sharing
               one prefix; write a file in A, poll B's folder every 20 ms until it is there;
               --feed-samples samples (the change feed carries it, not the reconcile); then
               a third agent starts while A writes 200 new files over 10 s: time until its
               folder holds every file A has
  (f) foreign  another client writes, overwrites (other bytes, same size) and deletes an
               object under the prefix of an agent (--delete) on --foreign-files files at
               --reconcile-interval --foreign-interval, otherwise defaults: time until the
               folder shows each, --foreign-samples rounds; then ``notify``: the same with
               S3 event notifications (``watchsync notifications``, --notifications-queue)
               against moto's server (S3 and SQS in one process), on a 300-file tree

Floors: latency p50 <= debounce + 250 ms; idle CPU at defaults <= 0.5 % of one core
(100,000 files, listings included); a listing pass <= 1.0 s of CPU per 100,000 objects;
cross-agent p50 <= 2 s, p99 <= 5 s; burst <= 1.0x ``watchsync sync``; adoption under push
<= 2x a no-op reconcile; a foreign write, overwrite and delete in the folder within 10 s
(listing) and 2 s (notifications).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

# The venv has boto3, watchsync and weed; the system Python may have none.
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
from bench_common import (  # noqa: E402
    check_cpus,
    check_line,
    count_objects,
    fmt_table,
    make_tree,
    percentile,
    pinned_server,
    run_measured,
    save_json,
    tool_env,
    which,
)
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
# One attempt per poll: the loop is the retry, and a 404 must come back at once.
POLL_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 1},
    max_pool_connections=4,
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--debounce", type=float, default=0.5, help="agent --debounce, seconds (0.5)")
    p.add_argument("--samples", type=int, default=50, help="latency samples (50)")
    p.add_argument("--poll-ms", type=float, default=5.0, help="head_object poll interval (5)")
    p.add_argument("--burst-files", type=int, default=10_000, help="files in the burst (10000)")
    p.add_argument("--burst-size", type=int, default=4096, help="bytes per burst file (4096)")
    p.add_argument("--burst-dirs", type=int, default=100, help="directories of the burst (100)")
    p.add_argument(
        "--burst-rounds", type=int, default=3, help="bursts, each beside sync; median (3)"
    )
    p.add_argument(
        "--idle-files", type=int, default=100_000, help="files watched while idle (100000)"
    )
    p.add_argument("--idle-dirs", type=int, default=1000, help="directories they live in (1000)")
    p.add_argument("--idle-size", type=int, default=128, help="bytes per idle file (128)")
    p.add_argument(
        "--idle-interval",
        type=float,
        default=45.0,
        help="--reconcile-interval of the listing and walking runs (45)",
    )
    p.add_argument("--idle-seconds", type=float, help="idle window (two idle intervals and 10 s)")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for SeaweedFS (0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for the agent (1)")
    p.add_argument("--harness-cpu", type=int, help="CPU for this script (default: --server-cpu)")
    p.add_argument(
        "--live-parent",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where the latency and burst phases' watched folder is made (/dev/shm, a "
        "tmpfs: the writer is not held up by the disk's writeback; the state and the "
        "server stay on disk)",
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="deadline of any one wait, s (1800)"
    )
    p.add_argument("--feed-samples", type=int, default=20, help="cross-agent samples (20)")
    p.add_argument(
        "--foreign-files", type=int, default=3000, help="files of the foreign-writer tree (3000)"
    )
    p.add_argument(
        "--foreign-samples", type=int, default=5, help="foreign write/overwrite/delete rounds (5)"
    )
    p.add_argument(
        "--foreign-interval",
        type=float,
        default=3.0,
        help="--reconcile-interval of the foreign-writer agent (3; otherwise default settings)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: latency,burst,sync,idle,fullwalk,adopt,feed,"
        "foreign,notify",
    )
    p.add_argument(
        "--agent-args", default="", help="more flags for every measured agent (quoted, split)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.harness_cpu is None:
        args.harness_cpu = args.server_cpu
    if args.idle_seconds is None:
        args.idle_seconds = 2 * DEFAULT_INTERVAL
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    return args


# -- the agent ---------------------------------------------------------------------------


@dataclass
class Agent:
    """One running ``watchsync watch`` process and where its state and log live."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    log: Path
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid  # taskset execs the agent in place

    def status(self) -> dict[str, Any] | None:
        """The agent's row from ``watchsync status --state-dir ... --json``, if any yet."""
        res = subprocess.run(
            [_watchsync(), "status", "--state-dir", str(self.state_dir), "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            return None
        try:
            rows = json.loads(res.stdout)["folders"]
        except (ValueError, KeyError):
            return None
        return rows[0] if rows else None

    def wait_settled(self, *, timeout: float, interval: float = 1.0) -> dict[str, Any]:
        """Block until the agent is watching with nothing pending or in flight."""
        deadline = time.monotonic() + timeout
        row: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}\n{self.log_tail()}")
            row = self.status()
            if row and row["state"] == "watching" and row["pending"] == 0 and row["in_flight"] == 0:
                return row
            time.sleep(interval)
        raise RuntimeError(
            f"agent not settled after {timeout:.0f} s (last status {row})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _watchsync() -> str:
    exe = which("watchsync")
    if exe is None:
        raise SystemExit("watchsync not installed: pip install -e . into .venv")
    return exe


@contextmanager
def running_agent(
    local: Path,
    url: str,
    *,
    endpoint: str,
    env: dict[str, str],
    scratch: Path,
    cpu: int,
    extra: list[str],
    name: str | None = None,
) -> Iterator[Agent]:
    """Start the agent pinned to ``cpu``; SIGTERM it (SIGKILL after 60 s) on the way out.
    Agents of one ``name`` (default: the folder's) share their state directory and log."""
    state_dir = scratch / f"state-{name or local.name}"
    log = scratch / f"agent-{name or local.name}.log"
    argv = [
        "taskset", "-c", str(cpu), _watchsync(), "watch", str(local), url,
        "--endpoint-url", endpoint, "--state-dir", str(state_dir), *extra,
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    agent = Agent(proc, state_dir, log, env)
    try:
        yield agent
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def proc_sample(pid: int) -> tuple[int, int, int]:
    """(utime+stime ticks, VmRSS KiB, threads) of a live process, all threads included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    rss = threads = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return ticks, rss, threads


def vm_hwm_kib(pid: int) -> int:
    """Peak RSS so far (VmHWM) of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# -- the phases --------------------------------------------------------------------------


DEFAULT_INTERVAL = 300.0  # the agent's default --reconcile-interval
DEFAULT_FULL_WALK = 86400.0  # and --full-walk-interval
DEFAULT_FULL_LIST = DEFAULT_INTERVAL  # listings follow the reconcile interval
LIST_BUDGET = 0.005  # the share of a core past which the agent stretches that interval
START_SKEW = 60.0  # how far back a starting agent applies the feed's entries

LATENCY_MODES = {
    "write": "open, write, close in place (close-after-write event)",
    "rename": "write a temp file outside the folder, rename it in (moved-in event)",
}


def measure_latency(
    client: Any,
    agent: Agent,
    root: Path,
    bucket: str,
    prefix: str,
    *,
    mode: str,
    scratch: Path,
    samples: int,
    poll: float,
    timeout: float,
) -> list[float | None]:
    """Seconds from just before each write until head_object finds the object (None: timed out)."""
    sub = root / f"lat-{mode}"
    sub.mkdir()
    time.sleep(1.0)  # let the watcher register the new directory before the clock starts
    out: list[float | None] = []
    for i in range(-1, samples):  # sample -1 warms connections and caches; not recorded
        name = f"s{i + 1:03d}.txt" if i >= 0 else "warmup.txt"
        key = f"{prefix}/{sub.name}/{name}"
        data = f"latency sample {i} {time.time_ns()}\n".encode()
        start = time.perf_counter()
        if mode == "rename":
            tmp = scratch / f"{name}.tmp"  # same file system, outside the watched folder
            tmp.write_bytes(data)
            os.replace(tmp, sub / name)
        else:
            (sub / name).write_bytes(data)
        seen: float | None = None
        while time.perf_counter() - start < timeout:
            try:
                client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in (
                    "404",
                    "NoSuchKey",
                    "NotFound",
                ):
                    raise
            else:
                seen = time.perf_counter() - start
                break
            time.sleep(poll)
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited with {agent.proc.returncode}\n{agent.log_tail()}")
        if i >= 0:
            out.append(seen)
        time.sleep(0.1)  # a quiet gap, so samples do not share a debounce window
    return out


def write_slowly(root: Path, files: int, seconds: float) -> None:
    """``files`` new small files in ``root/busy/``, spread over ``seconds``."""
    (root / "busy").mkdir(exist_ok=True)
    for i in range(files):
        (root / "busy" / f"b{i:04d}.txt").write_bytes(f"busy {i}\n".encode())
        time.sleep(seconds / files)


def holds_all(root: Path, source: Path, agent: Agent, *, timeout: float) -> bool:
    """Whether ``root`` comes to hold every file of ``source`` (names and sizes)."""

    def files(top: Path) -> dict[str, int]:
        return {
            str(p.relative_to(top)): p.stat().st_size
            for p in top.rglob("*")
            if p.is_file() and ".watchsync" not in p.parts
        }

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        want = files(source)
        if want and files(root) == want:
            return True
        if agent.proc.poll() is not None:
            raise RuntimeError(f"agent exited\n{agent.log_tail()}")
        time.sleep(0.2)
    return False


def measure_feed(a: Agent, b: Agent, root_a: Path, root_b: Path, *, samples: int) -> list[float]:
    """Seconds from a write in A's folder until the file is in B's (None: not in 60 s)."""
    out: list[float] = []
    for i in range(-1, samples):  # sample -1 warms up; not recorded
        name = f"feed-{i + 1:03d}.txt"
        data = f"feed sample {i} {time.time_ns()}\n".encode()
        start = time.perf_counter()
        (root_a / name).write_bytes(data)
        target = root_b / name
        while time.perf_counter() - start < 60:
            if target.exists() and target.read_bytes() == data:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError(f"{name} never reached B\n{b.log_tail()}")
        if i >= 0:
            out.append(time.perf_counter() - start)
        for agent in (a, b):
            if agent.proc.poll() is not None:
                raise RuntimeError(f"agent exited\n{agent.log_tail()}")
        time.sleep(0.3 + random.random())  # a random phase against both agents' 1 s ticks
    return out


def measure_burst(
    client: Any,
    agent: Agent,
    root: Path,
    bucket: str,
    prefix: str,
    *,
    name: str,
    files: int,
    size: int,
    dirs: int,
    timeout: float,
    writer_cpu: int,
    server_pid: int,
) -> dict[str, Any]:
    """Write ``files`` files at once into ``name``; time until all are in S3.

    The writer runs on ``writer_cpu`` (the agent's: a user's tool runs beside the agent,
    not on the server's machine) at a higher priority.  The end is the timestamp of the
    agent's last ``upload:`` line (written once S3 confirmed the PUT), read from its log
    four times a second: listing 10,000 keys, or reading the log in a tight loop, would
    load the server's core while the agent is measured and not while ``sync`` is.  One
    listing at the end checks that every object is there."""
    burst = root / name
    upload_line = re.compile(
        rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \S+ \S+ upload: \S+: ("
        + re.escape(name.encode())
        + rb"/\S+)",
        re.M,
    )
    for d in range(max(1, dirs)):
        (burst / f"d{d:05d}").mkdir(parents=True)
    time.sleep(1.0)  # the watcher adds the new directories before the clock starts
    ticks0, _, _ = proc_sample(agent.pid)
    server0, _, _ = proc_sample(server_pid)
    since = log_size(agent.log)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    home = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {writer_cpu})
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    start = time.time()
    try:
        make_tree(burst, files=files, size=size, dirs=dirs, seed=b"burst ")
    finally:
        written = time.time() - start
        with contextlib.suppress(PermissionError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        os.sched_setaffinity(0, home)
    seen: set[bytes] = set()
    last = 0.0
    all_in = None
    with agent.log.open("rb") as log:
        log.seek(since)
        buf = b""
        while time.time() - start < timeout:
            chunk = log.read()
            buf += chunk
            lines, _, buf = buf.rpartition(b"\n")
            for m in upload_line.finditer(lines):
                seen.add(m[3])
                stamp = time.mktime(time.strptime(m[1].decode(), "%Y-%m-%d %H:%M:%S"))
                last = max(last, stamp + int(m[2]) / 1000)
            if len(seen) >= files:
                all_in = last - start
                break
            if agent.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {agent.proc.returncode}\n{agent.log_tail()}")
            time.sleep(0.25)
    ticks1, rss, _ = proc_sample(agent.pid)
    server1, _, _ = proc_sample(server_pid)
    count = count_objects(client, bucket, f"{prefix}/{name}/")
    if count < files:
        all_in = None  # the log said so, S3 does not
    return {
        "files": files,
        "size": size,
        "write_seconds": written,
        "all_visible_seconds": all_in,
        "visible_count": count,
        "files_per_second": files / all_in if all_in else None,
        "agent_cpu_seconds": (ticks1 - ticks0) / CLK_TCK,
        # Up to the log read that saw the last upload (at most 0.25 s past it).
        "server_cpu_seconds": (server1 - server0) / CLK_TCK,
        "agent_rss_mib_after": rss / 1024,
        "agent_peak_rss_mib": vm_hwm_kib(agent.pid) / 1024,
    }


PASS_LINE = re.compile(r"reconcile: \S+ done in ([0-9.]+)s \(planned: (.*); local side: (.*)\)")


def watch_setup(log: Path) -> float | None:
    """Seconds the agent took to set its watches up (its ``watch: ... in Ns`` line)."""
    m = re.search(r"watch: \S+: watching .* in ([0-9.]+)s", log.read_text(errors="replace"))
    return float(m[1]) if m else None


def log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def passes_logged(log: Path, since: int) -> list[tuple[float, str, str]]:
    """(seconds, planned, local side) of each pass logged after byte ``since`` of ``log``."""
    with log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [(float(m[1]), m[2], m[3]) for m in PASS_LINE.finditer(text)]


def read_counters(agent: Agent) -> dict[str, int]:
    """The counters of a stopped agent's state (``watchsync status --json``)."""
    row = agent.status() or {}
    counters = row.get("totals", {})
    return counters if isinstance(counters, dict) else {}


def sync_same_files(
    src: Path,
    endpoint: str,
    client: Any,
    *,
    env: dict[str, str],
    cpu: int,
    prefix: str,
    server_pid: int,
) -> dict[str, Any]:
    """``watchsync sync`` of the burst's files to a fresh prefix, pinned like the agent."""
    with contextlib.suppress(Exception):  # made by an earlier round
        client.create_bucket(Bucket="bench-sync")
    argv = [_watchsync(), "sync", str(src), f"s3://bench-sync/{prefix}", "--endpoint-url",
            endpoint, "--no-progress"]  # fmt: skip
    server0, _, _ = proc_sample(server_pid)
    m = run_measured(argv, env=env, cpu=cpu)
    server1, _, _ = proc_sample(server_pid)
    if m.returncode != 0:
        raise RuntimeError(f"watchsync sync failed: {m.stderr_tail[-1000:]}")
    return {"wall": m.wall, "cpu": m.cpu, "peak_rss_mib": m.peak_rss_mib,
            "server_cpu": (server1 - server0) / CLK_TCK,
            "objects": count_objects(client, "bench-sync", f"{prefix}/")}  # fmt: skip


def measure_idle(
    agent: Agent, *, seconds: float, interval: float, align: bool = True
) -> dict[str, Any]:
    """CPU % of one core and RSS of the agent over an idle window, sampled every second;
    the periodic passes in the window are counted from the agent's log, and the idle cost at
    the default interval is derived from them (see the module docstring)."""
    since = log_size(agent.log)
    ticks0, rss0, threads = proc_sample(agent.pid)
    t0 = time.monotonic()
    rss_samples = [rss0]
    per_second: list[float] = []
    last_ticks, last_t = ticks0, t0
    logged = 0
    # The window runs ``seconds`` and then on to the end of the pass under way, so it holds
    # whole passes only (it starts just after one).
    while (elapsed := time.monotonic() - t0) < seconds or (
        align
        and len(passes_logged(agent.log, since)) == logged
        and elapsed < seconds + interval + 300
    ):
        if elapsed < seconds:
            logged = len(passes_logged(agent.log, since))
        time.sleep(1.0)
        ticks, rss, threads = proc_sample(agent.pid)
        now = time.monotonic()
        rss_samples.append(rss)
        per_second.append((ticks - last_ticks) / CLK_TCK / (now - last_t) * 100)
        last_ticks, last_t = ticks, now
    elapsed = last_t - t0
    cpu_s = (last_ticks - ticks0) / CLK_TCK
    passes = passes_logged(agent.log, since)
    # The background rate (the 1 s status/feed tick): the mean of the quiet seconds, those
    # below 10 % (a pass keeps the agent's core busy for seconds).
    quiet = [v for v in per_second if v < 10.0]
    background = sum(quiet) / len(quiet) if quiet else 0.0
    per_pass = max(0.0, cpu_s - background / 100 * elapsed) / len(passes) if passes else None
    with agent.log.open("rb") as f:
        f.seek(since)
        listings = f.read().decode(errors="replace").count("S3 side: listed")
    return {
        "seconds": elapsed,
        "interval": interval,
        "passes": len(passes),
        "listings": listings,
        "pass_seconds": [p[0] for p in passes],
        "pass_local_side": sorted({p[2] for p in passes}),
        "background_cpu_percent": background,
        "cpu_seconds_per_pass": per_pass,
        "cpu_percent_at_default_interval": None
        if per_pass is None
        else background + per_pass / DEFAULT_INTERVAL * 100,
        "cpu_seconds": cpu_s,
        "cpu_percent": cpu_s / elapsed * 100,
        "cpu_percent_max_1s": max(per_second, default=0.0),
        "rss_mib_mean": sum(rss_samples) / len(rss_samples) / 1024,
        "rss_mib_max": max(rss_samples) / 1024,
        "rss_mib_start": rss_samples[0] / 1024,
        "rss_mib_end": rss_samples[-1] / 1024,
        "peak_rss_mib": vm_hwm_kib(agent.pid) / 1024,
        "threads": threads,
    }


# -- main --------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_cpus(args.server_cpu, args.client_cpu, args.harness_cpu)
    os.sched_setaffinity(0, {args.harness_cpu})
    results: dict[str, Any] = {}
    checks: list[tuple[str, bool | None, str]] = []
    problems: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp,
        tempfile.TemporaryDirectory(prefix="bench-watch-live-", dir=args.live_parent) as live_tmp,
        pinned_server(cpu=args.server_cpu) as server,
    ):
        scratch = Path(tmp)
        env = tool_env(server, scratch)
        client = server.client(config=POLL_CONFIG)
        print(
            f"SeaweedFS {server.endpoint} pid {server.pid} on CPU {args.server_cpu}; "
            f"agent on CPU {args.client_cpu}; harness on CPU {args.harness_cpu}"
        )

        if not {"latency", "burst"} <= args.skip:
            live = Path(live_tmp) / "live"
            live.mkdir()
            client.create_bucket(Bucket="bench-live")
            extra = ["--debounce", str(args.debounce), *args.agent_args.split()]
            with running_agent(
                live, "s3://bench-live/p", endpoint=server.endpoint, env=env, scratch=scratch,
                cpu=args.client_cpu, extra=extra,
            ) as agent:  # fmt: skip
                agent.wait_settled(timeout=args.timeout, interval=0.5)
                print(
                    f"agent pid {agent.pid}: "
                    f"watchsync watch {live} s3://bench-live/p {' '.join(extra)}"
                )
                if "latency" not in args.skip:
                    lat_results = {}
                    for mode in LATENCY_MODES:
                        lat = measure_latency(
                            client, agent, live, "bench-live", "p", mode=mode, scratch=live.parent,
                            samples=args.samples, poll=args.poll_ms / 1000, timeout=60.0,
                        )  # fmt: skip
                        lat_results[mode] = _latency_summary(lat, args)
                        if lat_results[mode]["timeouts"]:
                            problems.append(
                                f"latency {mode}: "
                                f"{lat_results[mode]['timeouts']} samples never arrived"
                            )
                    results["latency"] = lat_results
                    _print_latency(lat_results, args)
                    floor = args.debounce + 0.25
                    for mode, summary in lat_results.items():
                        p50 = summary["p50"]
                        checks.append(
                            (
                                f"latency ({mode}) p50 <= debounce + 250 ms "
                                f"({floor * 1000:.0f} ms)",
                                None if p50 is None else p50 <= floor,
                                "no sample arrived" if p50 is None else f"p50 {p50 * 1000:.0f} ms",
                            )
                        )
                if "burst" not in args.skip:
                    rounds = []
                    for k in range(args.burst_rounds):
                        name = f"burst{k}"
                        print(f"\n(b) burst {k + 1}/{args.burst_rounds}: writing "
                              f"{args.burst_files} files ...", flush=True)  # fmt: skip
                        burst = measure_burst(
                            client, agent, live, "bench-live", "p", name=name,
                            files=args.burst_files, size=args.burst_size, dirs=args.burst_dirs,
                            timeout=args.timeout, writer_cpu=args.client_cpu,
                            server_pid=server.pid,
                        )  # fmt: skip
                        _print_burst(burst)
                        if burst["all_visible_seconds"] is None:
                            problems.append(
                                f"{name}: only {burst['visible_count']} of "
                                f"{args.burst_files} arrived"
                            )
                        if "sync" not in args.skip:
                            burst["sync"] = sync_same_files(
                                live / name, server.endpoint, client, env=env,
                                cpu=args.client_cpu, prefix=name, server_pid=server.pid,
                            )  # fmt: skip
                            agent_s = burst["all_visible_seconds"] or float("nan")
                            sync_s = burst["sync"]["wall"]
                            burst["ratio"] = agent_s / sync_s
                            print(
                                f"    watchsync sync, same {args.burst_files} files: "
                                f"{sync_s:.1f} s wall, {burst['sync']['cpu']:.1f} s CPU, "
                                f"server {burst['sync']['server_cpu']:.1f} s CPU; "
                                f"agent/sync = {burst['ratio']:.2f}x"
                            )
                        rounds.append(burst)
                    results["burst"] = rounds
                    ratios = sorted(r["ratio"] for r in rounds if "ratio" in r)
                    if ratios:
                        median = ratios[len(ratios) // 2]
                        print(f"    agent/sync per round: {', '.join(f'{r:.2f}x' for r in ratios)}")
                        checks.append(
                            (
                                "burst <= 1.0x watchsync sync (median of the rounds)",
                                median <= 1.0,
                                f"median {median:.2f}x over {len(ratios)} rounds",
                            )
                        )

        if not {"idle", "fullwalk", "adopt"} <= args.skip:
            idle = scratch / "idle"
            print(
                f"\n(c) idle: creating {args.idle_files} files in {args.idle_dirs} dirs ...",
                flush=True,
            )
            t = time.perf_counter()
            make_tree(
                idle, files=args.idle_files, size=args.idle_size, dirs=args.idle_dirs, seed=b"idle "
            )
            print(f"    created in {time.perf_counter() - t:.1f} s", flush=True)
            client.create_bucket(Bucket="bench-idle")
            periodic = ["--debounce", str(args.debounce), *args.agent_args.split()]
            probe = ["--reconcile-interval", str(args.idle_interval)]
            # The seed uploads the tree; the measured agents start on its state, so no window
            # holds the after-effects of 100,000 uploads (feed entries, WAL checkpoints).
            runs: list[tuple[str, str, list[str], float, float]] = [
                ("seed", "uploading the tree", [], 0.0, 0.0),
                ("idle", "default settings", [], DEFAULT_INTERVAL, args.idle_seconds + 10),
                ("listing", "listing every pass", [*probe, "--full-list-interval", "0"],
                 args.idle_interval, 2 * args.idle_interval),
                ("fullwalk", "walking every pass", [*probe, "--full-walk-interval", "0"],
                 args.idle_interval, 2 * args.idle_interval),
            ]  # fmt: skip
            for phase, label, more, interval, seconds in runs:
                if phase in args.skip:
                    continue
                if phase == "idle":
                    # The seed's last feed entries (a large change: the whole tree) would
                    # still be inside a starting agent's look-back, and it would list once.
                    time.sleep(START_SKEW + 5)
                with running_agent(
                    idle, "s3://bench-idle/p", endpoint=server.endpoint, env=env, scratch=scratch,
                    cpu=args.client_cpu, extra=periodic + more,
                ) as agent:  # fmt: skip
                    print(f"    agent ({label}): {' '.join(periodic + more)}", flush=True)
                    started = time.perf_counter()
                    row = agent.wait_settled(timeout=args.timeout)
                    first = time.perf_counter() - started
                    ticks, _, _ = proc_sample(agent.pid)
                    uploaded = count_objects(client, "bench-idle", "p/")
                    uploaded -= count_objects(client, "bench-idle", "p/.watchsync/")  # the feed
                    print(
                        f"    first reconcile settled after {first:.1f} s "
                        f"(status said {row.get('last_reconcile_duration')} s; agent CPU so far "
                        f"{ticks / CLK_TCK:.1f} s); {uploaded} objects in the bucket"
                    )
                    if uploaded != args.idle_files:
                        problems.append(
                            f"{phase}: {uploaded} objects after the first reconcile, "
                            f"expected {args.idle_files}"
                        )
                    if phase == "seed":
                        results["seed"] = {
                            "first_reconcile_seconds": first,
                            "agent_cpu_seconds": ticks / CLK_TCK,
                            "peak_rss_mib": vm_hwm_kib(agent.pid) / 1024,
                            "watch_setup_seconds": watch_setup(agent.log),
                        }
                        continue
                    print(f"    sampling pid {agent.pid} for {seconds:.0f} s ...", flush=True)
                    # At defaults the window is the figure itself: it need not end on a pass.
                    res = measure_idle(
                        agent, seconds=seconds, interval=interval, align=phase != "idle"
                    )
                    res |= {
                        "label": label,
                        "files": args.idle_files,
                        "dirs": args.idle_dirs,
                        "first_reconcile_seconds": first,
                        "first_reconcile_status_seconds": row.get("last_reconcile_duration"),
                        "first_reconcile_files_per_second": args.idle_files / first,
                        "agent_cpu_seconds_before_window": ticks / CLK_TCK,
                        "objects_after_first_reconcile": uploaded,
                    }
                    results[phase] = res
                    _print_idle(res)
                    if res["passes"] < 2:
                        problems.append(f"{phase}: {res['passes']} passes in the window, want 2")
            if "sync" not in args.skip:
                print("\n(c') watchsync sync of the same tree (nothing to do)", flush=True)
                argv = [_watchsync(), "sync", str(idle), "s3://bench-idle/p", "--endpoint-url",
                        server.endpoint, "--no-progress"]  # fmt: skip
                m = run_measured(argv, env=env, cpu=args.client_cpu)
                results["sync_noop"] = {
                    "wall": m.wall,
                    "cpu": m.cpu,
                    "peak_rss_mib": m.peak_rss_mib,
                    "returncode": m.returncode,
                }
                print(
                    f"    {m.wall:.1f} s wall, {m.cpu:.1f} s CPU, peak RSS {m.peak_rss_mib:.0f} MiB"
                )
            if "idle" in results:
                # The default window holds the periodic passes, listings included, unless
                # the budget stretches them past it: then they are taken out of the window
                # and spread over the stretched interval.
                res = results["idle"]
                seconds = res["seconds"]
                window = res["cpu_percent"]
                listing = (results.get("listing") or {}).get("cpu_seconds_per_pass")
                parts = [f"{window:.2f} % measured over {seconds:.0f} s"]
                at_default = window
                if listing is not None:
                    every = max(DEFAULT_FULL_LIST, listing / LIST_BUDGET)
                    res["listing_every_seconds"] = every
                    if every > DEFAULT_FULL_LIST:
                        listed = res.get("listings", 0)
                        at_default -= listed * listing / seconds * 100
                        at_default += listing / every * 100
                        parts.append(
                            f"its {listed} listings out, a listing of {listing:.2f} CPU s every "
                            f"{every:.0f} s (stretched by the budget) in"
                        )
                    else:
                        parts.append(
                            f"listings of {listing:.2f} CPU s every {every:.0f} s inside it"
                        )
                walk = (results.get("fullwalk") or {}).get("cpu_seconds_per_pass")
                if walk is not None:
                    at_default += walk / DEFAULT_FULL_WALK * 100
                    parts.append(f"a walk of {walk:.1f} CPU s a day")
                res["cpu_percent_at_defaults"] = at_default
                checks.append(
                    (
                        f"idle CPU at defaults <= 0.5 % of one core ({args.idle_files} files)",
                        at_default <= 0.5,
                        f"{at_default:.2f} % = " + " + ".join(parts),
                    )
                )
                if listing is not None:
                    per_100k = listing / args.idle_files * 100_000
                    res["listing_cpu_per_100k"] = per_100k
                    checks.append(
                        (
                            "a listing pass <= 1.0 s of CPU per 100,000 objects",
                            per_100k <= 1.0,
                            f"{listing:.2f} s for {args.idle_files} objects = {per_100k:.2f} s",
                        )
                    )
            if "adopt" not in args.skip:
                print("\n(e) adopt: a new agent, no state, --direction push", flush=True)
                with running_agent(
                    idle, "s3://bench-idle/p", endpoint=server.endpoint, env=env, scratch=scratch,
                    cpu=args.client_cpu, extra=[*periodic, "--direction", "push"], name="adopt",
                ) as agent:  # fmt: skip
                    started = time.perf_counter()
                    row = agent.wait_settled(timeout=args.timeout, interval=0.5)
                    first = time.perf_counter() - started
                    ticks, _, _ = proc_sample(agent.pid)
                state = read_counters(agent)
                adopt = {
                    "seconds": first,
                    "status_seconds": row.get("last_reconcile_duration"),
                    "cpu_seconds": ticks / CLK_TCK,
                    "uploaded_files": state.get("uploaded_files", 0),
                }
                results["adopt"] = adopt
                noop = results.get("fullwalk") or results.get("listing") or results.get("idle")
                print(
                    f"    adopted {args.idle_files} files in {first:.1f} s (status said "
                    f"{adopt['status_seconds']} s), agent CPU {adopt['cpu_seconds']:.1f} s, "
                    f"uploaded {adopt['uploaded_files']}"
                )
                if noop is not None and noop.get("first_reconcile_status_seconds"):
                    base = noop["first_reconcile_status_seconds"]
                    ratio = (adopt["status_seconds"] or first) / base
                    adopt["noop_reconcile_seconds"] = base
                    adopt["ratio"] = ratio
                    print(f"    no-op reconcile (existing state) {base:.1f} s: {ratio:.2f}x")
                    checks.append(
                        (
                            "adoption under push <= 2x a no-op reconcile",
                            ratio <= 2.0,
                            f"{adopt['status_seconds']} s vs {base:.1f} s ({ratio:.2f}x)",
                        )
                    )
        for phase in ("foreign", "notify"):
            if phase in args.skip:
                continue
            notify = phase == "notify"
            title = (
                "with S3 event notifications (moto's server)"
                if notify
                else (f"default settings, --reconcile-interval {args.foreign_interval:g}")
            )
            shown = min(args.foreign_files, 300) if notify else args.foreign_files
            print(f"\n(f) foreign writer, {shown} files, {title}", flush=True)
            with contextlib.ExitStack() as stack:
                endpoint = server.endpoint
                fenv = env
                if notify:
                    endpoint = stack.enter_context(moto_server(args.server_cpu))
                    fenv = {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x"}
                fclient = boto3.client(  # the other writer
                    "s3", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id=fenv["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=fenv["AWS_SECRET_ACCESS_KEY"], config=POLL_CONFIG,
                )  # fmt: skip
                bucket = f"bench-{phase}"
                fclient.create_bucket(Bucket=bucket)
                root = scratch / phase
                # moto's server is no SeaweedFS: a small tree (the way of an event does not
                # depend on the tree's size).
                files = min(args.foreign_files, 300) if notify else args.foreign_files
                make_tree(root, files=files, size=128, dirs=30, seed=b"foreign ")
                extra = ["--delete"]
                if notify:
                    out = subprocess.run(
                        [_watchsync(), "notifications", f"s3://{bucket}/p", "--queue", bucket,
                         "--endpoint-url", endpoint],
                        env=fenv, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    extra += ["--notifications-queue", out.stdout.splitlines()[0]]
                else:
                    extra += ["--reconcile-interval", str(args.foreign_interval)]
                agent = stack.enter_context(
                    running_agent(
                        root, f"s3://{bucket}/p", endpoint=endpoint, env=fenv, scratch=scratch,
                        cpu=args.client_cpu, extra=extra,
                    )
                )  # fmt: skip
                agent.wait_settled(timeout=args.timeout, interval=0.5)
                lat = measure_foreign(
                    fclient, root, bucket, "p", samples=args.foreign_samples, timeout=60.0
                )
                summary = _foreign_summary(lat)
                results[phase] = summary
                floor = 2.0 if notify else 10.0
                worst = [v["max"] for v in summary.values()]
                ok = all(w is not None and w <= floor for w in worst)
                checks.append(
                    (
                        f"foreign write, overwrite, delete in the folder within {floor:g} s "
                        f"({title})",
                        ok,
                        ", ".join(
                            f"{k}: p50 {v['p50']:.2f} s, max {v['max']:.2f} s"
                            if v["max"] is not None
                            else f"{k}: {v['timeouts']} timeouts"
                            for k, v in summary.items()
                        ),
                    )
                )
                fclient.close()

        if "feed" not in args.skip:
            print(f"\n(d) feed: two agents on one prefix, {args.feed_samples} samples", flush=True)
            client.create_bucket(Bucket="bench-feed")
            roots = [scratch / "feed-a", scratch / "feed-b"]
            for root in roots:
                root.mkdir()
            with (
                running_agent(
                    roots[0], "s3://bench-feed/p", endpoint=server.endpoint, env=env,
                    scratch=scratch, cpu=args.client_cpu, extra=[],
                ) as agent_a,
                running_agent(
                    roots[1], "s3://bench-feed/p", endpoint=server.endpoint, env=env,
                    scratch=scratch, cpu=args.client_cpu, extra=[],
                ) as agent_b,
            ):  # fmt: skip
                agent_a.wait_settled(timeout=args.timeout, interval=0.5)
                agent_b.wait_settled(timeout=args.timeout, interval=0.5)
                lat = sorted(measure_feed(agent_a, agent_b, *roots, samples=args.feed_samples))
                p50, p99 = percentile(lat, 50), percentile(lat, 99)
                results["feed"] = {"samples": len(lat), "p50": p50, "p99": p99, "max": lat[-1]}
                print(f"\n== (d) feed: A -> B at default settings ==\n"
                      f"p50 {p50:.2f} s  p99 {p99:.2f} s  max {lat[-1]:.2f} s")  # fmt: skip
                checks.append(("cross-agent p50 <= 2 s", p50 <= 2.0, f"p50 {p50:.2f} s"))
                checks.append(("cross-agent p99 <= 5 s", p99 <= 5.0, f"p99 {p99:.2f} s"))
                late_root = scratch / "feed-c"
                late_root.mkdir()
                writer = threading.Thread(target=write_slowly, args=(roots[0], 200, 10.0))
                writer.start()  # A is busy: 200 new files over 10 s
                time.sleep(2.0)
                with running_agent(
                    late_root, "s3://bench-feed/p", endpoint=server.endpoint, env=env,
                    scratch=scratch, cpu=args.client_cpu, extra=[],
                ) as agent_c:  # fmt: skip
                    started = time.perf_counter()
                    writer.join()
                    held = holds_all(late_root, roots[0], agent_c, timeout=120.0)
                    took = time.perf_counter() - started if held else None
                results["feed_late"] = {"seconds": took}
                print(f"    a third agent started beside busy A held all of A's files after "
                      f"{'never' if took is None else f'{took:.1f} s'}")  # fmt: skip
                checks.append(
                    (
                        "a late agent beside a busy one holds all its files within 60 s",
                        took is not None and took <= 60.0,
                        "not within 120 s" if took is None else f"{took:.1f} s",
                    )
                )
        client.close()

    print("\n== floors ==")
    for check in checks:
        print(check_line(*check))
    if problems:
        print("\n== problems ==")
        for problem in problems:
            print(f"- {problem}")
    if args.json:
        params = {
            k: (sorted(v) if isinstance(v, set) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        }
        save_json(
            args.json,
            {
                "benchmark": "watch",
                "params": params,
                "results": results,
                "floors": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks],
                "problems": problems,
            },
        )
        print(f"results written to {args.json}")
    return 1 if problems else 0


# -- (f) foreign writers ------------------------------------------------------------------

FOREIGN_KINDS = ("write", "overwrite (same size)", "delete")


def measure_foreign(
    client: Any, root: Path, bucket: str, prefix: str, *, samples: int, timeout: float
) -> dict[str, list[float | None]]:
    """Another client writes a new object, overwrites it with other bytes of the same size
    and deletes it; each time, seconds until the folder shows it (polled every 20 ms)."""
    out: dict[str, list[float | None]] = {k: [] for k in FOREIGN_KINDS}
    # One round first, not recorded: what follows the first reconcile (its uploads' events,
    # the first listing passes) settles meanwhile.
    for i in range(-1, samples):
        name = f"foreign-{i + 1:03d}.txt"
        path = root / name
        key = f"{prefix}/{name}"
        # (what, the body written or None for a delete): each waited for in the folder.
        for kind, body in zip(FOREIGN_KINDS, (b"A" * 64, b"B" * 64, None), strict=True):
            began = time.perf_counter()
            if body is None:
                client.delete_object(Bucket=bucket, Key=key)
            else:
                client.put_object(Bucket=bucket, Key=key, Body=body)
            took: float | None = None
            while time.perf_counter() - began < timeout:
                with contextlib.suppress(OSError):
                    there = path.read_bytes() if path.exists() else None
                    if there == body:
                        took = time.perf_counter() - began
                        break
                time.sleep(0.02)
            if i >= 0:
                out[kind].append(took)
            shown = "timeout" if took is None else f"{took:.2f} s"
            print(f"    {kind}: {shown}{' (warm-up)' if i < 0 else ''}", flush=True)
    return out


def _foreign_summary(lat: dict[str, list[float | None]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind, values in lat.items():
        got = sorted(v for v in values if v is not None)
        summary[kind] = {
            "samples": len(values),
            "timeouts": len(values) - len(got),
            "p50": got[len(got) // 2] if got else None,
            "max": got[-1] if got else None,
        }
    return summary


@contextmanager
def moto_server(cpu: int) -> Iterator[str]:
    """moto's server (S3 and SQS in one process, notifications delivered), pinned to
    ``cpu``: what the notifications phase runs against (SeaweedFS has no SQS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
         "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _latency_summary(lat: list[float | None], args: argparse.Namespace) -> dict[str, Any]:
    got = [v for v in lat if v is not None]
    return {
        "debounce": args.debounce,
        "samples": len(lat),
        "timeouts": len(lat) - len(got),
        "p50": percentile(got, 50) if got else None,
        "p90": percentile(got, 90) if got else None,
        "p99": percentile(got, 99) if got else None,
        "min": min(got, default=None),
        "max": max(got, default=None),
        "values": lat,
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _print_latency(by_mode: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n== (a) write-to-visible latency: debounce {args.debounce} s, "
        f"head_object every {args.poll_ms:g} ms =="
    )
    rows = [
        [
            mode,
            s["samples"],
            _ms(s["p50"]),
            _ms(s["p90"]),
            _ms(s["p99"]),
            _ms(s["min"]),
            _ms(s["max"]),
            s["timeouts"],
        ]
        for mode, s in by_mode.items()
    ]
    print(
        fmt_table(
            ["writer", "samples", "p50 ms", "p90 ms", "p99 ms", "min ms", "max ms", "timeouts"],
            rows,
        )
    )
    for mode, text in LATENCY_MODES.items():
        print(f"  {mode}: {text}")


def _print_burst(b: dict[str, Any]) -> None:
    print(f"\n== (b) burst: {b['files']} files x {b['size']} B ==")
    print(
        fmt_table(
            [
                "written s",
                "all visible s",
                "files/s",
                "agent CPU s",
                "server CPU s",
                "agent RSS MiB",
                "agent peak RSS MiB",
            ],
            [
                [
                    b["write_seconds"],
                    b["all_visible_seconds"],
                    b["files_per_second"],
                    b["agent_cpu_seconds"],
                    b["server_cpu_seconds"],
                    b["agent_rss_mib_after"],
                    b["agent_peak_rss_mib"],
                ]
            ],
        )
    )


def _print_idle(r: dict[str, Any]) -> None:
    print(
        f"\n== (c) idle, {r['label']}: {r['files']} files in {r['dirs']} dirs watched, "
        f"{r['seconds']:.0f} s window, reconcile every {r['interval']:g} s =="
    )
    print(
        fmt_table(
            [
                "CPU %",
                "CPU s",
                "passes",
                "CPU s/pass",
                "background %",
                "at 300 s %",
                "RSS MiB max",
                "peak RSS MiB",
                "1st reconcile s",
            ],
            [
                [
                    f"{r['cpu_percent']:.2f}",
                    r["cpu_seconds"],
                    r["passes"],
                    r["cpu_seconds_per_pass"],
                    f"{r['background_cpu_percent']:.2f}",
                    None
                    if r["cpu_percent_at_default_interval"] is None
                    else f"{r['cpu_percent_at_default_interval']:.2f}",
                    r["rss_mib_max"],
                    r["peak_rss_mib"],
                    r["first_reconcile_seconds"],
                ]
            ],
        )
    )
    print(f"  pass wall s: {r['pass_seconds']}; local side: {r['pass_local_side']}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
