"""The agent's commands: ``watch``, ``status``, ``reload``, ``check`` and ``ctl``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from watchsync.agent.config import (
    FLAG_KEYS,
    AgentConfig,
    FolderConfig,
    default_state_dir,
    load_config,
)
from watchsync.cli.ctl_command import run_ctl
from watchsync.cli.health import verdict
from watchsync.core.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, WatchsyncError
from watchsync.fs.platform import inotify_watch_limit, pid_alive, request_reload
from watchsync.s3.client import make_client, probe_bucket
from watchsync.s3.location import S3Settings, S3Url
from watchsync.state.status import COUNTERS
from watchsync.state.store import DB_SUFFIX, StateStore, list_stores, store_name

logger = logging.getLogger(__name__)


def run_agent_command(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Dispatch ``status``/``reload``/``check``/``ctl`` (``watch`` goes through
    :func:`run_watch`)."""
    if args.command == "status":
        return _status(args)
    if args.command == "reload":
        return _reload(args)
    if args.command == "ctl":
        return run_ctl(args)
    if args.command == "notifications":
        return _notifications(args)
    return _check(args, argv)


def _notifications(args: argparse.Namespace) -> int:
    """Set up a queue for the prefix's S3 event notifications; print its URL."""
    from watchsync.s3.queue import set_up_notifications

    if not str(args.url).startswith("s3://"):
        raise ConfigError(f"not an S3 URL: {args.url!r} (expected s3://bucket[/prefix])")
    where = S3Url.parse(args.url)
    settings = S3Settings(endpoint_url=args.endpoint_url, profile=args.profile, region=args.region)
    client = make_client(settings)
    try:  # a Failure says what could not be set up
        url = set_up_notifications(client, where, queue_name=args.queue, settings=settings)
    finally:
        client.close()
    print(url)
    print(f"watch with: watchsync watch DIR {where.url()} --notifications-queue {url}")
    return EXIT_OK


def agent_config(args: argparse.Namespace, argv: Sequence[str]) -> AgentConfig:
    """Flags (those given) over environment over file over defaults."""
    command = args.command
    if args.local is not None and args.url is None:
        raise ConfigError(
            f"{command} needs an S3_URL after LOCAL_DIR {args.local!r} "
            "(e.g. s3://bucket/prefix), or --config FILE alone"
        )
    if args.local is None and args.config is None:
        raise ConfigError(f"{command} needs LOCAL_DIR and S3_URL, or --config FILE")
    if args.url is not None:
        S3Url.parse(args.url)  # a malformed URL says so precisely
    flags: dict[str, object] = {
        "path": args.local,
        "url": args.url,
        "direction": args.direction,
        "delete": args.delete,
        "max_delete": args.max_delete,
        "max_delete_percent": args.max_delete_percent,
        "force_delete": args.force_delete,
        "folder_marker": args.folder_marker,
        "debounce": args.debounce,
        "reconcile_interval": args.reconcile_interval,
        "full_walk_interval": args.full_walk_interval,
        "full_list_interval": args.full_list_interval,
        "notifications_queue": args.notifications_queue,
        "state_dir": args.state_dir,
        "ignore_file": args.ignore_file,
        "follow_symlinks": args.follow_symlinks,
        "upload_workers": args.upload_workers,
        "drain_timeout": args.drain_timeout,
        "log_format": args.log_format,
        "log_level": args.log_level,
        "metrics_addr": args.metrics_addr,
        "endpoint_url": args.endpoint_url,
        "profile": args.profile,
        "region": args.region,
        "sse": args.sse,
        "sse_kms_key_id": args.sse_kms_key_id,
        "storage_class": args.storage_class,
        "max_concurrency": args.max_concurrency,
        "bwlimit": args.bwlimit,
        "checksum": args.checksum,
        "keep_mode": args.keep_mode,
        "acl": args.acl,
        "cache_control": args.cache_control,
        "content_type": args.content_type,
        "content_disposition": args.content_disposition,
        "content_encoding": args.content_encoding,
        "content_language": args.content_language,
        "metadata": args.metadata,
        "guess_mime_type": args.guess_mime_type,
    }
    rules = args.filter_rules
    if rules:
        flags["filters"] = rules
    assert set(flags) <= FLAG_KEYS
    return load_config(args.config, flags=flags)


def run_watch(config: AgentConfig, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Serve ``config`` until stopped (logging is already configured by the caller)."""
    from watchsync.agent.supervisor import Supervisor

    unit = default_state_dir()  # systemd's StateDirectory=, when it set one
    if os.environ.get("STATE_DIRECTORY") and unit.resolve() != config.state_dir.resolve():
        logger.warning(
            "state: the state dir %s is not the unit's StateDirectory %s (its sandbox may "
            "not let the agent write there); set state_dir in the config to match",
            config.state_dir,
            unit,
        )

    supervisor = Supervisor(
        config,
        reload=(lambda: agent_config(args, argv)) if args.config else None,
        force_polling=args.force_polling,
        debug=args.debug,
    )
    supervisor.install_signal_handlers()
    return supervisor.run()


# -- status -------------------------------------------------------------------------------


def folder_status(db: Path, now: float) -> dict[str, Any]:
    """Everything ``watchsync status`` shows for one state database."""
    with StateStore.read_only(db) as store:
        meta = store.status.meta()
        status = store.status.fields()
        counters = store.status.counters()
        journal = store.journal.count()
        oldest = store.journal.oldest_age(now)
    pid = status.get("pid")
    state = str(status.get("state") or "unknown")
    # The pid is only trusted while the folder says it runs: a folder removed on reload
    # leaves "stopped" behind in a process that is still alive.
    alive = state != "stopped" and isinstance(pid, int | str) and pid_alive(int(pid))
    if not alive and state != "unknown":
        state = "stopped"
    if alive:
        # What the agent published, as its metrics say: the journal may hold closes that
        # only its next write commits.
        pending = int(status.get("pending") or 0)
        since = status.get("oldest_pending_at")
        oldest = max(0.0, now - float(since)) if since is not None else None
    else:
        pending = journal  # what the next start takes up again
    live = _live_row(db.parent, int(str(pid)), meta) if alive else None
    row = {
        "name": status.get("name"),
        "folder": meta.get("local_root"),
        "url": meta.get("url"),
        "state": state,
        "state_since": status.get("state_since") if alive else None,
        "state_reason": status.get("state_reason") if alive else None,
        "refused_deletes": int(status.get("refused_deletes") or 0) if alive else 0,
        "running": alive,
        "pid": int(pid) if alive and pid is not None else None,
        "pending": pending,
        "in_flight": int(status.get("in_flight") or 0) if alive else 0,
        "oldest_pending_seconds": round(oldest, 1) if oldest is not None else None,
        "last_reconcile_at": status.get("last_reconcile_at"),
        "last_reconcile_duration": status.get("last_reconcile_duration"),
        # Seconds between listings of the prefix, and why they come less often than the
        # reconcile interval (None: they do not).
        "list_every": status.get("list_every"),
        "list_stretched": status.get("list_stretched"),
        "last_error": status.get("last_error"),
        "last_error_at": status.get("last_error_at"),
        "polling": bool(status.get("polling")),
        "totals": counters,
        "state_db": str(db),
    }
    if live is not None:
        # The agent's own word over what it could last write: a full disk under the state
        # keeps the database at "watching" while the folder is in error.
        if live.get("last_error") != row["last_error"]:
            row["last_error_at"] = None  # when it was said is what could not be written
        row.update({k: live[k] for k in _LIVE if k in live})
    return row


# What a running agent's control channel answers for a folder, preferred to the database.
_LIVE = ("state", "state_since", "state_reason", "pending", "in_flight", "last_error")


def _live_row(state_dir: Path, pid: int, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The running agent's own status of the folder ``meta`` describes, over its control
    socket; None where none answers (an older agent, another user's, a busy one)."""
    from watchsync.agent.control_socket import ask, listening

    path = listening(state_dir, lambda p: p == pid).get(pid)
    if path is None:
        return None
    try:
        answer = ask(path, {"cmd": "status"}, timeout=2.0)
    except (OSError, ValueError):
        return None
    for folder in answer.get("folders") or []:
        here = os.path.realpath(str(folder.get("path")))
        if folder.get("url") == meta.get("url") and here == meta.get("local_root"):
            return dict(folder)
    return None


def _unreadable_status(
    db: Path,
    *,
    name: str | None,
    folder: str | None,
    url: str | None,
    state: str,
    error: str | None,
) -> dict[str, Any]:
    """A row for a folder whose state cannot be shown: never started, or unreadable."""
    return {
        "name": name,
        "folder": folder,
        "url": url,
        "state": state,
        "state_since": None,
        "state_reason": None,
        "refused_deletes": 0,
        "running": False,
        "pid": None,
        "pending": 0,
        "in_flight": 0,
        "oldest_pending_seconds": None,
        "last_reconcile_at": None,
        "last_reconcile_duration": None,
        "list_every": None,
        "list_stretched": None,
        "last_error": error,
        "last_error_at": None,
        "polling": False,
        "totals": dict.fromkeys(COUNTERS, 0),
        "state_db": str(db),
    }


def _safe_status(
    db: Path,
    now: float,
    *,
    name: str | None = None,
    folder: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """``folder_status``, or an error row: one bad database must not hide the others."""
    where = {"name": name, "folder": folder, "url": url}
    if not db.is_file():
        return _unreadable_status(db, **where, state="never started", error=None)
    try:
        row = folder_status(db, now)
    except (sqlite3.Error, OSError, WatchsyncError) as exc:
        error = f"cannot read state {db}: {exc}"
        return _unreadable_status(db, **where, state="error", error=error)
    if folder is not None:
        row["folder"] = folder  # as configured, even if the database predates a rename
    if name is not None:
        row["name"] = name
    return row


def _status(args: argparse.Namespace) -> int:
    now = time.time()
    if args.config is not None:
        config = load_config(args.config, flags={"state_dir": args.state_dir})
        rows = [
            _safe_status(
                config.state_dir / (store_name(f.path, f.url) + DB_SUFFIX),
                now,
                name=f.name,
                folder=str(f.path),
                url=f.url,
            )
            for f in config.folders
        ]
    else:
        state_dir = args.state_dir or default_state_dir()
        rows = [_safe_status(db, now) for db in list_stores(state_dir)]
    code = verdict(rows)
    if args.json:
        print(json.dumps({"folders": rows, "exit_code": code}, indent=2, default=str))
        return code
    if not rows:
        print("no folders have been synced yet")
        return code
    for r in rows:
        print(f"{r['name'] or r['folder']}: {r['folder']} <-> {r['url']}")
        state = r["state"]
        if r.get("state_since") and r["running"]:
            state += f" since {_when(r['state_since'], now)}"
        if r.get("state_reason") and r["running"]:
            state += f": {r['state_reason']}"
        print(f"  state:          {state}" + (f" (pid {r['pid']})" if r["pid"] else ""))
        if r["state"] == "never started":
            continue
        print(
            f"  pending:        {r['pending']} ({r['in_flight']} in flight)"
            + (f", oldest {r['oldest_pending_seconds']}s" if r["oldest_pending_seconds"] else "")
        )
        print(f"  last reconcile: {_when(r['last_reconcile_at'], now)}")
        if r.get("refused_deletes"):
            print(
                f"  refused:        {r['refused_deletes']} deletes wait for a decision "
                "(watchsync ctl deletes)"
            )
        if r["list_stretched"]:
            print(f"  S3 listing:     {r['list_stretched']}")
        elif r["list_every"] is not None:
            print(f"  S3 listing:     every {float(str(r['list_every'])):.0f}s")
        if r["last_error"]:
            at = f" ({_when(r['last_error_at'], now)})" if r["last_error_at"] else ""
            print(f"  last error:     {r['last_error']}{at}")
        t = r["totals"]
        print(
            f"  totals:         {t.get('uploaded_files', 0)} uploaded, "
            f"{t.get('downloaded_files', 0)} downloaded, "
            f"{t.get('deleted_remote', 0) + t.get('deleted_local', 0)} deleted, "
            f"{t.get('conflicts', 0)} conflicts, {t.get('errors', 0)} errors"
        )
    return code


def _when(stamp: object, now: float) -> str:
    if stamp is None:
        return "never"
    try:
        ago = now - float(str(stamp))
    except ValueError:
        return str(stamp)
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(stamp))))
    return f"{text} ({ago:.0f}s ago)"


# -- reload -------------------------------------------------------------------------------


def _reload(args: argparse.Namespace) -> int:
    """Leave a reload request in the agent's state directory; it looks every second."""
    if args.config is not None:
        state_dir = load_config(args.config, flags={"state_dir": args.state_dir}).state_dir
    else:
        state_dir = args.state_dir or default_state_dir()
    request_reload(state_dir)
    print(f"reload requested: the agent using {state_dir} re-reads its config within a second")
    return EXIT_OK


# -- check --------------------------------------------------------------------------------


def _check(args: argparse.Namespace, argv: Sequence[str]) -> int:
    config = agent_config(args, argv)
    what = f"config: {args.config}" if args.config else "settings"
    print(f"{what}: ok ({len(config.folders)} folders)")
    failures = 0
    limit = inotify_watch_limit()
    for cfg in config.folders:
        problems = check_folder(cfg, inotify_limit=limit)
        verdict = "ok" if not problems else "FAIL: " + "; ".join(problems)
        print(f"folder {cfg.path} <-> {cfg.url}: {verdict}")
        failures += bool(problems)
    return EXIT_OK if not failures else EXIT_PARTIAL


def check_folder(cfg: FolderConfig, *, inotify_limit: int | None) -> list[str]:
    """Problems that would stop this folder from syncing (empty when it is fine)."""
    problems: list[str] = []
    if not cfg.path.is_dir():
        problems.append(f"{cfg.path} is not a directory")
    elif inotify_limit is not None:
        dirs = sum(1 for _ in _dirs(cfg.path))
        if dirs > inotify_limit:
            problems.append(
                f"{dirs} directories exceed fs.inotify.max_user_watches={inotify_limit}; raise it "
                "(sysctl -w fs.inotify.max_user_watches=524288) or the agent will poll"
            )
    where = cfg.where
    client = make_client(replace(cfg.s3, connect_timeout=5, read_timeout=15))
    try:
        problems += probe_bucket(client, where)
    finally:
        client.close()
    return problems


def _dirs(root: Path) -> Any:
    for dirpath, _dirnames, _files in os.walk(root):
        yield dirpath
