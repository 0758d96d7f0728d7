"""A file's mtime and mode as object metadata, in rclone's format, so that rclone and
watchsync read each other's times.

rclone keeps a file's mtime in the user metadata key ``mtime`` (the header
``X-Amz-Meta-Mtime``) as seconds since the epoch in fixed-point decimal, exact to the
nanosecond and without trailing zeros (``1577923200.5``, ``-0.25``, ``1577923200``), and,
with its ``--metadata``, the file's ``mode`` as the octal ``st_mode`` (``100755``).  Keys
come back from S3 in any case (``Mtime`` from rclone), so they are read case-blind.
Pure: strings in, numbers out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

MTIME_KEY = "mtime"
MODE_KEY = "mode"

_DECIMAL = re.compile(r"^(-?)(\d+)(?:\.(\d*))?$")
_OCTAL = re.compile(r"^0?[0-7]{1,7}$")


def format_mtime(ns: int) -> str:
    """An mtime in nanoseconds as rclone writes it.

    >>> format_mtime(1_577_923_200_500_000_000), format_mtime(-250_000_000), format_mtime(0)
    ('1577923200.5', '-0.25', '0')
    """
    if ns < 0:
        return "-" + format_mtime(-ns)
    whole, frac = divmod(ns, 1_000_000_000)
    digits = f"{frac:09d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def parse_mtime(text: str) -> int | None:
    """rclone's mtime string in nanoseconds (digits past the ninth are dropped, as rclone
    does); None for anything else.

    >>> parse_mtime("1577923200.123456789123"), parse_mtime("-0.25"), parse_mtime("soon")
    (1577923200123456789, -250000000, None)
    """
    match = _DECIMAL.match(text.strip())
    if match is None:
        return None
    sign, whole, frac = match.groups()
    ns = int(whole) * 1_000_000_000 + int(((frac or "") + "0" * 9)[:9])
    return -ns if sign else ns


def file_metadata(*, mtime_ns: int, mode: int | None) -> dict[str, str]:
    """The user metadata that keeps a file's mtime (and its mode, when given).

    >>> file_metadata(mtime_ns=1_577_923_200_000_000_000, mode=0o100755)
    {'mtime': '1577923200', 'mode': '100755'}
    """
    meta = {MTIME_KEY: format_mtime(mtime_ns)}
    if mode is not None:
        meta[MODE_KEY] = format(mode, "o")
    return meta


def keep_file_metadata(extra: MutableMapping[str, Any], *, mtime_ns: int, mode: int | None) -> None:
    """Add a file's mtime (and mode) to an upload's boto3 ExtraArgs as user metadata;
    metadata the caller already put under the same keys wins.

    >>> extra = {"Metadata": {"mode": "100600"}}
    >>> keep_file_metadata(extra, mtime_ns=1_500_000_000, mode=0o100755); extra
    {'Metadata': {'mtime': '1.5', 'mode': '100600'}}
    """
    extra["Metadata"] = file_metadata(mtime_ns=mtime_ns, mode=mode) | dict(
        extra.get("Metadata") or {}
    )


def stored_mtime(metadata: Mapping[str, str] | None) -> int | None:
    """The mtime an object's user metadata keeps, in nanoseconds; None when it keeps none
    (an object written by another tool) or one that cannot be read.

    >>> stored_mtime({"Mtime": "1577923200.5"}), stored_mtime({}), stored_mtime(None)
    (1577923200500000000, None, None)
    """
    value = _get(metadata, MTIME_KEY)
    return parse_mtime(value) if value is not None else None


def stored_mode(metadata: Mapping[str, str] | None) -> int | None:
    """The ``st_mode`` an object's user metadata keeps; None when none or unreadable.

    >>> oct(stored_mode({"mode": "100755"}) or 0), stored_mode({"mode": "rwx"})
    ('0o100755', None)
    """
    value = _get(metadata, MODE_KEY)
    if value is None or not _OCTAL.match(value.strip()):
        return None
    return int(value.strip(), 8)


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """User metadata as the HTTP headers of a request that writes it (the native client
    takes headers, boto3 a ``Metadata`` map).

    >>> metadata_headers({"mtime": "1.5"})
    {'x-amz-meta-mtime': '1.5'}
    """
    return {f"x-amz-meta-{key}": value for key, value in metadata.items()}


def _get(metadata: Mapping[str, str] | None, key: str) -> str | None:
    for name, value in (metadata or {}).items():
        if name.lower() == key:
            return value
    return None
