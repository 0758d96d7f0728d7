"""How the executor carries out a plan: the :class:`ExecPolicy` of each command (a frozen
value with named presets), and the :class:`DeletePolicy` a pass's deletes must pass."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, TypeVar

from watchsync.core.model import Action, Mode


@dataclass(frozen=True)
class ExecPolicy:
    """What the executor may do beyond carrying out the plan, per command.

    ``mode``: what the agent may write (how a conflict keeps both versions, whether a
    delete that lost to a newer object downloads it); ``prune_emptied_dirs``: a directory a
    propagated delete left empty goes too (aws sync leaves them); ``retry_blocked``: a
    download with a file or directory in its way is tried again after the pass's deletes
    (for ``sync`` it fails); ``dry_run``: report the plan instead of carrying it out;
    ``case_copies``: the command's ignore rules leave case-conflict names alone, so a key the
    folder cannot hold apart from another is kept under one.

    >>> ExecPolicy.AGENT.prune_emptied_dirs, ExecPolicy.SYNC.prune_emptied_dirs
    (True, False)
    """

    mode: Mode = Mode.BOTH
    prune_emptied_dirs: bool = False
    retry_blocked: bool = False
    dry_run: bool = False
    case_copies: bool = False  # leaves case-conflict names alone (see CASE_CLASH_STEPS)

    SYNC: ClassVar[ExecPolicy]
    AGENT: ClassVar[ExecPolicy]


ExecPolicy.SYNC = ExecPolicy()
ExecPolicy.AGENT = ExecPolicy(prune_emptied_dirs=True, retry_blocked=True, case_copies=True)


@dataclass(frozen=True)
class Seen:
    """What a pass saw of each side whole: files walked, objects listed (None: that side
    was not read whole, e.g. taken from the state as last synced)."""

    walked: int | None = None
    listed: int | None = None


NOTHING_SEEN = Seen()  # a pass that read neither side whole

T = TypeVar("T")


class Counted(Generic[T]):
    """A side's stream passed through once, counting what went by (what the pass saw of
    it, for the guards).

    >>> c = Counted(iter("ab")); list(c), c.count
    (['a', 'b'], 2)
    >>> c = Counted(iter([["a", "b"], ["c"]]), size=len); list(c), c.count
    ([['a', 'b'], ['c']], 3)
    """

    def __init__(self, items: Iterable[T], *, size: Callable[[T], int] | None = None) -> None:
        self._items = items
        self._size = size  # how many each item stands for (a page: its rows); None: one
        self.count = 0

    def __iter__(self) -> Iterator[T]:
        size = self._size
        for item in self._items:
            self.count += 1 if size is None else size(item)
            yield item


class DeletePolicy(Protocol):
    """The guards a pass's deletes must pass; None means they may run.  ``deletes`` are
    the pass's delete actions (read once), ``seen`` what the pass saw of each side."""

    def refusal(self, deletes: Iterable[Action], *, seen: Seen = ...) -> str | None: ...


class NoGuards:
    """Deletes vetoed only by failures and skips."""

    def refusal(self, deletes: Iterable[Action], *, seen: Seen = NOTHING_SEEN) -> str | None:
        return None
