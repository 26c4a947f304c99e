"""has_objects: the O(1) question the engine asks every run instead of COUNT(*)."""

from __future__ import annotations

from syncd.state import ObjectState, StateStore


def test_has_objects_per_job(tmp_path):
    with StateStore(f"sqlite:///{tmp_path}/state.db") as store:
        assert not store.has_objects("j")
        store.commit("j", upserts=[ObjectState("a", "k", None, "fp", {}, None)])
        assert store.has_objects("j") and not store.has_objects("other")
        store.commit("j", deletes=["a"])
        assert not store.has_objects("j")
