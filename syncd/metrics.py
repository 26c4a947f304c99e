"""Prometheus metrics and health endpoints of the daemon, on ``daemon.listen``.

One small HTTP server (stdlib ``ThreadingHTTPServer``) answers:

* ``/metrics``: Prometheus text format (per job: last success time, last run time and
  duration, entries read, actions by kind, failed actions, quarantined entries, cursor
  age, runs by status, runs left to another node, next scheduled run);
* ``/healthz``: liveness. 200 while the scheduler thread runs and its heartbeat is fresh;
  503 otherwise (a restart would help);
* ``/readyz``: readiness. 200 when the config is loaded and the state store answers;
  503 otherwise (waiting helps; a restart does not).

Per-job numbers are kept by :class:`Metrics` from the run reports of this node; the
cursor age and the quarantine size are read from the state store at scrape time (cached
for a few seconds), so they are the same on every node of a cluster.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from syncd import __version__

log = logging.getLogger(__name__)

ACTION_KINDS = ("created", "updated", "deleted")
STORE_CACHE_SECONDS = 5.0


@dataclass
class JobStats:
    last_success: float | None = None
    last_run: float | None = None
    last_duration: float | None = None
    last_read: int | None = None
    actions: Counter = field(default_factory=Counter)
    failed_actions: int = 0
    runs: Counter = field(default_factory=Counter)
    busy: int = 0
    read_total: int = 0


class Metrics(Collector):
    """The daemon's numbers; a Prometheus collector over them. Thread-safe."""

    def __init__(
        self, node: str, store: Any = None, next_runs: Callable[[], dict[str, Any]] | None = None
    ):
        self.node = node
        self.store = store
        self.next_runs = next_runs
        self.jobs: dict[str, JobStats] = {}
        self._lock = threading.Lock()
        self._store_cache: tuple[float, dict[str, float], dict[str, int]] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def known_jobs(self, names: list[str]) -> None:
        """Make sure every configured job has (zero) series from the start."""
        with self._lock:
            for name in names:
                self.jobs.setdefault(name, JobStats())

    def record_run(self, report: Any) -> None:
        """Take in a finished run's :class:`~syncd.engine.RunReport`."""
        now = time.time()
        counts = report.counts or {}
        with self._lock:
            stats = self.jobs.setdefault(report.job, JobStats())
            stats.last_run = now
            stats.last_duration = float(report.duration or 0.0)
            stats.last_read = int(counts.get("read", 0))
            stats.read_total += stats.last_read
            for kind in ACTION_KINDS:
                stats.actions[kind] += int(counts.get(kind, 0))
            stats.failed_actions += int(counts.get("failed", 0))
            stats.runs[report.status] += 1
            if report.status == "ok":
                stats.last_success = now
        self._store_cache = None

    def record_failure(self, job: str, status: str, duration: float) -> None:
        """A run that raised before it had a report (connection refused, gate...)."""
        with self._lock:
            stats = self.jobs.setdefault(job, JobStats())
            stats.last_run = time.time()
            stats.last_duration = duration
            stats.runs[status] += 1
        self._store_cache = None

    def record_busy(self, job: str) -> None:
        """A tick that another node (or process) ran."""
        with self._lock:
            self.jobs.setdefault(job, JobStats()).busy += 1

    # ------------------------------------------------------------ from the store
    def _store_numbers(self) -> tuple[dict[str, float], dict[str, int]]:
        cached = self._store_cache
        if cached is not None and time.monotonic() - cached[0] < STORE_CACHE_SECONDS:
            return cached[1], cached[2]
        ages: dict[str, float] = {}
        quarantined: dict[str, int] = {}
        if self.store is not None:
            try:
                ages, quarantined = _read_store(self.store)
            except Exception as err:  # a scrape must not fail because the DB is away
                log.debug("metrics: state store not readable: %s", err)
        self._store_cache = (time.monotonic(), ages, quarantined)
        return ages, quarantined

    # ----------------------------------------------------------------- collect
    def collect(self) -> Iterator[Any]:
        with self._lock:
            jobs = {name: _copy(stats) for name, stats in self.jobs.items()}
        ages, quarantined = self._store_numbers()
        nexts: dict[str, Any] = {}
        if self.next_runs is not None:
            try:
                nexts = self.next_runs()
            except Exception:  # the scheduler may be shutting down
                nexts = {}

        info = InfoMetricFamily("syncd", "syncd build and node")
        info.add_metric([], {"version": __version__, "node": self.node})
        yield info

        def gauge(name: str, doc: str, values: dict[str, float | None]) -> GaugeMetricFamily:
            fam = GaugeMetricFamily(name, doc, labels=["job"])
            for job, value in sorted(values.items()):
                if value is not None:
                    fam.add_metric([job], value)
            return fam

        yield gauge(
            "syncd_job_last_success_timestamp_seconds",
            "Unix time of the last run of the job that ended ok (on this node)",
            {j: s.last_success for j, s in jobs.items()},
        )
        yield gauge(
            "syncd_job_last_run_timestamp_seconds",
            "Unix time the last run of the job ended (on this node)",
            {j: s.last_run for j, s in jobs.items()},
        )
        yield gauge(
            "syncd_job_last_run_duration_seconds",
            "Duration of the last run of the job (on this node)",
            {j: s.last_duration for j, s in jobs.items()},
        )
        yield gauge(
            "syncd_job_last_run_entries_read",
            "Entries the last run of the job read from its source",
            {j: s.last_read for j, s in jobs.items()},
        )
        yield gauge(
            "syncd_job_quarantined_entries",
            "Entries of the job in quarantine (mapping or write errors) now",
            {j: float(quarantined.get(j, 0)) for j in jobs},
        )
        now = time.time()
        yield gauge(
            "syncd_job_cursor_age_seconds",
            "Seconds since the job's cursor was last stored (any node)",
            {j: now - ages[j] for j in jobs if j in ages},
        )
        yield gauge(
            "syncd_job_next_run_timestamp_seconds",
            "Unix time of the next scheduled run of the job on this node",
            {j: nexts[j].timestamp() for j in jobs if nexts.get(j) is not None},
        )

        read = CounterMetricFamily(
            "syncd_job_entries_read", "Entries read from the job's source", labels=["job"]
        )
        actions = CounterMetricFamily(
            "syncd_job_actions",
            "Changes applied to the job's target, by kind",
            labels=["job", "kind"],
        )
        errors = CounterMetricFamily(
            "syncd_job_errors", "Changes the job's target refused (retried later)", labels=["job"]
        )
        runs = CounterMetricFamily(
            "syncd_job_runs", "Runs of the job on this node, by status", labels=["job", "status"]
        )
        busy = CounterMetricFamily(
            "syncd_job_runs_elsewhere",
            "Ticks of the job that another node or process ran",
            labels=["job"],
        )
        for job, stats in sorted(jobs.items()):
            read.add_metric([job], stats.read_total)
            for kind in ACTION_KINDS:
                actions.add_metric([job, kind], stats.actions.get(kind, 0))
            errors.add_metric([job], stats.failed_actions)
            for status in sorted(set(stats.runs) | {"ok", "failed"}):
                runs.add_metric([job, status], stats.runs.get(status, 0))
            busy.add_metric([job], stats.busy)
        yield from (read, actions, errors, runs, busy)


def _copy(stats: JobStats) -> JobStats:
    return JobStats(
        stats.last_success,
        stats.last_run,
        stats.last_duration,
        stats.last_read,
        Counter(stats.actions),
        stats.failed_actions,
        Counter(stats.runs),
        stats.busy,
        stats.read_total,
    )


def _read_store(store: Any) -> tuple[dict[str, float], dict[str, int]]:
    """Cursor store times and quarantine sizes per job, straight from the state tables."""
    import sqlalchemy as sa

    from syncd.state import schema

    with store.engine.connect() as conn:
        ages = {
            row.job: row.updated_at.timestamp()
            for row in conn.execute(sa.select(schema.cursors.c.job, schema.cursors.c.updated_at))
            if row.updated_at is not None
        }
        q = schema.quarantine
        quarantined = {
            row[0]: int(row[1])
            for row in conn.execute(sa.select(q.c.job, sa.func.count()).group_by(q.c.job))
        }
    return ages, quarantined


# ------------------------------------------------------------------ HTTP server
Check = Callable[[], tuple[bool, str]]


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"``, ``"[::1]:9108"``, ``":9108"`` (all addresses) -> (host, port).

    Raises ValueError for anything else.
    """
    text = listen.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"listen {listen!r}: expected host:port, e.g. 127.0.0.1:9108")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"listen {listen!r}: bad port {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"listen {listen!r}: port out of range")
    return host or "0.0.0.0", port


class HealthServer:
    """Serves /metrics, /healthz and /readyz in a thread of its own."""

    def __init__(self, listen: str, registry: CollectorRegistry, *, live: Check, ready: Check):
        host, port = parse_listen(listen)
        handler = _make_handler(registry, live, ready)
        server_class = _V6Server if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, port), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="syncd-http", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health on http://%s:%d/metrics (/healthz, /readyz)", *self.address)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _V6Server(ThreadingHTTPServer):
    import socket as _socket

    address_family = _socket.AF_INET6


def _make_handler(registry: CollectorRegistry, live: Check, ready: Check) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"syncd/{__version__}"

        def do_GET(self) -> None:  # http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/livez"):
                self._check(live)
            elif path == "/readyz":
                self._check(ready)
            elif path == "/":
                self._send(200, b"syncd: /metrics /healthz /readyz\n")
            else:
                self._send(404, b"not found\n")

        def _check(self, check: Check) -> None:
            try:
                ok, why = check()
            except Exception as err:  # a broken check is a failed check
                ok, why = False, f"check failed: {type(err).__name__}: {err}"
            self._send(200 if ok else 503, (why or ("ok" if ok else "not ok")).encode() + b"\n")

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
