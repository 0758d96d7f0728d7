"""``--bwlimit`` holds on every path: many small files (the native client), one medium file
(a single PUT) and one large file (multipart), uploads and downloads, against the real
SeaweedFS server.

The only tests here that time a rate.  Each case is sized to take four to eight seconds at its
cap, and the rate must be within 10 % of it.  It is the bytes over the time the wire carried
them, as a loopback proxy sees it: an upload from its first PUT to its last byte sent (what
comes before moves no content: the client's start-up, which on a loaded machine takes
longer than a small transfer, the listing, a large file's checksum and its multipart
upload's creation; what follows is the server's work, its assembly of the parts); a
download from the run's first byte (its listing) to the run's end (its bytes are paced as
they are read, so the last one is read at the end; the kernel's buffers take the first ones
faster than that)."""

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

# (case, file sizes, cap as the user writes it): 4 s, 4 s and 8 s at the cap.
CASES = [
    ("small", [4 * KiB] * 125, "125K"),
    ("medium", [6 * MiB], "1536K"),
    ("multipart", [40 * MiB], "5M"),
]


def _cap(text: str) -> int:
    return int(float(text[:-1]) * {"K": KiB, "M": MiB}[text[-1]])


def _rate(s3server: SeaweedServer, nbytes: int, *argv: str, upload: bool) -> float:
    """Bytes per second of one ``sync`` on the wire (see the module's docstring)."""
    with NetProxy("127.0.0.1", s3server.port) as proxy:
        flags = ["--no-progress", "--only-show-errors", "--endpoint-url", proxy.endpoint]
        code = main(["sync", *flags, *argv])
        ended = proxy.last_sent_at if upload else time.monotonic()
        started = proxy.first_put_at if upload else proxy.first_byte_at
    assert code == 0 and started is not None and ended is not None
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
    up = _rate(s3server, total, str(src), f"s3://{bucket}/{case}", "--bwlimit", cap, upload=True)
    down = _rate(s3server, total, f"s3://{bucket}/{case}", str(dst), "--bwlimit", cap, upload=False)
    print(f"{case}: up {up / rate:.3f}, down {down / rate:.3f} of the cap")
    assert sorted(p.name for p in dst.iterdir()) == sorted(p.name for p in src.iterdir())
    assert 0.9 * rate <= up <= 1.1 * rate, f"upload at {up / rate:.2f} of the cap"
    assert 0.9 * rate <= down <= 1.1 * rate, f"download at {down / rate:.2f} of the cap"
