"""The shipped Exchange mappings load with the real loader, map real-looking entries into
fields the Exchange target knows, and skip what they should."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from syncd.connectors.exchange.fields import check_fields, item_attributes, photo_of
from syncd.contracts import Change, Op
from syncd.mapping import Mapping

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = {
    "contacts-openldap-exchange.yaml": "contact",
    "contacts-ad-exchange.yaml": "contact",
    "groups-openldap-exchange-dl.yaml": "distribution_list",
    "groups-ad-exchange-dl.yaml": "distribution_list",
}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\xff\xd9"


def load(name: str) -> Mapping:
    return Mapping.load(ROOT / "mappings" / name)


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_loads_and_fields_are_known_to_the_target(name):
    m = load(name)
    entry = {
        "cn": ["x"],
        "displayname": ["X"],
        "mail": ["x@example.com"],
        "entryuuid": ["e-uuid"],
        "objectguid": [uuid.uuid4().bytes_le],
        "useraccountcontrol": ["512"],
    }
    change = Change(Op.UPSERT, "id-1", "cn=x,dc=example,dc=com", entry)
    rec = m.map(change, lambda job, dn, **kw: None)
    assert rec is not None
    check_fields(rec.fields, MAPPINGS[name])  # raises on a name the target does not take


def test_openldap_person():
    m = load("contacts-openldap-exchange.yaml")
    rec = m.map(
        Change(
            Op.UPSERT,
            "e1",
            "uid=jd,ou=people,dc=example,dc=com",
            {
                "entryuuid": ["0b6c1a2e-1111-4444-8888-123456789abc"],
                "cn": ["Jürgen Döe"],
                "givenname": ["Jürgen"],
                "sn": ["Döe"],
                "mail": ["J.Doe@Example.COM", "jd@example.org"],
                "telephonenumber": ["+49 30 1234"],
                "title": ["Engineer"],
                "manager": ["uid=boss,ou=people,dc=example,dc=com"],
                "jpegphoto": [JPEG],
            },
        )
    )
    assert rec.key == "0b6c1a2e-1111-4444-8888-123456789abc"
    f = rec.fields
    assert f["display_name"] == "Jürgen Döe"
    assert f["email_addresses"] == ["J.Doe@example.com", "jd@example.org"]
    assert f["manager"] == "boss" and f["job_title"] == "Engineer"
    assert photo_of(f) == JPEG
    attrs = item_attributes(f, "contact")
    assert [e.email for e in attrs["email_addresses"]] == f["email_addresses"]
    assert [(p.label, p.phone_number) for p in attrs["phone_numbers"]] == [
        ("BusinessPhone", "+49 30 1234")
    ]


def test_ad_user_and_disabled_user():
    m = load("contacts-ad-exchange.yaml")
    guid = uuid.UUID("12345678-9abc-def0-1234-56789abcdef0")
    attrs = {
        "objectguid": [guid.bytes_le],
        "cn": ["Anna Smith"],
        "displayname": ["Smith, Anna"],
        "mail": ["anna@example.com"],
        "useraccountcontrol": ["512"],
        "thumbnailphoto": [JPEG],
        "streetaddress": ["Main St 1"],
        "co": ["Germany"],
    }
    rec = m.map(Change(Op.UPSERT, "g", "CN=Anna Smith,CN=Users,DC=example,DC=test", attrs))
    assert rec.key == str(guid)
    assert rec.fields["display_name"] == "Smith, Anna"
    assert rec.fields["photo"] == JPEG
    addr = item_attributes(rec.fields, "contact")["physical_addresses"]
    assert [(a.label, a.street, a.country) for a in addr] == [("Business", "Main St 1", "Germany")]
    disabled = dict(attrs, useraccountcontrol=["514"])
    assert m.map(Change(Op.UPSERT, "g", "CN=Anna Smith,DC=x", disabled)) is None


def test_groups_resolve_members_through_lookup():
    ids = {
        "uid=a,ou=people,dc=example,dc=com": "ITEM-A",
        "uid=b,ou=people,dc=example,dc=com": "ITEM-B",
    }
    asked = []

    def lookup(job, dn, **kw):
        asked.append(job)
        return ids.get(dn)

    m = load("groups-openldap-exchange-dl.yaml")
    rec = m.map(
        Change(
            Op.UPSERT,
            "g1",
            "cn=sales,ou=groups,dc=example,dc=com",
            {
                "entryuuid": ["g-uuid"],
                "cn": ["sales"],
                "member": [*ids, "uid=ghost,ou=people,dc=example,dc=com"],
            },
        ),
        lookup,
    )
    assert rec.fields["members"] == ["ITEM-A", "ITEM-B"]  # the ghost is not synced: dropped
    assert set(asked) == {"people"}
    ad = load("groups-ad-exchange-dl.yaml")
    builtin = {
        "objectguid": [uuid.uuid4().bytes_le],
        "cn": ["Domain Users"],
        "iscriticalsystemobject": ["TRUE"],
    }
    assert ad.map(Change(Op.UPSERT, "x", "CN=Domain Users,CN=Users,DC=x", builtin), lookup) is None
