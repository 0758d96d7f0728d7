"""No version lost in the executor's windows, against the real SeaweedFS: a local edit that
lands while a download replaces the file, conditional multipart uploads, and a conditional
upload whose first answer was lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fakes import InlinePool, RecordedEvents

from watchsync.execute import Executor, NullRecorder, Outcome
from watchsync.local import stat_entry
from watchsync.model import Action, Kind
from watchsync.remote import S3Url
from watchsync.transfer import Transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "folder"
    path.mkdir()
    return path


class EditDuringDownload(Transfer):
    """The user saves ``doc.txt`` while its download is in flight (after the check)."""

    atomic = False

    def _get(self, key: str, tmp: Path, etag: str) -> None:
        super()._get(key, tmp, etag)
        target = self.root / "doc.txt"
        if self.atomic:  # an editor's save: a new file renamed over the old one
            (self.root / ".doc.swp").write_bytes(b"edited during the download")
            os.replace(self.root / ".doc.swp", target)
        else:
            with target.open("ab") as f:
                f.write(b" + edited during the download")


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic-save"])
def test_download_keeps_a_local_edit_made_while_it_replaced_the_file(
    s3: S3Client, bucket: str, root: Path, atomic: bool
) -> None:
    where = S3Url(bucket, "p/")
    s3.put_object(Bucket=bucket, Key="p/doc.txt", Body=b"newer in S3")
    (root / "doc.txt").write_bytes(b"synced version")
    local = stat_entry(root, "doc.txt")
    transfer = EditDuringDownload(s3, where, root)
    transfer.atomic = atomic
    with transfer:
        remote = transfer.head("doc.txt")
        events = RecordedEvents()
        executor = Executor(
            transfer,
            recorder=NullRecorder(),
            events=events,
            pool=InlinePool,
            conditional=True,
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
