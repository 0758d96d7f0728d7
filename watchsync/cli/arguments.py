"""The parser's parts: one-line errors, aws-style choice messages, the options shared by
``sync``, ``watch`` and ``check``, and the agent's commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from watchsync.core.errors import EXIT_USAGE, UsageError
from watchsync.s3.location import ACLS, STORAGE_CLASSES

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


class ParseError(UsageError):
    """The command line cannot be parsed (argparse's verdict: aws's code 2 too)."""

    exit_code = EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage block only on ``--help``) and aws's wording
    for a value outside a flag's choices.

    >>> p = Parser(prog="x"); _ = p.add_argument("--sse", choices=["AES256", "aws:kms"])
    >>> try:
    ...     p.parse_args(["--sse", "bogus"])
    ... except ParseError as exc:
    ...     print(exc)
    argument --sse: Invalid choice 'bogus', valid choices are: AES256 | aws:kms (see 'x --help')
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise ParseError(f"{message} (see '{self.prog} --help')")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is not None and value not in action.choices:
            valid = " | ".join(map(str, action.choices))
            raise argparse.ArgumentError(
                action, f"Invalid choice {value!r}, valid choices are: {valid}"
            )


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with the examples kept one command a line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """An epilog of examples, one command a line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


class _Rule(argparse.Action):
    """``--exclude``/``--include``/``--exclude-from``: one list in the order given, as aws
    keeps it (the last rule that matches a path wins)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        rules = list(getattr(namespace, self.dest, None) or [])
        rules.append((self.const, values))
        setattr(namespace, self.dest, rules)


def add_filter_options(p: Any, *, exclude_from: bool = False) -> None:
    """aws-style filters, and which way symlinks go."""
    p.add_argument(
        "--exclude",
        action=_Rule,
        const="exclude",
        dest="filter_rules",
        metavar="PATTERN",
        help="leave out paths matching PATTERN (relative to "
        "the source; * crosses /), e.g. --exclude '*.tmp'; repeatable",
    )
    p.add_argument(
        "--include",
        action=_Rule,
        const="include",
        dest="filter_rules",
        metavar="PATTERN",
        help="take back paths an earlier --exclude left out, "
        "e.g. --include 'keep/*'; the last rule that matches wins",
    )
    if exclude_from:
        p.add_argument(
            "--exclude-from",
            action=_Rule,
            const="exclude-from",
            dest="filter_rules",
            metavar="FILE",
            help="an --exclude for each line of FILE (blank lines and # comments "
            "skipped), e.g. --exclude-from ignore.txt",
        )
    p.set_defaults(filter_rules=[])
    p.add_argument(
        "--no-follow-symlinks",
        dest="follow_symlinks",
        action="store_false",
        help="leave symlinks out",
    )
    p.add_argument(
        "--follow-symlinks",
        dest="follow_symlinks",
        action="store_true",
        help="copy what symlinks point to (the default)",
    )
    p.set_defaults(follow_symlinks=True)


def add_s3_options(p: Any) -> None:
    """S3 connection options shared by every command that talks to S3."""
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="S3 endpoint of a server other than AWS, e.g. http://127.0.0.1:8333",
    )
    p.add_argument(
        "--profile", metavar="NAME", help="AWS profile from the shared config files, e.g. backup"
    )
    p.add_argument("--region", metavar="NAME", help="AWS region, e.g. eu-central-1")
    p.add_argument(
        "--max-concurrency",
        type=whole_number(1),
        metavar="N",
        help="parallel transfers (16), e.g. 32",
    )
    p.add_argument(
        "--bwlimit",
        metavar="RATE",
        help="cap on the total transfer rate in bytes/s, K, M and G being powers of 1024, e.g. 10M",
    )
    p.add_argument(
        "--no-checksum",
        dest="checksum",
        action="store_false",
        default=None,
        help="send and verify no CRC32C of the bytes (faster; TCP/TLS only)",
    )


def add_object_options(p: Any, *, sync: bool = False) -> None:
    """Settings of the objects written, as aws's flags of the same names."""
    p.add_argument(
        "--storage-class",
        choices=STORAGE_CLASSES,
        metavar="CLASS",
        help="storage class of new objects, e.g. STANDARD_IA; one of "
        + " | ".join(STORAGE_CLASSES),
    )
    p.add_argument(
        "--sse",
        nargs="?",
        const="AES256",
        choices=["AES256", "aws:kms"],
        help="server-side encryption: AES256 (when given alone) or aws:kms",
    )
    p.add_argument(
        "--sse-kms-key-id", metavar="KEY_ID", help="the KMS key of --sse aws:kms, e.g. alias/backup"
    )
    p.add_argument(
        "--acl",
        choices=ACLS,
        metavar="ACL",
        help="canned ACL of new objects, e.g. public-read; one of " + " | ".join(ACLS),
    )
    p.add_argument(
        "--content-type",
        metavar="TYPE",
        help="Content-Type of every object (else guessed from the file name), e.g. text/plain",
    )
    p.add_argument(
        "--no-guess-mime-type",
        dest="guess_mime_type",
        action="store_false",
        help="do not guess Content-Type from file names",
    )
    p.add_argument(
        "--cache-control", metavar="VALUE", help="Cache-Control of new objects, e.g. max-age=300"
    )
    p.add_argument(
        "--content-disposition",
        metavar="VALUE",
        help="Content-Disposition of new objects, e.g. attachment",
    )
    p.add_argument(
        "--content-encoding", metavar="VALUE", help="Content-Encoding of new objects, e.g. gzip"
    )
    p.add_argument(
        "--content-language", metavar="VALUE", help="Content-Language of new objects, e.g. de"
    )
    p.add_argument(
        "--metadata",
        metavar="KEY=VALUE,...",
        help="user metadata of new objects, as key=value pairs or JSON, e.g. owner=web,team=ops",
    )
    p.add_argument(
        "--keep-mode",
        action="store_true",
        default=None,
        help="keep each file's permission bits in its object's metadata and restore them "
        "on download (X-Amz-Meta-Mode, as rclone's --metadata); mtimes are always kept",
    )
    # The agent's: not given is None, so the config file's value or the default holds.
    p.set_defaults(guess_mime_type=True if sync else None)


def add_debug_option(p: Any) -> None:
    """``--debug`` after the command too; SUPPRESS keeps one given before it."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="log every detail"
    )


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (argparse's error otherwise).

    >>> whole_number(1)("3")
    3
    """

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}: {text!r}")
        return value

    return convert


def percentage(text: str) -> float:
    """An argparse type: a share in percent, more than 0 and at most 100 (``25`` or ``25%``).

    >>> percentage("25%")
    25.0
    """
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 100: {text!r}")
    return value


def aws_number(
    flag: str, kind: Callable[[str], float], *, positive: bool = False
) -> Callable[[str], float]:
    """An argparse type for a number aws converts after parsing: a bad one is its code 255
    (a :class:`UsageError` argparse lets through), not a parse error.

    >>> aws_number("--page-size", int)("500")
    500
    """

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise UsageError(f"{flag}: not a number: {text!r}") from None
        if positive and value <= 0:
            raise UsageError(f"{flag}: must be more than 0: {text!r}")
        return value

    return convert


def add_folder_options(p: Any) -> None:
    """What ``watch`` and ``check`` take: a folder pair (or a config file) and its settings."""
    p.add_argument("local", nargs="?", metavar="LOCAL_DIR", help="the folder to keep in sync")
    p.add_argument("url", nargs="?", metavar="S3_URL", help="s3://bucket[/prefix] to sync with")
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with global settings and folders, e.g. /etc/watchsync/config.toml",
    )
    p.add_argument(
        "--direction",
        choices=["both", "push", "pull"],
        help="push: only upload; pull: only download; both (the default)",
    )
    p.add_argument("--delete", action="store_true", default=None, help="propagate deletes")
    p.add_argument(
        "--max-delete",
        type=int,
        metavar="N",
        help="most deletes per pass and per hour (1000), e.g. 100",
    )
    p.add_argument(
        "--max-delete-percent",
        type=percentage,
        metavar="PERCENT",
        help="most deletes per pass in one direction, as a share of the files synced "
        "(50; 100 turns it off), e.g. 25",
    )
    p.add_argument(
        "--force-delete",
        action="store_true",
        default=None,
        help="run every held delete of this run (more than --max-delete or "
        "--max-delete-percent, an emptied side) and accept a root that is another directory",
    )
    p.add_argument(
        "--folder-marker",
        action="store_true",
        default=None,
        help="keep the folder's id in LOCAL_DIR/.watchsync/folder-id and sync only the "
        "directory that holds it (removable disks)",
    )
    p.add_argument(
        "--debounce",
        type=float,
        metavar="SECONDS",
        help="how long a path must be quiet before it is sent (0.5)",
    )
    p.add_argument(
        "--reconcile-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between periodic passes (300)",
    )
    p.add_argument(
        "--full-walk-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between walks of the whole folder; passes between trust the watcher "
        "(86400; 0 walks every pass)",
    )
    p.add_argument(
        "--notifications-queue",
        metavar="URL",
        help="an SQS queue receiving the bucket's S3 event notifications: other writers' "
        "changes within seconds (see `watchsync notifications --help` to set one up)",
    )
    p.add_argument(
        "--full-list-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between listings of the whole prefix (default: every periodic pass, "
        "less often when a listing would take over 0.5%% of a core; 0 lists every pass)",
    )
    p.add_argument(
        "--state-dir", metavar="DIR", help="where the state databases live, e.g. /var/lib/watchsync"
    )
    p.add_argument(
        "--ignore-file",
        metavar="FILE",
        help="gitignore-style file (default .watchsyncignore in the folder)",
    )
    p.add_argument(
        "--upload-workers",
        type=int,
        metavar="N",
        help="upload workers (16); each sends up to 32 files ready together side by side",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds to finish uploads on stop (30)",
    )
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines as text (the default) or JSON objects",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="least important log lines shown: debug, info (the default), warning or error",
    )
    p.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics there, e.g. 127.0.0.1:9464",
    )
    p.add_argument(
        "--force-polling",
        action="store_true",
        help="poll instead of inotify (network file systems)",
    )
    add_filter_options(p)
    p.set_defaults(follow_symlinks=None)  # not given: the file's or the default (follow)
    add_s3_options(p)
    add_object_options(p)
    add_debug_option(p)


def add_agent_commands(sub: Any) -> None:
    """Register ``watch``, ``status``, ``reload`` and ``check`` on the main parser."""
    w = sub.add_parser(
        "watch",
        help="keep a folder and an S3 prefix in sync continuously",
        description="Run the agent: upload each local change as it happens, download "
        "changes made in S3, and reconcile both sides now and then.",
        epilog=examples(
            "watchsync watch ~/Documents s3://my-bucket/laptop/Documents --delete",
            "watchsync watch ./site s3://b/site --direction push --exclude '*.tmp'",
            "watchsync watch --config /etc/watchsync/config.toml",
        ),
    )
    add_folder_options(w)

    s = sub.add_parser(
        "status",
        help="what each folder's agent is doing",
        description="Show each folder's state, pending work, last reconcile, last error "
        "and totals, read from the state databases (the agent need not run).",
        epilog=examples(
            "watchsync status",
            "watchsync status --config /etc/watchsync/config.toml --json",
        ),
    )
    s.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the agent's config file, to show its folders, e.g. /etc/watchsync/config.toml",
    )
    s.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the state databases are, e.g. /var/lib/watchsync",
    )
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_debug_option(s)

    r = sub.add_parser(
        "reload",
        help="make a running agent re-read its config file (SIGHUP's equivalent, every OS)",
        description="Ask the running agent to re-read its config file: added, removed and "
        "changed folders take effect without a restart.",
        epilog=examples(
            "watchsync reload --config /etc/watchsync/config.toml",
            "watchsync reload --state-dir ~/.local/state/watchsync",
        ),
    )
    r.add_argument(
        "--config", type=Path, metavar="FILE", help="the agent's config file (for its state_dir)"
    )
    r.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="the agent's state directory, e.g. ~/.local/state/watchsync",
    )
    add_debug_option(r)

    n = sub.add_parser(
        "notifications",
        help="send a prefix's S3 event notifications to an SQS queue, for watch",
        description="Create the SQS queue NAME (or find it), allow the bucket to send to "
        "it, and add to the bucket's notification configuration (keeping what is there) "
        "the ObjectCreated and ObjectRemoved events under the prefix. Prints the queue's "
        "URL for `watch --notifications-queue`. Each agent on the prefix needs a queue of "
        "its own (or SNS/EventBridge fan-out to several).",
        epilog=examples(
            "watchsync notifications s3://my-bucket/laptop --queue watchsync-laptop",
        ),
    )
    n.add_argument("url", metavar="S3_URL", help="s3://bucket[/prefix] whose changes to send")
    n.add_argument(
        "--queue",
        required=True,
        metavar="NAME",
        help="the SQS queue's name (e.g. watchsync-laptop)",
    )
    add_s3_options(n)
    add_debug_option(n)

    c = sub.add_parser(
        "check",
        help="validate a config or a folder pair and test each bucket",
        description="Check what watch would be given: the settings, each folder, and "
        "that each bucket can be listed and written (a probe object is put and deleted).",
        epilog=examples(
            "watchsync check --config /etc/watchsync/config.toml",
            "watchsync check ~/Documents s3://my-bucket/laptop/Documents --profile backup",
        ),
    )
    add_folder_options(c)
