"""Prometheus metrics (``--metrics-addr``), in a registry of our own.

Every folder agent gets a :class:`FolderMetrics` view with its label bound, so code that
counts does not repeat label plumbing.  With no address given the registry exists but is
never served, which costs next to nothing; with one, the status page (page.py) serves
``/metrics`` beside itself.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

# The values of ``watchsync_folder_state``'s state label (agent/status.py's states).
STATES = ("starting", "reconciling", "watching", "paused", "error", "stopped")


class Metrics:
    """All metric families of one process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.files = Counter(
            "watchsync_files_transferred", "Files transferred", ["folder", "direction"], registry=r
        )
        self.bytes = Counter(
            "watchsync_bytes_transferred", "Bytes transferred", ["folder", "direction"], registry=r
        )
        self.deletes = Counter(
            "watchsync_deletes", "Deletes carried out", ["folder", "side"], registry=r
        )
        self.errors = Counter("watchsync_errors", "Errors by kind", ["folder", "kind"], registry=r)
        self.retries = Counter(
            "watchsync_retries", "Transfers retried later", ["folder"], registry=r
        )
        self.overflows = Counter(
            "watchsync_watcher_overflows", "Watcher event losses (rescans)", ["folder"], registry=r
        )
        self.conflicts = Counter("watchsync_conflicts", "Conflicts kept", ["folder"], registry=r)
        self.queue = Gauge("watchsync_queue_depth", "Paths waiting to sync", ["folder"], registry=r)
        self.in_flight = Gauge(
            "watchsync_in_flight", "Transfers in progress", ["folder"], registry=r
        )
        self.oldest = Gauge(
            "watchsync_oldest_pending_seconds",
            "Age of the oldest pending path",
            ["folder"],
            registry=r,
        )
        self.last_reconcile = Gauge(
            "watchsync_last_reconcile_timestamp_seconds",
            "End of the last full reconcile",
            ["folder"],
            registry=r,
        )
        self.last_duration = Gauge(
            "watchsync_last_reconcile_duration_seconds",
            "Duration of the last full reconcile",
            ["folder"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "watchsync_reconcile_duration_seconds",
            "Full reconcile duration",
            ["folder"],
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800),
        )
        self.up = Gauge(
            "watchsync_folder_up",
            "1 while the folder syncs (starting, reconciling, watching); 0 when paused, in "
            "error or stopped",
            ["folder"],
            registry=r,
        )
        self.state = Gauge(
            "watchsync_folder_state",
            "1 for the state the folder is in, 0 for the others",
            ["folder", "state"],
            registry=r,
        )
        self.state_since = Gauge(
            "watchsync_folder_state_since_timestamp_seconds",
            "When the folder entered its current state (e.g. paused since)",
            ["folder"],
            registry=r,
        )
        self.refused = Gauge(
            "watchsync_deletes_refused",
            "Deletes refused by the guards, waiting for `watchsync ctl deletes approve|reject`",
            ["folder"],
            registry=r,
        )

    def wsgi_app(self) -> Any:
        """``/metrics`` as a WSGI app (the status page serves it beside itself).

        >>> from wsgiref.util import setup_testing_defaults
        >>> metrics = Metrics()
        >>> metrics.folder("docs").error("start")
        >>> environ: dict[str, Any] = {"PATH_INFO": "/metrics", "QUERY_STRING": ""}
        >>> setup_testing_defaults(environ)
        >>> body = b"".join(metrics.wsgi_app()(environ, lambda status, headers: None))
        >>> [line for line in body.decode().splitlines() if line.startswith("watchsync_errors_t")]
        ['watchsync_errors_total{folder="docs",kind="start"} 1.0']
        """
        return make_wsgi_app(self.registry)

    def folder(self, name: str) -> FolderMetrics:
        """The metrics of folder ``name``, label bound."""
        return FolderMetrics(self, name)

    def forget(self, name: str) -> None:
        """Drop the gauges of a folder that is no longer served (removed on reload), so a
        stale queue depth or "up" does not linger; counters keep their totals."""
        for gauge in (
            self.queue,
            self.in_flight,
            self.oldest,
            self.last_reconcile,
            self.last_duration,
            self.up,
            self.state_since,
            self.refused,
        ):
            with contextlib.suppress(KeyError):
                gauge.remove(name)
        for state in STATES:
            with contextlib.suppress(KeyError):
                self.state.remove(name, state)


class FolderMetrics:
    """The metrics of one folder, label bound."""

    def __init__(self, m: Metrics, name: str) -> None:
        self.name = name
        self.m = m
        # Series exist at 0 from the start, so rate() and alerts see them before the first event.
        for direction in ("up", "down"):
            m.files.labels(name, direction)
            m.bytes.labels(name, direction)
        for side in ("local", "remote"):
            m.deletes.labels(name, side)
        m.retries.labels(name)
        m.overflows.labels(name)
        m.conflicts.labels(name)
        m.refused.labels(name)

    def transferred(self, direction: str, nbytes: int) -> None:
        self.m.files.labels(self.name, direction).inc()
        self.m.bytes.labels(self.name, direction).inc(nbytes)

    def deleted(self, side: str, n: int = 1) -> None:
        self.m.deletes.labels(self.name, side).inc(n)

    def error(self, kind: str) -> None:
        self.m.errors.labels(self.name, kind).inc()

    def retried(self) -> None:
        self.m.retries.labels(self.name).inc()

    def overflow(self) -> None:
        self.m.overflows.labels(self.name).inc()

    def conflict(self) -> None:
        self.m.conflicts.labels(self.name).inc()

    def queue(self, depth: int, in_flight: int, oldest: float) -> None:
        self.m.queue.labels(self.name).set(depth)
        self.m.in_flight.labels(self.name).set(in_flight)
        self.m.oldest.labels(self.name).set(oldest)

    def reconciled(self, at: float, duration: float) -> None:
        self.m.last_reconcile.labels(self.name).set(at)
        self.m.last_duration.labels(self.name).set(duration)
        self.m.reconcile_duration.labels(self.name).observe(duration)

    def state(self, state: str, *, since: float, up: bool) -> None:
        """The folder is in ``state`` since ``since`` (wall clock); ``up``: it syncs."""
        for each in STATES:
            self.m.state.labels(self.name, each).set(1 if each == state else 0)
        self.m.state_since.labels(self.name).set(since)
        self.m.up.labels(self.name).set(1 if up else 0)

    def refused(self, waiting: int) -> None:
        self.m.refused.labels(self.name).set(waiting)
