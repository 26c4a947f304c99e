"""The shipped Graph mappings load with the real loader and map OpenLDAP / AD people
into fields the Graph target takes (groups become categories)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from syncd.connectors.graph import fields as F
from syncd.contracts import Change, Op
from syncd.mapping import Mapping

ROOT = Path(__file__).resolve().parents[2]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x02\xff\xd9"


def load(name: str) -> Mapping:
    return Mapping.load(ROOT / "mappings" / name)


def test_openldap_person():
    rec = load("addressbook-graph-openldap.yaml").map(
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
                "telephonenumber": ["+49 30 1234", "+49 30 5678"],
                "memberof": [
                    "cn=Sales,ou=groups,dc=example,dc=com",
                    "cn=R&D,ou=groups,dc=example,dc=com",
                ],
                "jpegphoto": [JPEG],
            },
        ),
        lambda job, dn, **kw: None,
    )
    assert rec.key == "0b6c1a2e-1111-4444-8888-123456789abc"
    body = F.payload(rec.fields)
    assert body["displayName"] == "Jürgen Döe"
    assert body["businessPhones"] == ["+49 30 1234", "+49 30 5678"]
    assert body["categories"] == ["Sales", "R&D"]
    assert [e["address"] for e in body["emailAddresses"]] == [
        "J.Doe@example.com",
        "jd@example.org",
    ]
    assert F.photo_of(rec.fields) == JPEG


def test_ad_person_and_disabled_skipped():
    m = load("addressbook-graph-ad.yaml")
    guid = uuid.uuid4()
    entry = {
        "objectguid": [guid.bytes_le],
        "cn": ["Anna Smith"],
        "displayname": ["Anna Smith"],
        "mail": ["anna@example.com"],
        "useraccountcontrol": ["512"],
        "co": ["Germany"],
        "streetaddress": ["Hauptstr. 1"],
        "thumbnailphoto": [JPEG],
    }
    rec = m.map(Change(Op.UPSERT, "g1", "CN=Anna Smith,DC=x", entry), lambda *a, **k: None)
    assert rec.key == str(guid)
    body = F.payload(rec.fields)
    assert body["businessAddress"] == {"countryOrRegion": "Germany", "street": "Hauptstr. 1"}
    assert "categories" not in body or body["categories"] == []
    disabled = {**entry, "useraccountcontrol": ["514"]}
    assert m.map(Change(Op.UPSERT, "g1", "CN=x", disabled), lambda *a, **k: None) is None


@pytest.mark.parametrize("name", ["addressbook-graph-openldap.yaml", "addressbook-graph-ad.yaml"])
def test_every_field_is_known_to_the_target(name):
    F.check_fields(load(name).field_names)
