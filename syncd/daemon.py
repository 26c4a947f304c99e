"""``syncd daemon``: run every job on its schedule until SIGTERM.

Life of the process:

1. load and validate the config (a broken config is a start-up error, exit 2);
2. open the state store and check it answers (exit 3 if not); on SQLite, take the
   daemon-wide lock (SQLite state is single-node);
3. start the metrics/health server (``daemon.listen``) and the scheduler;
4. tell systemd ``READY=1``; from then on the scheduler's heartbeat sends ``WATCHDOG=1``
   and each finished run updates ``STATUS=``;
5. SIGHUP: reload the config; a broken one is logged (every problem) and the old one
   keeps running; a good one replaces the schedule. Runs in flight finish with the
   config they started with;
6. SIGTERM/SIGINT: ``STOPPING=1``, no new runs, runs in flight are asked to stop (the
   engine finishes its batch, commits and returns "stopped"), then exit 0.

Several nodes on one PostgreSQL state store: every node schedules every job; the job's
advisory lock lets one node run a tick, and a node that gets the lock after a quick run
of the same tick elsewhere sees that run in the run history and skips
(:func:`syncd.scheduling.dedupe_window`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from syncd import locks, scheduling
from syncd.errors import Busy, ConfigError, ConnectionFailed, GateStopped, UserError
from syncd.notify import Notifier

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 5.0
RETENTION_EVERY = 86400.0
"""Seconds between two applications of state.retention by the daemon."""


class Daemon:
    """One daemon process. ``run()`` blocks until stopped and returns the exit code.

    ``request_stop()`` / ``request_reload()`` do what SIGTERM / SIGHUP do and may be
    called from any thread (the signal handlers call them).
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        node: str | None = None,
        notifier: Notifier | None = None,
        install_signals: bool = True,
        configure_logging: bool = True,
        log_level: str | None = None,
    ):
        self.config_path = Path(config_path)
        self.log_level_override = log_level  # -v / -q on the command line
        self.node_override = node
        self.notifier = notifier or Notifier()
        self.install_signals = install_signals
        self.configure_logging = configure_logging
        self.cfg: Any = None
        self.store: Any = None
        self.scheduler: scheduling.JobScheduler | None = None
        self.metrics: Any = None
        self.http: Any = None
        self.stop_event = threading.Event()  # handed to every run_job
        self._stop_requested = False
        self._reload_requested = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._last_beat = 0.0
        self._heartbeat_interval = DEFAULT_HEARTBEAT
        self._last_reports: dict[str, str] = {}
        self._status_lock = threading.Lock()
        self._ready = False
        self._store_ok: tuple[float, bool, str] = (0.0, False, "not checked yet")
        self._last_prune = 0.0

    # -------------------------------------------------------------- requests
    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake()

    def _wake(self) -> None:
        # A byte on a socket is the one thing that is safe from a signal handler and
        # wakes the main loop at once.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # ------------------------------------------------------------------ main
    def run(self) -> int:
        """Start, serve until stopped, return the exit code (0 after a clean stop).

        Raises ConfigError (bad config), ConnectionFailed (state store unreachable) and
        Busy (another daemon on the same SQLite state) before READY=1.
        """
        from syncd.config import load_config

        self.cfg = self._with_overrides(load_config(self.config_path))
        self._setup_logging(self.cfg)
        log_permission_warnings(self.cfg)
        node = self.cfg.daemon.node
        locks.set_node_name(node)
        self.store = self.cfg.open_state()
        try:
            try:
                self.store.runs(limit=1)  # the store answers a query, not just a connect
            except Exception as err:
                raise ConnectionFailed(
                    f"state store {self.store.url}: {_first_line(err)}"
                ) from None
            with locks.daemon_lock(self.store, node=node):
                return self._serve()
        finally:
            self.store.close()

    def _serve(self) -> int:
        from syncd.metrics import Metrics

        cfg = self.cfg
        wd = self.notifier.watchdog_interval()
        self._heartbeat_interval = wd if wd else DEFAULT_HEARTBEAT
        # Worker threads are started on demand, so a generous pool costs nothing and leaves
        # room for jobs a reload adds (each job runs at most once at a time anyway).
        workers = max(16, 2 * len(cfg.jobs))
        self.scheduler = scheduling.JobScheduler(
            self._run_tick, self._heartbeat, self._heartbeat_interval, workers=workers
        )
        self.metrics = Metrics(
            cfg.daemon.node, self.store, self.scheduler.next_run_times, process=True
        )
        self.metrics.known_jobs(sorted(cfg.jobs), _periods(cfg))
        self.metrics.restore()  # last success etc. survive a restart
        old_handlers = self._install_signals() if self.install_signals else {}
        try:
            if cfg.daemon.listen:
                self.http = _health_server(
                    cfg, self.metrics.registry, self.liveness, self.readiness
                )
                self.http.start()
            names = self.scheduler.apply(cfg)
            self.scheduler.start()
            self._ready = True
            summary = (
                f"scheduling {len(names)} job(s): {', '.join(names)}"
                if names
                else "no job has a schedule"
            )
            log.info("syncd daemon on node %s: %s", cfg.daemon.node, summary)
            self.notifier.ready(status=summary)
            code = self._main_loop()
        finally:
            if self._ready or self.scheduler.running:
                self._shutdown()
            elif self.http is not None:
                self.http.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
        return code

    def _main_loop(self) -> int:
        while True:
            if self._stop_requested:
                return 0
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if self.scheduler is not None and not self.scheduler.thread_alive():
                log.error("the scheduler thread died; exiting so systemd restarts syncd")
                return 1
            readable, _, _ = select.select([self._wake_r], [], [], 1.0)
            if readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)

    def _shutdown(self) -> None:
        self._ready = False
        running = [n for n, s in self._last_reports.items() if s.startswith("running")]
        self.notifier.stopping(
            status="stopping" + (f": finishing {', '.join(running)}" if running else "")
        )
        log.info("stopping: no new runs; runs in flight finish their batch and commit")
        self.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
        if self.http is not None:
            self.http.close()
        self.notifier.close()
        log.info("stopped")

    def _install_signals(self) -> dict[int, Any]:
        old = {}
        for sig, action in (
            (signal.SIGTERM, self.request_stop),
            (signal.SIGINT, self.request_stop),
            (signal.SIGHUP, self.request_reload),
        ):
            old[sig] = signal.signal(sig, lambda _s, _f, act=action: act())
        return old

    # ---------------------------------------------------------------- config
    def _with_overrides(self, cfg: Any) -> Any:
        if self.node_override:
            cfg.daemon = cfg.daemon.model_copy(update={"node": self.node_override})
        return cfg

    def _setup_logging(self, cfg: Any) -> None:
        if not self.configure_logging:
            return
        from syncd.logsetup import setup_logging

        d = cfg.daemon
        try:
            level = self.log_level_override or d.log_level
            setup_logging(d.log_format, level, d.change_log_level)
        except ValueError as err:
            raise ConfigError(f"{cfg.path}: daemon: {err}") from None

    def reload(self) -> bool:
        """Re-read the config. A broken one is logged and the running one kept.

        Returns True when the new config is in force.
        """
        from syncd.config import load_config

        self.notifier.reloading()
        try:
            new = self._with_overrides(load_config(self.config_path))
            self._check_restart_only(new)
            self._setup_logging(new)
            log_permission_warnings(new)
        except ConfigError as err:
            log.error(
                "reload: %s has %d problem(s); the running config stays in force",
                self.config_path,
                len(err.problems),
            )
            for problem in err.problems:
                log.error("reload: %s", problem)
            self.notifier.ready(
                status=f"config reload FAILED ({len(err.problems)} problem(s)); "
                "running the previous config"
            )
            return False
        except UserError as err:
            log.error("reload: %s; the running config stays in force", err)
            self.notifier.ready(status="config reload FAILED; running the previous config")
            return False
        self.cfg = new
        assert self.scheduler is not None
        names = self.scheduler.apply(new)
        self.metrics.known_jobs(sorted(new.jobs), _periods(new))
        log.info(
            "reloaded %s: scheduling %d job(s): %s",
            self.config_path,
            len(names),
            ", ".join(names) or "none",
        )
        self.notifier.ready(status=self._status_text() or f"reloaded: {len(names)} job(s)")
        return True

    def _check_restart_only(self, new: Any) -> None:
        """Settings a reload cannot change in a running process: keep them, say so."""
        old = self.cfg
        if new.state_url != old.state_url or new.state_password != old.state_password:
            log.warning(
                "reload: state.url changed; restart syncd to use the new state store (keeping %s)",
                self.store.url,
            )
            new.state_url, new.state_password = old.state_url, old.state_password
        if new.daemon.listen != old.daemon.listen or new.daemon.node != old.daemon.node:
            log.warning("reload: daemon.listen/daemon.node changed; they take effect on restart")
            new.daemon = new.daemon.model_copy(
                update={"listen": old.daemon.listen, "node": old.daemon.node}
            )

    # ----------------------------------------------------------------- runs
    def _heartbeat(self) -> None:
        """Runs in the scheduler's own executor: proves the scheduler loop is alive."""
        self._last_beat = time.monotonic()
        self.notifier.watchdog()

    def _run_tick(self, job: str) -> None:
        """One scheduled tick of ``job`` (in a scheduler worker thread). Never raises."""
        from syncd.engine import run_job

        if self._stop_requested or self.stop_event.is_set():
            return
        cfg = self.cfg
        job_cfg = cfg.jobs.get(job)
        if job_cfg is None or job_cfg.schedule is None:
            return  # removed by a reload after this tick was queued
        started = time.monotonic()
        try:
            with locks.job_lock(self.store, job, node=cfg.daemon.node):
                previous = self._recent_run(job, scheduling.dedupe_window(job_cfg.schedule))
                if previous is not None:
                    log.info(
                        "job %s: this tick already ran on node %s; skipping", job, previous.node
                    )
                    self.metrics.record_busy(job)
                    return
                self._set_status(job, "running")
                report = run_job(cfg, job, stop_event=self.stop_event, store=self.store)
        except Busy as err:
            # Another node (or a manual `syncd sync`) has this tick: normal, not an error.
            log.info("%s", str(err).replace(" is running on ", " runs on "))
            self.metrics.record_busy(job)
            return
        except GateStopped as err:
            self._failed(job, "gated", started, err)
            return
        except UserError as err:
            if self.stop_event.is_set():
                # Shutting down: the engine gave up before writing anything. Not a failure.
                log.info("job %s: stopped by the shutdown (%s)", job, err)
                self._failed(job, "stopped", started, err, logged=True)
                return
            self._failed(job, "failed", started, err)
            return
        except Exception as err:
            log.exception("job %s: internal error", job)
            self._failed(job, "failed", started, err, logged=True)
            return
        self.metrics.record_run(report)
        level = logging.INFO if report.status in ("ok", "stopped") else logging.WARNING
        log.log(level, "%s in %.1fs", report.summary(), report.duration)
        if report.error:
            log.warning("job %s: %s", job, report.error)
        self._set_status(job, _report_status(report))
        self._prune_daily()

    def _prune_daily(self) -> None:
        """``state.retention``, at most once a day (the first run after start, then after
        each 24 h). A failure is logged; it never stops the daemon."""
        from syncd.state.audit import apply_retention

        with self._status_lock:
            if self._last_prune and time.monotonic() - self._last_prune < RETENTION_EVERY:
                return
            self._last_prune = time.monotonic()
        try:
            apply_retention(self.cfg, self.store)
        except Exception as err:
            log.warning("retention not applied: %s", _first_line(err))

    def _recent_run(self, job: str, window: float) -> Any:
        """The newest run of ``job`` if it started less than ``window`` seconds ago."""
        import sqlalchemy as sa

        try:
            runs = self.store.runs(job, limit=1)
        except sa.exc.SQLAlchemyError as err:
            raise ConnectionFailed(f"state store {self.store.url}: {_first_line(err)}") from None
        if not runs:
            return None
        started = runs[0].started
        if started.tzinfo is None:
            started = started.replace(tzinfo=_dt.UTC)
        age = (_dt.datetime.now(_dt.UTC) - started).total_seconds()
        return runs[0] if age < window else None

    def _failed(
        self, job: str, status: str, started: float, err: BaseException, *, logged: bool = False
    ) -> None:
        duration = time.monotonic() - started
        if not logged:
            log.error(
                "job %s %s: %s",
                job,
                "stopped by a safety gate" if status == "gated" else "failed",
                err,
            )
        self.metrics.record_failure(job, status, duration)
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        self._set_status(job, f"{status} {duration:.0f}s ({first[:80]})")

    def _set_status(self, job: str, text: str) -> None:
        with self._status_lock:
            self._last_reports[job] = text
            status = self._status_text()
        self.notifier.status(status)

    def _status_text(self) -> str:
        return "; ".join(f"{job}: {text}" for job, text in sorted(self._last_reports.items()))

    # ---------------------------------------------------------------- health
    def liveness(self) -> tuple[bool, str]:
        """Scheduler thread alive and its heartbeat fresh."""
        if self.scheduler is None or not self.scheduler.thread_alive():
            return False, "scheduler not running"
        age = time.monotonic() - self._last_beat
        limit = 3 * self._heartbeat_interval + 1
        if age > limit:
            return False, f"scheduler heartbeat is {age:.0f}s old (limit {limit:.0f}s)"
        return True, f"ok: scheduler alive, heartbeat {age:.1f}s ago"

    def readiness(self) -> tuple[bool, str]:
        """Config loaded, state store answering, not stopping."""
        if not self._ready or self.cfg is None:
            return False, "not ready: starting or stopping"
        checked, ok, why = self._store_ok
        if time.monotonic() - checked > 2.0:
            ok, why = _store_answers(self.store)
            self._store_ok = (time.monotonic(), ok, why)
        return ok, why


def _health_server(cfg: Any, registry: Any, live: Any, ready: Any) -> Any:
    """The /metrics + health server on daemon.listen. Raises ConfigError if it cannot."""
    from syncd.metrics import HealthServer

    try:
        return HealthServer(cfg.daemon.listen, registry, live=live, ready=ready)
    except ValueError as err:
        raise ConfigError(f"{cfg.path}: daemon.{err}") from None
    except OSError as err:
        raise ConfigError(
            f"{cfg.path}: daemon.listen {cfg.daemon.listen}: cannot listen there: "
            f"{err.strerror or err}"
        ) from None


def _periods(cfg: Any) -> dict[str, float]:
    """Seconds between scheduled runs of each job that has a schedule (for metrics)."""
    return {
        name: scheduling.period_seconds(job.schedule)
        for name, job in cfg.jobs.items()
        if job.schedule is not None
    }


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _store_answers(store: Any) -> tuple[bool, str]:
    import sqlalchemy as sa

    try:
        with store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return False, f"state store {store.url} not reachable: {first}"
    return True, f"ok: config loaded, state store {store.url} answers"


def _report_status(report: Any) -> str:
    """'ok 12s, 3 created' for STATUS= and the logs."""
    c = report.counts or {}
    parts = [
        f"{c[k]} {k}"
        for k in ("created", "updated", "deleted", "failed", "quarantined")
        if c.get(k)
    ]
    text = f"{report.status} {report.duration:.0f}s"
    return text + (", " + ", ".join(parts) if parts else "")


def run_daemon(
    config_path: str | Path, *, node: str | None = None, log_level: str | None = None
) -> int:
    """Entry point of ``syncd daemon``. Returns the exit code; raises UserError."""
    return Daemon(config_path, node=node, log_level=log_level).run()


def log_permission_warnings(cfg: Any) -> None:
    """Log a warning per config or secret file that other users may read."""
    from syncd.permissions import permission_warnings

    for warning in permission_warnings(cfg):
        log.warning("%s", warning)
