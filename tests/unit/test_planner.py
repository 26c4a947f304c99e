"""The planner is pure: records + state rows in, actions out."""

from syncd.contracts import ActionKind
from syncd.planner import plan_delete, plan_unseen, plan_upsert
from syncd.state import ObjectState
from syncd.state.fingerprint import fingerprint


def state_for(source_id, key, fields, target_id="t-1", dn=None):
    fp, digests = fingerprint(fields)
    return ObjectState(
        source_id=source_id, key=key, target_id=target_id, fingerprint=fp, digests=digests, dn=dn
    )


def test_never_synced_is_a_create_with_its_fingerprint():
    [planned] = plan_upsert("u1", "k1", {"cn": "a"}, "cn=a", None)
    assert planned.action.kind is ActionKind.CREATE
    assert planned.fingerprint == fingerprint({"cn": "a"})[0]


def test_unchanged_record_plans_nothing():
    fields = {"cn": "a", "ips": ["10.0.0.1", "10.0.0.2"], "photo": b"\x00\xff"}
    assert plan_upsert("u1", "k1", dict(fields), "cn=a", state_for("u1", "k1", fields)) == []


def test_update_names_only_changed_and_removed_fields_and_keeps_target_id():
    old = {"cn": "a", "serial": "1", "owner": "x"}
    new = {"cn": "a", "serial": "2", "location": "Paris"}
    [planned] = plan_upsert("u1", "k1", new, "cn=a", state_for("u1", "k1", old, "T9"))
    action = planned.action
    assert action.kind is ActionKind.UPDATE
    assert set(action.changed) == {"serial", "location", "owner"}
    assert action.target_id == "T9"


def test_bytes_and_text_of_same_content_differ():
    [planned] = plan_upsert("u1", "k1", {"v": b"abc"}, None, state_for("u1", "k1", {"v": "abc"}))
    assert planned.action.changed == ("v",)


def test_changed_key_is_delete_then_create():
    actions = plan_upsert("u1", "new", {"cn": "a"}, None, state_for("u1", "old", {"cn": "a"}))
    assert [a.action.kind for a in actions] == [ActionKind.DELETE, ActionKind.CREATE]
    assert actions[0].action.key == "old" and actions[1].action.key == "new"


def test_plan_unseen_deletes_only_unseen():
    rows = [state_for(f"u{i}", f"k{i}", {"i": i}) for i in range(5)]
    deleted = [p.action.source_id for p in plan_unseen(iter(rows), {"u0", "u2", "u4"})]
    assert deleted == ["u1", "u3"]
    assert plan_delete(rows[0]).action.target_id == "t-1"


def test_switching_enabled_off_is_a_disable_for_the_threshold():
    from syncd.planner import is_disable

    old = {"uid": "ada", "enabled": True}
    [off] = plan_upsert(
        "u1", "k1", {"uid": "ada", "enabled": False}, None, state_for("u1", "k1", old)
    )
    assert is_disable(off.action)
    [other] = plan_upsert(
        "u1", "k1", {"uid": "ada2", "enabled": True}, None, state_for("u1", "k1", old)
    )
    assert not is_disable(other.action)
