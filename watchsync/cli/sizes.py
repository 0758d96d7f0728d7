"""Sizes as a run prints them: binary units, as ``--bwlimit`` counts them."""

from __future__ import annotations

from rich.filesize import pick_unit_and_suffix

_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def binary_size(nbytes: float) -> str:
    """A byte count in powers of 1024, as ``--bwlimit`` reads them.

    >>> binary_size(0), binary_size(1023), binary_size(1536), binary_size(3_774_873)
    ('0 B', '1023 B', '1.5 KiB', '3.6 MiB')
    """
    unit, suffix = pick_unit_and_suffix(int(nbytes), _UNITS, 1024)
    return f"{int(nbytes)} B" if unit == 1 else f"{nbytes / unit:.1f} {suffix}"
