"""The objects' entry digest (schema v4): added to existing states without losing rows,
written with commits, and settable alone without marking the objects changed."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import text

from syncd.state import ObjectState, StateStore
from syncd.state import schema as state_schema


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("postgres_url")


def obj(sid: str, entry: str | None = None) -> ObjectState:
    return ObjectState(sid, f"k-{sid}", f"t-{sid}", "fp", {"a": "1"}, f"cn={sid}", entry)


def test_an_older_state_gains_the_column_and_keeps_its_objects(url, monkeypatch):
    before = state_schema.MIGRATIONS.index(state_schema._v6_entry_digest)
    with monkeypatch.context() as m:
        m.setattr(state_schema, "MIGRATIONS", state_schema.MIGRATIONS[:before])
        old = StateStore(url)
        with old.engine.begin() as conn:  # a row as a v3 syncd wrote it
            conn.execute(
                text(
                    "INSERT INTO objects (job, source_id, key, target_id, fingerprint, digests,"
                    " dn, dn_norm, updated_at) VALUES ('j', 'a', 'k-a', 't-a', 'fp',"
                    " '{\"a\": \"1\"}', 'cn=a', 'cn=a', '2026-01-01 00:00:00')"
                )
            )
        old.close()
    with StateStore(url) as store:
        assert store.schema_version() == state_schema.latest()
        [state] = store.objects_for("j", ["a"]).values()
        assert (state.key, state.digests, state.entry_digest) == ("k-a", {"a": "1"}, None)


def test_entry_digests_are_committed_and_remembered_alone(url):
    with StateStore(url) as store:
        store.commit("j", upserts=[obj("a", "d1"), obj("b")])
        assert store.objects_for("j", ["a"])["a"].entry_digest == "d1"
        changed = store.last_change("j")
        store.remember_entry_digests("j", {"b": "d2", "a": "d3", "gone": "d4"})
        got = store.objects_for("j", ["a", "b", "gone"])
        assert {sid: s.entry_digest for sid, s in got.items()} == {"a": "d3", "b": "d2"}
        assert got["b"].fingerprint == "fp" and got["b"].target_id == "t-b"
        assert store.last_change("j") == changed, "remembering a digest is no change"
        assert store.objects_for("k", ["a"]) == {}  # other jobs untouched


def test_digests_read_back_lazily_compare_and_commit_again_unchanged(url):
    with StateStore(url) as store:
        store.commit("j", upserts=[obj("a")])
        state = store.objects_for("j", ["a"])["a"]
        assert state.digests == {"a": "1"} and state.digests.get("b") is None
        assert list(state.digests) == ["a"] and len(state.digests) == 1
        # a state read back and committed again (a rename) keeps its digests
        store.commit("j", upserts=[dataclasses.replace(state, dn="cn=moved")])
        again = store.objects_for("j", ["a"])["a"]
        assert again.dn == "cn=moved" and dict(again.digests) == {"a": "1"}


def test_entry_digests_and_keys_are_read_by_id_for_one_job(url):
    """The two short look-ups of a skipping read: digests (None when not yet known) and
    keys, of the known ids only, of this job only, in more than one IN list."""
    with StateStore(url) as store:
        many = [obj(f"s{i}", f"d{i}") for i in range(1200)]
        store.commit("j", upserts=[*many, obj("none")])
        store.commit("other", upserts=[obj("s1", "other")])
        ids = [f"s{i}" for i in range(0, 1200, 3)] + ["none", "unknown"]
        digests = store.entry_digests_for("j", ids)
        assert digests == {**{f"s{i}": f"d{i}" for i in range(0, 1200, 3)}, "none": None}
        assert store.keys_for("j", ["s1", "none", "unknown"]) == {"s1": "k-s1", "none": "k-none"}
        assert store.entry_digests_for("j", []) == {}
