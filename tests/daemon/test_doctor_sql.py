"""`syncd doctor` on a SQL connection to a real PostgreSQL (target reachability and
authentication) and on the state store."""

from __future__ import annotations

import pytest

from syncd.config import load_config
from syncd.doctor import run_doctor
from tests.daemon.helpers import db_password, job_config

pytestmark = pytest.mark.postgres


def test_sql_connection_ok_then_wrong_password(tmp_path, postgres_url, monkeypatch):
    config = job_config(tmp_path, postgres_url, postgres_url, node="n1")
    monkeypatch.setenv("SYNCD_TEST_DB_PW", db_password(postgres_url))
    findings = run_doctor(load_config(config))
    assert not [f for f in findings if f.failed], findings
    state = [f for f in findings if f.section == "state store"]
    # The doctor writes nothing: a fresh database stays without tables.
    assert state and "the first sync creates it" in state[0].detail
    assert db_password(postgres_url) not in state[0].detail
    load_config(config).open_state().close()
    state = [f for f in run_doctor(load_config(config)) if f.section == "state store"]
    assert state and "schema version" in state[0].detail and not state[0].failed
    assert db_password(postgres_url) not in state[0].detail
    assert any(f.section == "data" and f.check.startswith("TCP") for f in findings)

    monkeypatch.setenv("SYNCD_TEST_DB_PW", "wrong")
    findings = run_doctor(load_config(config), "data")
    failed = [f for f in findings if f.failed]
    assert failed and all("password authentication failed" in f.detail for f in failed)
    # One row per distinct problem, even though the connection is source and target.
    assert len(failed) == len({(f.check, f.detail) for f in failed})
    assert "environment variable SYNCD_TEST_DB_PW" in failed[0].hint


def test_unreachable_state_store(tmp_path, postgres_url, monkeypatch):
    config = job_config(tmp_path, postgres_url, f"sqlite:///{tmp_path / 'data.db'}", node="n1")
    monkeypatch.setenv("SYNCD_TEST_DB_PW", "wrong")
    state = [f for f in run_doctor(load_config(config)) if f.section == "state store"]
    assert state[0].failed and "password authentication failed" in state[0].detail
    assert "state.url" in state[0].hint
