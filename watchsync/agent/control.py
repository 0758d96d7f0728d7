"""Room: the control channel's commands.  One request, a small JSON object such as
``{"cmd": "pause", "folder": "docs"}``, in; one answer, ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``, out.

The same room answers ``watchsync ctl`` (through the local socket, control_socket.py) and
the status page's buttons (through the metrics address, page.py), so both steer the agent
the same way and see the same status.

Commands: ``status``; ``pause``, ``resume``, ``rescan`` (every folder, or ``folder``: a name);
``deletes`` (the refused batches, with their paths); ``approve`` / ``reject`` with ``ids``.

Must not touch: sockets, threads, files (folders are reached through :class:`Steered`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from watchsync.agent.refused import ROOT, RefusedBatch, RefusedDeletes

Request = Mapping[str, Any]
Answer = dict[str, Any]

COMMANDS = ("status", "pause", "resume", "rescan", "deletes", "approve", "reject")
# Commands that change what the agent does; the status page takes them only with the token.
ACTIONS = frozenset({"pause", "resume", "rescan", "approve", "reject"})


class Steered(Protocol):
    """What the control channel asks of a folder (agent/folder.py's :class:`Folder`)."""

    @property
    def name(self) -> str: ...

    @property
    def refused(self) -> RefusedDeletes: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def rescan(self) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class Control:
    """Answers control requests about the folders ``folders()`` returns (by name).

    >>> Control(folders=dict).handle({"cmd": "status"})["folders"]
    []
    >>> Control(folders=dict).handle({"cmd": "pause", "folder": "docs"})
    {'ok': False, 'error': 'no folder named docs (folders: none)'}
    """

    def __init__(
        self,
        *,
        folders: Callable[[], Mapping[str, Steered]],
        failing: Callable[[], Mapping[str, str]] = dict,
        wall: Callable[[], float] = time.time,
        pid: int | None = None,
    ) -> None:
        self.folders = folders
        self.failing = failing  # folders that could not start: name -> why
        self.wall = wall
        self.pid = os.getpid() if pid is None else pid

    def handle(self, request: Request) -> Answer:
        """One request's answer; a bad request is answered, never raised."""
        cmd = request.get("cmd") if isinstance(request, Mapping) else None
        if cmd not in COMMANDS:
            return _error(f"unknown command {cmd!r} (one of {', '.join(COMMANDS)})")
        try:
            if cmd == "status":
                return self._status()
            if cmd == "deletes":
                return self._deletes()
            if cmd in ("approve", "reject"):
                return self._decide(cmd, request.get("ids"))
            return self._steer(cmd, request.get("folder"))
        except _Refused as exc:
            return _error(str(exc))

    # -- commands ---------------------------------------------------------------------------

    def _status(self) -> Answer:
        rows = [folder.snapshot() for folder in self._all()]
        rows += [
            {"name": name, "state": "error", "last_error": why}
            for name, why in sorted(self.failing().items())
        ]
        return {"ok": True, "pid": self.pid, "at": self.wall(), "folders": rows}

    def _steer(self, cmd: str, name: object) -> Answer:
        chosen = self._chosen(name)
        for folder in chosen:
            getattr(folder, cmd)()
        return {"ok": True, cmd: [f.name for f in chosen]}

    def _deletes(self) -> Answer:
        batches = [
            {"folder": folder.name, **batch.describe()}
            for folder in self._all()
            for batch in folder.refused.batches()
        ]
        return {"ok": True, "batches": batches}

    def _decide(self, cmd: str, ids: object) -> Answer:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _Refused(f"{cmd} needs the ids of refused batches (see: ctl deletes)")
        found: list[tuple[Steered, str]] = []
        for batch_id in ids:
            owner = next((f for f in self._all() if f.refused.get(batch_id) is not None), None)
            if owner is None:
                raise _Refused(f"no refused batch {batch_id} (see: ctl deletes)")
            held = owner.refused.get(batch_id)
            if cmd == "reject" and held is not None and held.origin == ROOT:
                raise _Refused(
                    f"batch {batch_id} holds the deletes of a root that is another directory: "
                    "approve it to accept that directory as the folder, or put the folder's "
                    "own directory back"
                )
            found.append((owner, batch_id))
        done: list[RefusedBatch] = []
        for folder, batch_id in found:
            decide = folder.refused.approve if cmd == "approve" else folder.refused.reject
            batch = decide(batch_id)
            if batch is not None:
                done.append(batch)
        verb = "approved" if cmd == "approve" else "rejected"
        return {
            "ok": True,
            verb: [{"id": b.id, "count": len(b.paths), "root": b.origin == ROOT} for b in done],
        }

    # -- helpers ----------------------------------------------------------------------------

    def _all(self) -> list[Steered]:
        return [self.folders()[name] for name in sorted(self.folders())]

    def _chosen(self, name: object) -> Sequence[Steered]:
        if name is None:
            return self._all()
        folders = self.folders()
        if not isinstance(name, str) or name not in folders:
            known = ", ".join(sorted(folders)) or "none"
            raise _Refused(f"no folder named {name} (folders: {known})")
        return [folders[name]]


class _Refused(Exception):
    """A request that cannot be done; its answer says why."""


def _error(text: str) -> Answer:
    return {"ok": False, "error": text}
