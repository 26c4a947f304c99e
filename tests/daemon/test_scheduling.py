"""Triggers, grace times, next runs, and the scheduler wrapper on a real APScheduler."""

from __future__ import annotations

import datetime as dt
import threading
import time
from types import SimpleNamespace

import pytest

from syncd import scheduling
from syncd.config import ScheduleSection, load_config
from syncd.scheduling import (
    JobScheduler,
    dedupe_window,
    make_trigger,
    misfire_grace,
    next_runs,
    period_seconds,
    schedule_warnings,
)

UTC = dt.UTC


def S(**kw) -> ScheduleSection:
    return ScheduleSection(**kw)


def test_interval_ticks_are_anchored_so_every_node_fires_the_same_instants():
    trigger = make_trigger(S(interval=900))
    now = dt.datetime(2026, 11, 28, 10, 7, 13, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == dt.datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    # A node started at another moment computes the same tick.
    later = dt.datetime(2026, 11, 28, 10, 14, 59, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, later) == dt.datetime(2026, 11, 28, 10, 15, tzinfo=UTC)


def test_cron_and_jitter():
    trigger = make_trigger(S(cron="*/15 * * * *", jitter=30, timezone="UTC"))
    assert trigger.jitter == 30
    now = dt.datetime(2026, 11, 28, 10, 7, tzinfo=UTC)
    nxt = trigger.get_next_fire_time(None, now)
    assert nxt.minute == 15 and nxt.hour == 10


@pytest.mark.parametrize(
    ("schedule", "grace"),
    [
        (S(interval=1), 1),
        (S(interval=60), 30),
        (S(interval=3600), 300),  # at most 5 minutes
        (S(cron="* * * * *"), 30),
        (S(cron="*/15 * * * *"), 300),
    ],
)
def test_misfire_grace_is_half_the_period_capped_at_5_minutes(schedule, grace):
    assert misfire_grace(schedule) == grace


def test_period_of_an_irregular_cron_is_its_shortest_gap():
    assert period_seconds(S(cron="0 9,17 * * *", timezone="UTC")) == 8 * 3600
    assert dedupe_window(S(interval=1)) == 0.5


def test_jitter_of_half_a_period_or_more_is_warned_about():
    assert schedule_warnings("a", S(interval=60, jitter=10)) == []
    (warning,) = schedule_warnings("a", S(interval=60, jitter=30))
    assert "job a: jitter 30s" in warning and "run twice" in warning


def test_next_runs_from_a_real_config(tmp_path):
    (tmp_path / "m.yaml").write_text("version: 1\nkey: id\nfields:\n  name: name\n")
    (tmp_path / "syncd.yaml").write_text(
        "version: 1\n"
        "connections:\n  db: {type: sql, url: 'sqlite:///data.db'}\n"
        "jobs:\n"
        "  every15:\n"
        "    source: {connection: db, table: people, id_column: id}\n"
        "    mapping: m.yaml\n"
        "    target: {connection: db, table: copy}\n"
        "    schedule: {interval: 15m}\n"
        "  manual:\n"
        "    source: {connection: db, table: people, id_column: id}\n"
        "    mapping: m.yaml\n"
        "    target: {connection: db, table: copy2}\n"
        "  disabled:\n"
        "    enabled: false\n"
        "    source: {connection: db, table: people, id_column: id}\n"
        "    mapping: m.yaml\n"
        "    target: {connection: db, table: copy3}\n"
        "    schedule: {cron: '0 3 * * *'}\n"
    )
    cfg = load_config(tmp_path / "syncd.yaml")
    now = dt.datetime(2026, 11, 28, 10, 7, 13, tzinfo=UTC)
    runs = next_runs(cfg, now=now)
    assert runs == {
        "every15": dt.datetime(2026, 11, 28, 10, 15, tzinfo=UTC),
        "manual": None,
        "disabled": None,
    }


def _cfg(**schedules) -> SimpleNamespace:
    jobs = {
        name: SimpleNamespace(schedule=sched, section=SimpleNamespace(enabled=True))
        for name, sched in schedules.items()
    }
    return SimpleNamespace(jobs=jobs)


def test_job_scheduler_runs_jobs_one_at_a_time_and_beats():
    calls: list[tuple[str, float]] = []
    running = threading.Semaphore(1)
    overlaps: list[str] = []
    beats: list[float] = []

    def run(job: str) -> None:
        if not running.acquire(blocking=False):
            overlaps.append(job)
            return
        try:
            calls.append((job, time.monotonic()))
            time.sleep(1.5)  # longer than the interval: the next tick must not overlap
        finally:
            running.release()

    sched = JobScheduler(run, lambda: beats.append(time.monotonic()), 0.2)
    assert sched.apply(_cfg(fast=S(interval=1))) == ["fast"]
    sched.start()
    try:
        time.sleep(3.3)
        assert sched.thread_alive()
        nxt = sched.next_run_times()["fast"]
        assert nxt is not None and nxt > dt.datetime.now(UTC)
    finally:
        sched.shutdown(wait=True)
    assert not overlaps  # max_instances=1
    assert 1 <= len(calls) <= 2
    assert len(beats) >= 10  # the heartbeat keeps going while the worker is busy
    assert not sched.thread_alive()


def test_job_scheduler_apply_replaces_the_schedule():
    sched = JobScheduler(lambda job: None, lambda: None, 5)
    sched.apply(_cfg(a=S(interval=60), b=S(interval=60)))
    sched.start()
    try:
        first = sched.next_run_times()
        assert set(first) == {"a", "b"}
        sched.apply(_cfg(a=S(interval=60), c=S(cron="0 3 * * *")))
        second = sched.next_run_times()
        assert set(second) == {"a", "c"}
        assert second["a"] == first["a"]  # unchanged job keeps its next run
    finally:
        sched.shutdown()


def test_heartbeat_id_is_not_a_job():
    assert not scheduling.HEARTBEAT_ID.startswith(scheduling.JOB_PREFIX)
