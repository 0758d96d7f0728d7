"""The command line itself: one-line errors, help and examples for everything, the checks
argparse cannot express, and sync's own flags aws lacks (--max-delete, --exclude-from)."""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from watchsync import __version__
from watchsync.cli.main import build_parser, configure_logging, main

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Cli = Callable[..., tuple[int, list[str], list[str]]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """``cli(*argv)`` runs main() in-process: (code, stdout lines, stderr lines)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(*argv: str) -> tuple[int, list[str], list[str]]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out.splitlines(), err.splitlines()

    yield run
    root.handlers[:], level = saved
    root.setLevel(level)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_option_and_command_has_help_and_every_command_examples() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) >= {"sync", "watch", "status", "check", "reload"}
    for name, sub in {"watchsync": parser, **commands}.items():
        assert sub.epilog and sub.epilog.startswith("examples:\n  watchsync "), name
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            what = action.option_strings or [action.dest]
            assert action.help and action.help != argparse.SUPPRESS, (name, what)
        # Every option that takes a value shows one in its help ("e.g. ..."), or its choices.
        for action in sub._actions:
            takes_value = action.nargs != 0 and action.option_strings
            if takes_value and not action.choices and action.dest not in ("help", "version"):
                assert action.help is not None and ("e.g." in action.help or "(" in action.help), (
                    name,
                    action.option_strings,
                )


def test_help_is_shown_on_request(cli: Cli) -> None:
    code, out, _ = cli("sync", "--help")
    assert code == 0 and out[0].startswith("usage: watchsync sync")
    assert "examples:" in out


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(cli: Cli, flag: str) -> None:
    assert cli(flag) == (0, [f"watchsync {__version__}"], [])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["watch", "--direction", "up", "d", "s3://b/p"],
            "argument --direction: Invalid choice 'up', valid choices are: both | push | pull",
        ),
        (["sync", "d"], "the following arguments are required: DST"),
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "argument COMMAND: Invalid choice 'frobnicate'"),
        (
            ["sync", "d", "s3://b/p", "--size-only", "--exact-timestamps"],
            "argument --exact-timestamps: not allowed with argument --size-only",
        ),
        (
            ["sync", "d", "s3://b/p", "--quiet", "--debug"],
            "argument --debug: not allowed with argument --quiet",
        ),
        (
            ["--debug", "sync", "d", "s3://b/p", "--quiet"],
            "argument --debug: not allowed with argument --quiet",
        ),
        (["watch", "d", "s3://b/p", "--log-level", "loud"], "argument --log-level"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_parse_errors_are_one_line_and_exit_2(cli: Cli, argv: list[str], message: str) -> None:
    code, out, err = cli(*argv)
    assert (code, out, len(err)) == (2, [], 1), err
    assert err[0].startswith("watchsync: error: ") and message in err[0], err
    assert "--help" in err[0]  # where the usage is


EX, IN = "exclude", "include"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param([], [], id="none"),
        pytest.param(
            ["--exclude", "*", "--include", "*.txt"],
            [(EX, "*"), (IN, "*.txt")],
            id="separate-values",
        ),
        pytest.param(
            ["--include=*.txt", "--exclude=*"], [(IN, "*.txt"), (EX, "*")], id="equals-form"
        ),
        pytest.param(
            [
                "--exclude",
                "*",
                "--delete",
                "--include=*.txt",
                "--exclude",
                "tmp/*",
                "--exclude-from",
                "f",
                "--include=tmp/keep",
            ],
            [(EX, "*"), (IN, "*.txt"), (EX, "tmp/*"), ("exclude-from", "f"), (IN, "tmp/keep")],
            id="interleaved",
        ),
        pytest.param(
            ["--exclude=a=b", "--include", "c=d"],
            [(EX, "a=b"), (IN, "c=d")],
            id="value-with-equals",
        ),
        pytest.param(["--exclude="], [(EX, "")], id="empty-equals-value"),
    ],
)
def test_filter_rules_keep_the_order_given(
    argv: list[str], expected: list[tuple[str, str]]
) -> None:
    """aws's rule: filters apply in the order given, across --exclude and --include."""
    args = build_parser().parse_args(["sync", "src", "s3://bkt/p", *argv])
    assert args.filter_rules == expected


def test_watch_keeps_the_filter_order_too() -> None:
    argv = ["watch", "src", "s3://bkt/p", "--include", "a", "--exclude", "*"]
    assert build_parser().parse_args(argv).filter_rules == [(IN, "a"), (EX, "*")]


def test_log_level_is_case_insensitive() -> None:
    args = build_parser().parse_args(["watch", "d", "s3://b/p", "--log-level", "info"])
    assert args.log_level == "INFO"


def test_the_agents_logging_silences_watchdogs_double_watch_warning() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    race = "Callback with id '7' already exists for watch <w>. It will be Overwritten."
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        configure_logging(debug=False, fmt="text")
        warnings.warn_explicit(race, RuntimeWarning, "inotify_c.py", 1, "watchdog.observers.x")
        warnings.warn_explicit("other", RuntimeWarning, "inotify_c.py", 1, "watchdog.observers.x")
    root.handlers[:], root.level = handlers, level
    assert [str(w.message) for w in seen] == ["other"]


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["sync", "d", "s3:/demo/x"], 255, "malformed S3 URL 's3:/demo/x': expected s3://"),
        (["sync", "S3://demo/x", "d"], 255, "malformed S3 URL 'S3://demo/x'"),
        (["sync", "d", "e"], 255, "got two local paths"),
        (["sync", "s3://bkt-one/x", "s3://bkt-two/y"], 255, "between two S3 locations"),
        (["sync", "d", "s3://b/p", "--bogus"], 255, "Unknown options: --bogus"),
        (["watch", "d", "s3:/demo/x"], 2, "malformed S3 URL 's3:/demo/x'"),
        (["watch", "afile.txt"], 2, "watch needs an S3_URL after LOCAL_DIR 'afile.txt'"),
        (["check", "afile.txt"], 2, "check needs an S3_URL after LOCAL_DIR 'afile.txt'"),
    ],
)
def test_paths_and_urls_are_reported_precisely(
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    got, out, err = cli(*argv)
    assert (got, out, len(err)) == (code, [], 1), err
    assert message in err[0], err
    assert "--path" not in err[0]


def test_watch_on_a_file_names_the_argument_not_a_flag(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "afile.txt").write_text("x")
    code, _, err = cli("watch", str(tmp_path / "afile.txt"), "s3://bkt/p")
    assert code == 2 and err == [
        f"watchsync: error: LOCAL_DIR: {tmp_path}/afile.txt is not a directory"
    ]


def test_check_takes_a_folder_pair_like_watch(
    cli: Cli, aws_env: dict[str, str], bucket: str, tmp_path: Path
) -> None:
    """``check LOCAL_DIR S3_URL`` with watch's options checks that pair, no config file."""
    folder = tmp_path / "f"
    folder.mkdir()
    code, out, err = cli("check", str(folder), f"s3://{bucket}/p", "--direction", "push")
    assert code == 0, (out, err)
    assert out == ["settings: ok (1 folders)", f"folder {folder} <-> s3://{bucket}/p: ok"]
    code, out, _ = cli("check", str(folder), "s3://no-such-bucket-watchsync/p")
    assert code == 1 and "FAIL" in out[-1] and "does not exist" in out[-1], out


# -- sync's own flags ---------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str]) -> Path:
    """``tmp_path/src`` with five files; the tests run in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    (src / "logs").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.tmp", "logs/x.log", "logs/keep.log"):
        (src / name).write_bytes(name.encode())
    return src


def _keys(s3: S3Client, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def test_max_delete_refuses_every_delete_when_more_would_go(
    cli: Cli, tree: Path, s3: S3Client, bucket: str
) -> None:
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"stale{i}", Body=b"s")
    code, out, err = cli("sync", "src", f"s3://{bucket}", "--delete", "--max-delete", "2")
    assert code == 1, (out, err)
    assert err == ["error: 3 deletes exceed --max-delete 2; none were done"]
    assert len(out) == 5 and all(line.startswith("upload: ") for line in out), out
    assert [k for k in _keys(s3, bucket) if k.startswith("stale")] == ["stale0", "stale1", "stale2"]
    code, out, err = cli("sync", "src", f"s3://{bucket}", "--delete", "--max-delete", "3")
    assert (code, err) == (0, []), err
    assert sorted(out) == [f"delete: s3://{bucket}/stale{i}" for i in range(3)]


def test_exclude_from_reads_patterns_in_order(
    cli: Cli, tree: Path, tmp_path: Path, s3: S3Client, bucket: str
) -> None:
    """Each line of the file is an --exclude at its place among the other rules: a later
    --include takes a path back, as the last matching rule wins."""
    (tmp_path / "ignore").write_text("# scratch files\n*.tmp\n\nlogs/*\n")
    code, _, err = cli(
        "sync", "src", f"s3://{bucket}", "--exclude-from", "ignore", "--include", "logs/keep.log"
    )
    assert (code, err) == (0, []), err
    assert _keys(s3, bucket) == ["a.txt", "b.txt", "logs/keep.log"]


def test_exclude_from_a_missing_file_is_one_line(cli: Cli, tree: Path, bucket: str) -> None:
    code, out, err = cli("sync", "src", f"s3://{bucket}", "--exclude-from", "nope")
    assert (code, out) == (255, [])
    assert err == ["watchsync: error: --exclude-from: cannot read nope: No such file or directory"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--expires", "someday"], "--expires: not a date and time: 'someday'"),
        (["--grants", "read"], "grants should be of the form permission=principal"),
        (["--grants", "write=id=x"], "permission must be one of: read|readacl|writeacl|full"),
        (["--sse-c", "--sse-c-key", "fileb://nope"], "--sse-c-key: cannot read nope"),
        (["--checksum-algorithm", "SHA256"], "watchsync sends CRC32C only"),
        (["--case-conflict", "skip"], "--case-conflict skip: not supported"),
    ],
)
def test_values_aws_would_take_but_we_cannot_are_refused_up_front(
    cli: Cli, tree: Path, bucket: str, argv: list[str], message: str
) -> None:
    code, out, err = cli("sync", "src", f"s3://{bucket}", *argv)
    assert (code, out, len(err)) == (255, [], 1), err
    assert message in err[0], err


def test_sse_c_key_from_a_file(cli: Cli, tree: Path, s3: S3Client, bucket: str) -> None:
    key = os.urandom(32)
    Path("key.bin").write_bytes(key)
    code, _, err = cli("sync", "src", f"s3://{bucket}", "--sse-c", "--sse-c-key", "fileb://key.bin")
    assert (code, err) == (0, []), err
    head = s3.head_object(
        Bucket=bucket, Key="a.txt", SSECustomerAlgorithm="AES256", SSECustomerKey=key
    )
    assert head["SSECustomerAlgorithm"] == "AES256"
