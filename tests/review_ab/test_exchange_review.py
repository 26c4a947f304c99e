"""Adversarial review of the Exchange target, against the EWS emulator with the real
exchangelib client. Assertions read what the emulator stored or what was logged."""

from __future__ import annotations

import base64
import logging

import pytest

from syncd.contracts import Action, ActionKind

FOLDER = "Contacts/Company Directory"


def _create(key: str, **fields) -> Action:
    return Action(ActionKind.CREATE, source_id=f"src-{key}", key=key, fields=fields)


@pytest.mark.parametrize("auth", ["basic", "ntlm"])
def test_debug_logging_never_shows_the_password(ews_server, make_exchange_target, caplog, auth):
    """exchangelib logs every request's headers at DEBUG: Basic auth carries the
    password (base64), NTLM a crackable response. syncd's `--log-level debug` must not
    write them."""
    caplog.set_level(logging.DEBUG)
    target = make_exchange_target(
        auth=auth, username=f"EXAMPLE\\{ews_server.username}" if auth == "ntlm" else None
    )
    target.open()
    try:
        res = target.apply([_create("k1", display_name="Ann")])
        assert res[0].ok, res[0].error
    finally:
        target.close()
    secret = ews_server.password
    basic = base64.b64encode(f"{ews_server.username}:{secret}".encode()).decode()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Request headers" in text  # exchangelib did log its request details
    assert secret not in text
    assert basic not in text
    assert "TlRMTVNT" not in text  # base64 of "NTLMSSP": an NTLM handshake message
    assert "Authorization" not in text or "[redacted]" in text


def _update(key, changed, target_id=None, **fields) -> Action:
    return Action(
        ActionKind.UPDATE, f"src-{key}", key, fields=fields, changed=changed, target_id=target_id
    )


def _delete(key, target_id=None) -> Action:
    return Action(ActionKind.DELETE, f"src-{key}", key, target_id=target_id)


def _owned(emu, folder: str = FOLDER) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for item in emu.items_in(folder):
        d = emu.item_dict(item)
        if "syncd-key" in d["extended"]:
            out.setdefault(d["extended"]["syncd-key"], []).append(d)
    return out


def test_four_email_addresses_keep_three(ews_server, make_exchange_target, caplog):
    t = make_exchange_target()
    t.open()
    mails = [f"a{n}@example.com" for n in range(1, 5)]
    res = t.apply([_create("k", display_name="Ann", email_addresses=mails)])
    assert res[0].ok, res[0].error
    item = _owned(ews_server)["k"][0]
    assert item["EmailAddresses"] == {
        "EmailAddress1": "a1@example.com",
        "EmailAddress2": "a2@example.com",
        "EmailAddress3": "a3@example.com",
    }
    assert "dropping 1 more" in caplog.text
    # the fourth goes when the list shrinks, the others move up
    res = t.apply(
        [_update("k", ("email_addresses",), display_name="Ann", email_addresses=mails[1:3])]
    )
    assert res[0].ok, res[0].error
    assert _owned(ews_server)["k"][0]["EmailAddresses"] == {
        "EmailAddress1": "a2@example.com",
        "EmailAddress2": "a3@example.com",
    }
    t.close()


def test_every_phone_kind_and_emptying_one(ews_server, make_exchange_target):
    from syncd.connectors.exchange.fields import PHONE_FIELDS

    t = make_exchange_target()
    t.open()
    phones = {f: f"+41 44 000 {n:02d}" for n, f in enumerate(PHONE_FIELDS)}
    res = t.apply([_create("k", display_name="Ann", **phones)])
    assert res[0].ok, res[0].error
    stored = _owned(ews_server)["k"][0]["PhoneNumbers"]
    assert stored == {PHONE_FIELDS[f]: v for f, v in phones.items()}
    less = dict(phones, mobile_phone=None)
    res = t.apply([_update("k", ("mobile_phone",), display_name="Ann", **less)])
    assert res[0].ok, res[0].error
    stored = _owned(ews_server)["k"][0]["PhoneNumbers"]
    assert "MobilePhone" not in stored and len(stored) == len(PHONE_FIELDS) - 1
    t.close()


def test_long_and_unicode_values(ews_server, make_exchange_target):
    t = make_exchange_target(folder="Contacts/Société Δ 名簿")
    t.open()
    note = "Zeile ü € 𝄞\n" * 5000
    res = t.apply([_create("k", display_name="Zoë 𝄞 " + "x" * 250, notes=note)])
    assert res[0].ok, res[0].error
    item = _owned(ews_server, "Contacts/Société Δ 名簿")["k"][0]
    assert item["DisplayName"] == "Zoë 𝄞 " + "x" * 250
    assert item["Body"] == note
    t.close()
    # a second run finds the folder again instead of creating a twin
    t = make_exchange_target(folder="Contacts/Société Δ 名簿")
    t.open()
    t.close()
    contacts = ews_server.folder_by_path("Contacts")
    twins = [
        f
        for f in ews_server.folders.values()
        if f.parent_id == contacts.id and f.name == "Société Δ 名簿"
    ]
    assert len(twins) == 1


def test_folder_name_with_a_slash(ews_server, make_exchange_target):
    """Exchange allows '/' in a folder name ("Sales/Marketing"); the path writes it as
    '\\/'. Without that the target made two nested folders and wrote there."""
    contacts = ews_server.folder_by_path("Contacts")
    real = ews_server._add_folder(contacts.id, "Sales/Marketing", "IPF.Contact")
    t = make_exchange_target(folder="Contacts/Sales\\/Marketing")
    t.open()
    res = t.apply([_create("k", display_name="Ann")])
    t.close()
    assert res[0].ok, res[0].error
    assert [i.folder_id for i in ews_server.items.values()] == [real.id]
    assert ews_server.folder_by_path("Contacts/Sales") is None


def test_hand_made_twin_and_moved_item_are_never_touched(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([_create("k", display_name="Ann Smith", department="Sales")])
    assert res[0].ok
    twin = ews_server.add_contact_by_hand(FOLDER, "Ann Smith", "ann@private.example")
    # the user moves the synced contact to another folder (EWS MoveItem: a new id)
    other = ews_server.make_folder("Contacts/Mine")
    moved = ews_server.items.pop(res[0].target_id)
    moved.id, moved.folder_id = "moved-by-user", other.id
    ews_server.items[moved.id] = moved
    before_twin = ews_server.item_dict(twin)
    before_moved = ews_server.item_dict(moved.id)

    res2 = t.apply(
        [
            _update(
                "k", ("department",), res[0].target_id, display_name="Ann Smith", department="Ops"
            )
        ]
    )
    assert res2[0].ok and "re-created" in (res2[0].detail or "")
    res3 = t.apply([_delete("k", res2[0].target_id)])
    assert res3[0].ok
    t.close()
    assert ews_server.item_dict(twin) == before_twin
    assert ews_server.item_dict(moved.id) == before_moved
    assert res2[0].target_id not in ews_server.items


def test_duplicate_cleanup_keeps_the_item_the_state_points_at(ews_server, make_exchange_target):
    """Two items carry one key (a user copied a synced contact back into the folder, a
    create answer was lost): the one syncd's state and the lists' member ids point at
    stays; the other goes."""
    import copy

    from tests.servers.ews_emulator import Item

    t = make_exchange_target()
    t.open()
    res = t.apply([_create("k", display_name="Ann")])
    mine = ews_server.items[res[0].target_id]
    older = Item("older-copy", "ck", mine.folder_id, copy.deepcopy(mine.elem), seq=0)
    ews_server.items[older.id] = older
    res2 = t.apply(
        [_update("k", ("department",), res[0].target_id, display_name="Ann", department="Ops")]
    )
    t.close()
    assert res2[0].ok and res2[0].target_id == res[0].target_id
    assert set(ews_server.items) == {res[0].target_id}
    # the other one may be a person's copy: recoverable, not destroyed
    assert set(ews_server.recoverable) == {"older-copy"}


def test_deleted_records_are_hard_deleted(ews_server, make_exchange_target):
    t = make_exchange_target()
    t.open()
    res = t.apply([_create("k", display_name="Ann")])
    assert t.apply([_delete("k", res[0].target_id)])[0].ok
    t.close()
    assert ews_server.items == {} and ews_server.recoverable == {}


def test_distribution_list_of_5000_members(ews_server, make_exchange_target):
    people = make_exchange_target()
    people.open()
    made = people.apply([_create(f"p{n}", display_name=f"P {n}") for n in range(100)])
    people.close()
    ids = [r.target_id for r in made]
    members = ids + [f"ext{n}@partner.example" for n in range(4900)]
    dls = make_exchange_target(kind="distribution_list")
    dls.open()
    ews_server.reset_counters()
    res = dls.apply([_create("g", display_name="Everyone", members=members)])
    assert res[0].ok, res[0].error
    assert ews_server.operations["CreateItem"] == 1
    res = dls.apply(
        [_update("g", ("members",), res[0].target_id, display_name="Everyone", members=members[1:])]
    )
    dls.close()
    assert res[0].ok, res[0].error
    dl = _owned(ews_server)["g"][0]
    assert len(dl["Members"]) == 4999 and dl["Members"][0]["ItemId"] == ids[1]


def test_doctor_hint_for_a_missing_ca_file(ews_server, make_exchange_target, tmp_path):
    t = make_exchange_target(connection={"ca_file": str(tmp_path / "nope.pem")})
    checks = t.check()
    assert checks[0].ok is False and "ca_file" in checks[0].detail
    assert "folder" not in checks[0].hint and "ca_file" in checks[0].hint


def test_per_item_server_busy_is_backed_off_not_failed(ews_server, make_exchange_target):
    """A throttled mailbox may answer part of a batch item by item with ErrorServerBusy
    (HTTP 200, ResponseClass=Error): those items were not processed. They are retried
    after the back-off, not reported as failed changes."""
    t = make_exchange_target()
    t.open()
    ews_server.inject_item_busy(2, back_off_ms=700)
    made = t.apply([_create(f"k{n}", display_name=f"P {n}") for n in range(4)])
    assert [r.ok for r in made] == [True] * 4, [r.error for r in made]
    assert len(_owned(ews_server)) == 4
    ews_server.inject_item_busy(1)
    upd = t.apply(
        [_update("k0", ("department",), made[0].target_id, display_name="P 0", department="X")]
    )
    assert upd[0].ok, upd[0].error
    assert _owned(ews_server)["k0"][0]["Department"] == "X"
    ews_server.inject_item_busy(1)
    gone = t.apply([_delete("k1", made[1].target_id)])
    assert gone[0].ok, gone[0].error
    assert "k1" not in _owned(ews_server)
    t.close()
    assert t.slept == [0.7, 0.05, 0.05]  # what each busy answer asked for


def test_update_keeps_phones_and_addresses_the_mapping_does_not_manage(
    ews_server, make_exchange_target
):
    """A person adds a car phone and a home address to a synced contact in Outlook. When
    the directory changes the business phone and city, only those are written: the car
    phone and home address stay (exchangelib alone deletes every other label of an
    indexed property it updates)."""
    from lxml import etree

    from tests.servers.ews_emulator import T

    t = make_exchange_target()
    t.open()
    rec = {
        "display_name": "Ann",
        "business_phone": "+41 1",
        "mobile_phone": "+41 2",
        "business_city": "Bern",
        "business_street": "Main 1",
    }
    res = t.apply([_create("k", **rec)])
    item = ews_server.items[res[0].target_id]
    phones = item.elem.find(f"{{{T}}}PhoneNumbers")
    etree.SubElement(phones, f"{{{T}}}Entry", Key="CarPhone").text = "+41 9"
    addrs = item.elem.find(f"{{{T}}}PhysicalAddresses")
    home = etree.SubElement(addrs, f"{{{T}}}Entry", Key="Home")
    etree.SubElement(home, f"{{{T}}}City").text = "Thun"
    business = next(e for e in addrs if e.get("Key") == "Business")
    etree.SubElement(business, f"{{{T}}}State").text = "BE"  # a part the mapping leaves out

    new = dict(rec, business_phone="+41 3", mobile_phone=None, business_city="Biel")
    changed = ("business_phone", "mobile_phone", "business_city")
    res2 = t.apply([_update("k", changed, res[0].target_id, **new)])
    t.close()
    assert res2[0].ok, res2[0].error
    got = _owned(ews_server)["k"][0]
    assert got["PhoneNumbers"] == {"BusinessPhone": "+41 3", "CarPhone": "+41 9"}
    assert got["PhysicalAddresses"]["Home"] == {"City": "Thun"}
    assert got["PhysicalAddresses"]["Business"] == {
        "Street": "Main 1",
        "City": "Biel",
        "State": "BE",
    }


def test_big_lists_are_spread_over_requests(ews_server, make_exchange_target, monkeypatch):
    """Distribution lists of thousands of members: a batch of them would exceed the EWS
    request size limit (64 MiB, here lowered with the target's budget to keep the test
    small), and one refused request failed the whole batch, run after run. Creates and
    updates are split by their estimated size."""
    import syncd.connectors.exchange.target as target_mod

    monkeypatch.setattr(target_mod, "_MAX_REQUEST_PHOTO_BYTES", 400_000)
    ews_server.max_request_bytes = 600_000
    members = [f"member{n:05d}@partner.example" for n in range(1500)]
    dls = make_exchange_target(kind="distribution_list")
    dls.open()
    ews_server.reset_counters()
    made = dls.apply([_create(f"g{n}", display_name=f"G {n}", members=members) for n in range(3)])
    assert [r.ok for r in made] == [True] * 3, [r.error for r in made]
    assert ews_server.operations["CreateItem"] == 3
    upd = dls.apply(
        [
            _update(
                f"g{n}", ("members",), made[n].target_id, display_name=f"G {n}", members=members[1:]
            )
            for n in range(3)
        ]
    )
    dls.close()
    assert [r.ok for r in upd] == [True] * 3, [r.error for r in upd]
    assert ews_server.operations["UpdateItem"] == 3
    assert all(len(d[0]["Members"]) == 1499 for d in _owned(ews_server).values())


def test_http_error_message_has_no_response_headers(ews_server, make_exchange_target):
    """A 404 (wrong EWS path behind a proxy): one line with the status, without the
    response's header dict (Exchange sets routing cookies there)."""
    from syncd.errors import TargetError

    t = make_exchange_target()
    ews_server.inject_status(404)
    with pytest.raises(TargetError) as info:
        t.open()
    t.close()
    assert "HTTP 404" in str(info.value)
    assert "headers" not in str(info.value) and "Content-Type" not in str(info.value)
