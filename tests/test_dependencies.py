"""The dependencies as declared: the floors in pyproject.toml are the versions that
constraints-min.txt pins (scripts/test runs the tests that lean on them with exactly those),
and on Linux the parts that would otherwise fall back quietly are there: the tracking inotify
observer (built on watchdog's internals) and the native upload client (awscrt)."""

from __future__ import annotations

import platform as host
import sys
import tomllib
from pathlib import Path

import boto3
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from watchsync.fs import watcher
from watchsync.s3 import native

REPO = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")


def declared() -> dict[str, Requirement]:
    """The runtime dependencies that apply on this machine, by name."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(text) for text in project["dependencies"]]
    return {canonicalize_name(r.name): r for r in reqs if r.marker is None or r.marker.evaluate()}


def pinned() -> dict[str, Version]:
    """constraints-min.txt: name -> the exact version it pins."""
    pins: dict[str, Version] = {}
    for line in (REPO / "constraints-min.txt").read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, _, version = text.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(lows) if lows else None


def test_every_dependency_has_a_floor_and_its_pin_is_that_floor() -> None:
    deps, pins = declared(), pinned()
    assert sorted(pins) == sorted(deps)
    for name, req in deps.items():
        assert floor(req) is not None, f"{req}: declare the oldest version that works"
        assert pins[name] == floor(req), f"constraints-min.txt pins {name}=={pins[name]}: {req}"
        assert req.specifier.contains(pins[name])


@pytest.mark.skipif(not LINUX, reason="the tracking observer is Linux's")
def test_the_tracking_inotify_observer_is_there() -> None:
    assert watcher.HAVE_INOTIFY, (
        f"watchdog's inotify internals did not import ({watcher.NO_INOTIFY_WHY}): "
        "the watcher would fall back to watchdog's plain observer"
    )


@pytest.mark.skipif(
    not LINUX or host.machine() not in ("x86_64", "aarch64"),
    reason="awscrt ships wheels for Linux x86_64 and aarch64",
)
def test_the_native_upload_client_is_there() -> None:
    assert native.available(), "awscrt is missing or too old: every upload would go by boto3"
    session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s")
    # Built with every option the transfer sets (an older awscrt refuses some of them).
    with native.CrtUploader(
        endpoint_url="http://127.0.0.1:9", region="us-east-1", session=session, max_retries=0
    ):
        pass
