"""A randomized fault model: a seeded generator drives real agents (``python -m watchsync
watch`` processes, one or two on one prefix) against SeaweedFS with random sequences of
user edits on both sides and faults, then quiesces and checks the invariants:

* every folder equals the bucket (conflict copies are files like any other);
* every version last written to a path, on either side, exists somewhere (at its name or as
  a conflict copy): contents are unique, so this is a search by content hash;
* no temporary download file is left, and no agent logged a traceback.

CI runs a few fixed seeds (the ones that pass; see ``SEEDS``); ``scripts/soak`` runs random
seeds for as long as asked and prints the seed and the sequence of any failure.  A failing
sequence is replayed with ``scripts/soak --seed N --agents K``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import AgentProcess, bucket_listing, bucket_snapshot, read_state, tree_snapshot
from botocore.exceptions import ClientError
from helpers import wait_until
from netproxy import NetProxy
from s3server import SeaweedServer

from watchsync.fs.tempfiles import TMP_MARKER

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "model"
DIRS = ("", "a/", "a/b/", "c/")
NAMES = ("f1.txt", "f2.txt", "g.bin", "h")
SENTINEL = "keep.txt"  # never touched: an empty folder would (rightly) refuse every delete
QUIESCE_TIMEOUT = 40.0


@dataclass
class Agent:
    """One folder and its agent process, reaching S3 through its own proxy."""

    root: Path
    state: Path
    log: Path
    proxy: NetProxy
    proc: AgentProcess | None = None


@dataclass
class Model:
    """What happened, in order: the sequence (for the report) and, per path, its last
    event: the content last written, or None when the user deleted it last."""

    seed: int
    steps: list[str] = field(default_factory=list)
    last: dict[str, bytes | None] = field(default_factory=dict)
    every: list[bytes] = field(default_factory=list)  # every version written, for reports
    # Versions the user overwrote or deleted in a conflict copy (which kept them): gone by
    # the user's hand, so no longer owed (sha256 hex).
    consumed: set[str] = field(default_factory=set)
    counter: int = 0

    def content(self, size: int) -> bytes:
        """A version no other write produces: a unique first line, then filler."""
        self.counter += 1
        head = f"v{self.seed}-{self.counter}\n".encode()
        return head + random.Random(self.counter).randbytes(size)

    def wrote(self, path: str, data: bytes) -> None:
        self.last[path] = data
        self.every.append(data)

    def deleted(self, path: str) -> None:
        self.last[path] = None


class FaultModel:
    """Runs one seeded sequence against ``agents`` real agents sharing one prefix."""

    def __init__(
        self,
        *,
        seed: int,
        agents: int,
        steps: int,
        server: SeaweedServer,
        s3: S3Client,
        bucket: str,
        workdir: Path,
        env: dict[str, str],
    ) -> None:
        self.rng = random.Random(seed)
        self.model = Model(seed)
        self.n_steps = steps
        self.server = server
        self.s3 = s3
        self.bucket = bucket
        self.url = f"s3://{bucket}/{PREFIX}"
        self.env = env
        self.agents: list[Agent] = []
        host, port = server.endpoint.rsplit("/", 1)[-1].rsplit(":", 1)
        for i in range(agents):
            root = workdir / f"folder{i}"
            root.mkdir()
            proxy = NetProxy(host, int(port)).start()
            self.agents.append(Agent(root, workdir / f"state{i}", workdir / f"agent{i}.log", proxy))

    # -- running ----------------------------------------------------------------------------

    def run(self) -> None:
        """The whole sequence: start, random steps, quiesce, check; raises AssertionError
        with the seed and the sequence on any broken invariant."""
        try:
            first = self.agents[0]
            self._write(first.root, SENTINEL, self.model.content(8))
            for agent in self.agents:
                self._start(agent)
            for agent in self.agents:  # the steps start from a synced pair, not a first run
                assert agent.proc is not None
                agent.proc.wait_ready(timeout=QUIESCE_TIMEOUT)
            for _ in range(self.n_steps):
                self.step()
                # The pause between two user actions is part of the generated schedule.
                time.sleep(self.rng.choice((0.0, 0.02, 0.1, 0.3)))
            self.quiesce()
            self.check()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report()}") from None
        finally:
            self.close()

    def report(self) -> str:
        lines = [f"seed {self.model.seed}, {len(self.agents)} agent(s); the sequence:"]
        lines += [f"  {n:3d}. {s}" for n, s in enumerate(self.model.steps, 1)]
        return "\n".join(lines)

    def close(self) -> None:
        for agent in self.agents:
            if agent.proc is not None:
                agent.proc.close()
            agent.proxy.close()

    def _start(self, agent: Agent) -> None:
        agent.proc = AgentProcess(
            agent.root,
            self.url,
            agent.state,
            env=self.env,
            endpoint=agent.proxy.endpoint,
            log=agent.log,
            # Passes every second, listing every few: the writes made straight to S3 (no
            # feed entry) are found, and the passes between trust the feed.
            extra=[
                "--delete",
                "--reconcile-interval",
                "1",
                "--full-list-interval",
                "3",
                "--log-level",
                "INFO",
            ],
        )
        agent.proc.__enter__()

    def _note(self, what: str) -> None:
        self.model.steps.append(what)

    # -- steps ------------------------------------------------------------------------------

    def step(self) -> None:
        """One random action: mostly edits, sometimes a fault."""
        ops = [
            (self.local_write, 30),
            (self.local_append_or_truncate, 8),
            (self.local_rename, 8),
            (self.local_delete, 8),
            (self.local_atomic_save, 6),
            (self.local_type_change, 4),
            (self.local_mtime_jump, 4),
            (self.s3_put, 12),
            (self.s3_delete, 5),
            (self.kill_and_restart, 3),
            (self.network_cut, 3),
        ]
        op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
        before = [self._conflict_copies(a.root) for a in self.agents]
        op()
        for agent, copies in zip(self.agents, before, strict=True):
            after = self._conflict_copies(agent.root)
            self.model.consumed |= {h for p, h in copies.items() if after.get(p) != h}

    def _conflict_copies(self, root: Path) -> dict[str, str]:
        return tree_snapshot(root, exclude=lambda rel: ".conflict-" not in rel)

    def _agent(self) -> Agent:
        return self.rng.choice(self.agents)

    def _files(self, root: Path) -> list[str]:
        files = [p for p in tree_snapshot(root) if p != SENTINEL and TMP_MARKER not in p]
        return sorted(p for p in files if not Path(p).name.startswith(".goutputstream"))

    def _dirs(self, root: Path) -> list[str]:
        found = []
        for dirpath, _dirs, _files in os.walk(root):
            rel = Path(dirpath).relative_to(root).as_posix()
            if rel != ".":
                found.append(rel)
        return sorted(found)

    def _free(self, path: str) -> bool:
        """Whether ``path`` can be a file on every side without a file/directory collision
        (two writers creating ``a`` and ``a/b`` at once never converge: reported, by design)."""
        keys = set(bucket_listing(self.s3, self.bucket, PREFIX))
        for agent in self.agents:
            keys |= set(tree_snapshot(agent.root))
        parts = path.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        return not (prefixes & keys) and not any(k.startswith(path + "/") for k in keys)

    def _write(self, root: Path, rel: str, data: bytes) -> bool:
        target = root / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError:
            return False
        self.model.wrote(rel, data)
        return True

    def local_write(self) -> None:
        agent = self._agent()
        files = self._files(agent.root)
        if files and self.rng.random() < 0.5:
            rel = self.rng.choice(files)
        else:
            rel = self.rng.choice(DIRS) + self.rng.choice(NAMES)
            if not (agent.root / rel).is_file() and not self._free(rel):
                return
        data = self.model.content(self.rng.choice((0, 10, 100, 3000)))
        if self._write(agent.root, rel, data):
            self._note(f"{agent.root.name}: write {rel} {_label(data)}")

    def local_append_or_truncate(self) -> None:
        agent = self._agent()
        files = self._files(agent.root)
        if not files:
            return
        rel = self.rng.choice(files)
        try:
            data = (agent.root / rel).read_bytes()
        except OSError:
            return
        head = data.split(b"\n", 1)[0] + b"\n"
        if self.rng.random() < 0.5 or len(data) <= len(head):
            extra = f"+{self.model.counter}".encode() * self.rng.randint(1, 20)
            with contextlib.suppress(OSError), (agent.root / rel).open("ab") as f:
                f.write(extra)
                self.model.wrote(rel, data + extra)
                self._note(f"{agent.root.name}: append {len(extra)} bytes to {rel}")
        else:
            with contextlib.suppress(OSError):
                os.truncate(agent.root / rel, len(head))
                self.model.wrote(rel, head)
                self._note(f"{agent.root.name}: truncate {rel} to {len(head)} bytes")

    def local_rename(self) -> None:
        agent = self._agent()
        if self.rng.random() < 0.3:
            dirs = self._dirs(agent.root)
            if not dirs:
                return
            src = self.rng.choice(dirs)
            dst = self.rng.choice(("d", "c/e", "moved"))
            if (agent.root / dst).exists() or dst.startswith(src + "/") or not self._free(dst):
                return
            moved = {rel: (agent.root / rel).read_bytes() for rel in self._files(agent.root)}
            moved = {rel: data for rel, data in moved.items() if rel.startswith(src + "/")}
            try:
                (agent.root / dst).parent.mkdir(parents=True, exist_ok=True)
                (agent.root / src).rename(agent.root / dst)
            except OSError:
                return
            for rel, data in moved.items():
                self.model.deleted(rel)
                self.model.wrote(dst + rel[len(src) :], data)
            self._note(f"{agent.root.name}: rename directory {src}/ -> {dst}/")
            return
        files = self._files(agent.root)
        if not files:
            return
        src = self.rng.choice(files)
        dst = self.rng.choice(DIRS) + self.rng.choice(NAMES)
        if dst == src or (agent.root / dst).exists() or not self._free(dst):
            return
        try:
            data = (agent.root / src).read_bytes()
            (agent.root / dst).parent.mkdir(parents=True, exist_ok=True)
            (agent.root / src).rename(agent.root / dst)
        except OSError:
            return
        self.model.deleted(src)
        self.model.wrote(dst, data)
        self._note(f"{agent.root.name}: rename {src} -> {dst}")

    def local_delete(self) -> None:
        agent = self._agent()
        if self.rng.random() < 0.25:
            dirs = self._dirs(agent.root)
            if not dirs:
                return
            rel = self.rng.choice(dirs)
            gone = [p for p in self._files(agent.root) if p.startswith(rel + "/")]
            shutil.rmtree(agent.root / rel, ignore_errors=True)
            for path in gone:
                self.model.deleted(path)
            self._note(f"{agent.root.name}: rm -rf {rel}/ ({len(gone)} files)")
            return
        files = self._files(agent.root)
        if not files:
            return
        rel = self.rng.choice(files)
        with contextlib.suppress(FileNotFoundError):
            (agent.root / rel).unlink()
        self.model.deleted(rel)
        self._note(f"{agent.root.name}: delete {rel}")

    def local_atomic_save(self) -> None:
        """An editor's save: write a temporary file beside the target, rename it over."""
        agent = self._agent()
        files = self._files(agent.root)
        if not files:
            return
        rel = self.rng.choice(files)
        target = agent.root / rel
        tmp = target.with_name(f".goutputstream-{self.rng.randrange(10**6):06d}")
        data = self.model.content(self.rng.choice((10, 500)))
        try:
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self.model.wrote(rel, data)
        self._note(f"{agent.root.name}: atomic save of {rel}")

    def local_type_change(self) -> None:
        """A file replaced by a directory of the same name, or the reverse."""
        agent = self._agent()
        files = self._files(agent.root)
        dirs = self._dirs(agent.root)
        if files and (not dirs or self.rng.random() < 0.5):
            rel = self.rng.choice(files)
            try:
                (agent.root / rel).unlink()
                (agent.root / rel).mkdir()
            except OSError:
                return
            self.model.deleted(rel)
            self._write(agent.root, f"{rel}/x.txt", self.model.content(20))
            self._note(f"{agent.root.name}: file {rel} becomes a directory with x.txt")
        elif dirs:
            rel = self.rng.choice(dirs)
            gone = [p for p in self._files(agent.root) if p.startswith(rel + "/")]
            shutil.rmtree(agent.root / rel, ignore_errors=True)
            for path in gone:
                self.model.deleted(path)
            self._write(agent.root, rel, self.model.content(20))
            self._note(f"{agent.root.name}: directory {rel}/ ({len(gone)} files) becomes a file")

    def local_mtime_jump(self) -> None:
        """A clock jump: a file's mtime far in the past or the future, content unchanged."""
        agent = self._agent()
        files = self._files(agent.root)
        if not files:
            return
        rel = self.rng.choice(files)
        when = time.time() + self.rng.choice((-1, 1)) * self.rng.randint(60, 400 * 86400)
        with contextlib.suppress(OSError):
            os.utime(agent.root / rel, (when, when))
            self._note(f"{agent.root.name}: mtime of {rel} jumps to {when:.0f}")

    def _consume_object(self, rel: str) -> None:
        """An S3-side overwrite or delete of a conflict copy: its version is no longer owed."""
        if ".conflict-" not in rel:
            return
        with contextlib.suppress(ClientError):
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{PREFIX}/{rel}")["Body"]
            self.model.consumed.add(hashlib.sha256(body.read()).hexdigest())

    def s3_put(self) -> None:
        keys = sorted(k for k in bucket_listing(self.s3, self.bucket, PREFIX) if k != SENTINEL)
        if keys and self.rng.random() < 0.5:
            rel = self.rng.choice(keys)
        else:
            rel = self.rng.choice(DIRS) + self.rng.choice(NAMES)
            if rel not in keys and not self._free(rel):
                return
        self._consume_object(rel)
        data = self.model.content(self.rng.choice((0, 50, 2000)))
        self.s3.put_object(Bucket=self.bucket, Key=f"{PREFIX}/{rel}", Body=data)
        self.model.wrote(rel, data)
        self._note(f"s3: put {rel} {_label(data)}")

    def s3_delete(self) -> None:
        keys = sorted(k for k in bucket_listing(self.s3, self.bucket, PREFIX) if k != SENTINEL)
        if not keys:
            return
        rel = self.rng.choice(keys)
        self._consume_object(rel)
        self.s3.delete_object(Bucket=self.bucket, Key=f"{PREFIX}/{rel}")
        self.model.deleted(rel)
        self._note(f"s3: delete {rel}")

    def kill_and_restart(self) -> None:
        agent = self._agent()
        assert agent.proc is not None
        agent.proc.signal(signal.SIGKILL)
        agent.proc.wait(10)
        agent.proc.close()
        self._note(f"{agent.root.name}: agent killed (-9) and restarted")
        self._start(agent)

    def network_cut(self) -> None:
        agent = self._agent()
        if agent.proxy.is_cut:
            agent.proxy.restore()
            self._note(f"{agent.root.name}: network restored")
        else:
            agent.proxy.cut()
            self._note(f"{agent.root.name}: network cut")

    # -- the end ----------------------------------------------------------------------------

    def quiesce(self) -> None:
        """Restore the network, then wait until every folder equals the bucket and nothing
        is pending, twice in a row over more than one reconcile interval."""
        for agent in self.agents:
            if agent.proxy.is_cut:
                agent.proxy.restore()
                self._note(f"{agent.root.name}: network restored (quiesce)")
        for agent in self.agents:
            assert agent.proc is not None
            agent.proc.wait_ready(timeout=QUIESCE_TIMEOUT)
        stable: list[float] = []

        def settled() -> bool:
            if not self._converged():
                stable.clear()
                return False
            stable.append(time.monotonic())
            return stable[-1] - stable[0] >= 2.5

        try:
            wait_until(settled, timeout=QUIESCE_TIMEOUT, interval=0.3)
        except AssertionError:
            remote = bucket_snapshot(self.s3, self.bucket, PREFIX)
            why = [
                f"{a.root.name}: {_diff(tree_snapshot(a.root), remote)}; "
                f"status {read_state(a.state, a.root, self.url)[0]}"
                for a in self.agents
            ]
            raise AssertionError("no convergence: " + "; ".join(why)) from None

    def _converged(self) -> bool:
        try:
            everything = bucket_snapshot(self.s3, self.bucket, PREFIX)
        except ClientError:  # an object listed, then deleted by an agent before the GET
            return False
        clashing = _collisions(everything)
        remote = _without(everything, clashing)
        for agent in self.agents:
            if _without(tree_snapshot(agent.root), clashing) != remote:
                return False
            status, _ = read_state(agent.state, agent.root, self.url)
            if status.get("pending") not in (0, None):
                return False
        return True

    def check(self) -> None:
        everything = bucket_snapshot(self.s3, self.bucket, PREFIX)
        clashing = _collisions(everything)
        remote = _without(everything, clashing)
        for agent in self.agents:
            local = tree_snapshot(agent.root)
            mine = _without(local, clashing)
            assert mine == remote, (
                f"{agent.root.name} differs from the bucket: {_diff(mine, remote)}"
            )
            if clashing:
                status, _ = read_state(agent.state, agent.root, self.url)
                assert "S3 has both a file and a directory" in str(status.get("last_error")), (
                    f"{agent.root.name} does not report the collision at {sorted(clashing)}"
                )
            temps = [p for p in local if TMP_MARKER in p]
            for dirpath, _dirs, files in os.walk(agent.root):
                temps += [f"{dirpath}/{n}" for n in files if TMP_MARKER in n]
            assert not temps, f"temporary files left: {temps}"
            log = agent.log.read_text(errors="replace")
            assert "Traceback" not in log, f"{agent.log.name} has a traceback:\n{log[-3000:]}"
        present = set(everything.values())
        lost = [
            path
            for path, data in sorted(self.model.last.items())
            if data is not None
            and hashlib.sha256(data).hexdigest() not in present | self.model.consumed
        ]
        if lost:
            names = {hashlib.sha256(d).hexdigest(): _label(d) for d in self.model.every}
            seen = {
                f"{side}:{path}": names.get(h, "?")
                for side, snap in [("s3", everything)]
                + [(a.root.name, tree_snapshot(a.root)) for a in self.agents]
                for path, h in snap.items()
                if any(path == p or path.startswith(p.rsplit(".", 1)[0]) for p in lost)
            }
            wanted = {p: _label(self.model.last[p] or b"") for p in lost}
            raise AssertionError(f"versions last written are gone everywhere: {wanted}; {seen}")


def _label(data: bytes) -> str:
    """A version's name in reports: its unique first line, and its size."""
    head = data.split(b"\n", 1)[0].decode(errors="replace")
    return f"{head}({len(data)}b)"


def _collisions(bucket: dict[str, str]) -> set[str]:
    """Keys that are a file and a directory at once (``a`` and ``a/b``): two writers made
    ``a`` both at the same time (one of them offline).  A folder holds only one of the two;
    the agents report the collision and sync the rest."""
    keys = sorted(bucket)
    return {k for i, k in enumerate(keys) if any(o.startswith(k + "/") for o in keys[i + 1 :])}


def _without(snapshot: dict[str, str], clashing: set[str]) -> dict[str, str]:
    """``snapshot`` without the paths at or below a collision."""
    return {
        k: v
        for k, v in snapshot.items()
        if k not in clashing and not any(k.startswith(c + "/") for c in clashing)
    }


def _diff(a: dict[str, str], b: dict[str, str]) -> str:
    only_a = sorted(set(a) - set(b))
    only_b = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    return f"only in the folder {only_a}, only in the bucket {only_b}, different {changed}"


def run_sequence(
    *,
    seed: int,
    agents: int,
    steps: int,
    server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    workdir: Path,
    env: dict[str, str],
) -> FaultModel:
    """Run one seeded sequence; raises AssertionError (with the sequence) on a failure."""
    model = FaultModel(
        seed=seed,
        agents=agents,
        steps=steps,
        server=server,
        s3=s3,
        bucket=bucket,
        workdir=workdir,
        env=env,
    )
    model.run()
    return model


# Fixed seeds that pass on this branch; more come from scripts/soak as the bugs it finds are
# fixed.  Each runs in a few seconds.
SEEDS = [
    pytest.param(1, 1, 14, id="one-agent-seed-1"),
    pytest.param(2, 1, 14, id="one-agent-seed-2"),
    pytest.param(3, 2, 12, id="two-agents-seed-3"),
    # A file that became a directory and was emptied again, inside a directory that became a
    # file on the other side: the empty directories gave way only one level deep.
    pytest.param(73286858, 2, 25, id="two-agents-nested-empty-directories"),
]


@pytest.mark.parametrize(("seed", "agents", "steps"), SEEDS)
def test_fault_model(
    seed: int,
    agents: int,
    steps: int,
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
    tmp_path: Path,
) -> None:
    run_sequence(
        seed=seed,
        agents=agents,
        steps=steps,
        server=s3server,
        s3=s3,
        bucket=bucket,
        workdir=tmp_path,
        env=dict(aws_env),
    )
