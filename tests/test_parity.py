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
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from s3server import SeaweedServer

from watchsync.cli.main import main
from watchsync.s3.client import mtime_ns

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

AWS = str(Path(sys.executable).parent / "aws")
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
