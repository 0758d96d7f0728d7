"""The long-running process: one :class:`FolderAgent` per configured folder, one stop event,
signals, systemd notification, SIGHUP reload and the metrics endpoint.

A signal handler only sets an event; the main loop does the work.  The first SIGTERM or
SIGINT drains (up to each folder's ``drain_timeout``); a second one exits at once, which is
safe because pending work is in each folder's journal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from . import sdnotify
from .config import AgentConfig, FolderConfig
from .errors import LockedError, WatchsyncError
from .folder import FolderAgent
from .metrics import Metrics

logger = logging.getLogger(__name__)


class Supervisor:
    """Runs every folder of an :class:`AgentConfig` until stopped.

    >>> Supervisor(load_config(...)).run()  # doctest: +SKIP
    0
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        reload: Callable[[], AgentConfig] | None = None,
        force_polling: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self._reload_config = reload
        self.force_polling = force_polling
        self.env = env if env is not None else dict(os.environ)
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics = Metrics()
        self.folders: dict[str, FolderAgent] = {}
        self._signals = 0

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop (twice: exit now); SIGHUP reloads.  Main thread only."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda _s, _f: self.reload_requested.set())

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(1)  # the journal keeps what was pending
        self.stop.set()

    # -- folders ---------------------------------------------------------------------------

    def _start_folder(self, cfg: FolderConfig) -> bool:
        agent = FolderAgent(
            cfg,
            state_dir=self.config.state_dir,
            metrics=self.metrics.folder(cfg.name),
            force_polling=self.force_polling,
        )
        try:
            agent.start()
        except LockedError:
            raise
        except WatchsyncError as exc:
            logger.error("folder %s: cannot start: %s", cfg.name, exc, extra={"folder": cfg.name})
            return False
        self.folders[cfg.name] = agent
        logger.info(
            "watch: %s <-> %s (%s%s)",
            cfg.path,
            cfg.url,
            cfg.direction.value,
            ", delete" if cfg.delete else "",
            extra={"folder": cfg.name, "event": "start"},
        )
        return True

    def _stop_folder(self, name: str) -> None:
        agent = self.folders.pop(name)
        agent.stop()
        if not agent.join(agent.cfg.drain_timeout):
            logger.warning("folder %s: drain timed out; the rest stays in the journal", name)

    def start_all(self) -> None:
        """Start every folder; a folder locked by another agent is an error for a single
        folder and a logged fault when there are several."""
        for cfg in self.config.folders:
            try:
                self._start_folder(cfg)
            except LockedError as exc:
                if len(self.config.folders) == 1:
                    raise
                logger.error("folder %s: %s", cfg.name, exc, extra={"folder": cfg.name})

    def reload(self) -> None:
        """Apply the configuration file again: added, removed and changed folders."""
        if self._reload_config is None:
            logger.warning("reload: no configuration file to reload")
            return
        sdnotify.reloading(env=self.env)
        try:
            new = self._reload_config()
        except WatchsyncError as exc:
            logger.error("reload: keeping the running configuration: %s", exc)
            sdnotify.ready(env=self.env)
            return
        wanted = {cfg.name: cfg for cfg in new.folders}
        for name in list(self.folders):
            if name not in wanted or wanted[name] != self.folders[name].cfg:
                logger.info("reload: stopping %s", name)
                self._stop_folder(name)
        self.config = new
        for name, cfg in wanted.items():
            if name not in self.folders:
                try:
                    self._start_folder(cfg)
                except LockedError as exc:
                    logger.error("folder %s: %s", name, exc)
        logger.info("reload: %d folders", len(self.folders))
        sdnotify.ready(env=self.env)

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the exit code."""
        if self.config.metrics_addr:
            self.metrics.serve(self.config.metrics_addr)
            logger.info("metrics: serving on http://%s/metrics", self.config.metrics_addr)
        try:
            self.start_all()
            if not self.folders and self.config.folders:
                raise WatchsyncError("no folder could be started")
            deadline = time.monotonic() + 30
            for agent in self.folders.values():
                agent.ready.wait(max(0.0, deadline - time.monotonic()))
            sdnotify.ready(env=self.env)
            self._loop()
        finally:
            logger.info("watch: stopping; draining in-flight transfers")
            sdnotify.stopping(env=self.env)
            for name in list(self.folders):
                self._stop_folder(name)
            self.metrics.close()
            logger.info("watch: stopped")
        return 0

    def _loop(self) -> None:
        interval = sdnotify.watchdog_interval(self.env)
        tick = min(1.0, interval / 2) if interval else 1.0
        last_status = ""
        while not self.stop.wait(tick):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            if interval:
                sdnotify.watchdog_ping(env=self.env)
            status = self.status_line()
            if status != last_status:
                sdnotify.status(status, env=self.env)
                last_status = status

    def status_line(self) -> str:
        """One line for systemd: folders, pending work and the last error."""
        agents = list(self.folders.values())
        pending = sum(a._pending_count() for a in agents)
        states = sorted({a.state for a in agents})
        errors = [a.last_error for a in agents if a.last_error]
        line = f"{len(agents)} folders ({', '.join(states) or 'none'}), {pending} pending"
        if errors:
            line += f"; last error: {errors[-1]}"
        return line
