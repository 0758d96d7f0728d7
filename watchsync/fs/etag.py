"""The ETag S3 would give a local file, so equal content can be recognised without a transfer.

Single-part uploads get the MD5 of the content; multipart ones the MD5 of the parts' MD5s
followed by ``-N``.  Objects encrypted with KMS or uploaded with other part sizes have
ETags that cannot be predicted: then the answer is simply "unknown" (None).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SINGLE = re.compile(r"^[0-9a-f]{32}$")
_MULTI = re.compile(r"^[0-9a-f]{32}-(\d+)$")


def matches(path: Path, etag: str, *, part_size: int, threshold: int) -> bool | None:
    """Whether the file at ``path`` has content with this ETag; None when it can't be told.

    >>> matches(Path("/dev/null"), "d41d8cd98f00b204e9800998ecf8427e", part_size=8, threshold=8)
    True
    """
    etag = etag.strip('"').lower()
    if _SINGLE.match(etag):
        return _md5(path, None) == etag
    m = _MULTI.match(etag)
    if m is None:
        return None
    want_parts = int(m.group(1))
    got = _md5(path, part_size)
    if not got.endswith(f"-{want_parts}"):
        return None  # another part size: unknown, not different
    return got == etag


def _md5(path: Path, part_size: int | None) -> str:
    """MD5 of the whole file, or the multipart form when ``part_size`` is given."""
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    with open(path, "rb") as f:
        if part_size is None:
            while chunk := f.read(1024 * 1024):
                whole.update(chunk)
            return whole.hexdigest()
        while chunk := f.read(part_size):
            parts.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    if len(parts) <= 1:
        return hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest() + "-1"
    return hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest() + f"-{len(parts)}"
