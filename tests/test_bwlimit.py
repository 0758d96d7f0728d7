"""``--bwlimit`` holds on every path: many small files (the native client), one medium file
(a single PUT) and one large file (multipart), uploads and downloads, against the real
SeaweedFS server.

The only tests here that time a rate.  Each case is sized to take about four seconds at its
cap; the rate is the bytes over the run's wall time from its first byte on the wire (seen
by a loopback proxy) to its end, so the client's start-up (building boto3's objects, which
on a loaded machine takes longer than a whole small transfer) does not count, but
everything after it does.  It must be within 10 % of the cap."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from netproxy import NetProxy
from s3server import SeaweedServer

from watchsync.cli.main import main

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KiB = 1024
MiB = 1024 * KiB
PAST = int(time.time()) - 86_400

# (case, file sizes, cap as the user writes it): about 4 s each at the cap.
CASES = [
    ("small", [4 * KiB] * 250, "250K"),
    ("medium", [6 * MiB], "1536K"),
    ("multipart", [20 * MiB], "5M"),
]


def _cap(text: str) -> int:
    return int(float(text[:-1]) * {"K": KiB, "M": MiB}[text[-1]])


def _rate(s3server: SeaweedServer, nbytes: int, *argv: str) -> float:
    """Bytes per second of one ``sync``, from its first byte on the wire to its end."""
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        flags = ["--no-progress", "--only-show-errors", "--endpoint-url", proxy.endpoint]
        code = main(["sync", *flags, *argv])
        ended = time.monotonic()
        started = proxy.first_byte_at
    assert code == 0 and started is not None
    return nbytes / (ended - started)


@pytest.mark.parametrize(("case", "sizes", "cap"), CASES, ids=[c[0] for c in CASES])
def test_bwlimit_holds_uploads_and_downloads_to_the_cap(
    case: str,
    sizes: list[int],
    cap: str,
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i, size in enumerate(sizes):
        f = src / f"f{i:04d}.bin"
        f.write_bytes(os.urandom(size))
        os.utime(f, (PAST, PAST))
    total, rate = sum(sizes), _cap(cap)
    up = _rate(s3server, total, str(src), f"s3://{bucket}/{case}", "--bwlimit", cap)
    down = _rate(s3server, total, f"s3://{bucket}/{case}", str(dst), "--bwlimit", cap)
    print(f"{case}: up {up / rate:.3f}, down {down / rate:.3f} of the cap")
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in src.iterdir())
    assert 0.9 * rate <= up <= 1.1 * rate, f"upload at {up / rate:.2f} of the cap"
    assert 0.9 * rate <= down <= 1.1 * rate, f"download at {down / rate:.2f} of the cap"
