"""Pure pieces of the AD methods: control encoding, metadata parsing, DN scope tests,
cursor checks that need no server. (The server-facing parts are in the other files.)"""

from __future__ import annotations

import struct
import uuid

import pytest
from ldap3.protocol.microsoft import DirSyncControlRequestValue, DirSyncControlResponseValue
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type.univ import Integer, OctetString

from syncd.connectors.ldap import ad, wire
from syncd.connectors.ldap.ad_common import (
    NAME_ATTID,
    ServerIdentity,
    dn_key,
    guid_filter,
    in_scope,
    is_container,
    name_changed_since,
    naming_context,
    scope_key,
)
from syncd.connectors.ldap.source import LdapSourceOptions
from syncd.errors import ConfigError

IDENT = ServerIdentity(
    "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Site,CN=Sites,CN=Configuration,DC=example,DC=test",
    str(uuid.uuid4()),
    100,
    (
        "DC=example,DC=test",
        "CN=Configuration,DC=example,DC=test",
        "CN=Schema,CN=Configuration,DC=example,DC=test",
    ),
    "CN=Configuration,DC=example,DC=test",
)


def test_dirsync_request_control_is_valid_ber():
    oid, critical, value = ad._dirsync_control(b"\x01\x02cookie")
    assert oid == "1.2.840.113556.1.4.841" and critical is True
    decoded, rest = decoder.decode(value, asn1Spec=DirSyncControlRequestValue())
    assert rest == b""
    assert int(decoded["Flags"]) == 0
    assert int(decoded["MaxBytes"]) == ad.DIRSYNC_MAX_BYTES
    assert bytes(decoded["Cookie"]) == b"\x01\x02cookie"


@pytest.mark.parametrize("more", [0, 1])
def test_dirsync_response_control_parsed(more):
    value = DirSyncControlResponseValue()
    value.setComponentByName("MoreResults", Integer(more))
    value.setComponentByName("unused", Integer(0))
    value.setComponentByName("CookieServer", OctetString(b"\x00" * 200 + b"next"))
    done = wire.Done(0, "", "", [(ad.OID_DIRSYNC, False, encoder.encode(value))])
    assert ad._dirsync_response(done) == (bool(more), b"\x00" * 200 + b"next")


def test_dirsync_response_without_control_is_an_error():
    from syncd.errors import SourceError

    with pytest.raises(SourceError, match="without a DirSync cookie"):
        ad._dirsync_response(wire.Done(0, "", "", []))


def _meta(entries: list[tuple[int, int]]) -> bytes:
    blob = struct.pack("<IIII", 1, 0, len(entries), 0)
    for attid, local_usn in entries:
        blob += struct.pack("<IIQ16sQQ", attid, 1, 0, b"\x00" * 16, local_usn, local_usn)
    return blob


def test_name_changed_since():
    blob = _meta([(0x0, 10), (NAME_ATTID, 50), (0x90008, 60)])
    assert name_changed_since(blob, 49) is True
    assert name_changed_since(blob, 50) is False
    assert name_changed_since(_meta([(0x0, 10)]), 5) is None  # no 'name' entry
    assert name_changed_since(b"\x02" + b"\x00" * 15, 5) is None  # unknown version
    assert name_changed_since(blob[:40], 5) is None  # truncated


def test_dn_scope():
    base = "OU=Staff,DC=Example,DC=Test"
    assert dn_key("cn=A,ou=staff,dc=example,dc=test") == (
        "cn=a",
        "ou=staff",
        "dc=example",
        "dc=test",
    )
    assert in_scope("CN=a,OU=staff,DC=example,DC=test", base, "sub") is True
    assert in_scope("CN=a,OU=x,OU=staff,DC=example,DC=test", base, "sub") is True
    assert in_scope("CN=a,OU=x,OU=staff,DC=example,DC=test", base, "one") is False
    assert in_scope("CN=a,OU=staff,DC=example,DC=test", base, "one") is True
    assert in_scope("OU=staff,DC=example,DC=test", base, "base") is True
    assert in_scope("CN=a,OU=other,DC=example,DC=test", base, "sub") is False
    assert in_scope("CN=staff2,DC=example,DC=test", base, "sub") is False
    assert in_scope("CN=a\\,b,OU=staff,DC=example,DC=test", base, "sub") is True
    assert in_scope("not a dn", base, "sub") is None


def test_naming_context_picks_the_deepest():
    assert naming_context("OU=x,DC=example,DC=test", IDENT) == "DC=example,DC=test"
    cfg = "CN=Sites,CN=Configuration,DC=example,DC=test"
    assert naming_context(cfg, IDENT) == "CN=Configuration,DC=example,DC=test"
    schema = "CN=Schema,CN=Configuration,DC=example,DC=test"
    assert naming_context(schema, IDENT) == schema
    with pytest.raises(ConfigError, match="naming context"):
        naming_context("DC=other,DC=test", IDENT)


def test_guid_filter_escapes_every_byte():
    raw = uuid.UUID("12345678-1234-5678-1234-567812345678").bytes_le
    text = guid_filter([raw, b"\x00" * 16])
    assert text.startswith("(|(objectGUID=\\78\\56\\34\\12")
    assert text.count("(objectGUID=") == 2
    assert "\\00" * 16 in text


def test_is_container():
    assert is_container(["top", "organizationalUnit"])
    assert is_container([b"top", b"container"])
    assert not is_container(["top", "person", "user"])


def test_scope_key_tracks_what_is_read():
    a = LdapSourceOptions(base="OU=a,DC=x", filter="(objectClass=user)", attributes=["cn"])
    same = LdapSourceOptions(base="ou=A,dc=X", filter="(objectClass=user)", attributes=["CN"])
    assert scope_key(a) == scope_key(same)
    for other in (
        a.model_copy(update={"base": "OU=b,DC=x"}),
        a.model_copy(update={"filter": "(objectClass=group)"}),
        a.model_copy(update={"attributes": ["cn", "mail"]}),
        a.model_copy(update={"scope": "one"}),
    ):
        assert scope_key(other) != scope_key(a)


def test_detect_ad_forms():
    assert ad.detect_ad({"supportedcapabilities": "1.2.840.113556.1.4.800"})
    assert not ad.detect_ad({})
