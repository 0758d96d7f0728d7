"""Folders on the file systems of SD cards and USB disks, for the edge-filesystem tests:
exFAT and FAT mounted through FUSE where this machine can (root, ``/dev/fuse``, Debian's
``exfat-fuse``/``exfatprogs`` and ``fusefat``/``dosfstools``, which ``scripts/test`` installs;
exFAT on a loop device, FAT on an image file), and everywhere the same volumes simulated on
the test's own disk: a fixed :class:`~watchsync.core.model.Volume` given to the
:class:`~watchsync.fs.volume.FolderVolume` seam (coarse times, no ctime, failing link(),
names that fold case and refuse ``:*?"<>|``).

``fusefat`` rejects appends and writes at an offset, never updates an mtime on a rewrite and
has hung under parallel downloads: the tests on real FAT keep to whole-file writes, a few
small files and one transfer at a time, each mount and command under a timeout.  No test
hangs on a stuck file system: a mount lives at most :data:`_DEADLINE` seconds, after which
its FUSE daemon is killed (every operation on it then fails: "Transport endpoint is not
connected") and it is unmounted lazily.  A machine that cannot mount skips the real kinds,
saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
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
_DEADLINE = 150.0  # s a mount may live: below the tests' own timeout (pyproject)
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


class Card:
    """A ``kind`` file system in an image under ``where`` (exFAT on a loop device), mounted
    at ``where/mnt`` through FUSE: its daemon can be killed (the mount left dead: "Transport
    endpoint is not connected"), the mount unmounted lazily, and the same image mounted
    there again by a new daemon, as a card pulled and put back."""

    def __init__(self, kind: str, where: Path) -> None:
        self.kind = kind
        self.image, self.mnt = where / f"{kind}.img", where / "mnt"
        self.loop = ""
        self.daemon: int | None = None

    def make(self) -> None:
        """A fresh file system in the image, mounted."""
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(_IMAGE_SIZE)
        if self.kind == "exfat":
            _run("mkfs.exfat", str(self.image))
            self.loop = _run("losetup", "--find", "--show", str(self.image))
        else:
            _run("mkfs.vfat", str(self.image))
        self.mount()

    def mount(self, *, new_device: bool = False) -> None:
        """The image mounted at ``mnt`` by a new FUSE daemon; ``new_device``: exFAT on
        another loop device (the card put back shows a new device id), the old one freed
        once nothing holds it."""
        if self.kind == "exfat" and new_device:
            old, self.loop = self.loop, _run("losetup", "--find", "--show", str(self.image))
            subprocess.run(
                ["losetup", "-d", old], capture_output=True, timeout=_TIMEOUT, check=False
            )
        if self.kind == "exfat":
            _run("mount.exfat-fuse", self.loop, str(self.mnt))
        else:
            _run("fusefat", "-o", "rw+", str(self.image), str(self.mnt))
        self.daemon = daemon_of(self.mnt)

    def kill(self) -> None:
        """The FUSE daemon killed (``kill -9``): the mount stays, dead."""
        if self.daemon is not None:
            with contextlib.suppress(OSError):
                os.kill(self.daemon, signal.SIGKILL)

    def unmount_lazily(self) -> None:
        """``umount -l``: the mount point shows the directory under it again at once."""
        subprocess.run(
            ["umount", "-l", str(self.mnt)], capture_output=True, timeout=_TIMEOUT, check=False
        )

    def end(self) -> None:
        """A stuck mount ended: its daemon killed (what waits on it fails), lazily unmounted."""
        self.kill()
        self.unmount_lazily()

    def close(self) -> None:
        """Unmount without looking at the mount first (a stat of a stuck mount would hang):
        lazily, then the daemon given a few seconds to end (killed after); the loop freed."""
        self.unmount_lazily()
        if self.daemon is not None:
            ends = time.monotonic() + 10
            while os.path.exists(f"/proc/{self.daemon}") and time.monotonic() < ends:
                time.sleep(0.05)  # polled: its end is not signalled to us (not our child)
            self.kill()  # still there: stuck
        if self.loop:
            subprocess.run(["losetup", "-d", self.loop], timeout=_TIMEOUT, check=False)


@contextlib.contextmanager
def card_mounted(kind: str, where: Path, *, deadline: float = _DEADLINE) -> Iterator[Card]:
    """A :class:`Card` of ``kind`` made and mounted under ``where`` for at most ``deadline``
    seconds (skipped, saying why, where it cannot be mounted)."""
    card = Card(kind, where)
    try:
        card.make()
    except (OSError, subprocess.TimeoutExpired) as exc:
        card.close()
        pytest.skip(f"real {kind}: cannot mount here: {exc}")
    ends = threading.Timer(deadline, card.end)
    ends.start()
    try:
        yield card
    finally:
        ends.cancel()
        ends.join()
        card.close()


@contextlib.contextmanager
def mounted(kind: str, where: Path, *, deadline: float = _DEADLINE) -> Iterator[Path]:
    """A fresh ``kind`` file system in an image under ``where``, mounted at ``where/mnt``
    for at most ``deadline`` seconds (skipped, saying why, where it cannot be mounted)."""
    with card_mounted(kind, where, deadline=deadline) as card:
        yield card.mnt


def daemon_of(mnt: Path) -> int | None:
    """The pid of the FUSE daemon this module started for ``mnt`` (named in its arguments)."""
    want = os.fsencode(mnt)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if want in args:
            return int(pid)
    return None


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
