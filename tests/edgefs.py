"""Folders on the file systems of SD cards and USB disks, for the edge-filesystem tests:
exFAT and FAT mounted through FUSE where this machine can (root, ``/dev/fuse``, Debian's
``exfat-fuse``/``exfatprogs`` and ``fusefat``/``dosfstools``, which ``scripts/test`` installs;
exFAT on a loop device, FAT on an image file), and everywhere the same volumes simulated on
the test's own disk: a fixed :class:`~watchsync.core.model.Volume` given to the
:class:`~watchsync.fs.volume.FolderVolume` seam (coarse times, no ctime, failing link(),
names that fold case and refuse ``:*?"<>|``).

``fusefat`` rejects appends and writes at an offset, never updates an mtime on a rewrite and
has hung under parallel downloads: the tests on real FAT keep to whole-file writes, a few
small files and one transfer at a time, each mount and command under a timeout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from watchsync.core.model import Volume
from watchsync.fs.volume import FolderVolume

S = 10**9
EXFAT = Volume(
    mtime_step_ns=S, ctime=False, case_sensitive=False, hard_links=False, refused=':*?"<>|\\'
)
FAT = replace(EXFAT, mtime_step_ns=2 * S)
_TIMEOUT = 30.0
_IMAGE_SIZE = 64 * 1024 * 1024


@dataclass(frozen=True)
class Edge:
    """A folder on one kind of volume: ``real`` (mounted) or simulated."""

    kind: str  # "exfat" or "fat"
    root: Path
    volume: FolderVolume
    real: bool

    @property
    def expected(self) -> Volume:
        return EXFAT if self.kind == "exfat" else FAT


def why_no_fuse(kind: str) -> str | None:
    """Why a real ``kind`` volume cannot be mounted here (None: it can)."""
    if os.geteuid() != 0:
        return "mounting needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    tools = {
        "exfat": ("mkfs.exfat", "mount.exfat-fuse", "losetup"),
        "fat": ("mkfs.vfat", "fusefat"),
    }
    missing = [t for t in tools[kind] if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else None


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    if done.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


@contextlib.contextmanager
def mounted(kind: str, where: Path) -> Iterator[Path]:
    """A fresh ``kind`` file system in an image under ``where``, mounted at ``where/mnt``."""
    image, mnt = where / f"{kind}.img", where / "mnt"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(_IMAGE_SIZE)
    loop = ""
    try:
        if kind == "exfat":
            _run("mkfs.exfat", str(image))
            loop = _run("losetup", "--find", "--show", str(image))
            _run("mount.exfat-fuse", loop, str(mnt))
        else:
            _run("mkfs.vfat", str(image))
            _run("fusefat", "-o", "rw+", str(image), str(mnt))
        yield mnt
    finally:
        if os.path.ismount(mnt):
            try:
                _run("umount", str(mnt))
            except (OSError, subprocess.TimeoutExpired):
                subprocess.run(["umount", "-l", str(mnt)], timeout=_TIMEOUT, check=False)
        if loop:
            subprocess.run(["losetup", "-d", loop], timeout=_TIMEOUT, check=False)


def edge_params(*kinds: str) -> list[object]:
    """``pytest.param``s of each kind, real and simulated (the real ones skipped, saying why,
    where they cannot be mounted)."""
    params: list[object] = []
    for kind in kinds:
        why = why_no_fuse(kind)
        marks = [pytest.mark.skip(reason=f"real {kind}: {why}")] if why else []
        params.append(pytest.param((kind, True), id=f"{kind}-fuse", marks=marks))
        params.append(pytest.param((kind, False), id=f"{kind}-simulated"))
    return params


@contextlib.contextmanager
def edge_folder(kind: str, real: bool, tmp: Path) -> Iterator[Edge]:
    """A folder on a ``kind`` volume: mounted for real, or on ``tmp``'s disk, simulated."""
    if not real:
        root = tmp / "folder"
        root.mkdir()
        fixed = EXFAT if kind == "exfat" else FAT
        yield Edge(kind, root, FolderVolume(root, fixed=fixed), real=False)
        return
    with mounted(kind, tmp) as mnt:
        root = mnt / "folder"
        root.mkdir()
        volume = FolderVolume(root)
        volume.learn()
        yield Edge(kind, root, volume, real=True)
