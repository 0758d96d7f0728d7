"""Command line: ``watchsync sync|watch|status|reload|check|ctl|completion|manpage``.

The only module that configures logging handlers and turns errors into exit codes.  Every
error is one line on stderr; the usage text is shown only on request (``--help``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from watchsync import __version__
from watchsync.core.errors import (
    AWS_CANCELLED,
    AWS_FAILED,
    AWS_INVALID,
    EXIT_OK,
    WatchsyncError,
)

if TYPE_CHECKING:
    import argparse
    import logging

# The commands' own modules (boto3, s3transfer, rich, the agent) are imported by the command
# that runs: `--version`, `--help`, `completion` and a usage error import none of them.  The
# parser's (argparse, the options' modules) are imported once there is something to parse:
# `--version` alone is answered without them (about 60 ms of a 0.1 s start).
VERSION_FLAGS = (["--version"], ["-V"])

__all__ = ["build_parser", "configure_logging", "main"]

# The message of watchdog's warning about a directory watched twice (see configure_logging).
WATCHDOG_RACE = r"Callback with id .* already exists for watch"

_CHECKSUMS = [
    "CRC64NVME",
    "CRC32",
    "SHA256",
    "SHA1",
    "CRC32C",
    "SHA512",
    "XXHASH64",
    "XXHASH3",
    "XXHASH128",
]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also the source of the shell completion and the man page)."""
    from watchsync.cli.arguments import Parser, add_agent_commands, examples
    from watchsync.cli.ctl_command import add_ctl_command
    from watchsync.cli.shell import add_shell_commands

    # No abbreviations: a prefix of one option must not silently mean another.
    parser = Parser(
        prog="watchsync",
        description="Keep a local folder and an S3 bucket in sync: once, like `aws s3 sync`, "
        "or continuously, within a second of every change.",
        epilog=examples(
            "watchsync sync ./photos s3://my-bucket/photos",
            "watchsync watch ./photos s3://my-bucket/photos --delete",
            "watchsync status",
            "watchsync sync --help    # every option of a command",
        ),
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"watchsync {__version__}",
        help="print the version and exit",
    )
    parser.add_argument("--debug", action="store_true", help="log every detail to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_sync_command(sub)
    add_agent_commands(sub)
    add_ctl_command(sub)
    add_shell_commands(sub)
    return parser


def add_sync_command(sub: Any) -> None:
    """``sync``: aws's flags, rules and output, one run."""
    from watchsync.cli.arguments import (
        add_debug_option,
        add_filter_options,
        add_object_options,
        add_s3_options,
        aws_number,
        examples,
        percentage,
        whole_number,
    )

    s = sub.add_parser(
        "sync",
        help="one-shot sync, a drop-in for `aws s3 sync`",
        description="Copy new and changed files from SRC to DST, one of them a local "
        "directory and the other s3://bucket[/prefix]; the flags, rules, output lines and "
        "exit codes are aws s3 sync's (0 done, 1 something failed, 2 something was "
        "skipped, 255 the command could not start).",
        epilog=examples(
            "watchsync sync ./site s3://www.example.com --delete --exclude '*.psd'",
            "watchsync sync s3://backups/db ./restore --exact-timestamps",
            "watchsync sync ./site s3://www.example.com --cache-control max-age=300 "
            "--acl public-read",
            "watchsync sync ./docs s3://b/docs --delete --max-delete 100 --dryrun",
        ),
    )
    s.add_argument("src", metavar="SRC", help="local directory or s3://bucket[/prefix]")
    s.add_argument("dst", metavar="DST", help="s3://bucket[/prefix] or local directory")
    what = s.add_argument_group("what is copied and deleted")
    what.add_argument(
        "--delete",
        action="store_true",
        help="delete files in DST that are not in SRC (after all transfers, "
        "and none at all if anything failed or was skipped)",
    )
    what.add_argument(
        "--max-delete",
        type=whole_number(0),
        metavar="N",
        help="refuse every delete (exit 1) when more than N would be made, e.g. 100",
    )
    what.add_argument(
        "--max-delete-percent",
        type=percentage,
        default=50.0,
        metavar="PERCENT",
        help="where an agent's state knows the pair: refuse every delete (exit 1) when more "
        "than PERCENT of the files synced would go, or the source is empty (50), e.g. 25",
    )
    what.add_argument(
        "--force-delete",
        action="store_true",
        help="run the deletes --max-delete, --max-delete-percent or an empty source held",
    )
    what.add_argument("--dryrun", action="store_true", help="print what would be done, do nothing")
    compare = what.add_mutually_exclusive_group()
    compare.add_argument(
        "--size-only", action="store_true", help="copy when the sizes differ, whatever the times"
    )
    compare.add_argument(
        "--exact-timestamps",
        action="store_true",
        help="downloads: copy same-size files unless their times are equal",
    )
    add_filter_options(what, exclude_from=True)
    what.add_argument(
        "--ignore-glacier-warnings",
        action="store_true",
        help="skip archived (GLACIER, DEEP_ARCHIVE) objects without a warning or exit code 2",
    )
    what.add_argument(
        "--force-glacier-transfer",
        action="store_true",
        help="try to download archived objects too (they fail unless restored)",
    )
    what.add_argument(
        "--case-conflict",
        choices=["ignore", "skip", "warn", "error"],
        default="ignore",
        help="keys that differ only by case: only 'ignore' (the default) is supported",
    )
    out = s.add_argument_group("output")
    out.add_argument("--quiet", action="store_true", help="print nothing")
    out.add_argument(
        "--only-show-errors", action="store_true", help="print errors and warnings only"
    )
    out.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar and no summary line (both shown only on a terminal)",
    )
    out.add_argument(
        "--output",
        choices=["text", "json", "table"],
        default="text",
        help="json: end with a summary object for scripts (counts, bytes, seconds, exit "
        "code), printed even with --quiet; text (and aws's table): the lines alone",
    )
    add_debug_option(out)
    objects = s.add_argument_group("objects written")
    add_object_options(objects, sync=True)
    objects.add_argument(
        "--grants",
        nargs="+",
        metavar="PERMISSION=GRANTEE",
        help="grant read, readacl, writeacl or full to a grantee, e.g. "
        "read=uri=http://acs.amazonaws.com/groups/global/AllUsers",
    )
    objects.add_argument(
        "--website-redirect",
        metavar="URL",
        help="redirect website requests for the objects, e.g. /index.html",
    )
    objects.add_argument(
        "--expires",
        metavar="WHEN",
        help="when the objects stop being cacheable, e.g. 2030-01-01T00:00:00Z",
    )
    objects.add_argument(
        "--sse-c",
        nargs="?",
        const="AES256",
        choices=["AES256"],
        help="encrypt with a key of your own (--sse-c-key); downloads decrypt with it",
    )
    objects.add_argument(
        "--sse-c-key",
        metavar="KEY",
        help="the 32-byte key of --sse-c, not base64-encoded, e.g. fileb://key.bin",
    )
    objects.add_argument(
        "--checksum-algorithm",
        choices=_CHECKSUMS,
        metavar="ALGORITHM",
        help="checksum of uploads: CRC32C, the one watchsync sends (the default; "
        "--no-checksum for none); aws's others are refused",
    )
    objects.add_argument(
        "--checksum-mode",
        choices=["ENABLED"],
        help="verify downloads against their checksums (always, unless --no-checksum)",
    )
    conn = s.add_argument_group("S3")
    add_s3_options(conn)
    conn.add_argument(
        "--request-payer",
        nargs="?",
        const="requester",
        choices=["requester"],
        help="confirm that you pay for a requester-pays bucket",
    )
    conn.add_argument(
        "--page-size",
        type=aws_number("--page-size", int),
        metavar="N",
        help="keys per listing request (1000, the most S3 allows), e.g. 500",
    )
    conn.add_argument(
        "--no-verify-ssl",
        dest="verify_ssl",
        action="store_false",
        help="do not check the endpoint's TLS certificate",
    )
    conn.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA certificates to check the endpoint's with, e.g. ca.pem",
    )
    conn.add_argument(
        "--no-sign-request",
        dest="sign_requests",
        action="store_false",
        help="send requests unsigned (a public bucket; no credentials)",
    )
    conn.add_argument(
        "--cli-connect-timeout",
        type=aws_number("--cli-connect-timeout", float, positive=True),
        metavar="SECONDS",
        help="give up connecting after this long (5)",
    )
    conn.add_argument(
        "--cli-read-timeout",
        type=aws_number("--cli-read-timeout", float, positive=True),
        metavar="SECONDS",
        help="abandon a request silent this long (30)",
    )
    same = s.add_argument_group(
        "accepted as by aws, without effect here (copies between buckets, output formats "
        "other aws commands read)"
    )
    same.add_argument(
        "--source-region", metavar="REGION", help="region of a source bucket, e.g. us-west-2"
    )
    same.add_argument(
        "--metadata-directive",
        choices=["COPY", "REPLACE"],
        help="whether copies keep their source's metadata",
    )
    same.add_argument(
        "--sse-c-copy-source",
        nargs="?",
        const="AES256",
        choices=["AES256"],
        help="the algorithm of a copy source's own key",
    )
    same.add_argument("--query", metavar="JMESPATH", help="aws's output filter, e.g. 'Contents'")
    same.add_argument("--no-paginate", action="store_true", help="aws's paging switch")
    same.add_argument("--color", choices=["on", "off", "auto"], help="aws's colour switch")
    same.add_argument("--v2-debug", action="store_true", help="aws's upgrade warnings")
    same.add_argument(
        "--sse-c-copy-source-key",
        metavar="KEY",
        help="a copy source's own key, e.g. fileb://old-key.bin",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code: ``sync`` gives aws's (0, 1 failed, 2 skipped,
    255 could not start, 130 cancelled), the agent's commands 0, 1 or 2 (usage,
    configuration or connection)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list in VERSION_FLAGS:  # what the parser's version action prints, sooner
        print(f"watchsync {__version__}")
        return EXIT_OK
    from watchsync.cli.arguments import ParseError
    from watchsync.cli.shell import completion_script, man_page

    try:
        parser = build_parser()
        args = parse(parser, args_list)
    except SystemExit as exc:  # --help, --version
        return int(exc.code) if isinstance(exc.code, int) else 0
    except ParseError as exc:
        return _fail(str(exc), exc.exit_code)
    except WatchsyncError as exc:  # a value aws converts after parsing (sync: 255)
        return _fail(str(exc), AWS_INVALID if _command(args_list) == "sync" else exc.exit_code)
    if args.command == "completion":
        print(completion_script(parser, args.shell), end="")
        return EXIT_OK
    if args.command == "manpage":
        print(man_page(parser), end="")
        return EXIT_OK
    configure_logging(debug=args.debug, fmt=getattr(args, "log_format", None) or "text")
    if args.command == "sync":
        return _sync(args)
    try:
        if args.command == "watch":
            from watchsync.cli.agent_commands import agent_config, run_watch

            config = agent_config(args, args_list)
            configure_logging(debug=args.debug, fmt=config.log_format, level=config.log_level)
            return run_watch(config, args, args_list)
        from watchsync.cli.agent_commands import run_agent_command

        return run_agent_command(args, args_list)
    except WatchsyncError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("watchsync: cancelled", file=sys.stderr)
        return 130


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed, with the checks argparse cannot express.  Unknown options are
    aws's code 255 for ``sync`` (``Unknown options: ...``), a parse error elsewhere."""
    from watchsync.cli.arguments import ParseError

    args, unknown = parser.parse_known_args(argv)
    see = f" (see '{parser.prog} {args.command} --help')"
    if unknown:
        if args.command == "sync":
            raise UnknownOptions(f"Unknown options: {', '.join(unknown)}")
        raise ParseError(f"unrecognized arguments: {' '.join(unknown)}{see}")
    if getattr(args, "quiet", False) and args.debug:
        raise ParseError(f"argument --debug: not allowed with argument --quiet{see}")
    return args


class UnknownOptions(WatchsyncError):
    """Options no command knows (aws: code 255)."""

    exit_code = AWS_INVALID


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _fail(message: str, code: int) -> int:
    print(f"watchsync: error: {message}", file=sys.stderr)
    return code


def _sync(args: argparse.Namespace) -> int:
    """One ``sync`` run, ended the way aws ends it: its exit code, and a fatal S3 error as
    ``fatal error: ...``; then the summary (a line on a terminal, JSON when asked for)."""
    from watchsync.cli.output import Reporter
    from watchsync.cli.sync_command import exit_code, run_sync
    from watchsync.cli.sync_options import sync_request
    from watchsync.core.errors import ConfigError, UsageError

    try:
        req = sync_request(args)
    except (UsageError, ConfigError) as exc:
        return _fail(str(exc), AWS_INVALID)
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
    except (UsageError, ConfigError) as exc:
        reporter.summary(exit_code=AWS_INVALID, dry_run=req.dry_run, error=str(exc))
        return _fail(str(exc), AWS_INVALID)
    except WatchsyncError as exc:
        from watchsync.s3.client import aws_message  # botocore's words; loaded when needed

        line = f"fatal error: {aws_message(exc)}"
        reporter.problem(line)
        reporter.summary(exit_code=AWS_FAILED, dry_run=req.dry_run, error=line)
        return AWS_FAILED
    except KeyboardInterrupt:
        reporter.problem("cancelled: ctrl-c received")
        return AWS_CANCELLED
    code = exit_code(reporter)
    reporter.summary(exit_code=code, dry_run=req.dry_run)
    return code


def configure_logging(*, debug: bool, fmt: str, level: str = "INFO") -> None:
    """Handlers live here only: text lines on stderr, or JSON objects (``--log-format json``).
    Under systemd (stderr is the journal's stream) each line starts with its syslog priority
    and text lines leave the time to the journal.

    Called again by ``watch`` once its configuration file has said what it wants."""
    import logging
    import warnings

    from watchsync.cli.logs import JournalFormatter, JsonFormatter, TextFormatter, under_journald

    journal = under_journald(os.environ, sys.stderr)
    handler: logging.Handler
    formatter: logging.Formatter
    if fmt == "json":
        handler = logging.StreamHandler(sys.stderr)
        formatter = JsonFormatter()
    else:
        # On a terminal, through the rich console so a progress display stays intact.
        if sys.stderr.isatty():
            from watchsync.cli.bar import ConsoleLogHandler

            handler = ConsoleLogHandler()
        else:
            handler = logging.StreamHandler(sys.stderr)
        when = "" if journal else "%(asctime)s "
        formatter = TextFormatter(when + "%(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else level)
    if not debug:
        for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "watchdog"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # watchdog's inotify thread warns when a directory created under a watched tree is
    # added by both its own event and the recursive add racing it; the watch is kept and
    # nothing is missed, so the line would only alarm.
    warnings.filterwarnings("ignore", WATCHDOG_RACE, RuntimeWarning, "watchdog")
