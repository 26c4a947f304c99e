"""Per-job target values (migration 2): written with a commit, read back per job,
removed with None, and a database of schema version 1 is migrated."""

from __future__ import annotations

import sqlite3

from syncd.state import StateStore
from syncd.state.schema import latest


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


def test_version_1_database_gets_the_table(tmp_path):
    path = tmp_path / "old.db"
    store = StateStore(f"sqlite:///{path}")
    store.close()
    with sqlite3.connect(path) as db:  # make it look like a version-1 store
        db.execute("DROP TABLE target_state")
        db.execute("DELETE FROM schema_version WHERE version > 1")
    store = StateStore(f"sqlite:///{path}")
    try:
        assert store.schema_version() == latest() >= 2
        store.commit("a", target_values={"k": "v"})
        assert store.get_target_state("a") == {"k": "v"}
    finally:
        store.close()
