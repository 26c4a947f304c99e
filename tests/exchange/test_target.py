"""ExchangeTarget against the EWS emulator, with the real exchangelib client.

Every assertion reads what the emulator STORED, never what the client believes.
"""

from __future__ import annotations

import pytest

from syncd.contracts import Action, ActionKind
from syncd.errors import ConnectionFailed, TargetError

FOLDER = "Contacts/Company Directory"


def create(key: str, **fields) -> Action:
    return Action(ActionKind.CREATE, source_id=f"src-{key}", key=key, fields=fields)


def update(key: str, changed: tuple[str, ...], target_id: str | None = None, **fields) -> Action:
    return Action(
        ActionKind.UPDATE,
        source_id=f"src-{key}",
        key=key,
        fields=fields,
        changed=changed,
        target_id=target_id,
    )


def delete(key: str, target_id: str | None = None) -> Action:
    return Action(ActionKind.DELETE, source_id=f"src-{key}", key=key, target_id=target_id)


def person(n: int, **extra) -> dict:
    base = {
        "display_name": f"Person {n}",
        "given_name": "Person",
        "surname": str(n),
        "email_addresses": [f"p{n}@example.com"],
        "department": "Sales",
    }
    base.update(extra)
    return base


def stored(emu, folder: str = FOLDER) -> dict[str, dict]:
    """key -> stored item dict, for items carrying the syncd tag."""
    out = {}
    for item in emu.items_in(folder):
        d = emu.item_dict(item)
        key = d["extended"].get("syncd-key")
        if key is not None:
            assert key not in out, f"key {key} stored twice"
            out[key] = d
    return out


def test_open_creates_folder_path(ews_server, make_exchange_target):
    assert ews_server.folder_by_path(FOLDER) is None
    t = make_exchange_target(folder="Contacts/Company Directory/Sales")
    t.open()
    f = ews_server.folder_by_path("Contacts/Company Directory/Sales")
    assert f is not None and f.folder_class == "IPF.Contact"
    # a second open finds it instead of creating another
    t2 = make_exchange_target(folder="Contacts/Company Directory/Sales")
    t2.open()
    assert ews_server.operations["CreateFolder"] == 2
    assert len([x for x in ews_server.folders.values() if x.name == "Sales"]) == 1


def test_missing_folder_without_create_is_a_clear_error(make_exchange_target):
    t = make_exchange_target(folder="Contacts/Nope", create_folder=False)
    with pytest.raises(TargetError, match="'Contacts/Nope' does not exist"):
        t.open()


def test_public_folder_root(ews_server, make_exchange_target):
    t = make_exchange_target(folder="public:/Company/Contacts")
    t.open()
    res = t.apply([create("k1", **person(1))])
    assert res[0].ok
    items = ews_server.items_in("public:/Company/Contacts")
    assert [ews_server.item_dict(i)["DisplayName"] for i in items] == ["Person 1"]


def test_create_all_contact_fields(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    photo = b"\xff\xd8\xff\xe0fake-jpeg\x00\x01"
    rec = {
        "display_name": "Zoë Ångström",
        "given_name": "Zoë",
        "surname": "Ångström",
        "company_name": "Example AG",
        "department": "Forschung",
        "job_title": "Ingenieurin",
        "office": "B-12",
        "email_addresses": ["zoe@example.com", "z.angstrom@example.org"],
        "business_phone": "+49 30 1234",
        "mobile_phone": ["+49 170 555", "+49 171 666"],
        "home_phone": None,
        "business_street": "Hauptstraße 1",
        "business_city": "Berlin",
        "business_postal_code": "10115",
        "business_country": "Germany",
        "notes": "hired 2020",
        "photo": photo,
    }
    res = t.apply([create("uuid-1", **rec)])
    assert res[0].ok and res[0].target_id
    d = stored(ews_server)["uuid-1"]
    assert d["_id"] == res[0].target_id
    assert d["DisplayName"] == "Zoë Ångström"
    assert d["GivenName"] == "Zoë" and d["Surname"] == "Ångström"
    assert d["CompanyName"] == "Example AG" and d["Department"] == "Forschung"
    assert d["JobTitle"] == "Ingenieurin" and d["OfficeLocation"] == "B-12"
    assert d["EmailAddresses"] == {
        "EmailAddress1": "zoe@example.com",
        "EmailAddress2": "z.angstrom@example.org",
    }
    assert d["PhoneNumbers"] == {"BusinessPhone": "+49 30 1234", "MobilePhone": "+49 170 555"}
    assert d["PhysicalAddresses"] == {
        "Business": {
            "Street": "Hauptstraße 1",
            "City": "Berlin",
            "PostalCode": "10115",
            "CountryOrRegion": "Germany",
        }
    }
    assert d["Body"] == "hired 2020"
    assert [(a["content"], a["is_contact_photo"]) for a in d["attachments"]] == [(photo, True)]


def test_update_writes_only_changed_fields(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([create("k1", **person(1, job_title="Clerk", business_phone="111"))])
    tid = res[0].target_id
    item_id = stored(ews_server)["k1"]["_id"]
    # Someone edits the department on the server; our update only changes job_title.
    ews_server.items[item_id].elem.find(
        "{http://schemas.microsoft.com/exchange/services/2006/types}Department"
    ).text = "Edited by hand"
    rec = person(1, job_title="Manager", business_phone=None)
    res = t.apply([update("k1", ("job_title", "business_phone"), tid, **rec)])
    assert res[0].ok and res[0].target_id == tid
    d = stored(ews_server)["k1"]
    assert d["JobTitle"] == "Manager"
    assert "PhoneNumbers" not in d  # emptied field deleted on the server
    assert d["Department"] == "Edited by hand"  # not in `changed`: not written
    assert d["_id"] == item_id  # same item, updated in place


def test_delete(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([create("k1", **person(1)), create("k2", **person(2))])
    res = t.apply([delete("k1", res[0].target_id)])
    assert res[0].ok
    assert sorted(stored(ews_server)) == ["k2"]
    # deleting again (crash before commit) succeeds
    assert t.apply([delete("k1")])[0].ok


def test_hand_made_items_survive(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    hand = ews_server.add_contact_by_hand(FOLDER, "Mum", "mum@example.net")
    res = t.apply([create("k1", **person(1)), create("k2", **person(2))])
    # Even an action pointing at the hand-made item's id must not touch it.
    t.apply(
        [
            update("k1", ("department",), hand, **person(1, department="X")),
            delete("k2", hand),
            delete("Mum", hand),
        ]
    )
    assert hand in ews_server.items
    d = ews_server.item_dict(hand)
    assert d["DisplayName"] == "Mum" and d["extended"] == {}
    assert "Department" not in d
    assert sorted(stored(ews_server)) == ["k1"]
    assert stored(ews_server)["k1"]["Department"] == "X"
    assert stored(ews_server)["k1"]["_id"] == res[0].target_id


def test_create_after_crash_updates_instead_of_duplicating(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    first = t.apply([create("k1", **person(1, job_title="Old"))])
    # The engine crashed before committing: the same key comes again as a create.
    t2 = make_exchange_target()
    t2.open()
    again = t2.apply([create("k1", **person(1, job_title="New"))])
    assert again[0].ok and again[0].target_id == first[0].target_id
    assert again[0].detail == "existing item found by key and updated"
    s = stored(ews_server)  # raises on a duplicate key
    assert list(s) == ["k1"] and s["k1"]["JobTitle"] == "New"


def test_duplicates_of_a_key_are_cleaned(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    t.apply([create("k1", **person(1))])
    # Simulate a create whose answer was lost and was sent again.
    item = ews_server.items_in(FOLDER)[0]
    import copy

    from tests.servers.ews_emulator import Item

    dup = Item("dup-id", "ck", item.folder_id, copy.deepcopy(item.elem), seq=999)
    ews_server.items["dup-id"] = dup
    res = t.apply([update("k1", ("department",), **person(1, department="Ops"))])
    assert res[0].ok
    s = stored(ews_server)
    assert s["k1"]["Department"] == "Ops" and "dup-id" not in ews_server.items


def test_update_of_item_deleted_by_hand_recreates(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([create("k1", **person(1))])
    del ews_server.items[res[0].target_id]
    res2 = t.apply([update("k1", ("department",), res[0].target_id, **person(1, department="Z"))])
    assert res2[0].ok and res2[0].target_id != res[0].target_id
    assert "re-created" in res2[0].detail
    assert stored(ews_server)["k1"]["Department"] == "Z"


def test_photo_replaced_and_removed(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    t.apply([create("k1", **person(1, photo=b"one"))])
    t.apply([update("k1", ("photo",), **person(1, photo=b"two"))])
    atts = stored(ews_server)["k1"]["attachments"]
    assert [a["content"] for a in atts] == [b"two"]
    t.apply([update("k1", ("photo",), **person(1, photo=None))])
    assert stored(ews_server)["k1"]["attachments"] == []
    assert "syncd-photo-sha256" not in stored(ews_server)["k1"]["extended"]


def test_unchanged_photo_is_not_uploaded_again(ews_server, make_exchange_target):
    import hashlib

    t = make_exchange_target()
    t.open()
    photo = b"\xff\xd8 photo bytes"
    t.apply([create("k1", **person(1, photo=photo))])
    d = stored(ews_server)["k1"]
    assert d["extended"]["syncd-photo-sha256"] == hashlib.sha256(photo).hexdigest()
    ews_server.reset_counters()
    # a repeated create (crash recovery) and a repeated photo update: nothing to upload
    t.apply([create("k1", **person(1, photo=photo, job_title="Boss"))])
    t.apply([update("k1", ("photo",), **person(1, photo=photo, job_title="Boss"))])
    assert "CreateAttachment" not in ews_server.operations
    assert "DeleteAttachment" not in ews_server.operations
    d = stored(ews_server)["k1"]
    assert d["JobTitle"] == "Boss" and [a["content"] for a in d["attachments"]] == [photo]


def test_throttling_backs_off_as_told(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    ews_server.inject_busy(3, back_off_ms=1500)
    res = t.apply([create("k1", **person(1)), create("k2", **person(2))])
    assert all(r.ok for r in res)
    assert t.slept == [1.5, 1.5, 1.5]  # BackOffMilliseconds honoured
    assert sorted(stored(ews_server)) == ["k1", "k2"]


def test_throttling_gives_up_after_bounded_retries(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    ews_server.inject_busy(100, back_off_ms=10)
    with pytest.raises(TargetError, match="stayed busy"):
        t.apply([create("k1", **person(1))])
    assert len(t.slept) == t.connection.max_retries
    assert stored(ews_server) == {}


def test_wrong_password_is_connection_failed_without_password(ews_server, make_exchange_target):
    t = make_exchange_target(password="Totally-Wrong-9")
    with pytest.raises(ConnectionFailed) as err:
        t.open()
    msg = str(err.value)
    assert "401" in msg and "Totally-Wrong-9" not in msg and "\n" not in msg
    assert ews_server.operations.total() == 0  # nothing got past authentication


def test_401_mid_run(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    ews_server.inject_unauthorized(1)
    with pytest.raises(ConnectionFailed, match="401"):
        t.apply([create("k1", **person(1))])
    assert stored(ews_server) == {}


def test_change_key_conflict_is_retried_once(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    t.apply([create("k1", **person(1)), create("k2", **person(2))])
    ews_server.inject_conflict(1)
    res = t.apply(
        [
            update("k1", ("department",), **person(1, department="A")),
            update("k2", ("department",), **person(2, department="B")),
        ]
    )
    assert [r.ok for r in res] == [True, True]
    s = stored(ews_server)
    assert s["k1"]["Department"] == "A" and s["k2"]["Department"] == "B"
    # a conflict that persists fails that action only, with a reason: both conflict,
    # both are retried, k1 conflicts again
    ews_server.inject_conflict(3)
    res = t.apply(
        [
            update("k1", ("department",), **person(1, department="C")),
            update("k2", ("department",), **person(2, department="D")),
        ]
    )
    assert [r.ok for r in res] == [False, True]
    assert "conflict" in res[0].error
    s = stored(ews_server)
    assert s["k1"]["Department"] == "A" and s["k2"]["Department"] == "D"


def test_unknown_field_fails_that_record_only(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([create("k1", **person(1, shoe_size="42")), create("k2", **person(2))])
    assert not res[0].ok and "shoe_size" in res[0].error
    assert res[1].ok
    assert sorted(stored(ews_server)) == ["k2"]


def test_unicode_round_trip(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    names = ["東京 山田太郎", "مرحبا שלום", "Ops 👩‍💻 🇩🇪", "Jose\u0301"]
    t.apply([create(f"u{n}", **person(n, display_name=s)) for n, s in enumerate(names)])
    s = stored(ews_server)
    assert [s[f"u{n}"]["DisplayName"] for n in range(len(names))] == names


def test_batching_requests(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    ews_server.reset_counters()
    t.apply([create(f"k{n}", **person(n)) for n in range(250)])
    assert len(stored(ews_server)) == 250
    # 3 chunks of <= 100: one FindItem and one CreateItem each
    assert dict(ews_server.operations) == {"FindItem": 3, "CreateItem": 3}
    ews_server.reset_counters()
    t.apply([delete(f"k{n}") for n in range(250)])
    assert stored(ews_server) == {}
    assert dict(ews_server.operations) == {"FindItem": 3, "DeleteItem": 3}


def test_distribution_list_members(ews_server, make_exchange_target):
    people = make_exchange_target()
    people.open()
    res = people.apply([create("p1", **person(1)), create("p2", **person(2))])
    ids = [r.target_id for r in res]
    dls = make_exchange_target(kind="distribution_list")
    dls.open()
    rec = {"display_name": "Sales Team", "members": [ids[0], "ext@partner.example", ids[1]]}
    res = dls.apply([create("g1", **rec)])
    assert res[0].ok
    items = {
        ews_server.item_dict(i)["extended"].get("syncd-key"): i.id
        for i in ews_server.items_in(FOLDER)
    }
    dl = ews_server.item_dict(items["g1"])
    assert dl["_kind"] == "DistributionList" and dl["DisplayName"] == "Sales Team"
    assert [
        (m.get("MailboxType"), m.get("ItemId") or m.get("EmailAddress")) for m in dl["Members"]
    ] == [
        ("Contact", ids[0]),
        ("OneOff", "ext@partner.example"),
        ("Contact", ids[1]),
    ]
    # membership change: p1 leaves
    res = dls.apply(
        [update("g1", ("members",), res[0].target_id, display_name="Sales Team", members=[ids[1]])]
    )
    assert res[0].ok
    dl = ews_server.item_dict(items["g1"])
    assert [m.get("ItemId") for m in dl["Members"]] == [ids[1]]
    # the contacts job's lookups never see the DL and vice versa: same key space, same
    # folder, different kinds
    assert people.apply([delete("g1")])[0].ok
    assert items["g1"] in ews_server.items
    # everyone leaves: the list stays, empty
    dls.apply([update("g1", ("members",), display_name="Sales Team", members=[])])
    assert "Members" not in ews_server.item_dict(items["g1"])


def test_unimplemented_operation_gets_a_soap_fault(ews_server, make_exchange_target):
    from exchangelib.errors import ErrorInvalidOperation

    t = make_exchange_target()
    t.open()
    before = dict(ews_server.operations)
    with pytest.raises(ErrorInvalidOperation, match="does not implement the operation EmptyFolder"):
        t.folder.empty()
    assert ews_server.operations["EmptyFolder"] == 1
    # and a raw request of an unknown operation gets an HTTP 500 SOAP Fault
    status, body = ews_server.handle_soap(
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
        b'<m:ResolveNames xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"/>'
        b"</s:Body></s:Envelope>"
    )
    assert status == 500 and b"<s:Fault>" in body and b"ErrorInvalidOperation" in body
    assert {k: v for k, v in ews_server.operations.items() if k in before} == before


def test_ntlm_authentication(ews_server, make_exchange_target):
    t = make_exchange_target(auth="ntlm", username=f"EXAMPLE\\{ews_server.username}")
    t.open()
    assert t.apply([create("k1", **person(1))])[0].ok
    assert list(stored(ews_server)) == ["k1"]
    assert ews_server.auth_schemes["ntlm"] >= 1 and ews_server.auth_schemes["basic"] == 0
    bad = make_exchange_target(
        auth="ntlm", username=f"EXAMPLE\\{ews_server.username}", password="nope-Nope-1"
    )
    with pytest.raises(ConnectionFailed, match="401"):
        bad.open()


def test_long_back_off_stops_the_run_instead_of_waiting(ews_server, make_exchange_target):
    t = make_exchange_target(connection={"max_backoff": 30})
    t.open()
    ews_server.inject_busy(1, back_off_ms=300_000)  # "come back in 5 minutes"
    with pytest.raises(TargetError, match="asks to back off 300s"):
        t.apply([create("k1", **person(1))])
    assert t.slept == []  # never retried sooner than the server asked
    assert stored(ews_server) == {}


def test_impersonation_header(ews_server, make_exchange_target):
    t = make_exchange_target(connection={"impersonation": True})
    t.open()
    assert t.apply([create("k1", **person(1))])[0].ok
    assert ews_server.impersonated[ews_server.mailbox] >= 3
    plain = make_exchange_target(folder="Contacts/Other")
    ews_server.impersonated.clear()
    plain.open()
    assert not ews_server.impersonated


def test_batch_size_is_items_per_request(ews_server, make_exchange_target):
    t = make_exchange_target(batch_size=10)
    t.open()
    assert t.batch_size == 10
    ews_server.reset_counters()
    t.apply([create(f"k{n}", **person(n)) for n in range(25)])
    assert dict(ews_server.operations) == {"FindItem": 3, "CreateItem": 3}
    assert len(stored(ews_server)) == 25


def test_two_targets_share_one_protocol_safely(ews_server, make_exchange_target):
    people = make_exchange_target()
    groups = make_exchange_target(kind="distribution_list")
    people.open()
    groups.open()
    assert people.account.protocol is groups.account.protocol  # exchangelib's cache
    people.close()  # must not pull the sessions from under the other target
    res = groups.apply([create("g1", display_name="G", members=["a@example.com"])])
    assert res[0].ok
    groups.close()
    people.close()  # twice is fine


def test_big_photos_are_spread_over_requests(ews_server, make_exchange_target, monkeypatch):
    from syncd.connectors.exchange import target as target_mod

    monkeypatch.setattr(target_mod, "_MAX_REQUEST_PHOTO_BYTES", 2500)
    t = make_exchange_target()
    t.open()
    photos = {n: bytes([n]) * 1000 for n in range(5)}
    ews_server.reset_counters()
    res = t.apply([create(f"k{n}", **person(n, photo=photos[n])) for n in range(5)])
    assert all(r.ok for r in res)
    assert ews_server.operations["CreateItem"] == 3  # 2 + 2 + 1 photos of 1000 bytes
    s = stored(ews_server)
    assert [s[f"k{n}"]["attachments"][0]["content"] for n in range(5)] == list(photos.values())


@pytest.mark.parametrize("refusal", [None, "fault", "item"])
def test_photos_by_create_attachment(ews_server, make_exchange_target, refusal):
    """inline_photos: false, or a server refusing inline photos (fault or per item):
    every photo still arrives, by one CreateAttachment per contact."""
    import hashlib

    ews_server.refuse_inline_attachments = refusal
    t = make_exchange_target(inline_photos=refusal is not None)
    t.open()
    photos = {n: f"photo-{n}".encode() for n in range(3)}
    res = t.apply(
        [create(f"k{n}", **person(n, photo=photos[n])) for n in range(3)]
        + [create("k9", **person(9))]
    )
    assert all(r.ok for r in res), [r.error for r in res]
    assert t.inline_photos is False
    s = stored(ews_server)
    for n, photo in photos.items():
        assert [a["content"] for a in s[f"k{n}"]["attachments"]] == [photo]
        assert s[f"k{n}"]["extended"]["syncd-photo-sha256"] == hashlib.sha256(photo).hexdigest()
    assert s["k9"]["attachments"] == []
    assert ews_server.operations["CreateAttachment"] == 3
    assert len(ews_server.items_in(FOLDER)) == 4  # nothing created twice


def test_http_503_is_retried_after_a_pause(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    ews_server.inject_status(503, 2)
    res = t.apply([create("k1", **person(1))])
    assert res[0].ok
    assert len(t.slept) == 2 and all(s > 0 for s in t.slept)
    assert list(stored(ews_server)) == ["k1"]


def test_existing_non_contacts_folder_is_used_with_a_warning(
    ews_server, make_exchange_target, caplog
):
    ews_server.make_folder("Contacts/Mailish", folder_class="IPF.Note")
    t = make_exchange_target(folder="Contacts/Mailish")
    with caplog.at_level("WARNING"):
        t.open()
    assert "not a contacts folder" in caplog.text
    assert t.apply([create("k1", **person(1))])[0].ok
    assert len(ews_server.items_in("Contacts/Mailish")) == 1
    assert sum(1 for f in ews_server.folders.values() if f.name == "Mailish") == 1


def test_folder_outside_contacts(ews_server, make_exchange_target):
    t = make_exchange_target(folder="Address Book/People")
    t.open()
    assert t.apply([create("k1", **person(1))])[0].ok
    t2 = make_exchange_target(folder="Address Book/People")
    t2.open()
    assert t2.apply([update("k1", ("job_title",), **person(1, job_title="Chief"))])[0].ok
    [item] = ews_server.items_in("Address Book/People")
    d = ews_server.item_dict(item)
    assert d["JobTitle"] == "Chief" and d["extended"]["syncd-key"] == "k1"
    top = ews_server.folder_by_path("Address Book")
    assert top is not None and top.folder_class == "IPF.Contact"
