"""Deletes that could wipe data by accident, against real SeaweedFS with real agents and real
inotify: the root turned into another directory (a symlink swapped while the agent runs,
a directory replaced while it was stopped), an S3 prefix emptied by another tool, a mass
delete made in place (held, then confirmed through ``watchsync ctl``), a renamed folder and
a checkout storm (neither is a mass delete), ``sync --delete`` where an agent's state
knows the pair, and a disk mounted again at the folder's mount point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from agent_helpers import (
    assert_in_sync,
    bucket_listing,
    folder_config,
    quick_in_sync,
    running_agent,
    tree_snapshot,
    wait_idle,
)
from helpers import wait_until
from s3server import SeaweedServer
from service_helpers import SYNC, Agent, agent_env, ctl_json, spawn, watching, write_config

from watchsync.agent.folder import Folder
from watchsync.agent.folder_root import MARKER
from watchsync.core.filters import RESERVED_DIR

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["spawn"]  # fixtures

PREFIX = "data"
N = 30  # files synced before each accident: small, as a real folder may be


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def url(bucket: str) -> str:
    return f"s3://{bucket}/{PREFIX}"


@pytest.fixture
def endpoint(s3server: SeaweedServer, aws_env: dict[str, str]) -> str:
    return s3server.endpoint


def _tree(root: Path, n: int = N, *, under: str = "") -> list[str]:
    names = [f"{under}f{i:03}.txt" for i in range(n)]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"version of {name}")
    return names


def _keys(s3: S3Client, bucket: str) -> list[str]:
    return sorted(bucket_listing(s3, bucket, PREFIX))


def _error(agent: Folder) -> str:
    return str(agent.store_().status.fields().get("last_error") or "")


def test_a_root_swapped_for_a_symlink_while_the_agent_runs_deletes_nothing(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """``mv DIR DIR.old; ln -s other DIR`` with the agent running: the other directory is
    a new folder (met as on a first run, both versions kept), and no object is deleted."""
    root = tmp_path / "DIR"
    names = _tree(root)
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        other = tmp_path / "other"
        other.mkdir()
        (other / "only.txt").write_text("an unrelated file")
        root.rename(tmp_path / "DIR.old")
        root.symlink_to("other", target_is_directory=True)
        # The new folder gets the folder's files and gives its own; nothing is deleted.
        wait_until(lambda: "only.txt" in _keys(s3, bucket), timeout=SYNC)
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        assert _keys(s3, bucket) == sorted([*names, "only.txt"])
        assert sorted(tree_snapshot(other)) == sorted([*names, "only.txt"])
        # A delete in it waits for a person to accept the directory.
        (other / "f000.txt").unlink()
        agent.request_reconcile()
        reconciles = agent.reconciles
        wait_until(lambda: agent.reconciles > reconciles, timeout=SYNC)
        wait_idle(agent)
        assert "f000.txt" in _keys(s3, bucket)
        why = _error(agent)
    assert "is another directory than the one synced" in why and "\n" not in why
    assert len(tree_snapshot(tmp_path / "DIR.old")) == N  # the old directory untouched


def test_a_root_replaced_while_the_agent_was_stopped_deletes_nothing(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """``mv DIR DIR.old; mkdir DIR; echo only > DIR/only.txt`` between two runs: the first
    pass of the next run deletes nothing, and the status says why in one line."""
    root = tmp_path / "DIR"
    names = _tree(root)
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir):
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
    root.rename(tmp_path / "DIR.old")
    root.mkdir()
    (root / "only.txt").write_text("only")
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        assert _keys(s3, bucket) == sorted([*names, "only.txt"])
        why = _error(agent)
    assert "is another directory than the one synced" in why and "\n" not in why


def _mount(*args: str) -> bool:
    """``mount ARGS``; whether it worked (root, and a kernel that lets this process mount)."""
    run = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    return run.returncode == 0


def _unmount(path: Path) -> None:
    """Unmount ``path``, waiting out a file the agent still has open there."""
    wait_until(
        lambda: subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode
        == 0,
        timeout=SYNC,
        message=f"{path} to unmount",
    )


def _reserved(rel: str) -> bool:
    return rel.startswith(f"{RESERVED_DIR}/")


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def test_a_card_mounted_again_at_the_same_mount_point_is_watched_again(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """The folder is a disk's mount point (a tmpfs here); the disk is unmounted and mounted
    again at once, often with the same device and inode: the watches on the old mount are
    gone, so the agent watches again and rescans, and a file written afterwards (and a
    delete) reach S3 at once, not with the next full pass an hour later."""
    root, staging = tmp_path / "card", tmp_path / "staging"
    root.mkdir()
    staging.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=4m", "watchsync-card", str(root)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        names = _tree(root, 3)
        # The marker names the folder whatever device and inode the disk shows next time.
        cfg = folder_config(root, url, endpoint, delete=True, folder_marker=True)
        with running_agent(cfg, state_dir) as agent:
            wait_until(
                lambda: quick_in_sync(s3, bucket, PREFIX, root, exclude=_reserved), timeout=SYNC
            )
            wait_idle(agent)
            assert (root / MARKER).is_file()
            card = tmp_path / "what-the-card-holds"
            shutil.copytree(root, card)
            reconciles = agent.reconciles
            # The same card again: unmounted, and mounted whole at once (a kernel mount
            # shows all of a disk at once; the copy is made before it is moved in).
            _unmount(root)
            assert _mount("-t", "tmpfs", "-o", "size=4m", "watchsync-card", str(staging))
            shutil.copytree(card, staging, dirs_exist_ok=True)
            assert _mount("--move", str(staging), str(root))
            wait_until(lambda: agent.reconciles > reconciles, timeout=SYNC)
            (root / "new.txt").write_text("written after the remount")
            (root / names[0]).unlink()
            want = sorted([*names[1:], "new.txt"])
            wait_until(lambda: _keys(s3, bucket) == want, timeout=SYNC)
            assert agent.state.value == "watching", _error(agent)
    finally:
        for path in (staging, root):
            if _mounted(path):
                _unmount(path)


def test_an_emptied_prefix_deletes_no_local_file(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """Three files synced, the agent stopped, ``aws s3 rm --recursive`` the prefix, the
    agent started: its first pass deletes nothing here and says why; confirmed, it does."""
    root = tmp_path / "folder"
    names = _tree(root, 3)
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir):
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
    for name in names:
        s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{name}")
    with running_agent(cfg, state_dir) as agent:
        wait_idle(agent)
        assert sorted(tree_snapshot(root)) == names
        assert f"the listing of {url} is empty while 3 files were synced" in _error(agent)
        (batch,) = agent.rooms.refused.batches()
        assert sorted(batch.local) == names
        agent.rooms.refused.approve(batch.id)
        wait_until(lambda: tree_snapshot(root) == {}, timeout=SYNC)


@pytest.mark.parametrize("where", ["here", "in S3"])
def test_the_share_cap_holds_mass_deletes_both_ways(
    tmp_path: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    where: str,
) -> None:
    """Two thirds of what was synced deleted at once, here or in S3 by another tool, is
    held (far under --max-delete), and the other side keeps its copies."""
    root = tmp_path / "folder"
    names = _tree(root)
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        for name in names[:20]:
            if where == "here":
                (root / name).unlink()
            else:
                s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{name}")
        agent.request_reconcile()
        deletes_in = "in S3" if where == "here" else "here"
        wait_until(lambda: f"20 deletes {deletes_in} are 66%" in _error(agent), timeout=SYNC)
        wait_idle(agent)
        if where == "here":
            assert _keys(s3, bucket) == names
        else:
            assert sorted(tree_snapshot(root)) == names


def test_a_mass_delete_in_place_goes_through_once_confirmed_with_ctl(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    spawn: Callable[..., Agent],
) -> None:
    """The same root, most of it deleted on purpose: held by the share, listed by
    ``watchsync ctl deletes``, run by ``approve``."""
    root, state = tmp_path / "docs", tmp_path / "state"
    names = _tree(root)
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(root, f"s3://{bucket}/{PREFIX}")],
        extra="delete = true",
    )
    env = agent_env(s3server, tmp_path)
    agent = spawn("watch", "--config", str(cfg))
    wait_until(lambda: watching(agent, 1), SYNC, 0.1, "the first reconcile")
    wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), SYNC, 0.2, "the first sync")
    for name in names[:25]:
        (root / name).unlink()
    [batch] = wait_until(
        lambda: ctl_json(cfg, env, "deletes")["batches"], SYNC, 0.2, "the held deletes"
    )
    assert "25 deletes in S3 are 83% of the 30 files synced" in batch["why"]
    assert len(bucket_listing(s3, bucket, PREFIX)) == N
    assert ctl_json(cfg, env, "deletes", "approve", batch["id"])["ok"]
    wait_until(
        lambda: sorted(bucket_listing(s3, bucket, PREFIX)) == names[25:],
        SYNC,
        0.2,
        "the confirmed deletes",
    )
    assert ctl_json(cfg, env, "deletes")["batches"] == []
    assert agent.stop() == 0


def test_a_renamed_folder_converges_without_a_double_tree(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """``mv photos pictures`` of more files than --max-delete allows: server-side
    copies, then the old keys deleted (moved content is no mass delete); no refusal."""
    root = tmp_path / "folder"
    names = _tree(root, 150, under="photos/")
    _tree(root, 5, under="other/")
    cfg = folder_config(root, url, endpoint, delete=True, max_delete=100)
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=60)
        (root / "photos").rename(root / "pictures")
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=60)
        assert not any(k.startswith("photos/") for k in _keys(s3, bucket))
        assert agent.rooms.refused.batches() == []
        assert len([k for k in _keys(s3, bucket) if k.startswith("pictures/")]) == len(names)


def test_a_checkout_storm_converges(
    tmp_path: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> None:
    """Branch switches a few seconds apart, each replacing most of a tree (deleting files
    and writing others), past --max-delete in the hour: the tree does not shrink, so
    nothing is held and S3 ends as the folder, with no ERROR left."""
    root = tmp_path / "repo"
    _tree(root, 60, under="src/")
    cfg = folder_config(root, url, endpoint, delete=True, max_delete=100)
    with running_agent(cfg, state_dir) as agent:
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        for branch in range(4):  # 60 deletes, then 40 a switch: 180 in the hour
            for path in (root / "src").iterdir():
                path.unlink()
            _tree(root, 40, under=f"src/b{branch}-")
            wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
        assert_in_sync(s3, bucket, PREFIX, root)
        assert agent.rooms.refused.batches() == []
        assert agent.state.value == "watching", _error(agent)


def _synced_by_an_agent(
    root: Path, state_dir: Path, url: str, endpoint: str, s3: S3Client, bucket: str
) -> list[str]:
    """``N`` files synced by an agent run, whose state then knows the pair; their names."""
    names = _tree(root)
    cfg = folder_config(root, url, endpoint, delete=True)
    with running_agent(cfg, state_dir):
        wait_until(lambda: quick_in_sync(s3, bucket, PREFIX, root), timeout=SYNC)
    return names


def _sync(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchsync", "sync", "--no-progress", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sync_delete_keeps_the_agents_guards_where_its_state_knows_the_pair(
    tmp_path: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
) -> None:
    """``sync --delete`` has no state of its own; where an agent's state knows the pair,
    an empty source (an unmounted disk) and more than half of what was synced are held
    (exit 1, nothing deleted) until ``--force-delete``; elsewhere it is aws's sync."""
    root = tmp_path / "folder"
    names = _synced_by_an_agent(root, state_dir, url, endpoint, s3, bucket)
    env = {**os.environ, **aws_env, "WATCHSYNC_STATE_DIR": str(state_dir)}
    for name in names:
        (root / name).unlink()
    run = _sync(str(root), url, "--delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"folder {root} is empty while {N} files were synced; none were done" in run.stderr
    assert _keys(s3, bucket) == names
    _tree(root, 5)
    run = _sync(str(root), url, "--delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 1 and "25 deletes in S3 are 83%" in run.stderr
    run = _sync(str(root), url, "--delete", "--force-delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 0, run.stderr
    assert _keys(s3, bucket) == names[:5]
    # Without an agent's state for the pair: aws's sync (only --max-delete applies).
    other = tmp_path / "elsewhere"
    other.mkdir()
    run = _sync(str(other), url, "--delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 0 and _keys(s3, bucket) == []


def test_sync_delete_down_holds_an_emptied_prefix_where_an_agents_state_knows_the_pair(
    tmp_path: Path,
    state_dir: Path,
    url: str,
    endpoint: str,
    s3: S3Client,
    bucket: str,
    aws_env: dict[str, str],
) -> None:
    """``sync s3://… DIR --delete`` after another tool emptied the prefix (or removed most
    of it): where an agent's state knows the pair no local file is deleted (exit 1, one
    line) until ``--force-delete``."""
    root = tmp_path / "folder"
    names = _synced_by_an_agent(root, state_dir, url, endpoint, s3, bucket)
    env = {**os.environ, **aws_env, "WATCHSYNC_STATE_DIR": str(state_dir)}
    for name in names[5:]:
        s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{name}")
    run = _sync(url, str(root), "--delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 1 and "25 deletes here are 83%" in run.stderr, run.stderr
    for name in names[:5]:
        s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/{name}")
    run = _sync(url, str(root), "--delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"the listing of {url}/ is empty while {N} files were synced" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert sorted(tree_snapshot(root, exclude=_reserved)) == names
    run = _sync(url, str(root), "--delete", "--force-delete", "--endpoint-url", endpoint, env=env)
    assert run.returncode == 0, run.stderr
    assert tree_snapshot(root, exclude=_reserved) == {}
