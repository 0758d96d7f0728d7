"""No version lost in the executor's windows, against the real SeaweedFS: a local edit that
lands while a download replaces the file, conditional multipart uploads, and a conditional
upload whose first answer was lost.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fakes import InlinePool, RecordedEvents
from helpers import fails_with
from s3server import SeaweedServer

from watchsync.core.errors import FailureKind
from watchsync.core.model import Action, Condition, Kind
from watchsync.engine.executor import Executor, Outcome
from watchsync.engine.policy import ExecPolicy
from watchsync.engine.reporting import NullRecorder
from watchsync.fs.walk import stat_entry
from watchsync.s3.location import S3Url
from watchsync.s3.retry import RetryPolicy
from watchsync.s3.transfer import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


def edit_during_download(transfer: Transfer, *, atomic: bool) -> None:
    """The user saves ``doc.txt`` while its download is in flight (after the check)."""
    fetch = transfer.downloads._get
    root = transfer.root

    def get_then_edit(key: str, tmp: Path, etag: str) -> Mapping[str, str]:
        kept = fetch(key, tmp, etag)
        target = root / "doc.txt"
        if atomic:  # an editor's save: a new file renamed over the old one
            (root / ".doc.swp").write_bytes(b"edited during the download")
            os.replace(root / ".doc.swp", target)
        else:
            with target.open("ab") as f:
                f.write(b" + edited during the download")
        return kept

    transfer.downloads._get = get_then_edit  # type: ignore[method-assign]


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic-save"])
def test_download_keeps_a_local_edit_made_while_it_replaced_the_file(
    s3: S3Client, bucket: str, root: Path, atomic: bool
) -> None:
    where = S3Url(bucket, "p/")
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(root, "doc.txt")
    transfer = Transfer(s3, where, root)
    edit_during_download(transfer, atomic=atomic)
    with transfer:
        remote = transfer.head("doc.txt")
        events = RecordedEvents()
        executor = Executor(
            transfer,
            recorder=NullRecorder(),
            events=events,
            pool=InlinePool,
            policy=ExecPolicy.AGENT,
            conflict_name=lambda p: "doc.conflict-1.txt",
        )
        action = Action(Kind.DOWNLOAD, "doc.txt", "remote changed", local, remote)
        assert executor.apply(action) is Outcome.DONE
    assert (root / "doc.txt").read_bytes() == b"newer in S3"
    kept = (root / "doc.conflict-1.txt").read_bytes()
    assert kept.endswith(b"edited during the download")
    assert ("conflict", "doc.conflict-1.txt") in events.seen
    assert sorted(os.listdir(root)) == ["doc.conflict-1.txt", "doc.txt"]  # no temp file left


def test_download_over_an_unchanged_file_keeps_no_copy(
    s3: S3Client, bucket: str, root: Path
) -> None:
    where = S3Url(bucket, "p/")
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(root, "doc.txt")
    with Transfer(s3, where, root) as transfer:
        remote = transfer.head("doc.txt")
        events = RecordedEvents()
        executor = Executor(
            transfer,
            recorder=NullRecorder(),
            events=events,
            pool=InlinePool,
            conflict_name=lambda p: "doc.conflict-1.txt",
        )
        executor.apply(Action(Kind.DOWNLOAD, "doc.txt", "remote changed", local, remote))
    assert os.listdir(root) == ["doc.txt"]
    assert (root / "doc.txt").read_bytes() == b"newer in S3"
    assert not [e for e in events.seen if e[0] == "conflict"]


def lose_first_answer(s3: S3Client, operation: str) -> list[int]:
    """The server stores the first ``operation`` but its answer never arrives (a reset);
    returns the list of calls seen."""
    seen: list[int] = []

    def after_call(**_kwargs: Any) -> None:
        seen.append(1)
        if len(seen) == 1:
            raise ConnectionResetError("answer lost")

    s3.meta.events.register(f"after-call.s3.{operation}", after_call)
    return seen


@pytest.mark.parametrize("expect", ["", "old"], ids=["if-none-match", "if-match"])
def test_retry_after_a_lost_answer_is_recorded_not_a_conflict(
    s3server: SeaweedServer, bucket: str, root: Path, expect: str
) -> None:
    """The first PUT was stored, its answer lost; the retry's 412 is our own write."""
    s3 = s3server.client()
    where = S3Url(bucket, "p/")
    etag = ""
    if expect == "old":
        etag = s3.put_object(Bucket=bucket, Key="p/a.txt", Body=b"old")["ETag"].strip('"')
    (root / "a.txt").write_bytes(b"new content")
    seen = lose_first_answer(s3, "PutObject")
    events = RecordedEvents()
    with Transfer(s3, where, root, retry=RetryPolicy(initial=0.01)) as transfer:
        executor = Executor(
            transfer,
            recorder=NullRecorder(),
            events=events,
            pool=InlinePool,
            policy=ExecPolicy.AGENT,
            conflict_name=lambda p: "a.conflict-1.txt",
        )
        local = stat_entry(root, "a.txt")
        action = Action(Kind.UPLOAD, "a.txt", "local changed", local, condition=Condition(etag))
        assert executor.apply(action) is Outcome.DONE
    assert len(seen) == 2  # the retry happened, and met our own object
    assert os.listdir(root) == ["a.txt"]
    body = s3.get_object(Bucket=bucket, Key="p/a.txt")["Body"].read()
    assert body == b"new content"
    assert [k for k, _ in events.seen] == ["finished"]


BIG = 9 * 1024 * 1024  # two parts of a multipart upload


@pytest.mark.parametrize("condition", ["if-none-match", "if-match-stale", "if-match-current"])
def test_multipart_upload_is_conditional(
    s3: S3Client, bucket: str, root: Path, condition: str
) -> None:
    """A large file changed on both sides: S3's version is never overwritten unseen."""
    where = S3Url(bucket, "p/")
    first = s3.put_object(Bucket=bucket, Key="p/big.bin", Body=b"theirs")["ETag"].strip('"')
    data = os.urandom(BIG)
    (root / "big.bin").write_bytes(data)
    with Transfer(s3, where, root) as transfer:
        if condition == "if-match-current":
            up = transfer.upload("big.bin", condition=Condition(first))
            head = s3.head_object(Bucket=bucket, Key="p/big.bin")
            assert up.etag == head["ETag"].strip('"') and up.etag.endswith("-2")
            assert s3.get_object(Bucket=bucket, Key="p/big.bin")["Body"].read() == data
            return
        s3.put_object(Bucket=bucket, Key="p/big.bin", Body=b"theirs, newer")
        with fails_with(FailureKind.PRECONDITION):
            if condition == "if-none-match":
                transfer.upload("big.bin", condition=Condition.ABSENT)
            else:
                transfer.upload("big.bin", condition=Condition(first))
    assert s3.get_object(Bucket=bucket, Key="p/big.bin")["Body"].read() == b"theirs, newer"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted


def test_multipart_retry_after_a_lost_answer_is_recorded(
    s3server: SeaweedServer, bucket: str, root: Path
) -> None:
    """CompleteMultipartUpload was applied but its answer lost: the retry finds the upload
    gone, and the object holding the file's bytes is recorded as ours."""
    s3 = s3server.client()
    data = os.urandom(BIG)
    (root / "big.bin").write_bytes(data)
    seen = lose_first_answer(s3, "CompleteMultipartUpload")
    with Transfer(s3, S3Url(bucket, "p/"), root, retry=RetryPolicy(initial=0.01)) as transfer:
        executor = Executor(
            transfer, recorder=NullRecorder(), events=RecordedEvents(), policy=ExecPolicy.AGENT
        )
        local = stat_entry(root, "big.bin")
        action = Action(Kind.UPLOAD, "big.bin", "new local file", local, condition=Condition.ABSENT)
        assert executor.apply(action) is Outcome.DONE
    assert len(seen) == 2
    assert s3.get_object(Bucket=bucket, Key="p/big.bin")["Body"].read() == data
    assert os.listdir(root) == ["big.bin"]
