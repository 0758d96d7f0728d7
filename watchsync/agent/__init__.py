"""The watch agent, as rooms: each a small synchronous object with one concern.

``supervisor`` (the process: folders, signals, reload, systemd) runs one ``folder`` per
configured pair; the folder owns the threads and wires the rest: ``scope`` (what takes
part), ``pending`` (the queue and its journal), ``uploads`` (one path at a time),
``changes`` (watcher paths into work), ``reconcile`` (the full pass), ``deletes`` (batches
and guards), ``conflicts`` (names and
lost races), ``status`` (state and errors) and ``effects`` (what the executor's work means
to the state, the logs and the metrics).  Decisions come from :mod:`watchsync.plan`;
effects go through :class:`watchsync.execute.Executor`.
"""

from .folder import Folder
from .supervisor import Supervisor

__all__ = ["Folder", "Supervisor"]
