"""Three real daemon processes on one real PostgreSQL state store.

Each runs the same job every second. Over several ticks each tick's run happens exactly
once (counted in the state store's runs table, node column); after kill -9 of the node
that ran last, the next ticks run on the other nodes.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from tests.daemon.helpers import NotifySocket, db_password, job_config, stop, syncd_cmd

pytestmark = pytest.mark.postgres


def _runs(url: str, since: dt.datetime) -> list[tuple[str, dt.datetime, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT node, started, status FROM runs WHERE job = 'people' "
                    "AND started >= :since ORDER BY started"
                ),
                {"since": since},
            ).all()
    finally:
        engine.dispose()
    return [(r[0], r[1] if r[1].tzinfo else r[1].replace(tzinfo=dt.UTC), r[2]) for r in rows]


def _wait_runs(url: str, since: dt.datetime, count: int, timeout: float = 30.0) -> list:
    """Runs started since ``since`` once there are ``count`` of them (a loaded machine
    coalesces late ticks, so this waits for runs rather than for seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = _runs(url, since)
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _assert_once_per_tick(runs: list[tuple[str, dt.datetime, str]]) -> None:
    """No tick ran twice: with 1 s ticks, run starts are at least half a second apart
    (minus the few milliseconds between a node's check and its run record)."""
    starts = [r[1] for r in runs]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(g > 0.45 for g in gaps), f"two runs in one tick: {runs}"


def test_each_tick_runs_on_exactly_one_node_and_survives_kill_9(tmp_path, postgres_url):
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["SYNCD_TEST_DB_PW"] = db_password(postgres_url)
    nodes = {}
    sockets = {}
    logs = {}
    try:
        for name in ("n1", "n2", "n3"):
            config = job_config(tmp_path, postgres_url, postgres_url, node=name, interval=1)
            sockets[name] = NotifySocket()
            # A file, not a pipe nobody reads: a full pipe would block the daemon.
            logs[name] = (tmp_path / f"{name}.log").open("w")
            nodes[name] = subprocess.Popen(
                syncd_cmd(config, "daemon"),
                env={**env, "NOTIFY_SOCKET": sockets[name].address},
                stdout=subprocess.DEVNULL,
                stderr=logs[name],
            )
        for name in nodes:
            sockets[name].wait_for("READY", "1", timeout=60)
        t0 = dt.datetime.now(dt.UTC)
        runs = _wait_runs(postgres_url, t0, 4)
        assert len(runs) >= 4, runs
        _assert_once_per_tick(runs)
        assert {r[0] for r in runs} <= {"n1", "n2", "n3"}

        # Kill -9 the node that ran last: no goodbye, its lock goes with its session.
        victim = runs[-1][0]
        nodes[victim].send_signal(signal.SIGKILL)
        nodes[victim].wait(10)
        t1 = dt.datetime.now(dt.UTC)
        after = _wait_runs(postgres_url, t1, 3)
        assert len(after) >= 3, after
        assert victim not in {r[0] for r in after}, after
        _assert_once_per_tick(after)
        # The survivors' runs succeed (the newest may still be in flight).
        assert all(r[2] == "ok" for r in after[:-1]) and after[-1][2] in ("ok", "running")
        # The survivors stop cleanly.
        for name, proc in nodes.items():
            if name != victim:
                assert stop(proc) == 0
    finally:
        for proc in nodes.values():
            proc.kill()
            proc.wait()
        for sock in sockets.values():
            sock.close()
        for name, f in logs.items():
            f.close()
            # Shown by pytest when the test fails.
            print(f"--- {name}:\n" + (tmp_path / f"{name}.log").read_text()[-3000:])
