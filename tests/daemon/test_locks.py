"""Job locks on real PostgreSQL (advisory locks) and SQLite (flock files)."""

from __future__ import annotations

import subprocess
import sys
import threading
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from syncd.errors import Busy
from syncd.locks import daemon_lock, job_lock, lock_key


def _store(url: str) -> SimpleNamespace:
    # The lock only needs store.engine; a bare namespace keeps these tests independent
    # of the state store's schema.
    return SimpleNamespace(engine=sa.create_engine(url))


def _in_thread(make_cm) -> str:
    """Enter the context manager in another thread; return the Busy message or ''."""
    out: list[str] = []

    def run():
        try:
            with make_cm():
                out.append("")
        except Busy as err:
            out.append(str(err))

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return out[0]


def test_lock_key_is_stable_and_distinct():
    assert lock_key("inventory") == lock_key("inventory")
    assert lock_key("inventory") != lock_key("addressbook")
    assert -(2**63) <= lock_key("x") < 2**63
    # Stable across releases: other nodes compute the same key.
    assert lock_key("inventory") == 1545509073635429992


@pytest.mark.postgres
def test_pg_lock_excludes_other_holders_and_names_the_node(postgres_url):
    store, other_node = _store(postgres_url), _store(postgres_url)
    with job_lock(store, "inv", node="node-a") as lock:
        assert lock.alive()
        with (
            pytest.raises(Busy, match="job inv is running on node node-a"),
            job_lock(other_node, "inv", node="node-b"),
        ):
            pass
        with job_lock(other_node, "other", node="node-b") as other:
            assert other.alive()
    with job_lock(other_node, "inv", node="node-b") as lock:
        assert lock.alive()


@pytest.mark.postgres
def test_pg_lock_wait_blocks_until_released(postgres_url):
    store = _store(postgres_url)
    got = threading.Event()

    def second():
        with job_lock(store, "inv", wait=True, node="b"):
            got.set()

    with job_lock(store, "inv", node="a"):
        t = threading.Thread(target=second)
        t.start()
        assert not got.wait(0.5)
    t.join(5)
    assert got.is_set()


@pytest.mark.postgres
def test_pg_lock_lost_when_session_is_killed(postgres_url):
    """The DB side ending the session (as a failover or network loss does) is noticed by
    alive(), and the lock is free for another node at once."""
    store = _store(postgres_url)
    with job_lock(store, "inv", node="victim") as lock:
        assert lock.alive()
        with store.engine.connect() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'syncd:victim'"
                )
            ).scalar()
            conn.commit()
        assert killed
        assert not lock.alive()
        assert not lock.alive()  # stays lost
        with job_lock(_store(postgres_url), "inv", node="other") as taken:
            assert taken.alive()


@pytest.mark.postgres
def test_pg_lock_released_when_holder_process_dies(postgres_url):
    store = _store(postgres_url)
    code = (
        "import sys, sqlalchemy as sa, types, os\n"
        "from syncd.locks import job_lock\n"
        f"s = types.SimpleNamespace(engine=sa.create_engine({postgres_url!r}))\n"
        "with job_lock(s, 'inv', node='doomed'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="doomed"), job_lock(store, "inv"):
            pass
        proc.kill()
        proc.wait(5)
        with job_lock(store, "inv", node="survivor") as lock:
            assert lock.alive()
    finally:
        proc.kill()


def test_sqlite_job_lock_is_per_job_and_per_open_file(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'state.db'}")
    with job_lock(store, "inv", node="n1") as lock:
        assert lock.alive()
        assert (tmp_path / "state.db.job-inv.lock").exists()
        # Same process, another thread: flock locks belong to the open file, so this
        # is refused too (fcntl byte-range locks would have let it through).
        errors = _in_thread(lambda: job_lock(store, "inv"))
        assert "job inv is running on node n1 pid" in errors
        # The holding thread re-enters (the daemon holds it, then the engine takes it).
        with job_lock(store, "inv") as inner:
            assert inner is lock
        assert lock.alive()
        assert "is running" in _in_thread(lambda: job_lock(store, "inv"))
        with job_lock(store, "ab/c d", node="n1"):
            pass
    with job_lock(store, "inv"):
        pass


def test_sqlite_lock_across_processes(tmp_path):
    db = tmp_path / "state.db"
    store = _store(f"sqlite:///{db}")
    code = (
        "import sys, sqlalchemy as sa, types\n"
        "from syncd.locks import job_lock\n"
        f"s = types.SimpleNamespace(engine=sa.create_engine('sqlite:///{db}'))\n"
        "with job_lock(s, 'inv', node='other-proc'):\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match=f"other-proc pid {proc.pid}"), job_lock(store, "inv"):
            pass
        proc.kill()
        proc.wait(5)
        with job_lock(store, "inv"):
            pass
    finally:
        proc.kill()


def test_sqlite_daemon_lock_refuses_second_daemon(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'state.db'}")
    single_node = "SQLite state is single-node; another daemon holds it"
    with (
        daemon_lock(store, node="first"),
        pytest.raises(Busy, match=single_node),
        daemon_lock(store, node="second"),
    ):
        pass
    with daemon_lock(store, node="second") as lock:
        assert lock is not None and lock.alive()


@pytest.mark.postgres
def test_daemon_lock_is_a_no_op_on_postgres(postgres_url):
    store = _store(postgres_url)
    with daemon_lock(store) as a, daemon_lock(store) as b:
        assert a is None and b is None


def test_in_memory_sqlite_uses_a_process_lock():
    store = _store("sqlite://")
    with job_lock(store, "inv"):
        assert "running in this process" in _in_thread(lambda: job_lock(store, "inv"))
    with job_lock(store, "inv"):
        pass
