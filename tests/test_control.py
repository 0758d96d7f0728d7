"""The control channel: the room's commands (no sockets), the socket adapter, and
``watchsync ctl`` steering a real agent process over its real socket."""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import wait_until
from s3server import SeaweedServer
from service_helpers import (
    STARTUP,
    SYNC,
    Agent,
    agent_env,
    ctl,
    ctl_json,
    key_exists,
    spawn,
    stays_false,
    wait_for_key,
    watching,
    write_config,
)

from watchsync.agent.control import Control
from watchsync.agent.control_socket import ControlServer, ask, listening, socket_path
from watchsync.agent.refused import RefusedDeletes
from watchsync.agent.status import Status
from watchsync.cli.agent_commands import folder_status
from watchsync.fs.platform import pid_alive
from watchsync.state.store import StateStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["spawn"]  # fixtures


class FakeFolder:
    """A folder as the control room sees it."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.calls: list[str] = []
        self._refused = RefusedDeletes(
            name, status=Status(name, store=None, metrics=None), exists=lambda p: p == "here"
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def refused(self) -> RefusedDeletes:
        return self._refused

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def rescan(self) -> None:
        self.calls.append("rescan")

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "state": "watching"}


def _room() -> tuple[Control, FakeFolder, FakeFolder]:
    docs, photos = FakeFolder("docs"), FakeFolder("photos")
    folders = {"docs": docs, "photos": photos}
    control = Control(
        folders=lambda: folders, failing=lambda: {"broken": "cannot start"}, pid=7, wall=lambda: 1.0
    )
    return control, docs, photos


def test_the_room_steers_one_folder_or_all() -> None:
    control, docs, photos = _room()
    assert control.handle({"cmd": "pause", "folder": "docs"}) == {"ok": True, "pause": ["docs"]}
    assert docs.calls == ["pause"] and photos.calls == []
    assert control.handle({"cmd": "rescan"}) == {"ok": True, "rescan": ["docs", "photos"]}
    assert control.handle({"cmd": "resume", "folder": "nope"}) == {
        "ok": False,
        "error": "no folder named nope (folders: docs, photos)",
    }
    answer = control.handle({"cmd": "status"})
    assert answer["pid"] == 7 and [r["name"] for r in answer["folders"]] == [
        "docs",
        "photos",
        "broken",
    ]
    assert not control.handle({"cmd": "reboot"})["ok"]
    assert not control.handle({})["ok"]


def test_the_room_lists_approves_and_rejects_refused_batches() -> None:
    control, docs, photos = _room()
    one = docs.refused.add(["gone", "here"], why="2 deletes exceed --max-delete 1", origin="pass")
    two = photos.refused.add(["x"], why="directory x is empty", origin="watch")
    listed = control.handle({"cmd": "deletes"})["batches"]
    assert [(b["folder"], b["id"], b["count"]) for b in listed] == [
        ("docs", one.id, 2),
        ("photos", two.id, 1),
    ]
    assert listed[0]["delete_in_s3"] == ["gone"] and listed[0]["delete_locally"] == ["here"]
    assert control.handle({"cmd": "approve", "ids": ["999"]}) == {
        "ok": False,
        "error": "no refused batch 999 (see: ctl deletes)",
    }
    assert not control.handle({"cmd": "approve", "ids": "1"})["ok"]
    assert control.handle({"cmd": "approve", "ids": [one.id]}) == {
        "ok": True,
        "approved": [{"id": one.id, "count": 2, "root": False}],
    }
    assert docs.refused.approved(["gone", "here"])
    assert control.handle({"cmd": "reject", "ids": [two.id]})["rejected"] == [
        {"id": two.id, "count": 1, "root": False}
    ]
    assert control.handle({"cmd": "deletes"})["batches"] == []


def test_the_socket_answers_json_lines_on_a_long_path_and_only_its_user(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # longer than sun_path holds
    deep.mkdir(parents=True)
    control, _docs, _photos = _room()
    path = deep / f"ctl-{os.getpid()}.sock"
    with ControlServer(path, control.handle):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ask(path, {"cmd": "pause", "folder": "docs"})["pause"] == ["docs"]
        assert listening(deep, pid_alive) == {os.getpid(): path}
    assert not path.exists()
    # Another user (any uid but the allowed ones) is turned away.
    with ControlServer(path, control.handle, uids=frozenset({12345})):
        assert ask(path, {"cmd": "status"}) == {"ok": False, "error": "not the agent's user"}


def test_status_takes_a_running_agents_word_over_its_database(tmp_path: Path) -> None:
    """The state's disk full: the database still says "watching" (the error could not be
    written), the agent's control channel says "error" and why; status shows the agent's."""
    root, state = tmp_path / "docs", tmp_path / "state"
    root.mkdir()
    url = "s3://bkt/docs"
    with StateStore.open(state, local_root=root, url=url) as store:
        store.status.set(state="watching", pid=os.getpid(), last_error="old", last_error_at=1.0)
        db = store.db_path
    said = "no space on the state's disk"
    live = {"name": "docs", "path": str(root), "url": url, "state": "error", "last_error": said}
    assert folder_status(db, 2.0)["state"] == "watching"  # no agent answers: the database
    with ControlServer(socket_path(state, os.getpid()), lambda _req: {"folders": [live]}):
        row = folder_status(db, 2.0)
    assert (row["state"], row["last_error"], row["last_error_at"]) == ("error", said, None)
    assert row["pid"] == os.getpid() and row["running"]


# -- a real agent ---------------------------------------------------------------------------


def test_an_answer_given_before_the_request_is_read_still_arrives(tmp_path: Path) -> None:
    """An agent that turns a caller away answers at once and closes: a request still being
    sent then meets a closed socket (EPIPE), and the answer is read all the same."""
    path = tmp_path / "ctl.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)

        def refuse() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b'{"ok": false, "error": "not the agent\'s user"}\n')

        thread = threading.Thread(target=refuse)
        thread.start()
        try:
            # Far more than the socket's buffer: the send is still under way at the close.
            answer = ask(path, {"cmd": "status", "pad": "x" * (4 << 20)})
        finally:
            thread.join(10)
    assert answer == {"ok": False, "error": "not the agent's user"}


def test_ctl_approves_a_refused_delete_batch_and_it_runs(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    spawn: Callable[..., Agent],
) -> None:
    root, state = tmp_path / "docs", tmp_path / "state"
    root.mkdir()
    for i in range(5):
        (root / f"f{i}.txt").write_text(f"file {i}")
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=state,
        endpoint=s3server.endpoint,
        folders=[(root, f"s3://{bucket}/docs")],
        extra="delete = true\nmax_delete = 2",
    )
    env = agent_env(s3server, tmp_path)
    agent = spawn("watch", "--config", str(cfg))
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "the first reconcile")
    for i in range(5):
        wait_for_key(s3, bucket, f"docs/f{i}.txt")

    for i in range(3):
        (root / f"f{i}.txt").unlink()

    def refused() -> list[dict[str, Any]]:
        batches: list[dict[str, Any]] = ctl_json(cfg, env, "deletes")["batches"]
        return batches

    [batch] = wait_until(refused, SYNC, 0.2, "the refused batch")
    assert sorted(batch["delete_in_s3"]) == ["f0.txt", "f1.txt", "f2.txt"]
    assert "exceed --max-delete 2" in batch["why"]
    text = ctl(cfg, env, "deletes").stdout
    assert f"batch {batch['id']} " in text and "delete in S3:  f1.txt" in text
    assert all(key_exists(s3, bucket, f"docs/f{i}.txt") for i in range(3))
    # The log tells how to decide.
    assert f"watchsync ctl deletes approve {batch['id']}" in agent.text()

    done = ctl(cfg, env, "deletes", "approve", batch["id"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"approved batch {batch['id']} (3 deletes)" in done.stdout
    wait_until(
        lambda: not any(key_exists(s3, bucket, f"docs/f{i}.txt") for i in range(3)),
        SYNC,
        0.2,
        "the approved deletes",
    )
    assert key_exists(s3, bucket, "docs/f3.txt") and key_exists(s3, bucket, "docs/f4.txt")
    assert refused() == []
    # An id that is not (or no longer) a refused batch is an error.
    again = ctl(cfg, env, "deletes", "approve", batch["id"])
    assert again.returncode == 1 and "no refused batch" in again.stdout

    # Pause holds changes back; resume sends them.
    assert ctl_json(cfg, env, "pause")["pause"]
    [row] = ctl_json(cfg, env, "status")["folders"]
    assert row["state"] == "paused" and "control channel" in row["state_reason"]
    (root / "while-paused.txt").write_text("held")
    assert stays_false(lambda: key_exists(s3, bucket, "docs/while-paused.txt"), 1.5)
    assert ctl_json(cfg, env, "resume")["resume"]
    wait_for_key(s3, bucket, "docs/while-paused.txt")
    assert agent.stop() == 0
    assert listening(state, pid_alive) == {}  # the socket went with the agent
    assert ctl(cfg, env, "status").returncode == 3
