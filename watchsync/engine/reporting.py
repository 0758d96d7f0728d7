"""Where the executor's work goes: the :class:`Recorder` remembers what was done (the agent's
state; nothing for ``sync``) and :class:`Events` tells the world (aws-format lines for
``sync``; logs, metrics and status for the agent).  Both sides of the executor report
through them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from watchsync.core.model import Action, Skipped, SyncedEntry


class Recorder(Protocol):
    """Where finished work is remembered (the agent's state; nothing for ``sync``)."""

    def synced(
        self,
        entry: SyncedEntry,
        *,
        counters: Mapping[str, int] | None = None,
        journal_id: int | None = None,
    ) -> None: ...

    def synced_many(
        self, entries: Sequence[SyncedEntry], *, counters: Mapping[str, int] | None = None
    ) -> None:
        """Several finished transfers, durable together; ``counters`` are their totals."""

    def remember(self, entry: SyncedEntry) -> None: ...

    def forget(self, path: str, *, counter: str | None = None) -> None: ...

    def journal(self, kind: str, path: str, detail: str) -> int | None: ...

    def unjournal(self, journal_id: int | None) -> None: ...

    def count(self, counter: str, n: int = 1) -> None: ...

    def flush(self) -> None: ...

    def recorded(self, path: str, etag: str) -> bool:
        """Whether ``path`` is already recorded as synced with the object ``etag`` (then a
        send found stored is not counted again)."""

    def holds(self, path: str, etag: str) -> bool:
        """Whether a record of ``path`` with the object ``etag`` was not given up: a
        recorder that keeps no state gives none up (a delete planned from a record the
        state no longer holds does not run)."""


class NullRecorder:
    """``watchsync sync`` keeps no state."""

    def synced(
        self,
        entry: SyncedEntry,
        *,
        counters: Mapping[str, int] | None = None,
        journal_id: int | None = None,
    ) -> None:
        pass

    def synced_many(
        self, entries: Sequence[SyncedEntry], *, counters: Mapping[str, int] | None = None
    ) -> None:
        pass

    def remember(self, entry: SyncedEntry) -> None:
        pass

    def forget(self, path: str, *, counter: str | None = None) -> None:
        pass

    def journal(self, kind: str, path: str, detail: str) -> int | None:
        return None

    def unjournal(self, journal_id: int | None) -> None:
        pass

    def count(self, counter: str, n: int = 1) -> None:
        pass

    def flush(self) -> None:
        pass

    def recorded(self, path: str, etag: str) -> bool:
        return False

    def holds(self, path: str, etag: str) -> bool:
        return True


@dataclass(frozen=True)
class Veto:
    """Why a pass's deletes (``count`` of them) were not run.

    ``scoped``: only the deletes under skipped paths were held back; the others ran."""

    count: int
    failed: int
    skipped: int
    stopped: bool
    refusal: str | None = None
    scoped: bool = False


class Events(Protocol):
    """What the executor tells the world (lines, logs, metrics, progress)."""

    def started(self, action: Action) -> None: ...

    def settled(self, action: Action) -> None: ...

    def finished(self, action: Action, nbytes: int) -> None: ...

    def deleted(self, action: Action) -> None: ...

    def failed(self, action: Action, exc: Exception) -> None: ...

    def vetoed(self, veto: Veto) -> None: ...

    def would(self, action: Action) -> None: ...

    def conflict(self, action: Action, name: str) -> None: ...

    def skipped(self, item: Skipped, *, remote: bool) -> None: ...
