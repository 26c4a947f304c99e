"""The company address book end to end: OpenLDAP (slapd) people and groups -> the shipped
vCard mappings -> engine -> CardDavTarget -> Radicale. Asserts on what Radicale holds."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import vobject
import yaml

from syncd.config import load_config
from syncd.engine import run_job
from syncd.mapping import Mapping
from tests.servers.fixtures_radicale import book_path, read_cards

pytestmark = [pytest.mark.slapd, pytest.mark.radicale]

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = "ou=people,dc=example,dc=com"
GROUPS = "ou=groups,dc=example,dc=com"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00fake jpeg bytes \x00\xff"


def test_shipped_mappings_load():
    for name in (
        "contacts-openldap-vcard.yaml",
        "contacts-ad-vcard.yaml",
        "groups-openldap-vcard.yaml",
    ):
        m = Mapping.load(ROOT / "mappings" / name)
        assert "fn" in m.field_names and "fn" in m.required


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
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def config(tmp_path, slapd, radicale_server, carddav_book, password_file):
    pw = tmp_path / "ldap.pw"
    pw.write_text(slapd.root_pw + "\n")
    target = {"connection": "dav", "addressbook": carddav_book, "vcard_version": "3.0"}
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
            "dav": {
                "type": "carddav",
                "url": radicale_server.url,
                "username": radicale_server.user,
                "password": {"file": str(password_file)},
            },
        },
        "jobs": {
            "people": {
                "source": {
                    "connection": "directory",
                    "base": PEOPLE,
                    "filter": "(objectClass=inetOrgPerson)",
                },
                "mapping": str(ROOT / "mappings" / "contacts-openldap-vcard.yaml"),
                "target": target,
                "max_deletes": 5,
            },
            "groups": {
                "source": {
                    "connection": "directory",
                    "base": GROUPS,
                    "filter": "(objectClass=groupOfNames)",
                },
                "mapping": str(ROOT / "mappings" / "groups-openldap-vcard.yaml"),
                "target": target,
                "max_deletes": 5,
            },
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def by_fn(server, book) -> dict[str, object]:
    out = {}
    for text in read_cards(server, book_path(server, book)).values():
        card = vobject.readOne(text)
        out[card.fn.value] = card
    return out


def test_address_book_nights(config, slapd, radicale_server, carddav_book):
    photo = base64.b64encode(PHOTO).decode()
    slapd.add(
        "\n".join(
            [
                person_ldif(
                    "jdoe", "Jürgen", "Döe", title="Engineer", telephoneNumber="+49 30 1111"
                ).rstrip("\n")
                + f"\njpegPhoto:: {photo}\n",
                person_ldif("asmith", "Anna", "Smith", title="Sales Lead"),
                person_ldif("bwong", "Bo", "Wong"),
                f"dn: cn=sales,{GROUPS}\nobjectClass: groupOfNames\ncn: sales\n"
                f"description: The sales team\n"
                f"member: uid=asmith,{PEOPLE}\nmember: uid=bwong,{PEOPLE}\n"
                f"member: uid=ghost,{PEOPLE}\n",
            ]
        )
    )
    # night 1
    rep = run_job(config, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 3
    rep = run_job(config, "groups")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 1
    cards = by_fn(radicale_server, carddav_book)
    assert set(cards) == {"Jürgen Döe", "Anna Smith", "Bo Wong", "sales"}
    j = cards["Jürgen Döe"]
    assert (j.n.value.given, j.n.value.family) == ("Jürgen", "Döe")
    assert j.title.value == "Engineer" and j.tel.value == "+49 30 1111"
    assert j.email.value == "jdoe@example.com"
    assert j.photo.value == PHOTO
    sales = cards["sales"]
    assert sales.x_addressbookserver_kind.value == "group"
    assert sales.note.value == "The sales team"
    members = [m.value for m in sales.contents["x-addressbookserver-member"]]
    uids = [cards["Anna Smith"].uid.value, cards["Bo Wong"].uid.value]
    assert members == [f"urn:uuid:{u}" for u in uids]  # ghost dropped

    # Someone adds a card by hand to the same address book.
    with radicale_server.client() as c:
        hand = (
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:plumber\r\nFN:My Plumber\r\nN:;;;;\r\nEND:VCARD\r\n"
        )
        path = book_path(radicale_server, carddav_book) + "plumber.vcf"
        assert c.put(path, content=hand, headers={"Content-Type": "text/vcard"}).status_code == 201

    # night 2: nothing changed -> nothing written
    rep = run_job(config, "people")
    assert rep.status == "ok" and rep.counts["created"] == rep.counts["updated"] == 0

    # night 3: a title changes, a person leaves, the group loses him
    slapd.modify(f"dn: uid=asmith,{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: VP Sales\n")
    slapd.modify(
        f"dn: cn=sales,{GROUPS}\nchangetype: modify\ndelete: member\nmember: uid=bwong,{PEOPLE}\n"
    )
    slapd.delete(f"uid=bwong,{PEOPLE}")
    rep = run_job(config, "people")
    assert rep.status == "ok", rep.error
    assert rep.counts["updated"] == 1 and rep.counts["deleted"] == 1
    rep = run_job(config, "groups")
    assert rep.status == "ok", rep.error
    cards = by_fn(radicale_server, carddav_book)
    assert set(cards) == {"Jürgen Döe", "Anna Smith", "sales", "My Plumber"}
    assert cards["Anna Smith"].title.value == "VP Sales"
    members = [m.value for m in cards["sales"].contents["x-addressbookserver-member"]]
    assert members == [f"urn:uuid:{cards['Anna Smith'].uid.value}"]
    assert "x-syncd-key" not in cards["My Plumber"].contents
