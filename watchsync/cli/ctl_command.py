"""``watchsync ctl``: steer a running agent through its control socket (pause, resume,
rescan, status, and the deletes its guards refused)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from watchsync.cli.arguments import examples
from watchsync.cli.health import EXIT_NOT_RUNNING
from watchsync.core.errors import EXIT_OK, EXIT_PARTIAL, WatchsyncError

# The agent's config, socket and state are imported when ctl runs: building the parser
# (every command, `--version` included) imports none of them.


class NotRunning(WatchsyncError):
    """No running agent was found."""

    exit_code = EXIT_NOT_RUNNING


def add_ctl_command(sub: Any) -> None:
    """Register ``ctl`` and its actions on the main parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="the agent's config file, e.g. /etc/watchsync/config.toml",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="the agent's state directory, e.g. ~/.local/state/watchsync",
    )
    common.add_argument(
        "--pid",
        type=int,
        default=argparse.SUPPRESS,
        help="the agent to steer, when several share the state directory, e.g. 4242",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print the raw answer"
    )
    ctl = sub.add_parser(
        "ctl",
        parents=[common],
        help="steer a running agent: pause, resume, rescan, status, refused deletes",
        description="Steer a running agent through its control socket (in the state directory).",
        epilog=examples(
            "watchsync ctl --config /etc/watchsync/config.toml deletes",
            "watchsync ctl deletes approve 3",
            "watchsync ctl pause docs",
        ),
    )
    actions = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("status", parents=[common], help="what each folder is doing now")
    for name, text in (
        ("pause", "stop sending (changes are still collected)"),
        ("resume", "start sending again, after a pass over what changed"),
        ("rescan", "a full pass now: walk the folder and list the prefix"),
    ):
        p = actions.add_parser(name, parents=[common], help=text)
        p.add_argument("folder", nargs="?", help="the folder's name (default: every folder)")
    d = actions.add_parser(
        "deletes",
        parents=[common],
        help="list the deletes the guards refused; approve or reject a batch",
    )
    d.add_argument(
        "decision",
        nargs="?",
        choices=["approve", "reject"],
        help="approve: run the batches once; reject: give them up (none: list them)",
    )
    d.add_argument("ids", nargs="*", metavar="ID", help="batch ids, as listed")


def run_ctl(args: argparse.Namespace) -> int:
    """Send the request the arguments say to the agent; print its answer."""
    request: dict[str, Any] = {"cmd": args.action}
    if args.action in ("pause", "resume", "rescan") and args.folder:
        request["folder"] = args.folder
    if args.action == "deletes" and args.decision:
        if not args.ids:
            raise WatchsyncError(f"deletes {args.decision} needs the ids of refused batches")
        request = {"cmd": args.decision, "ids": args.ids}
    elif args.action == "deletes" and args.ids:
        raise WatchsyncError("deletes: say approve or reject before the ids")
    path = agent_socket(
        getattr(args, "config", None), getattr(args, "state_dir", None), getattr(args, "pid", None)
    )
    from watchsync.agent.control_socket import ask

    try:
        answer = ask(path, request)
    except (OSError, ValueError) as exc:
        raise NotRunning(f"the agent at {path} does not answer: {exc}") from None
    if getattr(args, "json", False):
        print(json.dumps(answer, indent=2, default=str))
    elif answer.get("ok"):
        _show(request["cmd"], answer)
    if not answer.get("ok"):
        if not getattr(args, "json", False):
            print(f"watchsync: error: {answer.get('error')}")
        return EXIT_PARTIAL
    return EXIT_OK


def agent_socket(config: Path | None, state_dir: Path | None, pid: int | None) -> Path:
    """The control socket of the agent the options name: the one serving the config's
    folders, or the only one listening in the state directory."""
    from watchsync.agent.config import default_state_dir, load_config
    from watchsync.agent.control_socket import listening
    from watchsync.fs.platform import pid_alive
    from watchsync.state.store import DB_SUFFIX, store_name

    loaded = load_config(config, flags={"state_dir": state_dir}) if config is not None else None
    where = loaded.state_dir if loaded is not None else state_dir or default_state_dir()
    sockets = listening(where, pid_alive)
    if pid is not None:
        if pid not in sockets:
            raise NotRunning(f"no agent with pid {pid} listens in {where}")
        return sockets[pid]
    if loaded is not None:
        serving = {
            p
            for f in loaded.folders
            if (p := _pid_of(where / (store_name(f.path, f.url) + DB_SUFFIX))) is not None
        }
        sockets = {p: path for p, path in sockets.items() if p in serving}
    if not sockets:
        raise NotRunning(f"no running agent found in {where}")
    if len(sockets) > 1:
        pids = ", ".join(str(p) for p in sorted(sockets))
        raise WatchsyncError(f"several agents listen in {where} (pids {pids}); choose with --pid")
    return next(iter(sockets.values()))


def _pid_of(db: Path) -> int | None:
    """The pid of the agent serving the state database ``db``, if one runs."""
    import sqlite3

    from watchsync.fs.platform import pid_alive
    from watchsync.state.store import StateStore

    try:
        with StateStore.read_only(db) as store:
            status = store.status.fields()
    except (sqlite3.Error, OSError, WatchsyncError):  # never started, or unreadable
        return None
    pid = status.get("pid")
    if status.get("state") == "stopped" or not isinstance(pid, int | str):
        return None
    return int(pid) if pid_alive(int(pid)) else None


def _show(cmd: str, answer: dict[str, Any]) -> None:
    now = time.time()
    if cmd == "status":
        for row in answer.get("folders", []):
            _show_folder(row, now)
    elif cmd in ("pause", "resume", "rescan"):
        verb = {"pause": "paused", "resume": "resumed", "rescan": "rescanning"}[cmd]
        print(f"{verb}: {', '.join(answer.get(cmd, [])) or 'no folders'}")
    elif cmd == "deletes":
        batches = answer.get("batches", [])
        if not batches:
            print("no refused deletes")
        for b in batches:
            if b.get("root"):
                print(
                    f"batch {b['id']} ({b['folder']}, {_clock(b['at'])}): every delete held: "
                    f"{b['why']} (approve accepts this directory as the folder)"
                )
                continue
            print(
                f"batch {b['id']} ({b['folder']}, {_clock(b['at'])}): {b['count']} deletes "
                f"refused: {b['why']}"
            )
            for path in b["delete_in_s3"]:
                print(f"  delete in S3:  {path}")
            for path in b["delete_locally"]:
                print(f"  delete locally: {path}")
        if batches:
            print("approve: watchsync ctl deletes approve ID...; reject: ... deletes reject ID...")
    else:
        for b in answer.get("approved", []):
            if b.get("root"):
                print(f"approved batch {b['id']}: the directory is accepted as the folder")
                continue
            print(f"approved batch {b['id']} ({b['count']} deletes); they run with the next pass")
        for b in answer.get("rejected", []):
            print(
                f"rejected batch {b['id']} ({b['count']} deletes); the next pass copies the "
                "files back"
            )


def _show_folder(row: dict[str, Any], now: float) -> None:
    print(f"{row['name']}: {row.get('path', '')} <-> {row.get('url', '')}")
    since = row.get("state_since")
    state = row["state"] + (f" since {_clock(since)}" if since else "")
    if row.get("state_reason"):
        state += f" ({row['state_reason']})"
    print(f"  state:          {state}")
    if "pending" in row:
        print(f"  pending:        {row['pending']} ({row['in_flight']} in flight)")
        last = row.get("last_reconcile_at")
        print(f"  last pass:      {_clock(last) if last else 'never'}")
    if row.get("refused_deletes"):
        print(f"  refused:        {row['refused_deletes']} deletes (watchsync ctl deletes)")
    if row.get("last_error"):
        print(f"  last error:     {row['last_error']}")


def _clock(stamp: object) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(stamp))))
    except (TypeError, ValueError):
        return str(stamp)
