"""Command line: ``watchsync sync|watch|status|reload|check|ctl|completion|manpage``.

The only module that configures logging handlers and turns errors into exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from watchsync import __version__
from watchsync.cli.agent_commands import agent_config, run_agent_command, run_watch
from watchsync.cli.ctl_command import add_ctl_command
from watchsync.cli.output import Reporter
from watchsync.cli.shell import add_shell_commands, completion_script, man_page
from watchsync.cli.sync_command import SyncRequest, run_sync
from watchsync.core.errors import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, WatchsyncError
from watchsync.core.filters import Filters, ordered_rules
from watchsync.core.model import Direction
from watchsync.s3.location import S3Settings, S3Url

logger = logging.getLogger("watchsync")


def add_s3_options(p: argparse.ArgumentParser) -> None:
    """S3 connection and object options shared by every command that talks to S3."""
    g = p.add_argument_group("S3")
    g.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:8333")
    g.add_argument("--profile", help="AWS profile from the shared config files")
    g.add_argument("--region", help="AWS region")
    g.add_argument("--sse", choices=["AES256", "aws:kms"], help="server-side encryption")
    g.add_argument("--sse-kms-key-id", help="KMS key for --sse aws:kms")
    g.add_argument("--storage-class", help="storage class of uploaded objects")
    g.add_argument("--max-concurrency", type=_positive_int, help="parallel transfers (16)")
    g.add_argument("--bwlimit", help="cap on total transfer rate, bytes/s (K, M, G suffixes)")
    g.add_argument(
        "--no-checksum",
        dest="checksum",
        action="store_false",
        default=None,
        help="send and verify no CRC32C of the bytes (faster; TCP/TLS only)",
    )
    add_metadata_options(g)


def add_metadata_options(g: Any) -> None:
    """What of a file besides its bytes an object keeps (its mtime always)."""
    g.add_argument(
        "--keep-mode",
        action="store_true",
        default=None,
        help="keep each file's permission bits in its object's metadata and restore them "
        "on download (X-Amz-Meta-Mode, as rclone's --metadata); mtimes are always kept",
    )


def add_output_option(p: argparse.ArgumentParser) -> None:
    """``--output json``: the run's summary as one JSON object, the last line on stdout."""
    p.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="json: end with a summary object for scripts (counts, bytes, seconds, exit "
        "code), printed even with --quiet",
    )


def add_debug_option(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the command too; SUPPRESS keeps one given before it."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="log every detail"
    )


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """aws-style filters; their interleaved order is recovered from argv."""
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN")
    p.add_argument("--include", action="append", default=[], metavar="PATTERN")
    p.add_argument("--no-follow-symlinks", dest="follow_symlinks", action="store_false")
    p.add_argument("--follow-symlinks", dest="follow_symlinks", action="store_true")
    p.set_defaults(follow_symlinks=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    # No abbreviations: filters are re-read from argv, which only knows the full names.
    parser = argparse.ArgumentParser(
        prog="watchsync",
        description="Keep a local folder and an S3 bucket in sync.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"watchsync {__version__}")
    parser.add_argument("--debug", action="store_true", help="log every detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "sync", help="one-shot sync, a drop-in for `aws s3 sync`", allow_abbrev=False
    )
    s.add_argument("src", metavar="SRC", help="local directory or s3://bucket[/prefix]")
    s.add_argument("dst", metavar="DST", help="s3://bucket[/prefix] or local directory")
    s.add_argument("--delete", action="store_true", help="delete what is not in the source")
    s.add_argument("--dryrun", action="store_true", help="print the actions, change nothing")
    s.add_argument("--size-only", action="store_true", help="compare sizes only")
    s.add_argument(
        "--exact-timestamps",
        action="store_true",
        help="downloads: copy same-size files unless the timestamps are equal",
    )
    s.add_argument("--quiet", action="store_true", help="print nothing")
    s.add_argument("--only-show-errors", action="store_true", help="print errors only")
    s.add_argument(
        "--no-progress", action="store_true", help="no progress bar and no summary line"
    )
    add_output_option(s)
    add_filter_options(s)
    add_s3_options(s)
    add_debug_option(s)

    add_agent_commands(sub)
    add_shell_commands(sub)
    return parser


def add_agent_commands(sub: Any) -> None:
    """Register ``watch``, ``status`` and ``check`` on the main parser."""
    w = sub.add_parser(
        "watch", help="keep a folder and an S3 prefix in sync continuously", allow_abbrev=False
    )
    w.add_argument("local", nargs="?", metavar="LOCAL_DIR")
    w.add_argument("url", nargs="?", metavar="S3_URL")
    w.add_argument("--config", type=Path, help="TOML file with global settings and folders")
    w.add_argument("--direction", choices=["both", "push", "pull"], help="default: both")
    w.add_argument("--delete", action="store_true", default=None, help="propagate deletes")
    w.add_argument("--max-delete", type=int, help="most deletes per pass (1000)")
    w.add_argument(
        "--force-delete",
        action="store_true",
        default=None,
        help="allow a pass with more than --max-delete deletes",
    )
    w.add_argument("--debounce", type=float, help="seconds a path must be quiet (0.5)")
    w.add_argument("--reconcile-interval", type=float, help="seconds between periodic passes (300)")
    w.add_argument(
        "--full-walk-interval",
        type=float,
        help="seconds between walks of the whole folder; passes between trust the watcher "
        "(86400; 0 walks every pass)",
    )
    w.add_argument(
        "--full-list-interval",
        type=float,
        help="seconds between listings of the whole prefix (default: every periodic pass, "
        "less often when a listing would take over 0.5%% of a core; 0 lists every pass)",
    )
    w.add_argument("--state-dir", help="where the state databases live")
    w.add_argument("--ignore-file", help="gitignore-style file (default .watchsyncignore)")
    w.add_argument(
        "--upload-workers",
        type=int,
        help="upload workers (16); each sends up to 32 files ready together side by side",
    )
    w.add_argument("--drain-timeout", type=float, help="seconds to finish uploads on stop (30)")
    w.add_argument("--log-format", choices=["text", "json"])
    w.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    w.add_argument("--metrics-addr", help="serve Prometheus metrics on HOST:PORT")
    w.add_argument(
        "--force-polling",
        action="store_true",
        help="poll instead of inotify (network file systems)",
    )
    add_filter_options(w)
    w.set_defaults(follow_symlinks=None)  # not given: the file's or the default (follow)
    add_s3_options(w)
    add_debug_option(w)

    s = sub.add_parser("status", help="what each folder's agent is doing")
    s.add_argument("--config", type=Path)
    s.add_argument("--state-dir", type=Path)
    s.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser(
        "reload",
        help="make a running agent re-read its config file (SIGHUP's equivalent, every OS)",
    )
    r.add_argument("--config", type=Path, help="the agent's config file (for its state_dir)")
    r.add_argument("--state-dir", type=Path, help="the agent's state directory")

    c = sub.add_parser("check", help="validate a config and test each folder's bucket")
    c.add_argument("--config", type=Path, required=True)
    add_debug_option(s)
    add_debug_option(c)
    add_ctl_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 some files failed, 2 usage/connection)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
        return EXIT_OK
    if args.command == "manpage":
        print(man_page(parser), end="")
        return EXIT_OK
    configure_logging(debug=args.debug, fmt=getattr(args, "log_format", None) or "text")
    try:
        if args.command == "sync":
            return _sync(args, args_list)
        if args.command == "watch":
            config = agent_config(args, args_list)
            configure_logging(debug=args.debug, fmt=config.log_format, level=config.log_level)
            return run_watch(config, args, args_list)
        return run_agent_command(args, args_list)
    except WatchsyncError as exc:
        print(f"watchsync: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("watchsync: cancelled", file=sys.stderr)
        return 130


def _sync(args: argparse.Namespace, argv: Sequence[str]) -> int:
    req = sync_request(args, argv)
    # The bar, and the summary line that replaces it at the end, are for a person at a
    # terminal; a pipe gets the aws-format lines alone (or the JSON summary it asks for).
    shown = not (args.no_progress or args.quiet or args.only_show_errors) and sys.stdout.isatty()
    reporter = Reporter(
        quiet=args.quiet,
        only_show_errors=args.only_show_errors,
        progress=shown,
        summary=shown,
        json_summary=args.output == "json",
    )
    try:
        with reporter:
            run_sync(req, reporter)
    except WatchsyncError as exc:
        reporter.summary(exit_code=exc.exit_code, dry_run=req.dry_run, error=str(exc))
        raise
    t = reporter.totals
    code = EXIT_PARTIAL if (t.failed or t.skipped) else EXIT_OK
    reporter.summary(exit_code=code, dry_run=req.dry_run)
    return code


def sync_request(args: argparse.Namespace, argv: Sequence[str]) -> SyncRequest:
    """Validate ``sync`` arguments into a request; bad combinations raise UsageError."""
    from watchsync.agent.config import parse_size
    from watchsync.core.errors import UsageError

    src_s3, dst_s3 = args.src.startswith("s3://"), args.dst.startswith("s3://")
    if src_s3 == dst_s3:
        both = "two S3 URLs" if src_s3 else "two local paths"
        raise UsageError(f"sync needs one local directory and one s3:// URL, got {both}")
    direction = Direction.DOWN if src_s3 else Direction.UP
    local, url = (args.dst, args.src) if src_s3 else (args.src, args.dst)
    if args.sse_kms_key_id and args.sse != "aws:kms":
        raise UsageError("--sse-kms-key-id needs --sse aws:kms")
    try:
        bwlimit = parse_size(args.bwlimit) if args.bwlimit else None
    except WatchsyncError as exc:
        raise UsageError(f"--bwlimit: {exc}") from exc
    return SyncRequest(
        local=local,
        url=S3Url.parse(url),
        direction=direction,
        delete=args.delete,
        dry_run=args.dryrun,
        size_only=args.size_only,
        exact_timestamps=args.exact_timestamps,
        follow_symlinks=args.follow_symlinks,
        filters=Filters.of(ordered_rules(argv)),
        s3=S3Settings(
            endpoint_url=args.endpoint_url,
            profile=args.profile,
            region=args.region,
            max_concurrency=args.max_concurrency or 16,
            sse=args.sse,
            sse_kms_key_id=args.sse_kms_key_id,
            storage_class=args.storage_class,
            bwlimit=bwlimit,
            checksum=args.checksum is not False,
            keep_mode=bool(args.keep_mode),
        ),
    )


def configure_logging(*, debug: bool, fmt: str, level: str = "INFO") -> None:
    """Handlers live here only: text lines on stderr, or JSON objects (``--log-format json``).
    Under systemd (stderr is the journal's stream) each line starts with its syslog priority
    and text lines leave the time to the journal.

    Called again by ``watch`` once its configuration file has said what it wants."""
    from watchsync.cli.logs import JournalFormatter, JsonFormatter, TextFormatter, under_journald
    from watchsync.cli.output import ConsoleLogHandler

    journal = under_journald(os.environ, sys.stderr)
    handler: logging.Handler
    formatter: logging.Formatter
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        formatter = JsonFormatter()
    else:
        # On a terminal, through the rich console so a progress display stays intact.
        handler = ConsoleLogHandler() if sys.stderr.isatty() else logging.StreamHandler(sys.stderr)
        when = "" if journal else "%(asctime)s "
        formatter = TextFormatter(when + "%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else level)
    if not debug:
        for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "watchdog"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
