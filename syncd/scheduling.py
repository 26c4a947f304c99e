"""When jobs run: APScheduler 3.x triggers built from the config's ``schedule:`` blocks.

Jobs come from the config file every time (no APScheduler job store: a 3.x store must
never be shared between processes, and the config is the source of truth anyway).

Rules, and why:

* ``max_instances=1``: never two runs of one job in one process; the job lock
  (:mod:`syncd.locks`) extends that across processes and nodes.
* ``coalesce=True``: a daemon that was paused or busy runs a late job once, not once per
  missed tick.
* ``misfire_grace_time``: half the job's period, at most 5 minutes (APScheduler's default
  of 1 s would drop a run whenever a long run of another job delays the scheduler).
* Interval triggers are anchored at a fixed instant (2000-01-01 UTC), not at the daemon's
  start, so every node of a cluster fires the same ticks; cron triggers are wall-clock
  anyway. That is what lets several nodes agree which tick a run belongs to
  (see :func:`dedupe_window`).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

ANCHOR = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
MAX_GRACE = 300
HEARTBEAT_ID = "syncd:heartbeat"
JOB_PREFIX = "job:"


def make_trigger(schedule: Any) -> BaseTrigger:
    """An APScheduler trigger for a ``ScheduleSection`` (cron or interval, + jitter).

    Raises ValueError for a schedule with neither (the config loader refuses those).
    """
    tz = getattr(schedule, "timezone", None) or None
    jitter = getattr(schedule, "jitter", None) or None
    if getattr(schedule, "cron", None):
        trigger = CronTrigger.from_crontab(schedule.cron, timezone=tz or _local_tz())
        trigger.jitter = jitter
        return trigger
    if getattr(schedule, "interval", None):
        return IntervalTrigger(
            seconds=int(schedule.interval),
            start_date=ANCHOR,
            timezone=tz or _dt.UTC,
            jitter=jitter,
        )
    raise ValueError("a schedule needs cron or interval")


def _local_tz() -> Any:
    # Cron expressions mean the host's wall clock, as in crontab(5).
    from tzlocal import get_localzone

    return get_localzone()


def period_seconds(schedule: Any, *, now: _dt.datetime | None = None) -> float:
    """Shortest gap between two runs of the schedule (seconds).

    For cron, the smallest gap among the next few fire times (``0 9,17 * * *`` -> 8 h).
    """
    if getattr(schedule, "interval", None):
        return float(schedule.interval)
    trigger = CronTrigger.from_crontab(
        schedule.cron, timezone=getattr(schedule, "timezone", None) or _local_tz()
    )
    now = now or _dt.datetime.now(_dt.UTC)
    times: list[_dt.datetime] = []
    previous = None
    current = now
    for _ in range(6):
        nxt = trigger.get_next_fire_time(previous, current)
        if nxt is None:
            break
        times.append(nxt)
        previous = nxt
        current = nxt + _dt.timedelta(microseconds=1)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    return min(gaps) if gaps else 86400.0


def misfire_grace(schedule: Any) -> int:
    """Seconds a late run may still start: half the period, between 1 s and 5 min."""
    return int(max(1, min(MAX_GRACE, period_seconds(schedule) / 2)))


def dedupe_window(schedule: Any) -> float:
    """How recent another node's run must be to count as *this* tick's run (seconds).

    All nodes fire the same ticks (see the module doc); the first takes the job lock and
    runs, the others either find the lock taken or, when the run was quick, find that a
    run started less than half a period ago and skip. Jitter must stay under half the
    period for that to hold; :func:`schedule_warnings` says so otherwise.
    """
    return period_seconds(schedule) / 2


def schedule_warnings(name: str, schedule: Any) -> list[str]:
    """Remarks about a schedule that works but not as well as it could."""
    out = []
    jitter = getattr(schedule, "jitter", None) or 0
    if jitter and jitter >= period_seconds(schedule) / 2:
        out.append(
            f"job {name}: jitter {jitter}s is not under half the period "
            f"({period_seconds(schedule):.0f}s); on several nodes a tick may run twice"
        )
    return out


def scheduled_jobs(cfg: Any) -> dict[str, Any]:
    """Jobs of ``cfg`` the daemon schedules: enabled ones with a ``schedule:`` block."""
    out = {}
    for name, job in cfg.jobs.items():
        section = getattr(job, "section", None)
        if section is not None and not getattr(section, "enabled", True):
            continue
        if job.schedule is not None:
            out[name] = job.schedule
    return out


def next_runs(cfg: Any, *, now: _dt.datetime | None = None) -> dict[str, _dt.datetime | None]:
    """Next scheduled start of every job in ``cfg`` (None: not scheduled / disabled).

    Computed from the config (what a daemon with this config does next), without jitter.
    """
    now = now or _dt.datetime.now(_dt.UTC)
    scheduled = scheduled_jobs(cfg)
    out: dict[str, _dt.datetime | None] = {}
    for name in cfg.jobs:
        schedule = scheduled.get(name)
        if schedule is None:
            out[name] = None
            continue
        trigger = make_trigger(schedule)
        trigger.jitter = None
        out[name] = trigger.get_next_fire_time(None, now)
    return out


class JobScheduler:
    """The daemon's scheduler: one APScheduler job per scheduled syncd job + a heartbeat.

    ``run(job_name)`` is called in a worker thread for each tick; ``heartbeat()`` in a
    thread of its own every ``heartbeat_interval`` seconds, so it keeps beating while long
    runs occupy the workers (it proves the scheduler loop itself is alive).
    """

    def __init__(
        self,
        run: Callable[[str], None],
        heartbeat: Callable[[], None],
        heartbeat_interval: float,
        *,
        workers: int = 4,
    ):
        self._run = run
        self._scheduler = BackgroundScheduler(
            executors={
                "default": {"type": "threadpool", "max_workers": max(1, workers)},
                "heartbeat": {"type": "threadpool", "max_workers": 1},
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=_dt.UTC,
            daemon=True,
        )
        self._scheduler.add_job(
            heartbeat,
            IntervalTrigger(seconds=max(0.05, heartbeat_interval)),
            id=HEARTBEAT_ID,
            name="heartbeat",
            executor="heartbeat",
            misfire_grace_time=max(1, int(heartbeat_interval)),
            next_run_time=_dt.datetime.now(_dt.UTC),
        )

    def apply(self, cfg: Any) -> list[str]:
        """Make the schedule match ``cfg``: add, replace and remove jobs. Returns the names
        of the scheduled jobs. Runs in flight are not interrupted."""
        wanted = scheduled_jobs(cfg)
        for job in self._scheduler.get_jobs():
            if job.id.startswith(JOB_PREFIX) and job.id[len(JOB_PREFIX) :] not in wanted:
                job.remove()
                log.info("job %s: no longer scheduled", job.id[len(JOB_PREFIX) :])
        for name, schedule in sorted(wanted.items()):
            for warning in schedule_warnings(name, schedule):
                log.warning("%s", warning)
            job_id = JOB_PREFIX + name
            trigger = make_trigger(schedule)
            existing = self._scheduler.get_job(job_id)
            if existing is not None and _same_trigger(existing.trigger, trigger):
                continue  # unchanged: keep its next run time
            self._scheduler.add_job(
                self._run,
                trigger,
                args=[name],
                id=job_id,
                name=name,
                misfire_grace_time=misfire_grace(schedule),
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
        for name in cfg.jobs:
            if name not in wanted:
                log.info(
                    "job %s has no schedule (or is disabled): run it with `syncd sync %s`",
                    name,
                    name,
                )
        return sorted(wanted)

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop firing; with ``wait`` also wait for runs in flight to return."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def pause(self) -> None:
        """Stop firing new runs (runs in flight go on)."""
        if self._scheduler.running:
            self._scheduler.pause()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def thread_alive(self) -> bool:
        """True while the scheduler's own thread runs."""
        thread = getattr(self._scheduler, "_thread", None)
        return bool(thread is not None and thread.is_alive())

    def next_run_times(self) -> dict[str, _dt.datetime | None]:
        """Next fire time of each scheduled job (with this process's jitter)."""
        return {
            job.id[len(JOB_PREFIX) :]: job.next_run_time
            for job in self._scheduler.get_jobs()
            if job.id.startswith(JOB_PREFIX)
        }


def _same_trigger(a: BaseTrigger, b: BaseTrigger) -> bool:
    return (
        type(a) is type(b)
        and str(a) == str(b)
        and getattr(a, "jitter", None) == getattr(b, "jitter", None)
    )
