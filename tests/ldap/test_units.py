"""Pure functions of the LDAP connector: value convention, ids, BER reader, RFC 4533
message parsing, method choice."""

from __future__ import annotations

import uuid

import pytest

from syncd.connectors.ldap import wire
from syncd.connectors.ldap.rootdse import RootDse, pick_method
from syncd.connectors.ldap.syncrepl import parse_done, parse_info, parse_state, sync_request_control
from syncd.connectors.ldap.values import (
    decode_attributes,
    guid_to_str,
    id_from_value,
    sid_to_str,
    source_id,
    to_change,
)
from syncd.contracts import Op

GUID = "01234567-89ab-cdef-0123-456789abcdef"
GUID_LE = bytes.fromhex("67452301ab89efcd0123456789abcdef")


def test_objectguid_uses_the_microsoft_byte_order():
    assert guid_to_str(GUID_LE) == GUID
    assert id_from_value("objectguid", GUID_LE) == GUID
    assert id_from_value("objectguid", GUID.upper()) == GUID


def test_objectsid():
    raw = (
        bytes([1, 5])
        + (5).to_bytes(6, "big")
        + b"".join(n.to_bytes(4, "little") for n in (21, 1004336348, 1177238915, 682003330, 512))
    )
    assert sid_to_str(raw) == "S-1-5-21-1004336348-1177238915-682003330-512"
    assert id_from_value("objectsid", raw) == "S-1-5-21-1004336348-1177238915-682003330-512"


def test_value_convention():
    attrs = decode_attributes(
        [
            (b"CN", [b"J\xc3\xb6rg", b"second"]),
            (b"objectGUID", [GUID_LE]),
            (b"jpegPhoto", [b"looks like text"]),
            (b"description", [b"\xff\xfe latin"]),
            (b"userCertificate;binary", [b"\x30\x82"]),
            (b"cn", [b"third"]),
        ]
    )
    assert attrs["cn"] == ["Jörg", "second", "third"]
    assert attrs["objectguid"] == [GUID_LE]
    assert attrs["jpegphoto"] == [b"looks like text"]
    assert attrs["description"] == [b"\xff\xfe latin"]
    assert attrs["usercertificate"] == [b"\x30\x82"]
    assert source_id(attrs, "objectguid") == GUID
    assert source_id(attrs, "uid") is None


def test_to_change():
    change = to_change(b"cn=J\xc3\xb6rg,dc=x", [(b"entryUUID", [GUID.encode()])], "entryuuid")
    assert change.op is Op.UPSERT and change.source_id == GUID and change.dn == "cn=Jörg,dc=x"
    assert to_change(b"cn=a", [(b"cn", [b"a"])], "entryuuid") is None
    dropped = to_change(
        b"cn=a",
        [(b"cn", [b"a"]), (b"modifyTimestamp", [b"2026"])],
        "cn",
        drop=frozenset({"modifytimestamp"}),
    )
    assert dropped.attributes == {"cn": ["a"]} and dropped.source_id == "a"


def entry_message(msgid: int, dn: bytes, attrs: list[tuple[bytes, list[bytes]]]) -> bytes:
    body = b"".join(
        wire.enc(
            0x30, wire.enc(0x04, name) + wire.enc(0x31, b"".join(wire.enc(0x04, v) for v in vals))
        )
        for name, vals in attrs
    )
    op = wire.enc(0x64, wire.enc(0x04, dn) + wire.enc(0x30, body))
    return wire.enc(0x30, wire.enc_int(0x02, msgid) + op)


@pytest.mark.parametrize("size", [0, 5, 127, 128, 255, 256, 70000, 17_000_000])
def test_ber_entry_roundtrip_with_every_length_form(size):
    value = bytes(range(256)) * (size // 256) + bytes(size % 256)
    frame = entry_message(300, b"cn=x", [(b"jpegPhoto", [value, b""]), (b"cn", [b"x"])])
    msgid, msg = wire.parse_message(frame)
    assert msgid == 300 and isinstance(msg, wire.Entry)
    assert msg.dn == b"cn=x"
    assert msg.attributes == [(b"jpegPhoto", [value, b""]), (b"cn", [b"x"])]


@pytest.mark.parametrize("size", [0, 5, 127, 128, 70000])
def test_an_entry_scan_finds_one_type_without_parsing_the_rest(size):
    """values_of scans the received bytes for one attribute type; every length form;
    an empty description is passed over; the scan and the parsed pairs agree."""
    big = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pairs = [
        (b"jpegPhoto", [big, b""]),
        (b"entryUUID", []),
        (b"cn", [b"x" * size]),
        (b"entryUUID", [b"id-1", b"id-2"]),
        (b"sn", [b"s"]),
    ]
    _, msg = wire.parse_message(entry_message(7, b"cn=x", pairs))
    assert isinstance(msg, wire.LazyEntry)
    assert msg.values_of(lambda name: name == b"entryUUID") == [b"id-1", b"id-2"]
    assert msg.values_of(lambda name: name == b"jpegPhoto") == [big, b""]
    assert msg.values_of(lambda name: name == b"mail") is None
    assert msg._buf is not None  # nothing parsed yet
    assert msg.attributes == pairs
    assert msg._buf is None
    assert msg.values_of(lambda name: name == b"entryUUID") == [b"id-1", b"id-2"]  # parsed
    plain = wire.Entry(msg.dn, pairs, msg.controls, bytes(msg.body))
    assert msg == plain and plain == msg
    import pickle

    again = pickle.loads(pickle.dumps(msg))
    assert type(again) is wire.Entry and again == plain


def test_a_malformed_attribute_list_is_a_source_error_not_a_crash():
    """An attribute list whose last attribute is cut short: both the scan and the
    parse name the entry in a SourceError (a one-line error, no traceback)."""
    from syncd.errors import SourceError

    pairs = [(b"cn", [b"x"]), (b"entryUUID", [b"id-1"])]
    frame = bytearray(entry_message(9, b"cn=x,dc=y", pairs))
    frame = bytes(frame[:-6])  # the frame claims more than it holds: cut the end
    _, msg = wire.parse_message(frame)
    with pytest.raises(SourceError, match=r"malformed entry \(cn=x,dc=y\)"):
        msg.values_of(lambda name: name == b"entryUUID")
    with pytest.raises(SourceError, match="malformed entry"):
        msg.attributes  # noqa: B018


def test_the_type_test_finds_every_spelling_and_only_those():
    """type_matcher's test and its sizes: any case, a ;binary option, never a type with
    another option or a longer name; the same answers scanned and parsed."""
    from syncd.connectors.ldap.values import type_matcher

    pairs = [
        (b"entryUUIDx", [b"no"]),
        (b"entryUUID;lang-en", [b"no"]),
        (b"ObjectGUID;Binary", [b"guid"]),
        (b"ENTRYUUID", [b"yes"]),
    ]
    _, msg = wire.parse_message(entry_message(3, b"cn=x", pairs))
    assert msg.values_of(*type_matcher("entryuuid")) == [b"yes"]
    assert msg.values_of(*type_matcher("objectguid")) == [b"guid"]
    assert msg.values_of(*type_matcher("entryuuid;lang-en")) == [b"no"]
    assert msg.values_of(*type_matcher("mail")) is None
    parsed = wire.Entry(msg.dn, pairs)
    assert parsed.values_of(*type_matcher("entryuuid")) == [b"yes"]
    assert parsed.values_of(*type_matcher("objectguid")) == [b"guid"]


def test_a_received_entry_becomes_a_change_decoded_on_use():
    """entry_change of a received entry: only the id is decoded until the attributes
    are read, which then equal the eager to_change's."""
    from syncd.connectors.ldap.values import (
        BINARY_ATTRIBUTES,
        RawChange,
        digest_key,
        entry_change,
    )

    pairs = [(b"cn", [b"J\xc3\xb6rg"]), (b"entryUUID", [GUID.upper().encode()]), (b"x", [b"1"])]
    _, msg = wire.parse_message(entry_message(1, b"cn=J\xc3\xb6rg,dc=x", pairs))
    drop = frozenset({"x"})
    key = digest_key("entryuuid", BINARY_ATTRIBUTES, drop)
    change = entry_change(msg, "entryuuid", drop=drop, digest_key=key)
    assert isinstance(change, RawChange) and change.source_id == GUID
    assert msg._buf is not None  # the entry's pairs are not parsed yet
    eager = to_change(msg.dn, pairs, "entryuuid", drop=drop)
    assert change.attributes == eager.attributes == {"cn": ["Jörg"], "entryuuid": [GUID.upper()]}
    assert change.dn == eager.dn == "cn=Jörg,dc=x"
    assert entry_change(msg, "uid", drop=drop, digest_key=key) is None
    assert entry_change(msg, "entryuuid", drop=drop).raw_digest is None  # no key: eager


def test_frames_split_across_reads():
    frames = [entry_message(i, b"cn=%d" % i, [(b"cn", [b"v" * (i * 97)])]) for i in range(1, 40)]
    data = b"".join(frames)

    class Trickle:
        def __init__(self):
            self.pos = 0

        def recv(self, n):
            chunk = data[self.pos : self.pos + 7]
            self.pos += 7
            return chunk

    got = []
    it = wire._frames(Trickle())
    for _ in frames:
        got.append(next(it))
    assert got == frames
    with pytest.raises(ConnectionResetError):
        next(it)


def test_done_and_paged_cookie():
    ctrl_value = wire.enc(0x30, wire.enc_int(0x02, 0) + wire.enc(0x04, b"COOKIE"))
    control = wire.enc(0x30, wire.enc(0x04, wire.OID_PAGED.encode()) + wire.enc(0x04, ctrl_value))
    done = wire.enc(0x65, wire.enc(0x0A, b"\x04") + wire.enc(0x04, b"") + wire.enc(0x04, b"m"))
    frame = wire.enc(0x30, wire.enc_int(0x02, 2) + done + wire.enc(0xA0, control))
    _, msg = wire.parse_message(frame)
    assert isinstance(msg, wire.Done) and msg.code == 4 and msg.name == "sizeLimitExceeded"
    assert wire.paged_cookie(msg) == b"COOKIE"
    err = wire.result_error(msg, "dc=x", 500)
    assert "size limit after 500 entries" in str(err)
    assert wire.paged_control(100, b"")[0] == wire.OID_PAGED


def test_rfc4533_messages():
    u1, u2 = uuid.uuid4().bytes, uuid.uuid4().bytes
    id_set = wire.enc(
        0xA3,
        wire.enc(0x04, b"ck")
        + wire.enc(0x01, b"\xff")
        + wire.enc(0x31, wire.enc(0x04, u1) + wire.enc(0x04, u2)),
    )
    info = parse_info(id_set)
    assert (info.kind, info.cookie, info.deletes, info.uuids) == (
        "syncIdSet",
        b"ck",
        True,
        [u1, u2],
    )
    present = parse_info(wire.enc(0xA3, wire.enc(0x31, wire.enc(0x04, u1))))
    assert present.deletes is False and present.uuids == [u1]
    assert parse_info(wire.enc(0x80, b"new")).cookie == b"new"
    assert parse_info(wire.enc(0xA2, wire.enc(0x01, b"\x00"))).done is False
    state = wire.enc(0x30, wire.enc(0x0A, b"\x03") + wire.enc(0x04, u1))
    assert parse_state(state) == (3, u1, None)
    with_cookie = wire.enc(
        0x30, wire.enc(0x0A, b"\x01") + wire.enc(0x04, u2) + wire.enc(0x04, b"c" * 200)
    )
    assert parse_state(with_cookie) == (1, u2, b"c" * 200)  # long form: generic path
    short = wire.enc(0x30, wire.enc(0x0A, b"\x02") + wire.enc(0x04, u1) + wire.enc(0x04, b"k"))
    assert parse_state(short) == (2, u1, b"k")  # fast path
    assert parse_done(wire.enc(0x30, wire.enc(0x04, b"c"))) == (b"c", False)
    assert parse_done(b"") == (None, False)
    _, critical, value = sync_request_control(b"cookie")
    assert critical and value == wire.enc(0x30, wire.enc(0x0A, b"\x01") + wire.enc(0x04, b"cookie"))


def test_controls_of_an_entry():
    ctrl = wire.enc(0x30, wire.enc(0x04, b"1.2.3") + wire.enc(0x01, b"\xff") + wire.enc(0x04, b"v"))
    bare = wire.enc(0x30, wire.enc(0x04, b"1.2.4"))
    body = ctrl + bare
    parsed = wire._parse_controls(body, 0, len(body))
    assert parsed == [("1.2.3", True, b"v"), ("1.2.4", False, None)]


def test_pick_method():
    openldap = RootDse({"supportedcontrol": ["1.3.6.1.4.1.4203.1.9.1.1", wire.OID_PAGED]})
    assert pick_method(openldap)[0] == "syncrepl"
    ad = RootDse(
        {
            "supportedcapabilities": ["1.2.840.113556.1.4.800"],
            "supportedcontrol": ["1.2.840.113556.1.4.841"],
        }
    )
    assert pick_method(ad)[0] == "dirsync" and ad.is_ad
    ad_no_dirsync = RootDse({"supportedcapabilities": ["1.2.840.113556.1.4.800"]})
    assert pick_method(ad_no_dirsync)[0] == "usn"
    plain = RootDse({"vendorname": ["Example Inc."], "vendorversion": ["1"]})
    assert pick_method(plain)[0] == "timestamp"
    assert plain.vendor() == "Example Inc. 1"
