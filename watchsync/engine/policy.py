"""How the executor carries out a plan: the :class:`ExecPolicy` of each command (a frozen
value with named presets), and the :class:`DeletePolicy` a pass's deletes must pass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from watchsync.core.model import Mode


@dataclass(frozen=True)
class ExecPolicy:
    """What the executor may do beyond carrying out the plan, per command.

    ``mode``: what the agent may write (how a conflict keeps both versions, whether a
    delete that lost to a newer object downloads it); ``prune_emptied_dirs``: a directory a
    propagated delete left empty goes too (aws sync leaves them); ``retry_blocked``: a
    download with a file or directory in its way is tried again after the pass's deletes
    (for ``sync`` it fails); ``dry_run``: report the plan instead of carrying it out.

    >>> ExecPolicy.AGENT.prune_emptied_dirs, ExecPolicy.SYNC.prune_emptied_dirs
    (True, False)
    """

    mode: Mode = Mode.BOTH
    prune_emptied_dirs: bool = False
    retry_blocked: bool = False
    dry_run: bool = False

    SYNC: ClassVar[ExecPolicy]
    AGENT: ClassVar[ExecPolicy]


ExecPolicy.SYNC = ExecPolicy()
ExecPolicy.AGENT = ExecPolicy(prune_emptied_dirs=True, retry_blocked=True)


class DeletePolicy(Protocol):
    """The guards a pass's deletes must pass (the agent's); None means they may run."""

    def refusal(self, count: int, paths: Iterable[str] = ()) -> str | None: ...


class NoGuards:
    """``watchsync sync``: deletes are vetoed only by failures and skips."""

    def refusal(self, count: int, paths: Iterable[str] = ()) -> str | None:
        return None
