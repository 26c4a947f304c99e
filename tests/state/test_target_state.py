"""Per-job target values (the target_state migration): written with a commit, read back
per job, removed with None, and a database from before that migration is migrated."""

from __future__ import annotations

import sqlite3

from syncd.state import StateStore, schema
from syncd.state.schema import MIGRATIONS, latest

# The version a store has just before the target_state table arrives.
BEFORE = next(i for i, m in enumerate(MIGRATIONS) if "target_state" in m.__name__)


def test_values_round_trip_per_job(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path}/s.db")
    try:
        assert store.get_target_state("a") == {}
        store.commit("a", target_values={"delta:x": "link1", "folder:x": "F1"})
        store.commit("b", target_values={"delta:x": "other"})
        store.commit("a", target_values={"delta:x": "link2", "folder:x": None})
        assert store.get_target_state("a") == {"delta:x": "link2"}
        assert store.get_target_state("b") == {"delta:x": "other"}
    finally:
        store.close()


def test_older_database_gets_the_table(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as m:  # a store written by a syncd before that migration
        m.setattr(schema, "MIGRATIONS", MIGRATIONS[:BEFORE])
        StateStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "target_state" not in tables
    store = StateStore(f"sqlite:///{path}")
    try:
        assert store.schema_version() == latest() > BEFORE
        store.commit("a", target_values={"k": "v"})
        assert store.get_target_state("a") == {"k": "v"}
    finally:
        store.close()
