"""Prometheus metrics and health endpoints of the daemon, on ``daemon.listen``.

One small HTTP server (stdlib ``ThreadingHTTPServer``) answers:

* ``/metrics``: Prometheus text format (per job: last success time, last run time,
  status and duration, a run duration histogram, entries read, actions by kind, failed
  actions, synced objects, quarantined entries, cursor age, runs by status, runs left to
  another node, next scheduled run and schedule period; the process's own CPU, memory
  and file descriptors);
* ``/healthz``: liveness. 200 while the scheduler thread runs and its heartbeat is fresh;
  503 otherwise (a restart would help);
* ``/readyz``: readiness. 200 when the config is loaded and the state store answers;
  503 otherwise (waiting helps; a restart does not).

Per-job numbers are kept by :class:`Metrics` from the run reports of this node, and
the last run and last success are restored from the run history at start
(:meth:`Metrics.restore`), so a restart does not make them vanish (an alert on the age
of the last success would never fire then). The cursor age, the synced objects and the
quarantine size are read from the state store at scrape time (cached for a few
seconds), so they are the same on every node of a cluster.

``syncd sync --textfile DIR`` (timer mode, no daemon) writes the per-job gauges for
node_exporter's textfile collector instead (:func:`write_textfile`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from syncd import __version__

log = logging.getLogger(__name__)

ACTION_KINDS = ("created", "updated", "deleted")
RUN_STATUSES = ("ok", "failed", "gated", "stopped")
STORE_CACHE_SECONDS = 5.0
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Upper bounds (seconds) of the run duration histogram: from an incremental run of a
few changes to a first run of a large directory."""


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
    last_status: str | None = None
    last_actions: dict[str, int] = field(default_factory=dict)
    durations: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    period: float | None = None

    def observe(self, seconds: float) -> None:
        """One run's duration into the histogram (non-cumulative bucket counts)."""
        index = next(
            (i for i, bound in enumerate(DURATION_BUCKETS) if seconds <= bound),
            len(DURATION_BUCKETS),
        )
        self.durations[index] += 1
        self.duration_sum += seconds


class Metrics(Collector):
    """The daemon's numbers; a Prometheus collector over them. Thread-safe."""

    def __init__(
        self,
        node: str,
        store: Any = None,
        next_runs: Callable[[], dict[str, Any]] | None = None,
        *,
        process: bool = False,
    ):
        self.node = node
        self.store = store
        self.next_runs = next_runs
        self.jobs: dict[str, JobStats] = {}
        self._lock = threading.Lock()
        self._store_cache: tuple[float, dict[str, float], dict[str, int], dict[str, int]] | None = (
            None
        )
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        if process:
            # process_cpu_seconds_total, process_resident_memory_bytes, open fds...
            ProcessCollector(registry=self.registry)

    def known_jobs(self, names: list[str], periods: dict[str, float] | None = None) -> None:
        """Make sure every configured job has (zero) series from the start; ``periods``:
        seconds between scheduled runs per job (for alerts relative to the schedule)."""
        with self._lock:
            for name in names:
                stats = self.jobs.setdefault(name, JobStats())
                if periods is not None:
                    stats.period = periods.get(name)

    def restore(self, store: Any = None) -> None:
        """Take the last run and last success of every known job from the state store's
        run history (any node), so they survive a restart. Never raises: without the
        store the gauges start empty, as before."""
        from syncd.state.audit import is_only_run

        store = store or self.store
        if store is None:
            return
        with self._lock:
            names = list(self.jobs)
        for name in names:
            try:
                history = [r for r in store.runs(name, limit=50) if r.finished is not None]
            except Exception as err:
                log.debug("metrics: run history of %s not readable: %s", name, err)
                continue
            if not history:
                continue
            last = history[0]
            ok = next((r for r in history if r.status == "ok" and not is_only_run(r.notes)), None)
            with self._lock:
                stats = self.jobs.setdefault(name, JobStats())
                if stats.last_run is None:
                    stats.last_run = last.finished.timestamp()
                    stats.last_duration = last.duration
                    stats.last_status = last.status
                    stats.last_read = int((last.counts or {}).get("read", 0))
                    stats.last_actions = {
                        k: int((last.counts or {}).get(k, 0)) for k in ACTION_KINDS
                    }
                if stats.last_success is None and ok is not None:
                    stats.last_success = ok.finished.timestamp()

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
            stats.last_actions = {k: int(counts.get(k, 0)) for k in ACTION_KINDS}
            stats.failed_actions += int(counts.get("failed", 0))
            stats.runs[report.status] += 1
            stats.last_status = report.status
            stats.observe(stats.last_duration)
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
            stats.last_status = status
            stats.observe(duration)
        self._store_cache = None

    def record_busy(self, job: str) -> None:
        """A tick that another node (or process) ran."""
        with self._lock:
            self.jobs.setdefault(job, JobStats()).busy += 1

    # ------------------------------------------------------------ from the store
    def _store_numbers(self) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
        cached = self._store_cache
        if cached is not None and time.monotonic() - cached[0] < STORE_CACHE_SECONDS:
            return cached[1], cached[2], cached[3]
        ages: dict[str, float] = {}
        quarantined: dict[str, int] = {}
        synced: dict[str, int] = {}
        if self.store is not None:
            try:
                ages, quarantined, synced = _read_store(self.store)
            except Exception as err:  # a scrape must not fail because the DB is away
                log.debug("metrics: state store not readable: %s", err)
        self._store_cache = (time.monotonic(), ages, quarantined, synced)
        return ages, quarantined, synced

    # ----------------------------------------------------------------- collect
    def collect(self) -> Iterator[Any]:
        with self._lock:
            jobs = {name: _copy(stats) for name, stats in self.jobs.items()}
        ages, quarantined, synced = self._store_numbers()
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
            "Unix time of the last run of the job that ended ok (this node; at start "
            "restored from the state store's run history)",
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
        status = GaugeMetricFamily(
            "syncd_job_last_run_status",
            "1 for the status of the job's last run (ok, failed, gated, stopped), 0 for others",
            labels=["job", "status"],
        )
        for job, stats in sorted(jobs.items()):
            if stats.last_status is None:
                continue
            for name in sorted(set(RUN_STATUSES) | {stats.last_status}):
                status.add_metric([job, name], 1.0 if name == stats.last_status else 0.0)
        yield status
        last_actions = GaugeMetricFamily(
            "syncd_job_last_run_actions",
            "Changes the job's last run applied, by kind",
            labels=["job", "kind"],
        )
        for job, stats in sorted(jobs.items()):
            for kind in ACTION_KINDS if stats.last_actions else ():
                last_actions.add_metric([job, kind], stats.last_actions.get(kind, 0))
        yield last_actions
        yield gauge(
            "syncd_job_objects",
            "Objects of the job synced to its target now (from the state store)",
            {j: float(synced.get(j, 0)) for j in jobs},
        )
        yield gauge(
            "syncd_job_schedule_period_seconds",
            "Seconds between two scheduled runs of the job (absent without a schedule)",
            {j: s.period for j, s in jobs.items()},
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
        durations = HistogramMetricFamily(
            "syncd_job_run_duration_seconds",
            "Duration of the job's runs on this node since the daemon started",
            labels=["job"],
        )
        for job, stats in sorted(jobs.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(
                (*DURATION_BUCKETS, float("inf")), stats.durations, strict=True
            ):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([job], buckets, stats.duration_sum)
        yield durations
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
        stats.last_status,
        dict(stats.last_actions),
        list(stats.durations),
        stats.duration_sum,
        stats.period,
    )


def _read_store(store: Any) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
    """Cursor store times, quarantine sizes and synced objects per job, straight from
    the state tables."""
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
        o = schema.objects
        synced = {
            row[0]: int(row[1])
            for row in conn.execute(sa.select(o.c.job, sa.func.count()).group_by(o.c.job))
        }
    return ages, quarantined, synced


# ---------------------------------------------------------------- textfile
TEXTFILE_FAMILIES = frozenset(
    {
        "syncd_job_last_success_timestamp_seconds",
        "syncd_job_last_run_timestamp_seconds",
        "syncd_job_last_run_duration_seconds",
        "syncd_job_last_run_entries_read",
        "syncd_job_last_run_status",
        "syncd_job_last_run_actions",
        "syncd_job_objects",
        "syncd_job_quarantined_entries",
    }
)
"""What a timer-mode run writes for node_exporter: gauges only (counters and a histogram
of one process's single run would reset every run), each labelled with the job, so the
files of several jobs never hold the same series."""


class _OneJob(Collector):
    """The :data:`TEXTFILE_FAMILIES` series of one job of a :class:`Metrics`."""

    def __init__(self, metrics: Metrics, job: str):
        self.metrics, self.job = metrics, job

    def collect(self) -> Iterator[Any]:
        for family in self.metrics.collect():
            if family.name not in TEXTFILE_FAMILIES:
                continue
            family.samples = [s for s in family.samples if s.labels.get("job") == self.job]
            yield family


def textfile_path(directory: Path, job: str) -> Path:
    """``DIR/syncd_<job>.prom`` (characters other than letters, digits, ``-_.`` as ``_``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)
    return Path(directory) / f"syncd_{safe}.prom"


def write_textfile(directory: Path | str, report: Any, store: Any, node: str) -> Path:
    """Write ``report.job``'s gauges for node_exporter's textfile collector, atomically
    (a temporary file renamed over the old one, so a scrape never sees half a file).
    The numbers come from the state store's run history (which holds this run once it
    started), so a failed run keeps the time of the last good one. Returns the path.
    Raises OSError if it cannot."""
    from prometheus_client import write_to_textfile

    metrics = Metrics(node, store)
    metrics.known_jobs([report.job])
    metrics.restore(store)  # this run too, if it got as far as a run record
    if report.run_id is None:
        metrics.record_run(report)  # failed before its run record; never a success
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OneJob(metrics, report.job))
    path = textfile_path(Path(directory), report.job)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


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
