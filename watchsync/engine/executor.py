"""The one executor: carries out the planner's actions for ``watchsync sync`` and the agent.

Effects only, no decisions: each action is re-checked against the file as it is now (a file
that changed since the plan looked is left to the next look), the planner's same-content
shortcut is taken where it asked for one, bytes move through the injected
:class:`~watchsync.s3.transfer.Transfer`, and what was done is handed to the injected
:class:`~.reporting.Recorder` (the agent's state; nothing for ``sync``) and
:class:`~.reporting.Events` (aws-format lines for ``sync``; logs and metrics for the agent).
Uploads go through its upload side (:class:`~.sender.Sender`), deletes through its delete
side (:class:`~.deleter.Deleter`); the executor builds both from its own collaborators (the
transfer, the local files, the recorder, the events, what the server can do), never handing
them itself.  How it acts per command is an :class:`~.policy.ExecPolicy` preset.

Deletes wait until every transfer of the pass is done, are spooled to disk meanwhile, and
are vetoed entirely when anything failed or was skipped, so a half-read side can never turn
into a mass delete (rclone's ``--delete-after``); the injected guards
(:class:`~.policy.DeletePolicy`) may refuse them too (the agent's).  Dry-run reports the
same plan instead.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

from watchsync.core.errors import Failure, FailureKind, FileError, PathBlocked
from watchsync.core.model import (
    Action,
    Condition,
    Kind,
    LocalEntry,
    RemoteEntry,
    Skipped,
    SyncedEntry,
)
from watchsync.core.plan import (
    CONFLICT_STEPS,
    ConflictStep,
    plan_blocked,
    same_content,
    settle_by_stored_mtime,
)
from watchsync.engine.case_clashes import CaseClashes
from watchsync.engine.deleter import Deleter, delete_condition
from watchsync.engine.local_files import LocalFiles
from watchsync.engine.policy import DeletePolicy, ExecPolicy, NoGuards, Seen
from watchsync.engine.reporting import Events, Recorder, Veto
from watchsync.engine.sender import Sender, Sending, Sent
from watchsync.engine.spool import Spool
from watchsync.fs.volume import FolderVolume
from watchsync.s3.capabilities import Capabilities
from watchsync.s3.transfer import Objects, Uploaded

logger = logging.getLogger(__name__)


class Skips:
    """The paths the scanners could not read in one pass, for a veto scoped to them.

    A skipped path holds back every delete at or under it (an unreadable directory looks
    empty, so everything below it would look deleted); deletes elsewhere may run.  Past
    ``limit`` skipped paths, or with the root itself skipped, every delete is held back.

    >>> skips = Skips(); skips.add(Skipped("photos/2019", "directory is not readable"))
    >>> skips.covers("photos/2019/a.jpg"), skips.covers("photos/2019-b.jpg")
    (True, False)
    """

    def __init__(self, *, limit: int = 10_000) -> None:
        self.count = 0
        self.limit = limit
        self._paths: set[str] = set()
        self._all = False
        self._lock = threading.Lock()

    def add(self, item: Skipped) -> None:
        with self._lock:
            self.count += 1
            path = item.path.strip("/")
            if item.path == "." or len(self._paths) >= self.limit:
                self._all = True  # the local root itself, or too many to track
            elif path:  # an empty path (a key at the prefix itself) is no file's parent
                self._paths.add(path)

    def __call__(self) -> int:
        return self.count

    def covers(self, path: str) -> bool:
        """Whether a delete of ``path`` must wait for a pass that could read it."""
        with self._lock:
            if self._all:
                return True
            parts = path.split("/")
            return any("/".join(parts[:i]) in self._paths for i in range(1, len(parts) + 1))


class Outcome(enum.Enum):
    """What :meth:`Executor.apply` did with one action."""

    DONE = "done"
    SAME = "same content: recorded"
    STALE = "changed since planned: left for the next look"
    MISMATCH = "rename source differs or is gone: not copied"
    CURRENT = "the object's kept mtime says it is current: nothing to copy"
    SKIPPED = "the folder cannot hold the name apart: skipped and reported"


@dataclass
class PassStats:
    """Counts of one :meth:`Executor.run`."""

    planned: dict[Kind, int] = field(default_factory=dict)
    failed: int = 0
    vetoed: Veto | None = None
    blocked: list[Action] = field(default_factory=list)  # tried again after the deletes
    stale: list[str] = field(default_factory=list)  # the file changed since it was planned
    # Planned with a content check that found both sides equal: only recorded, so a
    # "conflict" or a transfer that did not happen is not reported as one.
    identical: dict[Kind, int] = field(default_factory=dict)

    def describe(self) -> str:
        """What the pass did, by kind: ``upload 2, identical 5 (recorded)``.

        >>> PassStats({Kind.CONFLICT: 5, Kind.UPLOAD: 2}, identical={Kind.CONFLICT: 5}).describe()
        'upload 2, identical 5 (recorded)'
        """
        parts = [
            f"{k.value} {n - self.identical.get(k, 0)}"
            for k, n in self.planned.items()
            if n > self.identical.get(k, 0)
        ]
        if same := sum(self.identical.values()):
            parts.append(f"identical {same} (recorded)")
        return ", ".join(parts) or "no changes"


PoolFactory = Callable[[int], futures.Executor]


def thread_pool(workers: int) -> futures.Executor:
    """The default pool: ``workers`` threads."""
    return futures.ThreadPoolExecutor(workers, thread_name_prefix="watchsync-xfer")


class Executor:
    """Runs actions: a pass through :meth:`run`, or one action through :meth:`apply`.

    ``policy`` is :attr:`ExecPolicy.SYNC` or :attr:`ExecPolicy.AGENT` (with the agent's
    mode); ``guards`` may refuse a pass's deletes; ``server`` is what the server is known to
    take (shared with whoever else sends conditions); ``conflict_name`` names the place of
    the other version of a conflicting path (the agent's); ``sending`` holds the paths on
    their way to S3 (the agent's passes and uploader consult it).

    ``watchsync sync`` gives :meth:`run` the actions of ``plan_sync`` over its transfer,
    with a recorder that keeps nothing; the agent gives it a pass of ``plan_reconcile``, or
    one action at a time, with the state database as its recorder.
    """

    def __init__(
        self,
        transfer: Objects,
        *,
        recorder: Recorder,
        events: Events,
        policy: ExecPolicy = ExecPolicy.SYNC,
        guards: DeletePolicy | None = None,
        server: Capabilities | None = None,
        conflict_name: Callable[[str], str] | None = None,
        follow_symlinks: bool = True,
        pool: PoolFactory = thread_pool,
        max_concurrency: int = 16,
        stop: threading.Event | None = None,
        sending: Sending | None = None,
        wall: Callable[[], float] = time.time,
        volume: FolderVolume | None = None,
    ) -> None:
        self.transfer = transfer
        # The local root's file system: how far its times go, whether it links.
        self.volume = volume or FolderVolume(transfer.root)
        self.root: Path = transfer.root
        self.recorder = recorder
        self.events = events
        self.policy = policy
        self.guards = guards or NoGuards()
        self.server = server or Capabilities()
        self.conflict_name = conflict_name
        self.pool = pool
        self.max_concurrency = max_concurrency
        self.stop = stop or threading.Event()
        self.wall = wall
        self._lock = threading.Lock()
        self.files = LocalFiles(self.root, follow_symlinks=follow_symlinks, volume=self.volume)
        self.case_clashes = CaseClashes(self.files, events, policy.case_copies, self.download)
        self.sending = sending or Sending()
        self.sender = Sender(
            transfer,
            files=self.files,
            recorder=recorder,
            events=events,
            server=self.server,
            sending=self.sending,
            wall=wall,
        )
        self.deleter = Deleter(
            transfer,
            files=self.files,
            recorder=recorder,
            events=events,
            server=self.server,
            policy=policy,
            conflict_name=conflict_name,
            volume=self.volume,
        )

    # -- a pass -----------------------------------------------------------------------------

    def run(
        self,
        actions: Iterable[Action],
        *,
        skipped: Callable[[], int] | Skips = lambda: 0,
        route: Callable[[Action], bool] | None = None,
        seen: Callable[[], Seen] = Seen,
    ) -> PassStats:
        """Execute a plan: transfers in a bounded pool, then the deletes, unless vetoed.

        ``route`` may take an action over (the agent queues its uploads); ``skipped`` says
        how many paths the scanners could not read in this pass: any skip vetoes every delete
        (``sync``), unless it is a :class:`Skips`, which vetoes only the deletes under the
        skipped paths (the agent).  A failed transfer always vetoes every delete.
        ``seen`` says, once the plan is read, what the pass saw of each side (for the
        guards).  Per-action failures are reported and counted, not raised.
        """
        stats = PassStats()
        slots = threading.BoundedSemaphore(self.max_concurrency * 2)
        with Spool() as deletes, self.pool(self.max_concurrency) as pool:
            try:
                for action in actions:
                    if self.stop.is_set():
                        break
                    stats.planned[action.kind] = stats.planned.get(action.kind, 0) + 1
                    if action.kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE):
                        deletes.add(_spooled(action))
                    elif route is not None and route(action):
                        continue
                    elif self.policy.dry_run:
                        shown = self.by_kept_mtime(action)  # a dry run asks S3 the same
                        if shown is not None and shown.kind in (Kind.UPLOAD, Kind.DOWNLOAD):
                            self.events.would(shown)
                    elif action.kind in (Kind.RECORD, Kind.FORGET):
                        self._guarded(action, stats)  # cheap and local: no pool hop
                    else:
                        slots.acquire()
                        self.case_clashes.claim(action)  # released as it ends
                        self.events.started(action)
                        fut = pool.submit(self._guarded, action, stats)
                        fut.add_done_callback(self._releaser(slots, action))
            except BaseException:
                # The plan broke off (a listing failed, Ctrl-C): no deletes, nothing queued
                # runs; what is in flight finishes.
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            self.recorder.flush()
            if deletes.count:
                self._deletes(deletes, stats, skipped, seen())
            self._unblock(stats)
        return stats

    def _deletes(
        self, deletes: Spool, stats: PassStats, skipped: Callable[[], int] | Skips, seen: Seen
    ) -> None:
        """The pass's deletes, unless vetoed: all of them by a failure, a stop or a skip
        (a plain count), only those under a skipped path (:class:`Skips`)."""
        veto = Veto(deletes.count, stats.failed, skipped(), self.stop.is_set())
        held = 0
        if veto.failed or veto.stopped or (veto.skipped and not isinstance(skipped, Skips)):
            stats.vetoed = veto
        elif veto.skipped and isinstance(skipped, Skips):
            held = sum(1 for a in _unspooled(deletes) if skipped.covers(a.path))
            if held:
                stats.vetoed = Veto(held, 0, veto.skipped, False, scoped=True)
                self.events.vetoed(stats.vetoed)
        if stats.vetoed is None or stats.vetoed.scoped:
            count = deletes.count - held
            if not count:
                return
            covered = skipped.covers if isinstance(skipped, Skips) else None

            def kept() -> Iterator[Action]:
                return (a for a in _unspooled(deletes) if covered is None or not covered(a.path))

            if not self.policy.dry_run and (why := self.guards.refusal(kept(), seen=seen)):
                stats.vetoed = Veto(count, 0, 0, False, why)
            else:
                self.delete(kept())
                return
        self.events.vetoed(stats.vetoed)

    def _unblock(self, stats: PassStats) -> None:
        """Downloads a file or directory was in the way of, tried once more now that the
        pass's deletes may have cleared it (a type change on the other side: the old file,
        or the old directory's files, are deleted here).  A directory left empty in the way
        of a file is removed: it holds nothing, and S3 cannot hold it."""
        blocked, stats.blocked = stats.blocked, []
        for action in blocked:
            if self.stop.is_set():
                return
            if _remove_if_empty_dir(self.root / action.path):
                logger.info("download: removed the empty directory %s/ in its way", action.path)
            if self._last_try(action) is not None:
                with self._lock:
                    stats.failed += 1

    def _last_try(self, action: Action) -> Exception | None:
        """Apply ``action``, a pass's last word on it; the error, reported, is returned.  A
        download still blocked is a file/directory collision (S3 has ``a`` and ``a/b``):
        the folder keeps what is there and the key is reported (once), neither a failure
        holding the pass back nor a veto of its deletes, which would otherwise never run
        while the collision lasts; the planner says what becomes of the path's record
        (:func:`~watchsync.core.plan.plan_blocked`)."""
        try:
            self.apply(action)
        except PathBlocked as exc:
            why = f"{exc.reason}; left as it is (S3 has both a file and a directory there?)"
            self.events.failed(action, PathBlocked(exc.path, why))
            if (then := plan_blocked(action)) is not None:
                self.apply(then)
        except Exception as exc:
            self.events.failed(action, exc)
            return exc
        return None

    def _releaser(
        self, slots: threading.BoundedSemaphore, action: Action
    ) -> Callable[[futures.Future[None]], None]:
        def release(_fut: futures.Future[None]) -> None:
            slots.release()
            self.case_clashes.release(action)
            self.events.settled(action)

        return release

    def _guarded(self, action: Action, stats: PassStats) -> None:
        try:
            outcome = self.apply(action)
            if outcome is Outcome.STALE:
                with self._lock:
                    stats.stale.append(action.path)
            elif outcome is Outcome.SAME:
                with self._lock:
                    stats.identical[action.kind] = stats.identical.get(action.kind, 0) + 1
        except PathBlocked as exc:
            with self._lock:
                if self.policy.retry_blocked:
                    stats.blocked.append(action)
                    return
                stats.failed += 1
            self.events.failed(action, exc)
        except Exception as exc:
            with self._lock:
                stats.failed += 1
            self.events.failed(action, exc)
            logger.debug("execute: %s %s failed", action.kind.value, action.path, exc_info=True)

    # -- one action -------------------------------------------------------------------------

    def apply(self, action: Action) -> Outcome:
        """Carry out one action now, in this thread; errors are raised to the caller."""
        kind = action.kind
        if kind is Kind.RECORD:
            assert action.local is not None and action.remote is not None
            self.recorder.remember(_pair(action.path, action.local, action.remote))
            return Outcome.DONE
        if kind is Kind.FORGET:
            self.recorder.forget(action.path)
            return Outcome.DONE
        if kind in (Kind.DELETE_LOCAL, Kind.DELETE_REMOTE):
            self.delete([action])
            return Outcome.DONE
        if kind is Kind.COPY:
            return self._copy(action)
        if kind is Kind.DOWNLOAD and (clash := self.case_clashes.apply(action)) is not None:
            return Outcome[clash.name]  # the same names
        stale = kind in (Kind.DOWNLOAD, Kind.CONFLICT) and not self.files.still(
            action.path, action.local
        )
        if stale:
            return Outcome.STALE
        settled = self.by_kept_mtime(action)
        if settled is None:
            return Outcome.CURRENT
        action = settled
        if action.verify and self._same(action):
            self.apply(same_content(action))
            return Outcome.SAME
        if kind is Kind.UPLOAD:
            self.upload(action.path, action.condition, action)
        elif kind is Kind.DOWNLOAD:
            self.download(action)
        else:
            self._keep_both(action)
        return Outcome.DONE

    def upload(
        self, path: str, condition: Condition | None, action: Action | None = None
    ) -> Uploaded:
        """Upload ``path`` and record it (:meth:`Sender.upload`)."""
        return self.sender.upload(path, condition, action)

    def send_together(self, actions: Sequence[Action]) -> list[Uploaded | Exception | Sent]:
        """Plain uploads sent side by side, recorded in one commit
        (:meth:`Sender.send_together`)."""
        return self.sender.send_together(actions)

    def download(self, action: Action, *, dest: str | None = None) -> None:
        """Download the action's object to its path (or ``dest``), journaled first."""
        rem = action.remote
        assert rem is not None
        target = dest or action.path
        # The agent never loses a local version: a file edited after the plan looked (up to
        # the rename) is kept under a conflict name.
        keep_as = self.conflict_name(target) if self.conflict_name and dest is None else None
        jid = self.recorder.journal("download", target, rem.etag)
        try:
            written = self.transfer.download(
                action.path,
                size=rem.size,
                mtime_ns=rem.mtime_ns,
                etag=rem.etag,
                dest=dest,
                replacing=action.local,
                keep_as=keep_as,
            )
            st = written.path.stat()
        except BaseException:
            self.recorder.unjournal(jid)
            raise
        if keep_as is not None and os.path.lexists(self.root / keep_as):
            self.events.conflict(action, keep_as)
            self.recorder.count("conflicts")
        if dest is not None:
            # A conflict copy: synced only once its upload has landed (its sender records
            # it), so that until then no pass takes it for a file deleted in S3.
            self.recorder.unjournal(jid)
            self.recorder.count("downloaded_files")
            self.recorder.count("downloaded_bytes", rem.size)
            self.events.finished(Action(Kind.DOWNLOAD, dest, action.reason, remote=rem), rem.size)
            return
        size, mtime, ino, ctime = st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns
        if (size, mtime) != (rem.size, written.mtime_ns):
            # Not what the download wrote (its mtime was set to the kept mtime or
            # LastModified, as the volume keeps it): the user wrote the file after the
            # rename.  Record what was written, so such a write still counts as a local
            # change.
            size, mtime, ino, ctime = rem.size, written.mtime_ns, 0, 0
        self.recorder.synced(
            SyncedEntry(target, size, mtime, rem.etag, rem.mtime_ns, ino, ctime),
            counters={"downloaded_files": 1, "downloaded_bytes": rem.size},
            journal_id=jid,
        )
        self.events.finished(action, rem.size)

    def _copy(self, action: Action) -> Outcome:
        """A rename: copy the old object server-side once the content hashes agree."""
        loc, old = action.local, action.synced
        assert loc is not None and old is not None
        if not self.files.holds(loc.path, old.etag):
            return Outcome.MISMATCH
        try:
            # Only the version synced: another writer's newer object there is not this file.
            etag = self.sender.copy(old.path, loc.path, Condition(old.etag) if old.etag else None)
        except Failure as exc:
            if exc.kind not in (FailureKind.NOT_FOUND, FailureKind.PRECONDITION):
                raise
            return Outcome.MISMATCH
        etag = etag or old.etag
        entry = SyncedEntry(
            loc.path, loc.size, loc.mtime_ns, etag, int(self.wall() * 1e9), loc.ino, loc.ctime_ns
        )
        self.recorder.synced(entry, counters={"copied_files": 1})
        self.events.finished(action, 0)
        return Outcome.DONE

    def _keep_both(self, action: Action) -> None:
        """Both sides changed: keep both versions, the steps as the planner lists them."""
        rem = action.remote
        assert rem is not None and self.conflict_name is not None
        name = self.conflict_name(action.path)
        self.events.conflict(action, name)
        self.recorder.count("conflicts")
        # The copy is in flight from its download until its upload lands: no pass and no
        # uploader takes it up meanwhile (it is not synced yet, nor in S3).
        with self.sending.hold([name]):
            self._conflict_steps(action, name)

    def _conflict_steps(self, action: Action, name: str) -> None:
        rem = action.remote
        assert rem is not None
        for step in CONFLICT_STEPS[self.policy.mode]:
            if step is ConflictStep.COPY_REMOTE_ASIDE:
                self.transfer.copy(action.path, name)
            elif step is ConflictStep.DOWNLOAD_REMOTE_ASIDE:
                self.download(action, dest=name)
            elif step is ConflictStep.UPLOAD_ASIDE:
                self.upload(name, Condition.ABSENT)
            elif step is ConflictStep.MOVE_LOCAL_ASIDE:
                try:
                    os.replace(self.root / action.path, self.root / name)
                except OSError as exc:
                    raise FileError(action.path, exc.strerror or str(exc)) from exc
            elif step is ConflictStep.UPLOAD_LOCAL:
                self.upload(action.path, Condition(rem.etag), action)
            else:
                self.download(action)

    # -- deletes ----------------------------------------------------------------------------

    def delete(self, actions: Iterable[Action]) -> None:
        """Run deletes now (the caller applied the guards); see :class:`Deleter`.  What the
        planner decided for an object found changed instead is carried out here."""
        if self.policy.dry_run:
            for action in actions:
                self.events.would(action)
            return
        for after in self.deleter.delete(actions):
            self._last_try(after)  # the change that beat the delete may have no place here

    # -- checks -----------------------------------------------------------------------------

    def by_kept_mtime(self, action: Action) -> Action | None:
        """The action as the object's kept mtime settles it (one HEAD), where the planner
        left it to that (:func:`settle_by_stored_mtime`); None: nothing to copy."""
        if action.by_stored_mtime is None:
            return action
        head = self.transfer.head(action.path)
        return settle_by_stored_mtime(action, head, step_ns=self.volume.now.mtime_step_ns)

    def _same(self, action: Action) -> bool:
        loc, rem = action.local, action.remote
        if loc is None or rem is None or loc.size != rem.size:
            return False
        return self.files.holds(loc.path, rem.etag)


def _remove_if_empty_dir(path: Path) -> bool:
    """Remove ``path`` if it is a directory (not a link to one) that holds nothing but
    empty directories (a file that became a directory and was emptied again leaves one
    inside); whether it was."""
    if path.is_symlink() or not path.is_dir():
        return False
    dirs: list[str] = []

    def unreadable(exc: OSError) -> None:
        raise exc

    try:
        for top, subdirs, files in os.walk(path, onerror=unreadable):  # links not followed
            if files or any(os.path.islink(os.path.join(top, d)) for d in subdirs):
                return False
            dirs.append(top)
        for top in reversed(dirs):  # the deepest first
            os.rmdir(top)  # refused for a directory that is not empty, even one filled now
    except OSError:
        return False
    return True


def _pair(path: str, loc: LocalEntry, rem: RemoteEntry) -> SyncedEntry:
    return SyncedEntry(path, loc.size, loc.mtime_ns, rem.etag, rem.mtime_ns, loc.ino, loc.ctime_ns)


def _spooled(action: Action) -> str:
    """A delete as one spool line: kind, path, the file as the plan saw it (its identity
    too), the ETag the object must still have, the record it was planned from (the
    deleter asks that the state still holds it), and the reason (a line may say it)."""
    loc, syn = action.local, action.synced
    stat = f"{loc.size}\0{loc.mtime_ns}\0{loc.ino}\0{loc.ctime_ns}" if loc else "\0\0\0"
    record = (
        f"{syn.size}\0{syn.mtime_ns}\0{syn.etag}\0{syn.remote_mtime_ns}\0{syn.ino}\0{syn.ctime_ns}"
        if syn
        else "\0\0\0\0\0"
    )
    condition = delete_condition(action)
    etag = condition.etag if condition else ""
    return f"{action.kind.value}\0{action.path}\0{stat}\0{etag}\0{record}\0{action.reason}"


def _unspooled(spool: Spool) -> Iterator[Action]:
    for line in spool:
        kind, path, size, mtime, ino, ctime, etag, *record, reason = line.split("\0")
        loc = LocalEntry(path, int(size), int(mtime), int(ino), int(ctime)) if size else None
        s_size, s_mtime, s_etag, s_remote, s_ino, s_ctime = record
        syn = (
            SyncedEntry(
                path, int(s_size), int(s_mtime), s_etag, int(s_remote), int(s_ino), int(s_ctime)
            )
            if s_size
            else None
        )
        condition = Condition(etag) if etag else None
        yield Action(Kind(kind), path, reason, local=loc, synced=syn, condition=condition)
