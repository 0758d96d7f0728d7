"""Parity with ``aws s3 sync``: both tools, in ``--dryrun``, must plan the same set of actions.

Random local trees and bucket states are built against the real SeaweedFS server, then the
venv's ``aws s3 sync --dryrun`` and ``watchsync sync --dryrun`` run with the same arguments
and the ``(dryrun) ...`` lines of both are compared as sets.

Names come from ``[a-j0-9_]`` with ``/`` as the separator: every character sorts after
``/``, so SeaweedFS's directory-order listing equals S3's byte order and aws-cli (which
trusts the listing order) gives right answers.  Local mtimes are whole seconds a day away
from any LastModified, or exactly LastModified, so no same-second race decides a case.

Downloads: the tools agree on missing files, size changes and ``--exact-timestamps``
/ ``--size-only``; for same-size files with other times they deliberately disagree (see
``test_download_same_size_known_difference``), so the random download cases leave those out
unless one of those flags is given.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from s3server import SeaweedServer

from watchsync.cli.main import main
from watchsync.s3.client import mtime_ns

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AWS = str(Path(sys.executable).parent / "aws")
# aws-cli's botocore asks for "100 Continue" even before an empty body; the connection it
# goes back to the pool with then misreads its next response, and that request waits out
# the 60 s read timeout before a silent retry (boto/botocore#3755): a minute lost whenever
# an empty file is uploaded first on a connection.  botocore's own switch leaves the header
# off empty bodies only, which changes nothing aws does or prints.
AWS_ENV = {"BOTO_EXPERIMENTAL__NO_EMPTY_CONTINUE": "true"}
DAY = 86_400
NS = 1_000_000_000
LINE_RE = re.compile(r"^\(dryrun\) (upload|download|delete): (.+?)(?: to (.+))?$")

# How a path exists on each side.
LOCAL_ONLY = "local-only"
REMOTE_ONLY = "remote-only"
EQUAL = "equal"  # same content; the file a day older than the object (up) or at it (down)
SIZE = "size"  # sizes differ; the file a day older or newer
NEWER = "newer"  # same size, other content, file a day newer than the object
OLDER = "older"  # same size, other content, file a day older than the object

UP_STATES = [LOCAL_ONLY, REMOTE_ONLY, EQUAL, SIZE, NEWER, OLDER]
DOWN_AGREED_STATES = [LOCAL_ONLY, REMOTE_ONLY, EQUAL, SIZE]
EXCLUDES = [None, "*1*", "a*", "*/*", "b/*", "*_", "*.x"]

segment = st.text("abcdefghij0123456789_", min_size=1, max_size=3)
path_st = st.lists(segment, min_size=1, max_size=3).map("/".join)


def without_conflicts(paths: list[str]) -> list[str]:
    """Drop paths that would have to be a file and a directory at once."""
    kept: list[str] = []
    for p in sorted(set(paths), key=len, reverse=True):
        if not any(q.startswith(p + "/") for q in kept):
            kept.append(p)
    return sorted(kept)


def cases(states: list[str]) -> st.SearchStrategy[dict[str, tuple[str, int, bool]]]:
    """{path: (state, size, newer-when-size-differs)} for up to 10 paths."""
    entry = st.tuples(st.sampled_from(states), st.integers(0, 40), st.booleans())
    return st.lists(st.tuples(path_st, entry), min_size=2, max_size=10).map(
        lambda rows: {p: e for p, e in rows if p in without_conflicts([r[0] for r in rows])}
    )


# -- running both tools ---------------------------------------------------------------------


def parse(lines: list[str], cwd: Path) -> set[tuple[str, ...]]:
    """``(dryrun)`` lines as (verb, source, destination) with local paths made absolute."""
    out: set[tuple[str, ...]] = set()
    for line in lines:
        m = LINE_RE.match(line)
        assert m, f"unexpected output line {line!r}"
        verb, a, b = m.groups()
        parts = tuple(
            x if x.startswith("s3://") else os.path.normpath(cwd / x) for x in (a, b) if x
        )
        out.add((verb, *parts))
    return out


def run_aws(args: list[str], cwd: Path, endpoint: str) -> set[tuple[str, ...]]:
    proc = subprocess.run(
        [AWS, "s3", "sync", "--dryrun", "--endpoint-url", endpoint, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | AWS_ENV,
    )
    assert proc.returncode == 0, proc
    return parse(proc.stdout.splitlines(), cwd)


def run_watchsync(
    args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]
) -> set[tuple[str, ...]]:
    capsys.readouterr()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = main(["sync", "--dryrun", *args])
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), (code, out, err)
    return parse(out.splitlines(), cwd)


@pytest.fixture
def env(
    aws_env: dict[str, str], s3server: SeaweedServer, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """(endpoint, a fresh directory factory root); restores the root logger afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield s3server.endpoint, tmp_path
    root.handlers[:], level = saved
    root.setLevel(level)


_counter = itertools.count()


def fresh(base: Path) -> tuple[Path, str]:
    """A new example directory under ``base`` and a new S3 prefix."""
    n = next(_counter)
    work = base / f"ex{n}"
    work.mkdir()
    return work, f"p{n}-{uuid.uuid4().hex[:8]}"


def content(size: int, fill: bytes) -> bytes:
    return (fill * (size + 1))[:size]


def build(
    s3: S3Client,
    bucket: str,
    prefix: str,
    local: Path,
    spec: Mapping[str, tuple[str, int, bool]],
    *,
    equal_at_last_modified: bool,
) -> None:
    """Create the bucket state under ``prefix`` and the tree under ``local`` for ``spec``."""
    local.mkdir()
    for path, (state, size, _) in spec.items():
        if state != LOCAL_ONLY:
            s3.put_object(Bucket=bucket, Key=prefix + path, Body=content(size, b"r"))
    listed = {
        obj["Key"][len(prefix) :]: mtime_ns(obj["LastModified"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    }
    now = int(time.time())
    for path, (state, size, newer) in spec.items():
        if state == REMOTE_ONLY:
            continue
        data = {
            LOCAL_ONLY: content(size, b"l"),
            EQUAL: content(size, b"r"),
            SIZE: content(size + 1 + size % 3, b"l"),
            NEWER: content(size, b"l"),
            OLDER: content(size, b"l"),
        }[state]
        f = local / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        if state == EQUAL and equal_at_last_modified:
            when = listed[path]  # what a download leaves behind
        elif state == NEWER or (state == SIZE and newer):
            when = (now + DAY) * NS
        else:
            when = (now - DAY) * NS
        os.utime(f, ns=(when, when))


def flags(delete: bool, exclude: str | None, mode: str | None) -> list[str]:
    out = ["--delete"] if delete else []
    if exclude:
        out += ["--exclude", exclude]
    if mode:
        out.append(mode)
    return out


SETTINGS = settings(
    max_examples=15,
    deadline=None,
    database=None,
    # Each example costs an aws-cli run (~1 s): report the failing example as generated
    # instead of spending minutes shrinking it (they are small already).
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- the parity properties ------------------------------------------------------------------


@SETTINGS
@given(
    spec=cases(UP_STATES),
    delete=st.booleans(),
    exclude=st.sampled_from(EXCLUDES),
    mode=st.sampled_from([None, None, "--size-only"]),
)
def test_upload_plans_match_aws(
    env: tuple[str, Path],
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    spec: dict[str, tuple[str, int, bool]],
    delete: bool,
    exclude: str | None,
    mode: str | None,
) -> None:
    endpoint, base = env
    work, prefix = fresh(base)
    build(s3, bucket, prefix + "/", work / "src", spec, equal_at_last_modified=False)
    args = ["src", f"s3://{bucket}/{prefix}", *flags(delete, exclude, mode)]
    ours = run_watchsync(args, work, capsys)
    theirs = run_aws(args, work, endpoint)
    event(f"aws planned {len(theirs)} actions")
    assert ours == theirs, (spec, args)


@SETTINGS
@given(
    spec=st.one_of(
        cases(DOWN_AGREED_STATES).map(lambda s: (s, None)),
        st.tuples(cases(UP_STATES), st.sampled_from(["--exact-timestamps", "--size-only"])),
    ),
    delete=st.booleans(),
    exclude=st.sampled_from(EXCLUDES),
)
def test_download_plans_match_aws_where_the_rules_agree(
    env: tuple[str, Path],
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    spec: tuple[dict[str, tuple[str, int, bool]], str | None],
    delete: bool,
    exclude: str | None,
) -> None:
    states, mode = spec
    endpoint, base = env
    work, prefix = fresh(base)
    build(s3, bucket, prefix + "/", work / "dst", states, equal_at_last_modified=True)
    args = [f"s3://{bucket}/{prefix}", "dst", *flags(delete, exclude, mode)]
    ours = run_watchsync(args, work, capsys)
    theirs = run_aws(args, work, endpoint)
    event(f"aws planned {len(theirs)} actions")
    assert ours == theirs, (states, args)


def test_download_same_size_known_difference(
    env: tuple[str, Path],
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same size, other time: the one place ``watchsync sync`` deliberately differs.

    aws-cli downloads a same-size object only when the local file is *newer* than it (and
    never when the object is newer, aws-cli issue #3273); watchsync downloads when the object
    is in a later second than the file, and leaves a newer local file alone.
    """
    endpoint, base = env
    work, prefix = fresh(base)
    spec = {"obj_newer": (OLDER, 4, False), "file_newer": (NEWER, 4, False)}
    build(s3, bucket, prefix + "/", work / "dst", spec, equal_at_last_modified=True)
    args = [f"s3://{bucket}/{prefix}", "dst"]
    dst = os.path.normpath(work / "dst")
    ours = run_watchsync(args, work, capsys)
    theirs = run_aws(args, work, endpoint)
    assert ours == {("download", f"s3://{bucket}/{prefix}/obj_newer", f"{dst}/obj_newer")}
    assert theirs == {("download", f"s3://{bucket}/{prefix}/file_newer", f"{dst}/file_newer")}


def test_parse_handles_every_line_kind(tmp_path: Path) -> None:
    lines = [
        "(dryrun) upload: src/a to s3://b/p/a",
        "(dryrun) download: s3://b/p/a to dst/a",
        "(dryrun) delete: s3://b/p/x",
        "(dryrun) delete: dst/y",
    ]
    assert parse(lines, tmp_path) == {
        ("upload", f"{tmp_path}/src/a", "s3://b/p/a"),
        ("download", "s3://b/p/a", f"{tmp_path}/dst/a"),
        ("delete", "s3://b/p/x"),
        ("delete", f"{tmp_path}/dst/y"),
    }


# -- the contract to the letter: exit codes, output lines, object settings --------------------
#
# Each test runs ``aws s3 sync`` and ``watchsync sync`` on identical trees (one work directory
# and one S3 prefix each, named after the tool) and compares what each printed and returned,
# with the tool's own names made the same.  Progress is off on both sides (aws prints it even
# into a pipe).


@dataclass
class Outcome:
    """One run: exit code and its stdout and stderr lines, sorted (transfers run in parallel,
    so lines come in any order), trailing blanks stripped."""

    code: int
    out: list[str]
    err: list[str]

    @classmethod
    def of(cls, code: int, out: str, err: str) -> Outcome:
        def lines(text: str) -> list[str]:
            return sorted(line.rstrip() for line in text.splitlines() if line.strip())

        return cls(code, lines(out), lines(err))

    def named(self, subs: Mapping[str, str]) -> Outcome:
        """The same outcome with the tool's own names replaced by common ones."""

        def norm(line: str) -> str:
            for old, new in subs.items():
                line = line.replace(old, new)
            return line

        return Outcome(self.code, sorted(map(norm, self.out)), sorted(map(norm, self.err)))


def aws_sync(args: list[str], cwd: Path, **env: str) -> Outcome:
    proc = subprocess.run(
        [AWS, "s3", "sync", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | AWS_ENV | env,
    )
    return Outcome.of(proc.returncode, proc.stdout, proc.stderr)


def our_sync(args: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    capsys.readouterr()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = main(["sync", *args])
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return Outcome.of(code, out, err)


def both(
    args: Callable[[str], list[str]],
    cwd: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    subs: Callable[[str], Mapping[str, str]],
    **aws_env: str,
) -> tuple[Outcome, Outcome]:
    """(aws's outcome, ours), each run with ``args(tool)`` in ``cwd(tool)`` and made
    comparable with ``subs(tool)`` (tool: "aws" or "ours")."""
    theirs = aws_sync(args("aws"), cwd("aws"), **aws_env).named(subs("aws"))
    ours = our_sync(args("ours"), cwd("ours"), capsys).named(subs("ours"))
    return theirs, ours


SPECIAL = "File is character special device, block special device, FIFO, or socket."


def photos(root: Path) -> Path:
    """``root/photos``: two files, one in a subdirectory, and a FIFO aws and we skip."""
    tree = root / "photos"
    (tree / "sub").mkdir(parents=True)
    (tree / "p1.jpg").write_bytes(b"jpeg")
    (tree / "sub" / "p2.txt").write_bytes(b"text")
    os.mkfifo(tree / "ff")
    return tree


# How the local path is typed, and where the command runs (relative to the work directory).
PATH_FORMS = [
    pytest.param("photos", ".", id="relative"),
    pytest.param("./photos/", ".", id="dot-slash"),
    pytest.param("{abs}", "elsewhere", id="absolute"),
    pytest.param("..", "photos/sub", id="parent"),
    pytest.param(".", "photos", id="dot"),
]


def _work(base: Path, tool: str, form: str, where: str) -> tuple[Path, Path, str]:
    """(work directory, where the command runs, the local path as typed) for ``tool``."""
    work = base / f"work-{tool}"
    photos(work)
    cwd = work / where
    cwd.mkdir(parents=True, exist_ok=True)
    return work, cwd, form.format(abs=work / "photos")


@pytest.mark.parametrize(("form", "where"), PATH_FORMS)
def test_upload_lines_paths_and_code_match_aws(
    env: tuple[str, Path],
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    form: str,
    where: str,
) -> None:
    """``upload:`` lines name local files as aws does (relative to the working directory,
    ``./`` for one in it) and the skipped FIFO by its absolute path; both exit 2."""
    _, base = env
    runs = {tool: _work(base, tool, form, where) for tool in ("aws", "ours")}
    theirs, ours = both(
        lambda t: [runs[t][2], f"s3://{bucket}/up-{t}", "--no-progress"],
        lambda t: runs[t][1],
        capsys,
        lambda t: {str(runs[t][0]): "WORK", f"up-{t}": "up-T"},
    )
    assert theirs.code == 2 and f"warning: Skipping file WORK/photos/ff. {SPECIAL}" in theirs.err
    assert len(theirs.out) == 2, theirs
    assert ours == theirs


@pytest.mark.parametrize(("form", "where"), PATH_FORMS)
def test_download_and_delete_lines_match_aws(
    env: tuple[str, Path],
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    form: str,
    where: str,
) -> None:
    """``download:`` and local ``delete:`` lines, in a run and a dry run, as aws prints them."""
    _, base = env
    for key, body in {"p1.jpg": b"jpeg2", "sub/p2.txt": b"text2", "sub/p3": b"new"}.items():
        s3.put_object(Bucket=bucket, Key=f"down/{key}", Body=body)
    runs = {tool: _work(base, tool, form, where) for tool in ("aws", "ours")}
    for tool in runs:
        os.unlink(runs[tool][0] / "photos" / "ff")  # a skip would hold our deletes back
        (runs[tool][0] / "photos" / "sub" / "extra").write_bytes(b"not in S3")
    args = [f"s3://{bucket}/down", "--no-progress", "--delete"]
    subs = {tool: {str(runs[tool][0]): "WORK"} for tool in runs}
    dry = both(
        lambda t: [args[0], runs[t][2], *args[1:], "--dryrun"],
        lambda t: runs[t][1],
        capsys,
        lambda t: subs[t],
    )
    real = both(
        lambda t: [args[0], runs[t][2], *args[1:]],
        lambda t: runs[t][1],
        capsys,
        lambda t: subs[t],
    )
    for theirs, ours in (dry, real):
        assert theirs.code == 0 and len(theirs.out) == 4, theirs  # 3 downloads, 1 delete
        assert ours == theirs
    assert all(line.startswith("(dryrun) ") for line in dry[0].out)


def test_failed_transfer_and_sse_c_round_trip_match_aws(
    env: tuple[str, Path], s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An SSE-C object downloaded without its key fails: aws's line and exit 1, the rest
    downloaded.  With the key (--sse-c, --sse-c-key) each tool uploads objects encrypted
    with it, a multipart one included, and downloads what the other uploaded."""
    _, base = env
    key = "0123456789abcdef0123456789abcdef"
    s3.put_object(Bucket=bucket, Key="mixed/plain.txt", Body=b"plain")
    s3.put_object(
        Bucket=bucket,
        Key="mixed/secret.txt",
        Body=b"secret",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=key,
    )
    theirs, ours = both(
        lambda t: [f"s3://{bucket}/mixed", f"dl-{t}", "--no-progress"],
        lambda t: base,
        capsys,
        lambda t: {f"dl-{t}": "dl-T"},
    )
    assert theirs.code == 1, theirs
    assert [line.split(" An error occurred ")[0] for line in theirs.err] == [
        f"download failed: s3://{bucket}/mixed/secret.txt to dl-T/secret.txt"
    ]
    assert ours == theirs

    up = base / "up"
    up.mkdir()
    (up / "secret.txt").write_bytes(b"secret")
    (up / "big.bin").write_bytes(os.urandom(9 * 1024 * 1024))  # multipart: parts carry the key
    sse_c = ["--no-progress", "--sse-c", "--sse-c-key", key]
    assert aws_sync(["up", f"s3://{bucket}/enc-aws", *sse_c], base).code == 0
    assert our_sync(["up", f"s3://{bucket}/enc-ours", *sse_c], base, capsys).code == 0
    for tool in ("aws", "ours"):
        for name in ("secret.txt", "big.bin"):
            obj = f"enc-{tool}/{name}"
            head = s3.head_object(
                Bucket=bucket, Key=obj, SSECustomerAlgorithm="AES256", SSECustomerKey=key
            )
            assert head["SSECustomerAlgorithm"] == "AES256", (tool, name, head)
            with pytest.raises(ClientError):
                s3.head_object(Bucket=bucket, Key=obj)  # unreadable without the key
    assert aws_sync([f"s3://{bucket}/enc-ours", "from-ours", *sse_c], base).code == 0
    assert our_sync([f"s3://{bucket}/enc-aws", "from-aws", *sse_c], base, capsys).code == 0
    for copy in ("from-ours", "from-aws"):
        for name in ("secret.txt", "big.bin"):
            assert (base / copy / name).read_bytes() == (up / name).read_bytes(), (copy, name)


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "case", ["unreachable endpoint", "missing bucket", "access point ARN"], ids=str
)
def test_fatal_errors_match_aws(
    env: tuple[str, Path], bucket: str, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """An S3 error that ends the run: aws's one ``fatal error:`` line, word for word, and
    its exit code 1.  (aws is told to connect once: its own retries only take time.)"""
    _, base = env
    (base / "src").mkdir()
    (base / "src" / "a.txt").write_bytes(b"a")
    url, extra = f"s3://{bucket}/p", []
    if case == "unreachable endpoint":
        extra = ["--endpoint-url", f"http://127.0.0.1:{_unused_port()}"]
    elif case == "missing bucket":
        url = "s3://no-such-bucket-watchsync/p"
    else:  # botocore aims it at the access point's own host, which does not resolve here
        url = "s3://arn:aws:s3:us-east-1:123456789012:accesspoint/myap/pre"
    # Told to try once, aws would add "(reached max retries: 0)" to an S3 error's text.
    once = {"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    if case == "missing bucket":
        once = {}
    theirs, ours = both(
        lambda t: ["src", url, "--no-progress", *extra],
        lambda t: base,
        capsys,
        lambda t: {},
        **once,
    )
    assert theirs.code == 1 and len(theirs.err) == 1, theirs
    assert theirs.err[0].startswith("fatal error: "), theirs
    assert ours == theirs


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["--storage-class", "BOGUS"], 2, id="storage-class"),
        pytest.param(["--acl", "bogus"], 2, id="acl"),
        pytest.param(["--sse", "bogus"], 2, id="sse"),
        pytest.param(["--metadata-directive", "KEEP"], 2, id="metadata-directive"),
        pytest.param(["--bogus"], 255, id="unknown-option"),
        pytest.param(["--page-size", "x"], 255, id="page-size"),
        pytest.param(["--sse-c"], 255, id="sse-c-without-key"),
        pytest.param(["--sse-c-key", "k"], 255, id="key-without-sse-c"),
        pytest.param(["--metadata", "bad"], 255, id="metadata"),
    ],
)
def test_bad_arguments_give_aws_codes(
    env: tuple[str, Path],
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
) -> None:
    """aws's codes for a bad command line: 2 for what its parser rejects, 255 for a value it
    rejects after parsing; ours in one line, nothing transferred."""
    _, base = env
    (base / "src").mkdir()
    (base / "src" / "a.txt").write_bytes(b"a")
    theirs = aws_sync(["src", f"s3://{bucket}/p", *argv], base)
    ours = our_sync(["src", f"s3://{bucket}/p", *argv], base, capsys)
    assert (theirs.code, ours.code) == (code, code), (theirs, ours)
    assert ours.out == [] and len(ours.err) == 1, ours
    assert ours.err[0].startswith("watchsync: error: "), ours


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["src"], id="one-path"),
        pytest.param(["src", "dst"], id="two-local-paths"),
        pytest.param(["src", "s3:/{bucket}/p"], id="malformed-url"),
        pytest.param(["missing", "s3://{bucket}/p"], id="missing-source"),
    ],
)
def test_bad_paths_give_aws_codes(
    env: tuple[str, Path],
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    _, base = env
    (base / "src").mkdir()
    args = [a.format(bucket=bucket) for a in argv]
    theirs = aws_sync(args, base)
    ours = our_sync(args, base, capsys)
    assert ours.code == theirs.code, (theirs, ours)
    assert len(ours.err) == 1 and ours.err[0].startswith("watchsync: error: "), ours


def test_closed_stdout_ends_output_quietly_like_aws(
    env: tuple[str, Path], s3: S3Client, bucket: str
) -> None:
    """``sync ... | head -1``: the reader is gone before the first line; the run goes on, its
    deletes included, and exits 0 (aws's code), saying nothing about the pipe."""
    _, base = env
    for tool in ("aws", "ours"):
        tree = base / tool
        tree.mkdir()
        for i in range(20):
            (tree / f"f{i}").write_bytes(b"x" * i)
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"{tool}/extra{i}", Body=b"stale")
        cmd = {"aws": [AWS, "s3"], "ours": [sys.executable, "-m", "watchsync"]}[tool]
        proc = subprocess.Popen(
            [*cmd, "sync", str(tree), f"s3://{bucket}/{tool}", "--delete", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ | (AWS_ENV if tool == "aws" else {}),
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # what `head -1` does once it has its line, here at once
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert (tool, proc.wait(timeout=120), err) == (tool, 0, "")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{tool}/")
        keys = sorted(o["Key"].split("/", 1)[1] for o in listed.get("Contents", []))
        assert keys == sorted(f"f{i}" for i in range(20)), (tool, keys)  # extras deleted


# Every per-object flag, the values as a user gives them.
OBJECT_FLAGS = [
    "--cache-control", "max-age=60",
    "--content-disposition", "attachment",
    "--content-encoding", "identity",
    "--content-language", "de",
    "--expires", "2030-01-01T00:00:00Z",
    "--metadata", "owner=web,team=ops",
    "--storage-class", "STANDARD_IA",
    "--acl", "public-read",
    "--website-redirect", "/index.html",
    "--request-payer",
]  # fmt: skip
HEAD_FIELDS = [
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ExpiresString",
    "Metadata",
    "StorageClass",
    "WebsiteRedirectLocation",
]


def _settings_of(s3: S3Client, bucket: str, key: str) -> dict[str, object]:
    """What HEAD and the ACL say of an object, without the file's kept mtime (and mode),
    which watchsync adds to every upload's metadata on purpose (aws keeps none)."""
    head = s3.head_object(Bucket=bucket, Key=key)
    acl = s3.get_object_acl(Bucket=bucket, Key=key)
    got: dict[str, object] = {f: head.get(f) for f in HEAD_FIELDS}
    got["Metadata"] = {k: v for k, v in head["Metadata"].items() if k not in ("mtime", "mode")}
    return got | {"Grants": acl.get("Grants")}


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        pytest.param([], ["page.html", "big.bin", "plain"], id="guessed-type"),
        pytest.param(["--content-type", "text/x-mine"], ["page.html"], id="content-type"),
        pytest.param(["--no-guess-mime-type"], ["page.html"], id="no-guess"),
        pytest.param(["--metadata", '{"owner": "web team"}'], ["page.html"], id="json"),
    ],
)
def test_object_settings_match_aws(
    env: tuple[str, Path],
    s3: S3Client,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    names: list[str],
) -> None:
    """Objects uploaded with aws's per-object flags carry what aws's carry, small files
    (the native client's, or boto3's for metadata it cannot send as is) and multipart ones
    alike, as HEAD and the ACL show them."""
    _, base = env
    files = {"page.html": b"<p>hi</p>", "plain": b"no extension", "big.bin": b"b" * (9 << 20)}
    src = base / "src"
    src.mkdir()
    for name in names:
        (src / name).write_bytes(files[name])
    args = [*OBJECT_FLAGS, *extra, "--no-progress"]
    theirs = aws_sync(["src", f"s3://{bucket}/aws", *args], base)
    ours = our_sync(["src", f"s3://{bucket}/ours", *args], base, capsys)
    assert (theirs.code, ours.code) == (0, 0), (theirs, ours)
    for name in names:
        expected = _settings_of(s3, bucket, f"aws/{name}")
        assert _settings_of(s3, bucket, f"ours/{name}") == expected, name
    if not extra:  # the flags really reached the objects (not merely both ignored)
        got = _settings_of(s3, bucket, "ours/page.html")
        assert got["CacheControl"] == "max-age=60" and got["ContentType"] == "text/html", got
        assert got["Metadata"] == {"owner": "web", "team": "ops"}, got


def test_glacier_objects_are_skipped_as_by_aws(
    env: tuple[str, Path], s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Archived objects: skipped with aws's warning (exit 2), skipped quietly with
    --ignore-glacier-warnings (exit 0), tried with --force-glacier-transfer."""
    _, base = env
    s3.put_object(Bucket=bucket, Key="g/cold", Body=b"cold", StorageClass="GLACIER")
    s3.put_object(Bucket=bucket, Key="g/warm", Body=b"warm")
    for flags, code in (
        ([], 2),
        (["--ignore-glacier-warnings"], 0),
        (["--force-glacier-transfer"], 0),
    ):

        def args(tool: str, flags: list[str] = flags) -> list[str]:
            return [f"s3://{bucket}/g", f"dl-{tool}", "--no-progress", *flags]

        theirs, ours = both(
            args,
            lambda t: base,
            capsys,
            lambda t: {f"dl-{t}": "dl-T"},
        )
        assert theirs.code == code, (flags, theirs)
        assert ours == theirs, flags
        for tool in ("aws", "ours"):
            shutil.rmtree(base / f"dl-{tool}")


def test_page_size_lists_everything_like_aws(
    env: tuple[str, Path], s3: S3Client, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, base = env
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"pg/k{i}", Body=b"x")
    theirs, ours = both(
        lambda t: [f"s3://{bucket}/pg", f"dl-{t}", "--dryrun", "--page-size", "2"],
        lambda t: base,
        capsys,
        lambda t: {f"dl-{t}": "dl-T"},
    )
    assert theirs.code == 0 and len(theirs.out) == 5, theirs
    assert ours == theirs
