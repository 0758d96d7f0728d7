"""``watchsync sync``: wire the scanners, the planner and the executor together, and print
what happens in ``aws s3 sync``'s words, paths and exit codes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from watchsync.cli.output import Reporter
from watchsync.cli.quick_look import Look, quick_look
from watchsync.core.errors import (
    AWS_FAILED,
    AWS_OK,
    AWS_SKIPPED,
    FailureKind,
    FileError,
    UsageError,
    failure_of,
)
from watchsync.core.filters import Filters
from watchsync.core.model import Action, Direction, Kind, SkipKind, Skipped, without_skipped
from watchsync.core.plan import (
    NOT_IN_SOURCE,
    DeleteCaps,
    Deletes,
    Hold,
    SyncOptions,
    hold_deletes,
    plan_sync,
)
from watchsync.engine.lookahead import Lookahead
from watchsync.engine.policy import NOTHING_SEEN, Counted, ExecPolicy, Seen
from watchsync.engine.reporting import NullRecorder, Veto
from watchsync.fs.tempfiles import guard_temp_files
from watchsync.fs.volume import FolderVolume
from watchsync.fs.walk import WalkOptions, walk
from watchsync.s3.location import S3Settings, S3Url

# Attempts in a row (over 10 s or more) that found no connection before a run gives up.
GIVE_UP_AFTER = 8


# What aws says of each kind of skipped path (awscli/customizations/s3/filegenerator.py and
# s3handler.py), word for word.
AWS_SKIP_WORDS = {
    SkipKind.MISSING: "File does not exist.",
    SkipKind.SPECIAL: "File is character special device, block special device, FIFO, or socket.",
    SkipKind.UNREADABLE: "File/Directory is not readable.",
    SkipKind.PARENT: "File references a parent directory.",
    SkipKind.ARCHIVED: (
        "Object is of storage class GLACIER. Unable to perform download operations on GLACIER "
        "objects. You must restore the object to be able to perform the operation. See aws s3 "
        "download help for additional parameter options to ignore or force these transfers."
    ),
}


@dataclass(frozen=True)
class SyncRequest:
    """One ``watchsync sync`` invocation, already validated."""

    local: str  # as the user typed it
    url: S3Url
    direction: Direction
    delete: bool = False
    dry_run: bool = False
    size_only: bool = False
    exact_timestamps: bool = False
    follow_symlinks: bool = True
    filters: Filters = field(default_factory=Filters)
    s3: S3Settings = field(default_factory=S3Settings)
    max_delete: int | None = None  # most deletes the run may make; more refuses them all
    # Where the pair has a history (an agent's state): most deletes as a share of the files
    # synced, and an empty source held; --force-delete runs them anyway.
    max_delete_percent: float = 50.0
    force_delete: bool = False
    force_archived: bool = False  # --force-glacier-transfer
    quiet_archived: bool = False  # --ignore-glacier-warnings


def relative_path(filename: str, start: str) -> str:
    """``filename`` as aws prints a local path: its directory relative to ``start`` (the
    working directory), so a file directly in it reads ``./name``.

    >>> relative_path("/w/photos/p1.jpg", "/w"), relative_path("/w/p1.jpg", "/w")
    ('photos/p1.jpg', './p1.jpg')
    >>> relative_path("/tmp/x/a", "/w/sub")
    '../../tmp/x/a'
    """
    dirname, basename = os.path.split(filename)
    try:
        return os.path.join(os.path.relpath(dirname, start), basename)
    except ValueError:  # another drive on Windows
        return os.path.abspath(filename)


class Display:
    """How paths are printed, as aws prints them: a local file relative to the working
    directory (:func:`relative_path`), a skipped one by its absolute path, an object by its
    ``s3://`` URL.  Not thread-safe (it remembers the last directory shown)."""

    def __init__(self, local_root: str, where: S3Url, *, cwd: str | None = None) -> None:
        self.cwd = cwd if cwd is not None else os.getcwd()
        self.root = os.path.join(self.cwd, local_root)
        self.where = where
        self._dir = ("", "")  # (a directory, as it is shown): files come directory by directory

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.root, path))

    def local(self, path: str) -> str:
        head, _, name = path.rpartition("/")
        if self._dir[0] != head or not self._dir[1]:
            shown = relative_path(os.path.join(self.absolute(head), "x"), self.cwd)[:-1]
            self._dir = (head, shown)
        return self._dir[1] + name

    def remote(self, path: str) -> str:
        return self.where.url(path)

    def skipped(self, item: Skipped, *, remote: bool) -> str:
        """The aws warning of a skipped path: aws's words where aws skips it too."""
        if item.kind is SkipKind.PARENT:
            shown = item.path  # aws names the key itself here
        elif remote:
            shown = self.remote(item.path)
        else:
            shown = self.absolute(item.path)
        words = AWS_SKIP_WORDS.get(item.kind)
        if words is None:
            words = item.reason[:1].upper() + item.reason[1:] + "."
        return f"warning: Skipping file {_one_line(shown)}. {words}"

    def describe(self, action: Action) -> str:
        """The aws line of an action, e.g. ``upload: dir/a.txt to s3://b/p/a.txt``."""
        path = action.path
        if action.kind is Kind.UPLOAD:
            return f"upload: {self.local(path)} to {self.remote(path)}"
        if action.kind is Kind.DOWNLOAD:
            return f"download: {self.remote(path)} to {self.local(path)}"
        if action.kind is Kind.DELETE_REMOTE:
            # aws's line, with the reason where it says more than "not in source" (a name
            # the source's disk cannot hold).
            _, said, why = action.reason.partition(f"{NOT_IN_SOURCE}: ")
            return f"delete: {self.remote(path)}" + (f" ({why})" if said else "")
        if action.kind is Kind.DELETE_LOCAL:
            return f"delete: {self.local(path)}"
        return f"{action.kind.value}: {path}"


class SyncEvents:
    """The executor's events as ``aws s3 sync`` prints them; failures counted in the run's
    totals.  ``gone`` says whether the endpoint was declared gone (the run then stops, and
    its one last line says so instead of a line per file)."""

    def __init__(
        self,
        reporter: Reporter,
        display: Display,
        stop: threading.Event | None = None,
        *,
        gone: Callable[[], bool] = lambda: False,
    ) -> None:
        self.reporter = reporter
        self.display = display
        self.stop = stop or threading.Event()
        self.gone = gone
        # Transfers that moved or failed, until they settle: one that settles without
        # either turned out to be current (the object's kept mtime said so).
        self._ended: set[str] = set()
        self._lock = threading.Lock()

    def started(self, action: Action) -> None:
        pass  # the bar counts the plan as it is read (Lookahead), not as it starts

    def settled(self, action: Action) -> None:
        with self._lock:
            needed = action.path in self._ended
            self._ended.discard(action.path)
        self.reporter.settled(_size(action), needed=needed)

    def finished(self, action: Action, nbytes: int) -> None:
        totals = self.reporter.totals
        with totals.lock:
            totals.bytes += nbytes
            if action.kind is Kind.UPLOAD:
                totals.uploaded += 1
            else:
                totals.downloaded += 1
        with self._lock:
            self._ended.add(action.path)
        self.reporter.line(self._describe(action))

    def deleted(self, action: Action) -> None:
        with self.reporter.totals.lock:
            self.reporter.totals.deleted += 1
        self.reporter.line(self._describe(action))

    def failed(self, action: Action, exc: Exception) -> None:
        with self._lock:
            self._ended.add(action.path)
        with self.reporter.totals.lock:
            self.reporter.totals.failed += 1
        failure = failure_of(exc)
        if failure.kind is FailureKind.UNREACHABLE and self.gone():
            self.stop.set()  # the run ends with the one line that says so
            return
        verb = "delete" if action.kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE) else None
        verb = verb or ("upload" if action.kind is Kind.UPLOAD else "download")
        line = self._describe(action).split(": ", 1)[1]
        from watchsync.s3.client import aws_message  # the SDK loads only for a run with work

        reason = exc.reason if isinstance(exc, FileError) else aws_message(exc)
        self.reporter.problem(f"{verb} failed: {line} {_one_line(reason)}")

    def vetoed(self, veto: Veto) -> None:
        if veto.refusal is not None:
            with self.reporter.totals.lock:
                self.reporter.totals.refused += veto.count
            self.reporter.problem(f"error: {veto.refusal}")
            return
        self.reporter.problem(
            f"warning: {veto.count} deletes not done because "
            f"{veto.failed} transfers failed and {veto.skipped} paths were skipped"
            + (" and the run was interrupted" if veto.stopped else "")
        )

    def would(self, action: Action) -> None:
        totals = self.reporter.totals
        with totals.lock:
            if action.kind is Kind.UPLOAD:
                totals.uploaded += 1
            elif action.kind is Kind.DOWNLOAD:
                totals.downloaded += 1
            else:
                totals.deleted += 1
            totals.bytes += _size(action) if action.kind in _COPIES else 0
        self.reporter.line("(dryrun) " + self._describe(action))

    def skipped(self, item: Skipped, *, remote: bool) -> None:
        with self.reporter.totals.lock:
            self.reporter.totals.skipped += 1
        with self._lock:
            line = self.display.skipped(item, remote=remote)
        self.reporter.problem(line)

    def conflict(self, action: Action, name: str) -> None:  # pragma: no cover - never planned
        raise AssertionError("watchsync sync plans no conflicts")

    def _describe(self, action: Action) -> str:
        with self._lock:  # the display remembers the last directory shown
            return self.display.describe(action)


class SyncGuards:
    """What holds a run's deletes (all of them, exit 1): more than ``--max-delete``; and
    where the pair has a history, ``synced`` files recorded by an agent's state for the
    same folder and URL (sync keeps no state of its own), the rules the agent follows: an
    empty source (an unmounted disk, an emptied prefix) or more than ``--max-delete-percent``
    of what was synced.  ``--force-delete`` runs them anyway.

    >>> SyncGuards(max_delete=2).refusal([Action(Kind.DELETE_REMOTE, p, "") for p in "abc"])
    '3 deletes exceed --max-delete 2; none were done'
    >>> up = SyncGuards(synced=8, source="./photos")
    >>> up.refusal([Action(Kind.DELETE_REMOTE, "a", "")], seen=Seen(walked=0))
    'folder ./photos is empty while 8 files were synced; none were done (--force-delete runs them)'
    """

    def __init__(
        self,
        *,
        max_delete: int | None = None,
        max_percent: float = 50.0,
        force: bool = False,
        synced: int | None = None,
        source: str = "the source",
        url: str = "the prefix",
    ) -> None:
        self.max_delete = max_delete
        self.max_percent = max_percent
        self.force = force
        self.synced = synced
        self.source = source
        self.url = url

    def refusal(self, deletes: Iterable[Action], *, seen: Seen = NOTHING_SEEN) -> str | None:
        if self.force:
            return None
        remote = local = 0
        for action in deletes:
            if action.kind is Kind.DELETE_REMOTE:
                remote += 1
            else:
                local += 1
        limit = self.max_delete if self.max_delete is not None else _NO_LIMIT
        if not self.synced:  # no history: aws's behaviour, with --max-delete alone
            if remote + local <= limit:
                return None
            return f"{remote + local} deletes exceed --max-delete {limit}; none were done"
        d = Deletes(
            remote=remote,
            local=local,
            synced=self.synced,
            listed=seen.listed if local else None,
            local_empty=bool(remote) and seen.walked == 0,
        )
        caps = DeleteCaps(max_delete=limit, max_percent=self.max_percent)
        held = hold_deletes(d, caps, folder=f"folder {self.source}", url=self.url)
        if held is None:
            return None
        if held.hold is Hold.COUNT:
            return f"{held.why}; none were done"
        return f"{held.why}; none were done (--force-delete runs them)"


_NO_LIMIT = 1 << 62


def synced_by_agent(local: Path, url: S3Url, *, state_dir: Path | None = None) -> int | None:
    """How many files an agent's state for this folder and URL lists as synced (None: no
    agent keeps this pair), read without locking or writing it: sync's only history.

    >>> nowhere = Path("/nonexistent")
    >>> synced_by_agent(nowhere, S3Url.parse("s3://bucket/p"), state_dir=nowhere)
    """
    # Here: a run that deletes nothing never reads a state, nor loads the code that does.
    from watchsync.agent.config import default_state_dir
    from watchsync.state.store import DB_SUFFIX, StateStore, store_name

    env = os.environ.get("WATCHSYNC_STATE_DIR")
    where = state_dir or (Path(env) if env else default_state_dir())
    db = where / (store_name(local, url.url().rstrip("/")) + DB_SUFFIX)
    if not db.is_file():
        return None
    try:
        with StateStore.read_only(db) as store:
            return store.synced.count()
    except Exception:  # unreadable: no history (sync never fails over another's state)
        return None


def exit_code(reporter: Reporter) -> int:
    """aws's code for a run that ended: 1 if anything failed (or deletes were refused),
    else 2 if anything was skipped, else 0."""
    t = reporter.totals
    if t.failed or t.refused:
        return AWS_FAILED
    return AWS_SKIPPED if t.skipped else AWS_OK


def run_sync(req: SyncRequest, reporter: Reporter, *, stop: threading.Event | None = None) -> None:
    """Run one sync; per-file problems are counted in ``reporter.totals``.

    A missing source is refused before S3 is asked anything:

    >>> req = SyncRequest("no-such-dir", S3Url.parse("s3://bucket/p"), Direction.UP)
    >>> run_sync(req, Reporter())
    Traceback (most recent call last):
    ...
    watchsync.core.errors.UsageError: source directory 'no-such-dir' does not exist
    """
    root = Path(req.local)
    if req.direction is Direction.UP and not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a directory"
        raise UsageError(f"source directory {req.local!r} {what}")
    if req.direction is Direction.DOWN and root.exists() and not root.is_dir():
        raise UsageError(f"destination {req.local!r} is not a directory")
    display = Display(req.local, req.url)
    if not req.dry_run:
        guard_temp_files(root)  # partial downloads of a killed run go; ours go on SIGTERM

    opts = SyncOptions(
        direction=req.direction,
        delete=req.delete,
        size_only=req.size_only,
        exact_timestamps=req.exact_timestamps,
        filters=req.filters,
        force_archived=req.force_archived,
        quiet_archived=req.quiet_archived,
    )
    # Both sides' files, the destination's too, are skipped as aws skips them.
    walk_options = WalkOptions(follow_symlinks=req.follow_symlinks, check_readable=True)
    stop = stop or threading.Event()
    volume = FolderVolume(root)
    down = req.direction is Direction.DOWN
    look = Look()
    if root.is_dir():
        opts = _learned(req, opts, volume)
        look = quick_look(root, req.url, req.s3, opts=opts, walk_options=walk_options)
        if look.idle:
            events = SyncEvents(reporter, display, stop)
            for item, remote_side in look.skipped:
                events.skipped(item, remote=remote_side)
            reporter.planned_all()
            return
    # Here, not above: boto3 and its client load only for a run with work to do.
    from watchsync.engine.executor import Executor
    from watchsync.s3.transfer import open_transfer

    with open_transfer(
        req.s3,
        req.url,
        root,
        native_ok=not req.dry_run,
        give_up_after=GIVE_UP_AFTER,
        on_bytes=reporter.moved,
    ) as transfer:
        events = SyncEvents(
            reporter, display, stop, gone=lambda: transfer.reachability.gone is not None
        )
        local = Counted(
            without_skipped(
                walk(root, options=walk_options), lambda s: events.skipped(s, remote=False)
            )
        )
        remote = Counted(
            without_skipped(
                transfer.listing(for_download=down, replay=look.pages),
                lambda s: events.skipped(s, remote=True),
            )
        )
        if down and not req.dry_run:
            try:
                os.makedirs(root, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create destination directory {req.local!r}: {exc.strerror or exc}"
                ) from exc
        opts = _learned(req, opts, volume)
        executor = Executor(
            transfer,
            volume=volume,
            recorder=NullRecorder(),
            events=events,
            policy=replace(ExecPolicy.SYNC, dry_run=req.dry_run),
            guards=SyncGuards(
                max_delete=req.max_delete,
                max_percent=req.max_delete_percent,
                force=req.force_delete,
                synced=synced_by_agent(root, req.url) if req.delete else None,
                source=req.local if req.direction is Direction.UP else req.url.url(),
                url=req.url.url(),
            ),
            max_concurrency=req.s3.max_concurrency,
            follow_symlinks=req.follow_symlinks,
            stop=stop,
        )
        plan: Iterable[Action] = without_skipped(
            plan_sync(local, remote, opts=opts), lambda s: events.skipped(s, remote=True)
        )
        with contextlib.ExitStack() as ahead:
            if reporter.wants_plan_totals:
                # The bar's totals are known once the walk and the listing end, long before
                # the transfers do: the plan is read ahead (to disk past a few batches).
                plan = ahead.enter_context(
                    Lookahead(
                        plan, on_item=lambda a: _count(reporter, a), on_end=reporter.planned_all
                    )
                )
            executor.run(
                plan,
                skipped=lambda: reporter.totals.skipped,
                seen=lambda: Seen(walked=local.count, listed=remote.count),
            )
        if transfer.reachability.gone is not None:
            raise transfer.reachability.gone


_COPIES = frozenset({Kind.UPLOAD, Kind.DOWNLOAD})


def _learned(req: SyncRequest, opts: SyncOptions, volume: FolderVolume) -> SyncOptions:
    """``opts`` with what the destination's disk refuses (an SD card's ``:``) and folds
    (case), where that matters: a key it cannot hold is a skip that says so, never a failed
    or altered write.  Up, a key the source's disk cannot name is deleted as aws deletes it,
    and the delete's line says why no file could have had that name."""
    down = req.direction is Direction.DOWN
    if (down and not req.dry_run) or (not down and req.delete):
        return replace(opts, volume=volume.learn())
    return opts


def _count(reporter: Reporter, action: Action) -> None:
    """A planned action as the bar counts it: transfers only (deletes run last, quickly)."""
    if action.kind in _COPIES:
        reporter.planned(_size(action))


def _size(action: Action) -> int:
    entry = action.local if action.kind is Kind.UPLOAD else action.remote
    return entry.size if entry is not None else 0


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
