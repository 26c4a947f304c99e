"""kill -9 in the middle of a run: the next run converges, nothing lost or duplicated.

Target and state live in a real PostgreSQL. A trigger on the target table makes every
row insert take a few milliseconds, so the apply phase lasts long enough to be killed
part-way (after some batches were applied and committed, with one batch in flight).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg

from bench.ldifgen import devices_ldif
from tests.e2e.conftest import write_config

N = 1000


def count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        try:
            return conn.execute(sql).fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0


def test_kill_9_mid_apply_then_next_run_converges(tmp_path, slapd, postgres_server):
    slapd.stop()  # bulk-load offline: slapadd is ~100x faster than ldapadd
    slapd.slapadd(devices_ldif(N))
    slapd.start()
    pg = postgres_server
    pg.create_database("crash_target")
    pg.create_database("crash_state")
    target_url = f"postgresql+psycopg://{pg.user}@127.0.0.1:{pg.port}/crash_target"
    state_url = f"postgresql+psycopg://{pg.user}@127.0.0.1:{pg.port}/crash_state"
    work = tmp_path / "w"
    work.mkdir()
    mapping = (
        "version: 1\nkey: entryUUID\nfields:\n  hostname: cn\n  serial: serialNumber\n"
        "  location: l\n"
    )
    config = write_config(
        work,
        slapd,
        target_url,
        state_url=state_url,
        mapping=mapping,
        db_password=pg.password,
        state_password=pg.password,
    )
    target_dsn = postgres_server.dsn("crash_target")
    # Create the table as the target would (first run with an empty read is not possible),
    # then slow its inserts down.
    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute(
            'CREATE TABLE devices ("key" text PRIMARY KEY, hostname text, '
            "serial text, location text)"
        )
        conn.execute(
            "CREATE FUNCTION slow() RETURNS trigger AS $$ BEGIN "
            "PERFORM pg_sleep(0.002); RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        conn.execute(
            "CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON devices "
            "FOR EACH ROW EXECUTE FUNCTION slow()"
        )

    cmd = [
        sys.executable,
        "-m",
        "syncd",
        "-q",
        "-c",
        str(config),
        "sync",
        "--no-progress",
        "inventory",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    state_dsn = postgres_server.dsn("crash_state")
    # Wait until at least one batch is applied AND committed to the state, then kill.
    while time.monotonic() < deadline and proc.poll() is None:
        if count(state_dsn, "SELECT count(*) FROM objects") > 0:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        raise AssertionError(
            "the run ended before it could be killed: " + proc.stderr.read().decode()
        )
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    in_target = count(target_dsn, "SELECT count(*) FROM devices")
    in_state = count(state_dsn, "SELECT count(*) FROM objects")
    assert 0 < in_state < N, (in_state, in_target)
    assert in_state <= in_target < N, "killed part-way: the target may be ahead of the state"

    with psycopg.connect(target_dsn, autocommit=True) as conn:
        conn.execute("DROP TRIGGER slow ON devices")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert count(target_dsn, "SELECT count(*) FROM devices") == N
    assert count(target_dsn, 'SELECT count(DISTINCT "key") FROM devices') == N
    assert count(target_dsn, "SELECT count(DISTINCT hostname) FROM devices") == N
    assert count(state_dsn, "SELECT count(*) FROM objects") == N

    # and the run after that moves nothing
    again = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(config), "plan", "inventory", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(again.stdout)["actions"] == []
