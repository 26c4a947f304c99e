"""The shipped vCard mappings map directory entries to records the vCard builder takes."""

from __future__ import annotations

import uuid
from pathlib import Path

import vobject

from syncd.connectors.carddav.vcard import build_vcard
from syncd.contracts import Change, Op
from syncd.mapping import Mapping

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00tiny"


def test_openldap_person():
    m = Mapping.load(MAPPINGS / "contacts-openldap-vcard.yaml")
    attrs = {
        "entryuuid": ["5d0c6a52-0000-4000-8000-000000000001"],
        "cn": ["Jane Roe"],
        "givenname": ["Jane"],
        "sn": ["Roe"],
        "mail": ["Jane.Roe@Example.COM", "jr@example.org"],
        "telephonenumber": ["+1 555 0100", "+1 555 0101"],
        "mobile": ["+1 555 0199"],
        "o": ["Example"],
        "ou": ["Ops"],
        "title": ["SRE"],
        "l": ["Springfield"],
        "jpegphoto": [JPEG],
        "employeenumber": ["42"],
    }
    rec = m.map(Change(Op.UPSERT, "id1", "uid=jr,ou=people,dc=x", attrs))
    card = vobject.readOne(build_vcard(rec.key, rec.fields, version="3.0"))
    assert card.uid.value == "5d0c6a52-0000-4000-8000-000000000001"
    assert card.fn.value == "Jane Roe"
    assert [e.value for e in card.contents["email"]] == ["Jane.Roe@example.com", "jr@example.org"]
    assert [t.value for t in card.contents["tel"]] == ["+1 555 0100", "+1 555 0101", "+1 555 0199"]
    assert card.org.value == ["Example", "Ops"] and card.photo.value == JPEG
    assert card.x_employee_number.value == "42"


def test_ad_user_and_disabled_user():
    m = Mapping.load(MAPPINGS / "contacts-ad-vcard.yaml")
    guid = uuid.UUID("0f6e1c2a-1111-2222-3333-444455556666")
    attrs = {
        "objectguid": [guid.bytes_le],
        "cn": ["Max Mustermann"],
        "displayname": ["Mustermann, Max"],
        "mail": ["max@example.com"],
        "company": ["Beispiel AG"],
        "co": ["Germany"],
        "thumbnailphoto": [JPEG],
        "useraccountcontrol": ["512"],
        "employeeid": ["E-1"],
        "physicaldeliveryofficename": ["B2.14"],
    }
    rec = m.map(Change(Op.UPSERT, "g1", "CN=Max,OU=Staff,DC=x", attrs))
    assert rec.key == str(guid)
    card = vobject.readOne(build_vcard(rec.key, rec.fields, version="4.0"))
    assert card.fn.value == "Mustermann, Max" and card.adr.value.country == "Germany"
    assert card.x_office.value == "B2.14" and card.x_employee_id.value == "E-1"
    disabled = dict(attrs, useraccountcontrol=["514"])
    assert m.map(Change(Op.UPSERT, "g1", "CN=Max,OU=Staff,DC=x", disabled)) is None


def test_group_members_through_lookup():
    m = Mapping.load(MAPPINGS / "groups-openldap-vcard.yaml")
    people = {"uid=a,ou=people,dc=x": "aaaa-1"}  # the people job's record key (UID)
    attrs = {
        "entryuuid": ["9e7f0000-0000-4000-8000-000000000009"],
        "cn": ["ops"],
        "member": ["uid=a,ou=people,dc=x", "uid=ghost,ou=people,dc=x"],
    }
    asked = []

    def lookup(job, dn, kind="target_id"):
        asked.append((job, kind))
        return people.get(dn)

    rec = m.map(Change(Op.UPSERT, "grp", "cn=ops,dc=x", attrs), lookup)
    assert rec.fields["kind"] == "group"
    assert rec.fields["members"] == ["aaaa-1"]
    assert set(asked) == {("people", "key")}
