"""The quick look of a ``sync``: is there nothing to do?  Answered without the SDK.

Cron jobs and dev-folder mirrors run ``sync`` on small trees that are mostly in step.  Such
a run costs the time to import boto3 and build its client (about 0.35 s) more than the
listing itself, so before either the run walks the folder, lists the prefix through
:class:`~watchsync.s3.quick_list.QuickLister` and plans as usual.  The first planned action
ends the look, and the run goes the usual way, its listing starting from the pages the look
read (at most :data:`QUICK_PAGES`); a plan with no action is the whole run, its skipped
paths reported as the usual way would report them, in the same order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from watchsync.core.model import Direction, Skipped, without_skipped
from watchsync.core.plan import SyncOptions, plan_sync, settle_by_stored_mtime
from watchsync.fs.walk import WalkOptions, walk
from watchsync.s3.listpage import Page
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.quick_list import QuickLister, QuickUnavailable
from watchsync.s3.quick_route import quick_route

logger = logging.getLogger(__name__)

# Pages a quick look reads at most (S3 pages hold 1,000 keys): a larger tree is listed once,
# the usual way.
QUICK_PAGES = 10
# Objects a quick look asks one by one for the mtime they keep (a same-size copy that
# LastModified alone would make: an object watchsync wrote is newer than the file it came
# from, or went to), as the usual way would ask them.
QUICK_HEADS = 1_000


@dataclass
class Look:
    """What a quick look found: ``idle``, the run has nothing else to do but report the
    ``skipped`` paths (each with whether it is S3's); else the listing's ``pages`` it read,
    by the continuation token that asked for each (None: the first)."""

    idle: bool = False
    skipped: list[tuple[Skipped, bool]] = field(default_factory=list)
    pages: dict[str | None, Page] = field(default_factory=dict)


def quick_look(
    root: Path,
    where: S3Url,
    settings: S3Settings,
    *,
    opts: SyncOptions,
    walk_options: WalkOptions,
) -> Look:
    """Whether the run has anything to do; not idle also when only botocore can tell.

    >>> quick_look(Path("/nonexistent"), S3Url.parse("s3://bucket/p"), S3Settings(),
    ...            opts=SyncOptions(direction=Direction.DOWN), walk_options=WalkOptions())
    Look(idle=False, skipped=[], pages={})
    """
    if opts.direction is Direction.DOWN and not root.is_dir():
        return Look()  # the usual way makes the folder
    route = quick_route(settings, where.bucket)
    if isinstance(route, str):
        logger.debug("sync: no quick look: %s", route)
        return Look()
    skipped: list[tuple[Skipped, bool]] = []
    with QuickLister(route, max_pages=QUICK_PAGES) as lister:
        local = without_skipped(
            walk(root, options=walk_options), lambda s: skipped.append((s, False))
        )
        remote = without_skipped(
            lister.listing(
                where,
                for_download=opts.direction is Direction.DOWN,
                page_size=settings.page_size,
                request_extra=settings.payer_args(),
            ),
            lambda s: skipped.append((s, True)),
        )
        heads = 0
        try:
            for item in plan_sync(local, remote, opts=opts):
                if isinstance(item, Skipped):
                    skipped.append((item, True))
                    continue
                heads += 1
                if item.by_stored_mtime is None or heads > QUICK_HEADS or settings.sse_c:
                    return Look(pages=lister.read)
                key, payer = where.key(item.path), settings.request_payer
                head = lister.head(where.bucket, key, item.path, payer=payer)
                if settle_by_stored_mtime(item, head, step_ns=opts.volume.mtime_step_ns):
                    return Look(pages=lister.read)
        except QuickUnavailable as exc:
            logger.debug("sync: quick look gave up: %s", exc)
            return Look(pages=lister.read)
        except Exception:  # whatever it was, the usual way meets it again and words it
            logger.debug("sync: quick look failed", exc_info=True)
            return Look()
    return Look(idle=True, skipped=skipped)
