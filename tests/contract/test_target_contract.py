"""The target contract: every target passes these tests against its real server.

Tests are generated per harness in ``HARNESSES`` whose capabilities cover what the test
needs (see harness.py); a test a harness cannot run is not generated, never skipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from syncd.contracts import Action, ActionKind, ActionResult, Target
from syncd.errors import ConnectionFailed, TargetError
from tests.contract.harness import BAD_PASSWORD, REGISTRY, TargetHarness, fixture_name

# Add your harness here (one line); define it in tests/servers/fixtures_<kind>.py.
HARNESSES = [
    "sql-sqlite",
    "sql-postgres",
    "carddav",
    "carddav-v4",
    "ldap-openldap",
    "exchange",
    "ldap-samba",
    "graph",
]


def needs(*capabilities: str):
    """Mark a test as needing these harness capabilities."""

    def mark(fn):
        fn._needs = frozenset(capabilities)
        return fn

    return mark


def pytest_generate_tests(metafunc):
    if "harness_name" not in metafunc.fixturenames:
        return
    required = getattr(metafunc.function, "_needs", frozenset())
    missing = [n for n in HARNESSES if n not in REGISTRY]
    if missing:
        raise RuntimeError(
            f"harnesses listed in HARNESSES but not registered: {missing} "
            "(is the module defining them a pytest plugin in tests/conftest.py?)"
        )
    names = [n for n in HARNESSES if required <= REGISTRY[n].capabilities]
    metafunc.parametrize("harness_name", names, ids=names)


@pytest.fixture
def harness(request, harness_name) -> TargetHarness:
    return request.getfixturevalue(fixture_name(harness_name))


class Driver:
    """Plays the engine's part: builds actions, remembers target ids and pushed fields,
    and checks the shape of every answer (one result per action, same order)."""

    def __init__(self, h: TargetHarness, target: Target):
        self.h = h
        self.target = target
        self.ids: dict[str, str | None] = {}
        self.pushed: dict[str, dict[str, Any]] = {}

    def create(self, key: str, text: str, multi: list[str], *, known_id: bool = False) -> Action:
        return Action(
            ActionKind.CREATE,
            source_id=f"src-{key}",
            key=key,
            fields=self.h.fields(key, text, multi),
            target_id=self.ids.get(key) if known_id else None,
        )

    def update(self, key: str, text: str, multi: list[str]) -> Action:
        new = self.h.fields(key, text, multi)
        old = self.pushed[key]
        changed = tuple(k for k in new if new[k] != old.get(k))
        assert changed, "test bug: update without a change"
        return Action(
            ActionKind.UPDATE,
            source_id=f"src-{key}",
            key=key,
            fields=new,
            changed=changed,
            target_id=self.ids.get(key),
        )

    def delete(self, key: str) -> Action:
        return Action(
            ActionKind.DELETE, source_id=f"src-{key}", key=key, target_id=self.ids.get(key)
        )

    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        results = self.target.apply(list(actions))
        assert len(results) == len(actions)
        for action, result in zip(actions, results, strict=True):
            assert result.action is action, "results must be in the order of the actions"
            if not result.ok:
                assert result.error, "a failed action must say why"
                continue
            if action.kind is ActionKind.DELETE:
                self.ids.pop(action.key, None)
                self.pushed.pop(action.key, None)
            else:
                assert isinstance(result.target_id, str) and result.target_id
                self.ids[action.key] = result.target_id
                self.pushed[action.key] = dict(action.fields)
        return results

    def apply_ok(self, actions: Sequence[Action]) -> list[ActionResult]:
        results = self.apply(actions)
        failed = [(r.action.kind.value, r.action.key, r.error) for r in results if not r.ok]
        assert not failed, f"actions failed: {failed}"
        return results


def multi_as_stored(h: TargetHarness, values: list[str]) -> list[str]:
    """What the server should hold for ``values`` given the harness's capabilities."""
    if "multi_duplicates" not in h.capabilities:
        values = list(dict.fromkeys(values))
    if "multi_order" not in h.capabilities:
        values = sorted(values)
    return values


def assert_item(h: TargetHarness, key: str, text: str, multi: list[str]) -> None:
    stored = h.stored_by_key()
    assert key in stored, f"{key} not stored; server holds {sorted(stored)}"
    item = stored[key]
    assert item.text == text
    got = item.multi if "multi_order" in h.capabilities else sorted(item.multi)
    assert got == multi_as_stored(h, multi)


def test_create(harness):
    d = Driver(harness, harness.target())
    d.apply_ok(
        [
            d.create("c-1", "Alpha One", ["a1", "a2"]),
            d.create("c-2", "Beta Two", ["b1"]),
            d.create("c-3", "Gamma Three", []),
        ]
    )
    assert sorted(harness.stored_by_key()) == ["c-1", "c-2", "c-3"]
    assert_item(harness, "c-1", "Alpha One", ["a1", "a2"])
    assert_item(harness, "c-2", "Beta Two", ["b1"])
    assert_item(harness, "c-3", "Gamma Three", [])


def test_update_changed_fields(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("u-1", "Before", ["m1", "m2"]), d.create("u-2", "Other", ["o1"])])
    d.apply_ok([d.update("u-1", "After", ["m1", "m2"])])
    assert_item(harness, "u-1", "After", ["m1", "m2"])
    d.apply_ok([d.update("u-1", "After", ["m3"])])
    assert_item(harness, "u-1", "After", ["m3"])
    assert_item(harness, "u-2", "Other", ["o1"])  # untouched neighbour
    assert len(harness.stored()) == 2


@needs("delete")
def test_delete(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("d-1", "Doomed", ["x1"]), d.create("d-2", "Kept", ["y1"])])
    results = d.apply_ok([d.delete("d-1")])
    assert results[0].ok
    assert sorted(harness.stored_by_key()) == ["d-2"]
    assert harness.stored_by_key()["d-2"].text == "Kept"


def test_idempotent_reapply(harness):
    d = Driver(harness, harness.target())
    batch = [d.create("i-1", "One", ["p1", "p2"]), d.create("i-2", "Two", ["q1"])]
    d.apply_ok(batch)
    first = harness.stored_by_key()
    d.apply_ok(batch)  # the engine crashed before committing: the same batch again
    assert harness.stored_by_key() == first
    assert len(harness.stored()) == 2
    update = [d.update("i-1", "One bis", ["p1", "p2"])]
    d.apply_ok(update)
    d.apply_ok(update)
    assert_item(harness, "i-1", "One bis", ["p1", "p2"])
    assert len(harness.stored()) == 2


def test_create_of_existing_key_updates(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("e-1", "Original", ["v1"])])
    # The state was lost: a create for a key the target already holds, without target id.
    d.apply_ok([d.create("e-1", "Replacement", ["v2", "v3"])])
    assert len(harness.stored()) == 1
    assert_item(harness, "e-1", "Replacement", ["v2", "v3"])


@needs("delete")
def test_delete_of_missing_item_succeeds(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.delete("never-existed")])
    d.apply_ok([d.create("m-1", "Twice deleted", ["z"])])
    gone = d.delete("m-1")  # carries the target id from the create
    d.apply_ok([gone])
    d.apply_ok([gone])  # repeated after a crash: still fine
    assert harness.stored() == []


@needs("delete")
def test_delete_by_key_alone_removes_the_item(harness):
    # A run died after the create was applied and before the state learnt its target
    # id; the object is gone from the source since: the engine deletes it by key alone.
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("o-1", "Orphan", ["x"]), d.create("o-2", "Kept", ["y"])])
    d.ids.clear()
    d.apply_ok([d.delete("o-1")])
    assert sorted(harness.stored_by_key()) == ["o-2"]


UNICODE_TEXTS = {
    "uni-latin": "Zoë Ångström-Łukasiewicz",
    "uni-greek-cyr": "Αλέξανδρος Жуков",
    "uni-cjk": "東京 山田太郎 김민준",
    "uni-rtl": "مرحبا שלום Ali",
    "uni-emoji": "Ops 👩‍💻 team 🇩🇪 🎉",
    "uni-combining": "Jose\u0301 Cafe\u0301 n\u0303",
    "uni-indic": "हिन्दी தமிழ்",
}


def test_unicode(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create(k, text, ["Ünïcödé", "日本"]) for k, text in UNICODE_TEXTS.items()])
    for key, text in UNICODE_TEXTS.items():
        assert_item(harness, key, text, ["Ünïcödé", "日本"])
    # update to other scripts too: values are compared exactly (no normalisation)
    d.apply_ok([d.update("uni-latin", "Ω≈ç√ “quotes” — dash", ["Ünïcödé", "日本"])])
    assert_item(harness, "uni-latin", "Ω≈ç√ “quotes” — dash", ["Ünïcödé", "日本"])
    composed = harness.stored_by_key()["uni-combining"].text
    assert composed == "Jose\u0301 Cafe\u0301 n\u0303" and "\u00e9" not in composed


def test_multi_valued(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("mv-1", "Multi", ["zeta", "alpha", "mid"])])
    assert_item(harness, "mv-1", "Multi", ["zeta", "alpha", "mid"])
    d.apply_ok([d.update("mv-1", "Multi", ["mid", "zeta"])])  # reordered and one removed
    assert_item(harness, "mv-1", "Multi", ["mid", "zeta"])
    d.apply_ok([d.update("mv-1", "Multi", [])])  # all values removed
    assert_item(harness, "mv-1", "Multi", [])
    d.apply_ok([d.update("mv-1", "Multi", ["single"])])
    assert_item(harness, "mv-1", "Multi", ["single"])


@needs("multi_order")
def test_multi_valued_order_is_kept(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("mo-1", "Ordered", ["c3", "a1", "b2"])])
    assert harness.stored_by_key()["mo-1"].multi == ["c3", "a1", "b2"]
    d.apply_ok([d.update("mo-1", "Ordered", ["b2", "c3", "a1"])])  # only the order changes
    assert harness.stored_by_key()["mo-1"].multi == ["b2", "c3", "a1"]


def test_multi_valued_duplicates(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("dup-1", "Dupes", ["same", "other", "same"])])
    assert_item(harness, "dup-1", "Dupes", ["same", "other", "same"])
    stored = harness.stored_by_key()["dup-1"].multi
    expected = 3 if "multi_duplicates" in harness.capabilities else 2
    assert len(stored) == expected


@needs("credentials")
def test_bad_credentials(harness):
    target = harness.bad_credentials_target()
    d = Driver(harness, target)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as err:
        target.open()
        target.apply([d.create("bc-1", "Never", ["n"])])
    assert time.monotonic() - started < harness.apply_timeout
    assert BAD_PASSWORD not in str(err.value)
    assert str(err.value).strip() and "\n" not in str(err.value).strip()
    assert harness.stored() == []


@needs("down")
def test_server_down(harness):
    target = harness.down_target()
    d = Driver(harness, target)
    started = time.monotonic()
    with pytest.raises((ConnectionFailed, TargetError)) as err:
        target.open()
        target.apply([d.create("sd-1", "Nowhere", ["n"])])
    assert time.monotonic() - started < harness.apply_timeout
    assert str(err.value).strip()


@needs("bad_record")
def test_bad_record_fails_alone(harness):
    d = Driver(harness, harness.target())
    bad = Action(
        ActionKind.CREATE, source_id="src-bad-1", key="bad-1", fields=harness.bad_fields("bad-1")
    )
    results = d.apply(
        [d.create("ok-1", "Fine one", ["f1"]), bad, d.create("ok-2", "Fine two", ["f2"])]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error and "bad-1" not in d.ids
    assert sorted(harness.stored_by_key()) == ["ok-1", "ok-2"]
    # the target is still usable after the failure
    d.apply_ok([d.update("ok-1", "Fine again", ["f1"])])
    assert_item(harness, "ok-1", "Fine again", ["f1"])


@needs("delete")
def test_mixed_batch(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("x-1", "Stay", ["s"]), d.create("x-2", "Go", ["g"])])
    d.apply_ok(
        [
            d.create("x-3", "New", ["n"]),
            d.update("x-1", "Stayed", ["s", "t"]),
            d.delete("x-2"),
        ]
    )
    assert sorted(harness.stored_by_key()) == ["x-1", "x-3"]
    assert_item(harness, "x-1", "Stayed", ["s", "t"])
    assert_item(harness, "x-3", "New", ["n"])


@needs("soft_delete")
def test_soft_delete(harness):
    d = Driver(harness, harness.target(soft_delete=True))
    d.apply_ok([d.create("sf-1", "Leaver", ["l"]), d.create("sf-2", "Stayer", ["s"])])
    results = d.apply_ok([d.delete("sf-1")])
    assert results[0].ok
    assert sorted(harness.stored_by_key()) == ["sf-2"]
    assert harness.soft_deleted() == {"sf-1"}
    d.apply_ok([d.delete("sf-1")])  # again: still fine, still flagged once
    assert harness.soft_deleted() == {"sf-1"}
    # the object returns: the flag is cleared and the values are current
    d.apply_ok([d.create("sf-1", "Returner", ["r"])])
    assert harness.soft_deleted() == set()
    assert_item(harness, "sf-1", "Returner", ["r"])
    assert len(harness.stored()) == 2


def test_empty_batch_and_close_twice(harness):
    target = harness.target()
    assert target.apply([]) == []
    d = Driver(harness, target)
    d.apply_ok([d.create("cl-1", "Closing", ["c"])])
    target.close()
    target.close()  # safe to call twice
    assert_item(harness, "cl-1", "Closing", ["c"])


def _state(d: Driver, key: str, target_id: str | None = None) -> Any:
    """What the engine hands read_back(): the synced object's state row."""
    from syncd.state import ObjectState

    tid = target_id if target_id is not None else d.ids.get(key)
    return ObjectState(
        source_id=f"src-{key}", key=key, target_id=tid, fingerprint="", digests={}, dn=None
    )


@needs("read_back")
def test_read_back_sees_what_was_written(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("r-1", "Zoë 東京 👩‍💻", ["é1", "b2"]), d.create("r-2", "Plain", [])])
    fresh = harness.target()
    fresh.open()
    back = fresh.read_back()
    assert back is not None
    for key in ("r-1", "r-2"):
        assert back.differs(_state(d, key), d.pushed[key]) is None, key
    never = harness.fields("r-never", "Nobody", [])
    assert back.differs(_state(d, "r-never"), never) == "missing"
    assert list(back.orphans({"r-1", "r-2"})) == []


@needs("read_back", "delete")
def test_read_back_finds_an_item_deleted_since(harness):
    d = Driver(harness, harness.target())
    d.apply_ok([d.create("g-1", "Going", ["x"]), d.create("g-2", "Staying", ["y"])])
    old_id, old_fields = d.ids["g-1"], d.pushed["g-1"]
    d.apply_ok([d.delete("g-1")])  # as if deleted by hand: the state still has it
    fresh = harness.target()
    fresh.open()
    back = fresh.read_back()
    assert back.differs(_state(d, "g-1", old_id), old_fields) == "missing"
    assert back.differs(_state(d, "g-2"), d.pushed["g-2"]) is None
