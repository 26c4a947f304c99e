"""The daemon running a real job (SQL table -> SQL table): STATUS, metrics, a tick held
elsewhere (Busy is info, not an error), SIGTERM mid-run (finish the batch, commit,
"stopped", exit 0), and a lost PostgreSQL lock connection stopping the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from syncd.locks import job_lock
from syncd.state import StateStore
from tests.daemon.helpers import (
    NotifySocket,
    db_password,
    job_config,
    read_logs,
    start_daemon,
    stop,
    syncd_cmd,
)
from tests.servers.ports import free_port


def _env(notify: NotifySocket | None, url: str = "") -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")
    }
    env["SYNCD_TEST_DB_PW"] = db_password(url) if url else ""
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.address
    return env


def _start(config: Path, env: dict[str, str]) -> subprocess.Popen:
    return start_daemon(config, env)


def _logs(proc: subprocess.Popen) -> list[dict]:
    return read_logs(proc)


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    except sa.exc.OperationalError:
        return 0
    except sa.exc.ProgrammingError:
        return 0
    finally:
        engine.dispose()


def test_runs_report_status_and_metrics_and_busy_ticks_are_info(tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    data = f"sqlite:///{tmp_path / 'data.db'}"
    port = free_port()
    config = job_config(tmp_path, state, data, node="solo", listen=f"127.0.0.1:{port}")
    notify = NotifySocket()
    proc = _start(config, _env(notify))
    try:
        notify.wait_for("READY", "1", timeout=60)
        msg = notify.wait_for("STATUS", contains="people: ok")
        assert "3 created" in msg["STATUS"]  # "people: ok 0s, 3 created"
        assert _count(data, "people_copy") == 3
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert 'syncd_job_actions_total{job="people",kind="created"} 3.0' in metrics
        assert 'syncd_job_runs_total{job="people",status="ok"}' in metrics
        assert 'syncd_job_next_run_timestamp_seconds{job="people"}' in metrics

        # Another holder of the job's lock (e.g. a manual `syncd sync`): ticks are left
        # to it and logged at info.
        store = StateStore(state)
        try:
            with job_lock(store, "people", node="manual-run"):
                time.sleep(2.2)
        finally:
            store.close()
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        elsewhere = [
            line
            for line in metrics.splitlines()
            if line.startswith('syncd_job_runs_elsewhere_total{job="people"}')
        ]
        assert elsewhere and float(elsewhere[0].split()[-1]) >= 1
        assert stop(proc) == 0
    finally:
        proc.kill()
        notify.close()
    logs = _logs(proc)
    busy = [r for r in logs if "runs on node manual-run" in r["msg"]]
    assert busy and all(r["level"] == "INFO" for r in busy)
    assert not [r for r in logs if r["level"] in ("ERROR", "CRITICAL")]
    # One line per applied change on syncd.changes.
    assert len([r for r in logs if r["logger"] == "syncd.changes"]) == 3


def test_sigterm_mid_run_finishes_the_batch_commits_and_exits_0(tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    data = f"sqlite:///{tmp_path / 'data.db'}"
    rows = 1500
    # One action per batch: the run takes long enough to be interrupted.
    config = job_config(
        tmp_path, state, data, node="solo", rows=rows, interval=1, target_options="batch_size: 1"
    )
    notify = NotifySocket()
    proc = _start(config, _env(notify))
    try:
        notify.wait_for("READY", "1", timeout=60)
        notify.wait_for("STATUS", contains="people: running")
        deadline = time.monotonic() + 30
        while _count(data, "people_copy") < 20:
            assert time.monotonic() < deadline, "the run did not start writing"
            time.sleep(0.05)
        proc.terminate()
        assert proc.wait(30) == 0
        notify.wait_for("STOPPING", "1", timeout=5)
    finally:
        proc.kill()
        notify.close()
    store = StateStore(state)
    try:
        (run,) = store.runs("people")
        synced = store.count_objects("people")
    finally:
        store.close()
    assert run.status == "stopped", run
    written = _count(data, "people_copy")
    # Stopped part-way, and the state holds exactly what the target confirmed.
    assert 20 <= written < rows
    assert synced == written
    # The next run completes the rest (same job and state, normal batches).
    normal = job_config(tmp_path, state, data, node="finisher", rows=rows)
    done = subprocess.run(
        syncd_cmd(normal, "sync", "--no-progress", "people"),
        env=_env(None),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert _count(data, "people_copy") == rows


@pytest.mark.postgres
def test_a_node_that_loses_its_lock_connection_stops_writing(tmp_path, postgres_url):
    rows = 2000
    config = job_config(
        tmp_path,
        postgres_url,
        postgres_url,
        node="fragile",
        rows=rows,
        target_options="batch_size: 1",
    )
    notify = NotifySocket()
    proc = _start(config, _env(notify, postgres_url))
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        notify.wait_for("READY", "1", timeout=60)
        notify.wait_for("STATUS", contains="people: running")
        deadline = time.monotonic() + 30
        while _count(postgres_url, "people_copy") < 20:
            assert time.monotonic() < deadline, "the run did not start writing"
            time.sleep(0.05)
        # The database ends the lock's session (failover, idle kill, network cut).
        with engine.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'syncd:fragile'"
                )
            ).scalar()
        assert killed
        msg = notify.wait_for("STATUS", contains="people: failed", timeout=30)
        assert "lost the job lock" in msg["STATUS"]
        written = _count(postgres_url, "people_copy")
        time.sleep(0.5)
        # Nothing more is written by the run that lost its lock.
        assert _count(postgres_url, "people_copy") == written < rows
        assert stop(proc) == 0
    finally:
        proc.kill()
        notify.close()
        engine.dispose()


def test_sighup_with_a_good_config_replaces_the_schedule(tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    data = f"sqlite:///{tmp_path / 'data.db'}"
    port = free_port()
    config = job_config(tmp_path, state, data, node="solo", listen=f"127.0.0.1:{port}")
    notify = NotifySocket()
    proc = _start(config, _env(notify))
    try:
        assert notify.wait_for("READY", "1", timeout=60)["STATUS"].endswith(": people")
        notify.wait_for("STATUS", contains="people: ok")
        # Rename the job and make it hourly.
        text = config.read_text().replace("  people:\n", "  hourly:\n")
        config.write_text(text.replace("schedule: {interval: 1}", "schedule: {interval: 1h}"))
        proc.send_signal(1)
        notify.wait_for("RELOADING", "1")
        notify.wait_for("READY", "1")
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        next_runs = [
            line
            for line in metrics.splitlines()
            if line.startswith("syncd_job_next_run_timestamp_seconds{")
        ]
        assert len(next_runs) == 1 and 'job="hourly"' in next_runs[0], next_runs
        nxt = float(next_runs[0].split()[-1])
        assert time.time() < nxt <= time.time() + 3600
        assert stop(proc) == 0
    finally:
        proc.kill()
        notify.close()
    messages = [r["msg"] for r in _logs(proc)]
    assert "job people: no longer scheduled" in messages
    assert any(m.startswith("reloaded ") and "hourly" in m for m in messages)
