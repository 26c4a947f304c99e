"""The company address book end to end: OpenLDAP (slapd) people and groups -> shipped
mappings -> engine -> ExchangeTarget -> EWS emulator. Asserts on what the emulator stored.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from syncd.config import load_config
from syncd.engine import run_job

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
FOLDER = "Contacts/Company Directory"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake jpeg bytes \x00\xff"


def person_ldif(uid: str, given: str, sn: str, **extra: str) -> str:
    lines = [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {sn}",
        f"givenName: {given}",
        f"sn: {sn}",
        f"mail: {uid}@example.com",
    ]
    for k, v in extra.items():
        lines.append(f"{k}: {v}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def book(tmp_path, slapd, ews_server):
    pw = tmp_path / "ldap.pw"
    pw.write_text(slapd.root_pw + "\n")
    ews_pw = tmp_path / "ews.pw"
    ews_pw.write_text(ews_server.password + "\n")
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        "connections": {
            "directory": {
                "type": "ldap",
                "url": slapd.url,
                "start_tls": False,
                "bind_dn": slapd.root_dn,
                "password": {"file": str(pw)},
            },
            "exchange": {
                "type": "exchange",
                "endpoint": ews_server.url,
                "username": ews_server.username,
                "password": {"file": str(ews_pw)},
                "auth": "basic",
                "mailbox": ews_server.mailbox,
            },
        },
        "jobs": {
            "people": {
                "source": {
                    "connection": "directory",
                    "base": PEOPLE,
                    "filter": "(objectClass=inetOrgPerson)",
                },
                "mapping": str(ROOT / "mappings" / "contacts-openldap-exchange.yaml"),
                "target": {"connection": "exchange", "folder": FOLDER, "kind": "contact"},
                "max_deletes": 5,
            },
            "groups": {
                "source": {
                    "connection": "directory",
                    "base": GROUPS,
                    "filter": "(objectClass=groupOfNames)",
                },
                "mapping": str(ROOT / "mappings" / "groups-openldap-exchange-dl.yaml"),
                "target": {
                    "connection": "exchange",
                    "folder": FOLDER,
                    "kind": "distribution_list",
                },
                "max_deletes": 5,
            },
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def by_name(emu) -> dict[str, dict]:
    out = {}
    for item in emu.items_in(FOLDER):
        d = emu.item_dict(item)
        out[d["DisplayName"]] = d
    return out


def test_address_book_nights(book, slapd, ews_server):
    photo_b64 = base64.b64encode(PHOTO).decode()
    slapd.add(
        "\n".join(
            [
                person_ldif(
                    "jdoe",
                    "Jürgen",
                    "Döe",
                    title="Engineer",
                    telephoneNumber="+49 30 1111",
                    ou="R&D",
                ).rstrip("\n")
                + f"\njpegPhoto:: {photo_b64}\n",
                person_ldif("asmith", "Anna", "Smith", title="Sales Lead"),
                person_ldif("bwong", "Bo", "Wong"),
                f"dn: cn=sales,{GROUPS}\nobjectClass: groupOfNames\ncn: sales\n"
                f"description: The sales team\n"
                f"member: uid=asmith,{PEOPLE}\nmember: uid=bwong,{PEOPLE}\n"
                f"member: uid=ghost,{PEOPLE}\n",
            ]
        )
    )
    hand = ews_server.add_contact_by_hand(
        "Contacts", "Placeholder", None
    )  # elsewhere in the mailbox
    # night 1
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 3
    rep = run_job(book, "groups")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 1
    items = by_name(ews_server)
    assert set(items) == {"Jürgen Döe", "Anna Smith", "Bo Wong", "sales"}
    j = items["Jürgen Döe"]
    assert j["GivenName"] == "Jürgen" and j["JobTitle"] == "Engineer"
    assert j["Department"] == "R&D"
    assert j["PhoneNumbers"] == {"BusinessPhone": "+49 30 1111"}
    assert j["EmailAddresses"] == {"EmailAddress1": "jdoe@example.com"}
    assert [a["content"] for a in j["attachments"]] == [PHOTO]
    dl = items["sales"]
    assert dl["_kind"] == "DistributionList" and dl["Body"] == "The sales team"
    member_ids = [m["ItemId"] for m in dl["Members"]]
    assert member_ids == [items["Anna Smith"]["_id"], items["Bo Wong"]["_id"]]  # ghost dropped

    # A person adds a contact by hand into the synced folder.
    mine = ews_server.add_contact_by_hand(FOLDER, "My Plumber", "plumber@example.net")

    # night 2: nothing changed -> nothing written
    ews_server.reset_counters()
    rep = run_job(book, "people")
    assert rep.status == "ok" and rep.counts["created"] == rep.counts["updated"] == 0
    assert not {"CreateItem", "UpdateItem", "DeleteItem"} & set(ews_server.operations)

    # night 3: a title changes, a person leaves, the group loses her
    slapd.modify(f"dn: uid=asmith,{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: VP Sales\n")
    slapd.modify(
        f"dn: cn=sales,{GROUPS}\nchangetype: modify\ndelete: member\nmember: uid=bwong,{PEOPLE}\n"
    )
    slapd.delete(f"uid=bwong,{PEOPLE}")
    ews_server.reset_counters()
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["updated"] == 1 and rep.counts["deleted"] == 1
    rep = run_job(book, "groups")
    assert rep.status == "ok", rep.error
    items = by_name(ews_server)
    assert set(items) == {"Jürgen Döe", "Anna Smith", "sales", "My Plumber"}
    assert items["Anna Smith"]["JobTitle"] == "VP Sales"
    assert [m["ItemId"] for m in items["sales"]["Members"]] == [items["Anna Smith"]["_id"]]
    # the hand-made contacts survived every night, untouched
    assert ews_server.item_dict(mine)["DisplayName"] == "My Plumber"
    assert ews_server.item_dict(mine)["extended"] == {}
    assert hand in ews_server.items


def test_lost_state_does_not_duplicate(book, slapd, ews_server, tmp_path):
    slapd.add(person_ldif("jdoe", "John", "Doe") + "\n" + person_ldif("asmith", "Anna", "Smith"))
    rep = run_job(book, "people")
    assert rep.status == "ok" and rep.counts["created"] == 2
    before = {
        d["DisplayName"]: d["_id"] for d in map(ews_server.item_dict, ews_server.items_in(FOLDER))
    }
    # The state store is lost (or the process died before its commit): every record is
    # planned as a create again.
    Path(book.state.url.removeprefix("sqlite:///")).unlink()
    rep = run_job(book, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 2
    after = {
        d["DisplayName"]: d["_id"] for d in map(ews_server.item_dict, ews_server.items_in(FOLDER))
    }
    assert after == before  # same two items, found by their key, no duplicates
