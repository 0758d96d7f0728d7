"""The watch agent, as rooms: each a small synchronous object with one concern.

``supervisor`` (the process: folders, signals, reload, systemd) runs one ``folder`` per
configured pair; the folder owns the threads and opens the state and the transfer, and
``wiring`` (the composition root) builds the rest on them, once, in dependency order:

* ``scope``: what takes part (ignore rules and filters);
* ``upload_queue``: the paths waiting for the uploader, and their journal;
* ``uploader``: a queued path looked at, planned and acted on;
* ``local_changes``: what the watcher reported, turned into work;
* ``list_schedule``: when a pass must list the prefix, when the feed is trusted, and the
  paths the feed named that are owed a re-check;
* ``feed``: the change feed between agents on one prefix;
* ``reconcile``: the periodic three-way pass, and the feed's re-check (the same pass over
  the named paths alone);
* ``delete_guards``: delete batches, the guards every delete passes, refusals;
* ``conflicts``: conflict names and lost races;
* ``outage``: the endpoint gone: pause, probe, resume;
* ``status``: the folder's state and errors; ``effects``: what the executor's work means
  to the state, the logs and the metrics.

Beside them: ``config`` (the TOML file, the environment and flags), ``metrics``,
``progress`` and ``systemd``.  Decisions come from :mod:`watchsync.core.plan`; effects go
through :class:`watchsync.engine.executor.Executor`.
"""
