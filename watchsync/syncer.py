"""``watchsync sync``: wire the scanners, the planner and the executor together."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import UsageError
from .execute import Display, SyncExecutor
from .filters import Filters
from .local import WalkOptions, walk
from .model import Direction, Skipped, without_skipped
from .plan import SyncOptions, plan_sync
from .ratelimit import RateLimiter
from .remote import ClientSettings, S3Url, list_entries, make_client
from .report import Reporter
from .transfer import Transfer, UploadOptions, native_uploader

E = TypeVar("E")


@dataclass(frozen=True)
class SyncRequest:
    """One ``watchsync sync`` invocation, already validated."""

    local: str  # as the user typed it, for output lines
    url: S3Url
    direction: Direction
    delete: bool = False
    dry_run: bool = False
    size_only: bool = False
    exact_timestamps: bool = False
    follow_symlinks: bool = True
    filters: Filters = field(default_factory=Filters)
    client: ClientSettings = field(default_factory=ClientSettings)
    upload: UploadOptions = field(default_factory=UploadOptions)
    bwlimit: int | None = None


def run_sync(req: SyncRequest, reporter: Reporter, *, stop: threading.Event | None = None) -> None:
    """Run one sync; per-file problems are counted in ``reporter.totals``.

    >>> req = SyncRequest("dir", S3Url.parse("s3://bucket/p"), Direction.UP)
    >>> run_sync(req, Reporter())  # doctest: +SKIP
    """
    root = Path(req.local)
    if req.direction is Direction.UP and not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise UsageError(f"source directory {req.local!r} {what}")
    if req.direction is Direction.DOWN and root.exists() and not root.is_dir():
        raise UsageError(f"destination {req.local!r} is not a directory")
    client = make_client(req.client)
    limiter = RateLimiter(req.bwlimit) if req.bwlimit else None
    display = Display(req.local.rstrip("/") or "/", req.url)

    def on_skip(item: Skipped, remote_side: bool) -> None:
        with reporter.totals.lock:
            reporter.totals.skipped += 1
        shown = display.remote(item.path) if remote_side else display.local(item.path)
        reporter.problem(f"warning: Skipping file {_one_line(shown)}. {item.reason}.")

    local = without_skipped(
        walk(root, options=WalkOptions(follow_symlinks=req.follow_symlinks)),
        lambda s: on_skip(s, False),
    )
    remote = without_skipped(
        list_entries(client, req.url, for_download=req.direction is Direction.DOWN),
        lambda s: on_skip(s, True),
    )
    opts = SyncOptions(
        direction=req.direction,
        delete=req.delete,
        size_only=req.size_only,
        exact_timestamps=req.exact_timestamps,
        filters=req.filters,
    )
    if req.direction is Direction.DOWN and not req.dry_run:
        os.makedirs(root, exist_ok=True)
    with Transfer(
        client,
        req.url,
        root,
        options=req.upload,
        limiter=limiter,
        max_concurrency=req.client.max_concurrency,
        crt=None if req.dry_run or limiter else native_uploader(req.client, client),
    ) as transfer:
        SyncExecutor(
            transfer,
            display=display,
            reporter=reporter,
            max_concurrency=req.client.max_concurrency,
            dry_run=req.dry_run,
            stop=stop,
        ).run(plan_sync(local, remote, opts=opts))


def _one_line(text: str) -> str:
    """``text`` with control characters escaped, so a warning stays on one line.

    >>> _one_line("a\\nb\\x00")
    'a\\\\nb\\\\x00'
    """
    if not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii") if ord(c) < 0x20 or ord(c) == 0x7F else c
        for c in text
    )
