"""The shipped OpenLDAP device mapping on entries read from a real slapd through the LDAP
source: the values it maps are exactly what the server sends (escaped DNs as slapd
writes them, UTF-8 of several scripts, multi-valued ipHostNumber, binary values)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions
from syncd.contracts import Op
from syncd.errors import MappingError
from syncd.mapping import Mapping
from tests.servers.slapd import ROOT_PW

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
DEVICES = "ou=devices,dc=example,dc=com"
PEOPLE = "ou=people,dc=example,dc=com"


def ldif(*entries: str) -> str:
    return "\n".join(e.strip() + "\n" for e in entries)


def test_device_mapping_on_entries_read_from_slapd(slapd, tmp_path):
    # slapd checks the JPEG syntax (a JFIF header); the rest is deliberately not UTF-8
    photo = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(200, 256)) + b"\x00\xff"
    slapd.add(
        ldif(
            f"""
dn: uid=smith,{PEOPLE}
objectClass: inetOrgPerson
uid: smith
cn: Smith, John
sn: Smith
jpegPhoto:: {base64.b64encode(photo).decode()}
""",
            f"""
dn: cn=Smith\\, John's laptop+serialNumber=SN-1,{DEVICES}
objectClass: device
objectClass: ipHost
cn: Smith, John's laptop
serialNumber: SN-1
ipHostNumber: 10.0.0.7
ipHostNumber: fd00::7
owner: uid=smith,{PEOPLE}
description: Ноутбук · 東京 · لابتوب
l: Zürich
""",
            f"""
dn: cn=printer-old,{DEVICES}
objectClass: device
cn: printer-old
description: RETIRED in 2023
""",
            f"""
dn: cn={{{{ 7*7 }}}},{DEVICES}
objectClass: device
cn: {{{{ 7*7 }}}}
description: ['a','b']
""",
        )
    )
    pw = tmp_path / "pw"
    pw.write_text(ROOT_PW)
    connection = LdapConnection.model_validate(
        {
            "url": slapd.url,
            "start_tls": False,
            "bind_dn": slapd.root_dn,
            "password": {"file": str(pw)},
        }
    )
    mapping = Mapping.load(ROOT / "mappings" / "inventory-openldap-device.yaml")
    options = LdapSourceOptions.model_validate(
        {
            "base": DEVICES,
            "filter": "(objectClass=device)",
            "attributes": sorted(mapping.attributes),
            "changes": "full",
        }
    )
    source = LdapSource(connection, options, job="inventory")
    try:
        read = source.read(None)
        changes = [c for c in read.changes if c.op is Op.UPSERT]
    finally:
        source.close()
    by_cn = {c.attributes["cn"][0]: c for c in changes}
    assert set(by_cn) == {"Smith, John's laptop", "printer-old", "{{ 7*7 }}"}

    laptop = mapping.map(by_cn["Smith, John's laptop"])
    assert laptop is not None
    assert laptop.key == by_cn["Smith, John's laptop"].source_id  # entryUUID
    assert laptop.fields["hostname"] == "Smith, John's laptop"
    assert laptop.fields["serial"] == "SN-1"
    assert laptop.fields["owner"] == "smith"
    assert laptop.fields["ip_addresses"] in ("10.0.0.7, fd00::7", "fd00::7, 10.0.0.7")
    assert laptop.fields["description"] == "Ноутбук · 東京 · لابتوب"
    assert laptop.fields["location"] == "Zürich"
    assert laptop.fields["container"] == DEVICES
    # However slapd escapes the multi-valued RDN, the DN filters read it back.
    probe = Mapping.from_text(
        "version: 1\nfields:\n  rdn_cn: \"{{ dn | rdn_value('cn') }}\"\n"
        "  rdn_sn: \"{{ dn | rdn_value('serialNumber') }}\"\n"
    )
    assert probe.map(by_cn["Smith, John's laptop"]).fields == {
        "rdn_cn": "Smith, John's laptop",
        "rdn_sn": "SN-1",
    }

    assert mapping.map(by_cn["printer-old"]) is None  # skipped: retired

    hostile = mapping.map(by_cn["{{ 7*7 }}"])
    assert hostile.fields["hostname"] == "{{ 7*7 }}"
    assert hostile.fields["description"] == "['a','b']"

    # Binary values arrive as bytes and stay bytes; text filters refuse them clearly.
    people = LdapSource(
        connection,
        LdapSourceOptions.model_validate(
            {"base": PEOPLE, "filter": "(uid=smith)", "changes": "full"}
        ),
        job="people",
    )
    try:
        (person,) = [c for c in people.read(None).changes if c.op is Op.UPSERT]
    finally:
        people.close()
    photos = Mapping.from_text(
        "version: 1\nfields:\n  photo: jpegPhoto\n  b64: '{{ jpegPhoto | first | b64 }}'\n"
        "  bad: \"{{ jpegPhoto | join(',') }}\"\n"
    )
    assert person.attributes["jpegphoto"] == [photo]
    with pytest.raises(MappingError, match="field 'bad': ValueError: join: binary value"):
        photos.map(person)
    ok = Mapping.from_text(
        "version: 1\nfields:\n  photo: jpegPhoto\n  b64: '{{ jpegPhoto | first | b64 }}'\n"
    ).map(person)
    assert ok.fields == {"photo": photo, "b64": base64.b64encode(photo).decode()}
