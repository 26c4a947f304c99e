"""GraphTarget against the Graph emulator: what ends up stored per mailbox, ownership,
photos, batching limits, throttling and the per-mailbox concurrency limit."""

from __future__ import annotations

import pytest

from syncd.contracts import Action, ActionKind
from syncd.errors import TargetError
from tests.servers.fixtures_graph import MAILBOX

FOLDER = "Company Directory"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"p" * 100 + b"\xff\xd9"


def person(n: int, **extra) -> dict:
    return {
        "display_name": f"Person {n:04d}",
        "given_name": "Person",
        "surname": f"{n:04d}",
        "email_addresses": [f"p{n}@example.com"],
        "business_phones": ["+49 30 1000", "+49 30 2000"],
        "business_city": "Berlin",
        **extra,
    }


def create(n: int, **extra) -> Action:
    return Action(ActionKind.CREATE, f"s{n}", f"k{n}", person(n, **extra))


def update(n: int, changed: tuple[str, ...], **extra) -> Action:
    return Action(ActionKind.UPDATE, f"s{n}", f"k{n}", person(n, **extra), changed=changed)


def ok(results) -> None:
    bad = [(r.action.key, r.error) for r in results if not r.ok]
    assert not bad, bad


def test_first_run_creates_tagged_contacts_in_batches_of_20(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    before = graph_server.graph_requests
    ok(t.apply([create(n) for n in range(100)]))
    stored = graph_server.owned(MAILBOX, FOLDER)
    assert len(stored) == 100
    c = stored["k7"]
    assert c["displayName"] == "Person 0007"
    assert c["businessPhones"] == ["+49 30 1000", "+49 30 2000"]
    assert c["businessAddress"] == {"city": "Berlin"}
    assert c["emailAddresses"] == [{"address": "p7@example.com", "name": "p7@example.com"}]
    assert c["ext"]["syncd-digest"].startswith("v1 ")
    assert max(graph_server.batch_sizes) <= 20
    # folder creation, 5 batches of 20 creates
    assert graph_server.graph_requests - before == 6
    assert graph_server.violations == []


def test_update_writes_only_changed_properties_and_keeps_hand_added_ones(
    graph_server, make_graph_target
):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(1)]))
    cid = graph_server.owned(MAILBOX, FOLDER)["k1"]["id"]
    graph_server.edit(MAILBOX, cid, homePhones=["+49 30 9999"])  # a person adds a number
    res = t.apply([update(1, ("job_title",), job_title="Engineer")])
    ok(res)
    assert res[0].target_id == cid
    c = graph_server.owned(MAILBOX, FOLDER)["k1"]
    assert c["jobTitle"] == "Engineer"
    assert c["homePhones"] == ["+49 30 9999"]  # not syncd's: untouched
    # a field dropped from the record is cleared
    rec = person(1)
    del rec["business_city"]
    ok(t.apply([Action(ActionKind.UPDATE, "s1", "k1", rec, changed=("business_city",))]))
    assert (
        "businessAddress" not in graph_server.owned(MAILBOX, FOLDER)["k1"]
        or not (graph_server.owned(MAILBOX, FOLDER)["k1"]["businessAddress"])
    )


def test_person_own_contacts_are_never_touched(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(1)]))
    own = graph_server.add_own(MAILBOX, FOLDER, {"displayName": "Person 0001"})
    t2 = make_graph_target()
    t2.open()
    ok(t2.apply([Action(ActionKind.DELETE, "s1", "k1"), create(2)]))
    left = {c["id"]: c for c in graph_server.contacts(MAILBOX, FOLDER)}
    assert own in left and left[own]["displayName"] == "Person 0001" and left[own]["ext"] == {}
    assert set(graph_server.owned(MAILBOX, FOLDER)) == {"k2"}


def test_repeated_create_and_unchanged_record_send_nothing(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    batch = [create(n) for n in range(5)]
    ok(t.apply(batch))
    writes = graph_server.operations.copy()
    t2 = make_graph_target()
    t2.open()
    ok(t2.apply(batch))  # the engine crashed before its commit: same batch again
    assert len(graph_server.owned(MAILBOX, FOLDER)) == 5
    new = graph_server.operations - writes
    writes = [o for o in new if o.startswith("PATCH") or (o.startswith("POST") and "contacts" in o)]
    assert not writes, new


def test_photos_upload_replace_and_remove(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(1, photo=JPEG)]))
    c = graph_server.owned(MAILBOX, FOLDER)["k1"]
    assert c["photo"] == JPEG
    puts = graph_server.operations["PUT users/*/contactFolders/*/contacts/*/photo/$value"]
    ok(t.apply([update(1, ("job_title",), job_title="X", photo=JPEG)]))  # photo unchanged
    assert graph_server.operations["PUT users/*/contactFolders/*/contacts/*/photo/$value"] == puts
    other = JPEG.replace(b"p", b"q")
    ok(t.apply([update(1, ("photo",), job_title="X", photo=other)]))
    assert graph_server.owned(MAILBOX, FOLDER)["k1"]["photo"] == other
    ok(t.apply([update(1, ("photo",), job_title="X")]))
    assert graph_server.owned(MAILBOX, FOLDER)["k1"]["photo"] is None


def test_requests_stay_under_4_mb(graph_server, make_graph_target):
    big = b"\xff\xd8" + bytes(range(256)) * 1600  # about 400 KB each, 550 KB in base64
    t = make_graph_target()
    t.open()
    ok(t.apply([create(n, photo=big + bytes([n])) for n in range(20)]))
    owned = graph_server.owned(MAILBOX, FOLDER)
    assert all(owned[f"k{n}"]["photo"] == big + bytes([n]) for n in range(20))
    assert 3 * 1024 * 1024 < graph_server.largest_body <= 4 * 1024 * 1024


def test_bad_record_fails_alone_and_unknown_field_is_named(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    bad = Action(ActionKind.CREATE, "sx", "kx", {"display_name": "X", "shoe_size": "44"})
    res = t.apply([create(1), bad, create(2)])
    assert [r.ok for r in res] == [True, False, True]
    assert "shoe_size" in res[1].error


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("where", ["http", "inner"])
def test_throttling_without_retry_after_backs_off_and_succeeds(
    graph_server, make_graph_target, status, where
):
    t = make_graph_target()
    t.open()
    graph_server.inject(status, 3, where=where)
    ok(t.apply([create(n) for n in range(3)]))
    assert len(graph_server.owned(MAILBOX, FOLDER)) == 3
    assert t.slept[:3] == [1.0, 2.0, 4.0] or t.slept[:1] == [1.0]
    assert all(s > 0 for s in t.slept)


def test_retry_after_is_honoured(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    graph_server.inject(429, 1, where="inner", retry_after=7)
    ok(t.apply([create(1)]))
    assert t.slept == [7.0]


def test_too_long_retry_after_fails_the_write_not_the_run(graph_server, make_graph_target):
    t = make_graph_target(connection={"max_backoff": 5})
    t.open()
    t.apply([create(0)])  # folder exists now
    graph_server.inject(429, 1, where="inner", retry_after=600)
    res = t.apply([create(1), create(2)])
    assert [r.ok for r in res].count(False) == 1
    assert "429" in next(r.error for r in res if not r.ok)


def test_fanout_to_mailboxes_respects_concurrency(graph_server, make_graph_target):
    boxes = [f"user{n}@contoso.test" for n in range(6)]
    for b in boxes:
        graph_server.add_mailbox(b)
    t = make_graph_target(mailboxes=boxes, connection={"workers": 6})
    t.open()
    res = t.apply([create(n) for n in range(60)])
    ok(res)
    assert res[0].target_id == "k0"  # fan-out: the key stands for the contacts
    for b in boxes:
        assert len(graph_server.owned(b, FOLDER)) == 60
    assert graph_server.violations == []
    assert max(graph_server.max_in_flight.values()) <= 4


def test_fanout_to_group_members_with_a_mailbox(graph_server, make_graph_target):
    graph_server.add_mailbox("a@contoso.test")
    graph_server.add_mailbox("b@contoso.test")
    graph_server.add_mailbox("nobox@contoso.test", enabled=False)
    graph_server.add_group(
        "staff@contoso.test", ["a@contoso.test", "b@contoso.test", "nobox@contoso.test"]
    )
    t = make_graph_target(group="staff@contoso.test")
    t.open()
    ok(t.apply([create(1), create(2)]))
    assert set(graph_server.owned("a@contoso.test", FOLDER)) == {"k1", "k2"}
    assert set(graph_server.owned("b@contoso.test", FOLDER)) == {"k1", "k2"}
    assert graph_server.contacts("nobox@contoso.test") == []


def test_one_failing_mailbox_fails_the_actions_not_the_others(graph_server, make_graph_target):
    graph_server.add_mailbox("a@contoso.test")
    graph_server.add_mailbox("off@contoso.test", enabled=False)
    t = make_graph_target(mailboxes=["a@contoso.test", "off@contoso.test"])
    t.open()
    res = t.apply([create(1)])
    assert not res[0].ok and "off@contoso.test" in res[0].error
    assert set(graph_server.owned("a@contoso.test", FOLDER)) == {"k1"}


def test_missing_folder_without_create_is_a_target_error(graph_server, make_graph_target):
    t = make_graph_target(create_folder=False)
    t.open()
    with pytest.raises(TargetError) as err:
        t.apply([create(1)])
    assert "does not exist" in str(err.value)


def test_permission_missing_is_refused(graph_tls, tmp_path):
    from tests.servers.fixtures_graph import graph_target
    from tests.servers.graph_emulator import GraphEmulator

    emu = GraphEmulator(graph_tls, roles=("User.Read.All",)).start()
    try:
        emu.add_mailbox(MAILBOX)
        t = graph_target(emu, tmp_path)
        t.open()
        with pytest.raises(TargetError) as err:
            t.apply([create(1)])
        assert "403" in str(err.value) and "Bearer" not in str(err.value)
    finally:
        emu.stop()


def test_expired_access_token_is_renewed(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(1)]))
    graph_server.expire_access_tokens()
    ok(t.apply([create(2)]))
    assert set(graph_server.owned(MAILBOX, FOLDER)) == {"k1", "k2"}
    assert graph_server.token_requests == 2


def test_no_secret_or_token_in_logs(graph_server, make_graph_target, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    t = make_graph_target()
    t.open()
    graph_server.inject(429, 1, where="http")
    ok(t.apply([create(1, photo=JPEG)]))
    tokens = {h[len("Bearer ") :] for h in graph_server.auth_headers_seen}
    assert tokens
    for secret in (graph_server.client_secret, *tokens):
        assert secret not in caplog.text
    assert "Authorization" not in caplog.text


def test_a_refused_request_fails_alone_its_chain_is_resent(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(0)]))  # the folder exists
    graph_server.inject(400, 1, where="inner")  # the first request of the next batch
    res = t.apply([create(n) for n in range(1, 13)])
    assert [r.ok for r in res].count(False) == 1 and not res[0].ok
    assert len(graph_server.owned(MAILBOX, FOLDER)) == 12  # k0 + 11
    assert t.slept == []  # a failed dependency is not throttling: no wait


def test_largest_retry_after_of_a_batch_is_waited(graph_server, make_graph_target):
    t = make_graph_target()
    t.open()
    ok(t.apply([create(0)]))
    graph_server.inject(429, 1, where="inner", retry_after=7)
    graph_server.inject(429, 1, where="inner", retry_after=10)
    ok(t.apply([create(1), create(2)]))
    assert t.slept == [10.0]
