"""What ``sync`` reports of its progress: the bar's numbers, the closing summary (a line on
a terminal, JSON with ``--output json``), and the bytes the transfers report as they move.
The bar itself is seen through a real terminal in tests/test_tty.py."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchsync.cli.output import Reporter
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.transfer import open_transfer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
PAST = int(time.time()) - 86_400


def _tree(root: Path, files: dict[str, int]) -> None:
    for rel, size in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        os.utime(path, (PAST, PAST))


def test_json_summary_is_the_last_line_even_when_quiet(
    sync_cli: Any, bucket: str, tmp_path: Path
) -> None:
    _tree(tmp_path / "src", {"a": 1000, "b/c": 2000, "d": 0})
    code, out = sync_cli(str(tmp_path / "src"), f"s3://{bucket}", "--output", "json")
    assert code == 0 and len(out) == 4 and out[0].startswith("upload: ")
    report = json.loads(out[-1])
    assert {k: report[k] for k in ("uploaded", "downloaded", "deleted", "bytes")} == {
        "uploaded": 3,
        "downloaded": 0,
        "deleted": 0,
        "bytes": 3000,
    }
    assert (report["failed"], report["skipped"], report["exit_code"]) == (0, 0, 0)
    assert report["dryrun"] is False and report["seconds"] > 0

    (tmp_path / "src" / "b" / "c").unlink()
    code, out = sync_cli(str(tmp_path / "src"), f"s3://{bucket}", "--delete", "--dryrun",
                     "--quiet", "--output", "json")  # fmt: skip
    assert code == 0 and len(out) == 1  # nothing but the summary
    report = json.loads(out[0])
    assert (report["deleted"], report["uploaded"], report["dryrun"]) == (1, 0, True)


def test_json_summary_of_a_run_ended_by_an_error(
    sync_cli: Any, bucket: str, tmp_path: Path
) -> None:
    _tree(tmp_path / "src", {"a": 10})
    dead = "http://127.0.0.1:9"  # nothing listens there: the first request finds no endpoint
    code, out = sync_cli(str(tmp_path / "src"), f"s3://{bucket}", "--endpoint-url", dead,
                     "--output", "json")  # fmt: skip
    assert code == 1  # aws's code for a run S3 (here: its absence) ended
    report = json.loads(out[-1])
    assert report["exit_code"] == 1 and report["error"].startswith("fatal error: ")


def test_no_summary_line_in_a_pipe(sync_cli: Any, bucket: str, tmp_path: Path) -> None:
    """Scripts that read aws's lines get only those (a terminal gets the summary line)."""
    _tree(tmp_path / "src", {"a": 10})
    assert sync_cli(str(tmp_path / "src"), f"s3://{bucket}")[1] == [
        f"upload: {os.path.relpath(tmp_path / 'src' / 'a')} to s3://{bucket}/a"  # as aws prints it
    ]


def test_a_copy_found_current_by_its_kept_mtime_leaves_the_plan_and_the_summary(
    sync_cli: Any, bucket: str, tmp_path: Path
) -> None:
    later = (int(time.time()) + 86_400) * 10**9  # newer than LastModified: the listing says copy
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x" * 100)
    os.utime(tmp_path / "src" / "f", ns=(later, later))
    assert sync_cli(str(tmp_path / "src"), f"s3://{bucket}")[0] == 0
    code, out = sync_cli(str(tmp_path / "src"), f"s3://{bucket}", "--output", "json")
    assert code == 0 and len(out) == 1
    assert (json.loads(out[0])["uploaded"], json.loads(out[0])["bytes"]) == (0, 0)


def test_the_bar_counts_the_plan_and_shrinks_for_copies_found_current() -> None:
    reporter = Reporter(out=io.StringIO(), err=io.StringIO())
    for size in (10, 20, 30):
        reporter.planned(size)
    assert reporter.plan.describe() == "planning… 0/3+ files"
    reporter.planned_all()
    reporter.moved(10)
    reporter.settled(10)
    reporter.settled(20, needed=False)  # its object's kept mtime said it was current
    plan = reporter.plan
    assert (plan.files_done, plan.files_total, plan.bytes_done, plan.bytes_total) == (1, 2, 10, 40)
    assert plan.describe() == "1/2 files"


def test_summary_line_goes_to_stdout_unless_silenced() -> None:
    out = io.StringIO()
    with Reporter(
        out=out, err=io.StringIO(), summary=True, clock=iter([0.0, 0.0, 2.0]).__next__
    ) as r:
        r.totals.uploaded, r.totals.bytes = 2, 3 * MiB
    r.summary(exit_code=0)
    assert out.getvalue() == "Completed 2 uploads: 3.0 MiB in 2.0s (1.5 MiB/s)\n"
    quiet = io.StringIO()
    r = Reporter(out=quiet, err=io.StringIO(), summary=True, only_show_errors=True)
    r.summary(exit_code=0)
    assert quiet.getvalue() == ""


def test_transfers_report_large_files_part_by_part(
    s3: S3Client, bucket: str, tmp_path: Path, aws_env: dict[str, str]
) -> None:
    data = os.urandom(9 * MiB)
    (tmp_path / "big").write_bytes(data)
    moved: list[int] = []
    where = S3Url.parse(f"s3://{bucket}")
    with open_transfer(S3Settings(), where, tmp_path, on_bytes=moved.append) as transfer:
        transfer.upload("big")
        assert sum(moved) == len(data) and len(moved) >= 2  # an 8 MiB part, then the rest
        moved.clear()
        (tmp_path / "big").unlink()
        transfer.download("big", size=len(data), mtime_ns=0)
        assert sum(moved) == len(data) and len(moved) >= 2
        assert (tmp_path / "big").read_bytes() == data
