"""Room: the process.  One :class:`~watchsync.agent.folder.Folder` per configured folder,
one stop event, signals, systemd notification, SIGHUP reload and the metrics endpoint.

A signal handler only sets an event; the main loop does the work.  The first SIGTERM or
SIGINT drains (up to each folder's ``drain_timeout``, all folders at once); a second one
exits at once, which is safe because pending work is in each folder's journal.

A folder is isolated from the others: one that cannot start (its state database is
unreadable, another agent holds it) is logged, counted and retried with backoff while the
others sync; faults once running (a missing folder, a refused bucket) are the folder's own
business (it pauses or retries) and show in ``watchsync status``.

Must not touch: files, S3, the state (each folder owns its own); the control socket only
through control_socket.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from wsgiref.simple_server import WSGIServer

from watchsync.agent import page
from watchsync.agent import systemd as sdnotify
from watchsync.agent.config import AgentConfig, FolderConfig
from watchsync.agent.control import Control
from watchsync.agent.control_socket import ControlServer, remove_stale, socket_path
from watchsync.agent.folder import Folder
from watchsync.agent.metrics import Metrics
from watchsync.agent.page import StatusPage, page_token
from watchsync.agent.progress import ReconcileProgress
from watchsync.agent.status import State
from watchsync.core.errors import LockedError, WatchsyncError
from watchsync.fs import platform

logger = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MAX = 5.0, 300.0  # backoff of a folder that could not start
_READY_TIMEOUT = 30.0  # longest wait for the folders to be watched before READY=1
_JOIN_SLACK = 10.0  # beyond drain_timeout: observer and transfer shutdown


@dataclass
class _Failed:
    """A folder that could not start, and when to try again."""

    cfg: FolderConfig
    error: str
    attempts: int
    next_at: float


class Supervisor:
    """Runs every folder of an :class:`AgentConfig` until stopped.

    ``watchsync watch`` builds one from the loaded configuration and calls :meth:`run`,
    which starts the folders and returns the exit code once SIGTERM or SIGINT stops it
    (``tests/test_service_e2e.py`` runs it as a real process).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        reload: Callable[[], AgentConfig] | None = None,
        force_polling: bool = False,
        env: dict[str, str] | None = None,
        debug: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._reload_config = reload
        self.force_polling = force_polling
        # A live display of the first reconcile, for a person at a terminal only.
        self.progress = (
            ReconcileProgress() if sys.stderr.isatty() and config.log_format == "text" else None
        )
        self.env = env if env is not None else dict(os.environ)
        self.debug = debug
        self.clock = clock
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics = Metrics()
        self.folders: dict[str, Folder] = {}
        self.failed: dict[str, _Failed] = {}
        # The control channel's commands (ctl and the status page), over the running folders.
        self.control = Control(
            folders=lambda: {name: f.steering for name, f in dict(self.folders).items()},
            failing=lambda: {name: f.error for name, f in dict(self.failed).items()},
        )
        self._control_server: ControlServer | None = None
        self._http: tuple[WSGIServer, threading.Thread] | None = None
        self._signals = 0
        self._watchdog = sdnotify.watchdog_interval(self.env)
        self._last_ping = 0.0

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT (and Windows' SIGBREAK) stop, twice: exit now; SIGHUP reloads where
        there is one (a reload request file does everywhere).  Main thread only."""
        for signum in platform.stop_signals():
            signal.signal(signum, self._on_stop_signal)
        hup = platform.reload_signal()
        if hup is not None:
            signal.signal(hup, lambda _s, _f: self.reload_requested.set())

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(1)  # the journal keeps what was pending
        self.stop.set()

    def _ping(self, *, force: bool = False) -> None:
        """WATCHDOG=1 at most every half interval (also while waiting on slow work)."""
        if not self._watchdog:
            return
        now = self.clock()
        if force or now - self._last_ping >= min(1.0, self._watchdog / 4):
            sdnotify.watchdog_ping(env=self.env)
            self._last_ping = now

    # -- folders ---------------------------------------------------------------------------

    def _start_folder(self, cfg: FolderConfig, *, single: bool = False) -> bool:
        """Start one folder; on failure log, count and schedule a retry.

        A folder held by another agent is fatal only when it is the only folder (``single``):
        then there is nothing else to do, and exit code 2 says why.
        """
        agent: Folder | None = None
        try:
            agent = Folder(
                cfg,
                state_dir=self.config.state_dir,
                metrics=self.metrics.folder(cfg.name),
                force_polling=self.force_polling,
                on_progress=self.progress.update if self.progress else None,
            )
            agent.start()
        except Exception as exc:
            if agent is not None:
                agent.stop()
                agent.join(0)  # closes its transfer manager and state, if any was opened
            if single and isinstance(exc, LockedError):
                raise
            self._start_failed(cfg, exc)
            return False
        self.failed.pop(cfg.name, None)
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

    def _start_failed(self, cfg: FolderConfig, exc: Exception) -> None:
        previous = self.failed.get(cfg.name)
        attempts = previous.attempts + 1 if previous and previous.cfg == cfg else 1
        delay = min(_RETRY_MAX, _RETRY_FIRST * 2 ** (attempts - 1))
        expected = isinstance(exc, WatchsyncError | OSError | sqlite3.Error)
        if isinstance(exc, WatchsyncError):
            text = str(exc)
        elif isinstance(exc, sqlite3.Error):
            text = f"state database in {self.config.state_dir}: {exc}"
        else:
            text = f"{type(exc).__name__}: {exc}"
        self.failed[cfg.name] = _Failed(cfg, text, attempts, self.clock() + delay)
        fm = self.metrics.folder(cfg.name)
        fm.error("start")
        fm.state(State.ERROR.value, since=time.time(), up=False)
        logger.error(
            "folder %s: cannot start: %s; retrying in %.0fs",
            cfg.name,
            text,
            delay,
            extra={"folder": cfg.name, "event": "error", "error": text},
            exc_info=not expected,  # a bug, not an operational fault: keep the traceback
        )

    def _retry_failed(self) -> None:
        now = self.clock()
        for name, failed in list(self.failed.items()):
            if failed.next_at <= now and not self.stop.is_set():
                logger.info("folder %s: trying to start again", name, extra={"folder": name})
                self._start_folder(failed.cfg)

    def _join_one(self, agent: Folder) -> None:
        if not agent.join(agent.cfg.drain_timeout):
            logger.warning(
                "folder %s: drain timed out; the rest stays in the journal",
                agent.cfg.name,
                extra={"folder": agent.cfg.name, "event": "stop"},
            )

    def _stop_folders(self, names: Iterable[str]) -> None:
        """Stop folders together, so the drains overlap; the watchdog is fed meanwhile."""
        agents = [self.folders.pop(name) for name in names]
        for agent in agents:
            agent.stop()
        joiners = []
        for agent in agents:
            t = threading.Thread(
                target=self._join_one,
                args=(agent,),
                name=f"watchsync-join-{agent.cfg.name}",
                daemon=True,
            )
            t.start()
            joiners.append(t)
        longest = max((a.cfg.drain_timeout for a in agents), default=0.0)
        deadline = self.clock() + longest + _JOIN_SLACK
        for t in joiners:
            while t.is_alive() and self.clock() < deadline:
                t.join(0.25)
                self._ping()
        for agent in agents:
            self.metrics.forget(agent.cfg.name)

    def start_all(self) -> None:
        """Start every folder; a folder locked by another agent is an error for a single
        folder and a logged, retried fault when there are several."""
        single = len(self.config.folders) == 1
        for cfg in self.config.folders:
            self._start_folder(cfg, single=single)

    def reload(self) -> None:
        """Apply the configuration file again: added, removed and changed folders.

        An invalid file changes nothing: the running configuration stays, one error is logged.
        """
        if self._reload_config is None:
            logger.warning("reload: no configuration file to reload", extra={"event": "reload"})
            return
        sdnotify.reloading(env=self.env)
        try:
            new = self._reload_config()
        except Exception as exc:
            logger.error(
                "reload: keeping the running configuration: %s",
                exc,
                extra={"event": "reload", "error": str(exc)},
                exc_info=not isinstance(exc, WatchsyncError),
            )
            sdnotify.ready(env=self.env)
            return
        old = self.config
        wanted = {cfg.name: cfg for cfg in new.folders}
        restart_all = new.state_dir != old.state_dir
        running = {name: agent.cfg for name, agent in self.folders.items()}
        removed = [n for n in running if n not in wanted]
        changed = [n for n in running if n in wanted and (restart_all or wanted[n] != running[n])]
        for name in removed + changed:
            logger.info(
                "reload: stopping %s%s",
                name,
                "" if name in removed else " (changed)",
                extra={"folder": name, "event": "stop"},
            )
        self._stop_folders(removed + changed)
        for name in list(self.failed):
            if name not in wanted:
                del self.failed[name]
                self.metrics.forget(name)
        self.config = new
        self._apply_globals(old, new)
        if new.state_dir != old.state_dir:
            self._close_control()
            self._serve_control()
        added = 0
        for name, cfg in wanted.items():
            if name not in self.folders:
                added += name not in running
                self._start_folder(cfg)
        logger.info(
            "reload: %d folders running (%d added, %d removed, %d changed, %d failing)",
            len(self.folders),
            added,
            len(removed),
            len(changed),
            len(self.failed),
            extra={"event": "reload"},
        )
        sdnotify.ready(env=self.env)

    def _apply_globals(self, old: AgentConfig, new: AgentConfig) -> None:
        """Settings outside the folders: log level and metrics address take effect now."""
        if new.log_level != old.log_level and not self.debug:
            logging.getLogger().setLevel(new.log_level)
        if new.log_format != old.log_format:
            logger.warning(
                "reload: log_format %s -> %s takes effect after a restart",
                old.log_format,
                new.log_format,
                extra={"event": "reload"},
            )
        if new.metrics_addr != old.metrics_addr:
            self._close_http()
            if new.metrics_addr:
                try:
                    self._serve_metrics(new.metrics_addr)
                except WatchsyncError as exc:
                    logger.error("reload: %s", exc, extra={"event": "reload", "error": str(exc)})

    def _serve_metrics(self, addr: str) -> None:
        """``/metrics`` and the status page beside it (page.py)."""
        app = StatusPage(self.control, metrics=self.metrics.wsgi_app(), token=self._page_token)
        try:
            self._http = page.serve(addr, app)
        except OSError as exc:
            raise WatchsyncError(
                f"metrics: cannot listen on {addr}: {exc.strerror or exc}"
            ) from None
        logger.info("metrics: serving on http://%s/metrics, the status page on /", addr)

    def _close_http(self) -> None:
        served, self._http = self._http, None
        if served is not None:
            server, thread = served
            server.shutdown()
            server.server_close()
            thread.join(5)

    def _page_token(self) -> str | None:
        """The status page's actions' token (None: the page is read-only): the
        ``page-token`` file in the state directory, made (0600) when missing."""
        if not self.config.page_actions:
            return None
        return page_token(self.config.state_dir)

    def _serve_control(self) -> None:
        """The control socket in the state directory; without it the agent still runs."""
        state_dir = self.config.state_dir
        server = ControlServer(socket_path(state_dir, os.getpid()), self.control.handle)
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            remove_stale(state_dir, platform.pid_alive)
            server.start()
        except OSError as exc:
            logger.warning(
                "control: cannot listen on %s (%s); `watchsync ctl` will not reach this agent",
                server.path,
                exc.strerror or exc,
            )
            return
        self._control_server = server
        logger.debug("control: listening on %s", server.path)

    def _close_control(self) -> None:
        server, self._control_server = self._control_server, None
        if server is not None:
            server.close()

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the exit code."""
        if self.config.metrics_addr:
            self._serve_metrics(self.config.metrics_addr)
        self._serve_control()
        try:
            self.start_all()
            if not self.folders and self.config.folders:
                first = next(iter(self.failed.values()), None)
                raise WatchsyncError(
                    "no folder could be started" + (f": {first.error}" if first else "")
                )
            self._wait_ready()
            if not self.stop.is_set():
                sdnotify.ready(env=self.env)
                logger.info(
                    "watch: ready (%d folders)", len(self.folders), extra={"event": "ready"}
                )
            self._loop()
        finally:
            logger.info("watch: stopping; draining in-flight transfers", extra={"event": "stop"})
            sdnotify.stopping(env=self.env)
            self._stop_folders(list(self.folders))
            self._close_http()
            self._close_control()
            logger.info("watch: stopped", extra={"event": "stop"})
        return 0

    def _wait_ready(self) -> None:
        """Until every folder watches (or waits for its missing root), or a stop."""
        deadline = self.clock() + _READY_TIMEOUT
        for agent in list(self.folders.values()):
            while not agent.ready.is_set() and self.clock() < deadline:
                if self.stop.wait(0.1):
                    return
                self._ping()

    def _loop(self) -> None:
        tick = min(1.0, self._watchdog / 4) if self._watchdog else 1.0
        last_status = ""
        self._ping(force=True)
        while True:
            status = self.status_line()
            if status != last_status:
                sdnotify.status(status, env=self.env)
                last_status = status
            if self.stop.wait(tick):
                return
            self._ping(force=True)
            if self.reload_requested.is_set() or platform.take_reload_request(
                self.config.state_dir
            ):
                self.reload_requested.clear()
                self.reload()
            self._retry_failed()

    def status_line(self) -> str:
        """One line for systemd, e.g. ``2 folders: 1 watching, 1 error; 3 pending; ...``."""
        agents = list(self.folders.values())
        pending = sum(a.pending_count() for a in agents)
        states: dict[str, int] = {}
        for a in agents:
            states[a.state.value] = states.get(a.state.value, 0) + 1
        if self.failed:
            states["not started"] = len(self.failed)
        total = len(agents) + len(self.failed)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
        line = f"{total} folder{'s' if total != 1 else ''}: {parts}; {pending} pending"
        faults = [
            a.last_error for a in agents if a.state in (State.ERROR, State.PAUSED) and a.last_error
        ]
        faults += [f.error for f in self.failed.values()]
        if faults:
            line += f"; last error: {faults[-1]}"
        return " ".join(line.splitlines())
