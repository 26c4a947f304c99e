"""The directory filter library, called directly (the mapping tests run them through
expressions)."""

from __future__ import annotations

import struct
import uuid

import pytest
from jinja2 import Undefined

from syncd.mapping import filters as f
from syncd.mapping.dn import DNError


def test_first_values_join_default():
    assert f.first(["a", "b"]) == "a"
    assert f.first([]) is None
    assert f.first(None) is None
    assert f.first(Undefined()) is None
    assert f.first("whole string") == "whole string"  # Jinja's own gives "w"
    assert f.first(b"\x00\x01") == b"\x00\x01"
    assert f.values(None) == []
    assert f.values("x") == ["x"]
    src = ["a"]
    assert f.values(src) == ["a"] and f.values(src) is not src
    assert f.values({"b", "a"}) == ["a", "b"]
    assert f.join(["a", "b"], ", ") == "a, b"
    assert f.join(None) == ""
    assert f.join(["a", None, "b"], "-") == "a-b"
    assert f.join(["é".encode(), "x"], "+") == "é+x"  # UTF-8 bytes are text
    with pytest.raises(ValueError, match="binary"):
        f.join([b"\xff\xfe"], ",")
    assert f.join("single") == "single"
    assert f.default(None, "d") == "d"
    assert f.default("", "d") == "d"
    assert f.default([], "d") == "d"
    assert f.default(Undefined(), "d") == "d"
    assert f.default("v", "d") == "v"
    assert f.default(0, "d") == 0  # zero is a value, not "missing"


def test_case_and_strip_are_per_value():
    assert f.lower(["ÄB", "Cd"]) == ["äb", "cd"]
    assert f.upper("straße") == "STRASSE"
    assert f.strip(["  a ", "b  "]) == ["a", "b"]
    assert f.lower(None) is None


def test_int_and_float_are_strict_unless_a_default_is_given():
    assert f.to_int(["42"]) == 42
    assert f.to_int(" 7 ") == 7
    assert f.to_int("ff", base=16) == 255
    assert f.to_int(None) is None
    with pytest.raises(ValueError, match="whole number"):
        f.to_int("abc")
    assert f.to_int("abc", 0) == 0
    assert f.to_float("1.5") == 1.5
    with pytest.raises(ValueError):
        f.to_float("x")
    assert f.to_float("x", -1.0) == -1.0


def test_dn_filters():
    dn = r"cn=Smith\, John+uid=js,ou=Sales,ou=EMEA,dc=example,dc=com"
    assert f.dn_value(dn, "uid") == "js"
    assert f.dn_value(dn, "CN") == "Smith, John"
    assert f.dn_value(dn, "ou") == "Sales"
    assert f.dn_value(dn, "l") is None
    assert f.dn_values(dn, "ou") == ["Sales", "EMEA"]
    assert f.dn_values(None, "ou") == []
    assert f.rdn(dn) == r"cn=Smith\, John+uid=js"
    assert f.rdn_value(dn) == "Smith, John"
    assert f.rdn_value(dn, "uid") == "js"
    assert f.rdn_value(dn, "mail") is None
    assert f.parent_dn(dn) == "ou=Sales,ou=EMEA,dc=example,dc=com"
    assert f.parent_dn("dc=com") is None
    assert f.dn_parts("cn=a+uid=b,o=x") == [[["cn", "a"], ["uid", "b"]], [["o", "x"]]]
    # lists map element-wise, None passes through
    members = ["uid=a,ou=p,dc=x", "uid=b,ou=p,dc=x"]
    assert f.dn_value(members, "uid") == ["a", "b"]
    assert f.parent_dn(None) is None
    with pytest.raises(DNError):
        f.dn_value("not a dn", "cn")


def test_guid():
    u = uuid.UUID("b2d4c7a8-1234-4f5e-9abc-0123456789ab")
    assert f.guid(u.bytes_le) == str(u)
    assert f.guid([u.bytes_le]) == [str(u)]
    assert f.guid("{B2D4C7A8-1234-4F5E-9ABC-0123456789AB}") == str(u)
    with pytest.raises(ValueError, match="16 bytes"):
        f.guid(b"\x01\x02")
    with pytest.raises(ValueError, match="not a GUID"):
        f.guid("nope")
    with pytest.raises(TypeError):
        f.guid(12)


def _sid_bytes(authority: int, *subs: int) -> bytes:
    return (
        bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)
    )


def test_sid():
    assert f.sid(_sid_bytes(5, 21, 3623811015, 3361044348, 30300820, 1013)) == (
        "S-1-5-21-3623811015-3361044348-30300820-1013"
    )
    assert f.sid(_sid_bytes(5, 32, 544)) == "S-1-5-32-544"  # BUILTIN\Administrators
    assert f.sid("S-1-5-18") == "S-1-5-18"
    with pytest.raises(ValueError, match="not a valid SID"):
        f.sid(_sid_bytes(5, 21, 1)[:-1])
    with pytest.raises(ValueError):
        f.sid("S-x")


def test_filetime():
    assert f.filetime(["133497000000000000"]) == "2024-01-14T10:00:00+00:00"
    assert f.filetime(116444736000000000) == "1970-01-01T00:00:00+00:00"
    assert f.filetime("133497000001234567") == "2024-01-14T10:00:00.123456+00:00"
    assert f.filetime("0") is None  # never
    assert f.filetime(str(0x7FFFFFFFFFFFFFFF)) is None  # never (accountExpires)
    assert f.filetime([]) is None
    with pytest.raises(ValueError, match="not a number"):
        f.filetime("yesterday")
    with pytest.raises(ValueError, match="negative"):
        f.filetime(-5)
    with pytest.raises(ValueError, match="out of range"):
        f.filetime(0x7FFFFFFFFFFFFFFE)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("20240102030405Z", "2024-01-02T03:04:05+00:00"),
        ("20240102030405.0Z", "2024-01-02T03:04:05+00:00"),
        ("20240102030405.25Z", "2024-01-02T03:04:05.250000+00:00"),
        ("20240102030405+0130", "2024-01-02T01:34:05+00:00"),
        ("20240102030405-05", "2024-01-02T08:04:05+00:00"),
        ("202401020304Z", "2024-01-02T03:04:00+00:00"),
        ("2024010203,5Z", "2024-01-02T03:30:00+00:00"),
    ],
)
def test_generalized_time(text, iso):
    assert f.generalized_time(text) == iso


@pytest.mark.parametrize("text", ["20240102030405", "2024-01-02", "20241302030405Z", "x"])
def test_generalized_time_invalid(text):
    with pytest.raises(ValueError):
        f.generalized_time(text)


def test_uac_and_disabled():
    assert f.uac("4096") == ["WORKSTATION_TRUST_ACCOUNT"]
    assert f.uac(["514"]) == ["ACCOUNTDISABLE", "NORMAL_ACCOUNT"]
    assert f.uac(0x10000 | 0x200) == ["NORMAL_ACCOUNT", "DONT_EXPIRE_PASSWORD"]
    assert f.uac(0x4000) == ["0x4000"]  # an unassigned bit is named by its value
    assert f.uac(None) == []
    assert f.uac("-2147483134") == ["ACCOUNTDISABLE", "NORMAL_ACCOUNT", "0x80000000"]
    assert f.disabled(["4098"]) is True
    assert f.disabled("4096") is False
    assert f.disabled([]) is False
    with pytest.raises(ValueError):
        f.disabled("lots")


@pytest.mark.parametrize(
    ("raw", "cc", "out"),
    [
        ("+49 (30) 1234-567", None, "+49301234567"),
        ("0049 30 1234567", None, "+49301234567"),
        ("030 1234567", "49", "+49301234567"),
        ("030 1234567", "+49", "+49301234567"),
        ("030 1234567", 49, "+49301234567"),
        ("030 1234567", None, "0301234567"),
        ("+1 555 123 4567 ext. 89", None, "+15551234567"),
        ("+1 555 123 4567 x89", None, "+15551234567"),
        ("+33 1 23 45 67 89", "49", "+33123456789"),  # already international
        ("n/a", None, None),
        ("", None, None),
    ],
)
def test_phone(raw, cc, out):
    assert f.phone(raw, cc) == out


def test_phone_lists_and_bad_country_code():
    assert f.phone(["030 1", "+1 2"], "49") == ["+49301", "+12"]
    with pytest.raises(ValueError, match="country code"):
        f.phone("030 1", "DE")


def test_email():
    assert f.email("  John.Doe@Example.COM ") == "John.Doe@example.com"
    assert f.email(["A@B.C", "x@Ünï.De"]) == ["A@b.c", "x@ünï.de"]
    assert f.email("no-at-sign") == "no-at-sign"
    assert f.email("   ") is None
    assert f.email(None) is None


def test_bytes_filters():
    assert f.b64(b"\x00\xffA") == "AP9B"
    assert f.b64("é") == "w6k="
    assert f.b64decode("AP9B") == b"\x00\xffA"
    with pytest.raises(ValueError, match="base64"):
        f.b64decode("***")
    assert f.hex_([b"\x01\xab", "A"]) == ["01ab", "41"]


class FakeContext:
    """Stands in for Jinja's Context: the filter only reads ``parent``."""

    def __init__(self, fn):
        self.parent = {f.LOOKUP_KEY: fn}


def test_lookup_maps_lists_and_drops_unresolved():
    calls = []

    def lookup(job, dn, **kw):
        calls.append((job, dn, kw))
        return {"uid=a,dc=x": "T-A", "uid=b,dc=x": "T-B"}.get(dn)

    ctx = FakeContext(lookup)
    assert f.lookup(ctx, ["uid=a,dc=x", "uid=zz,dc=x", "uid=b,dc=x"], "people") == ["T-A", "T-B"]
    assert f.lookup(ctx, "uid=a,dc=x", "people") == "T-A"
    assert f.lookup(ctx, "uid=zz,dc=x", "people") is None
    assert f.lookup(ctx, None, "people") is None
    assert calls[0] == ("people", "uid=a,dc=x", {})
    f.lookup(ctx, "uid=a,dc=x", "people", kind="key")
    assert calls[-1] == ("people", "uid=a,dc=x", {"kind": "key"})
    with pytest.raises(RuntimeError, match="no lookup function"):
        f.lookup(FakeContext(None), "uid=a,dc=x", "people")
    with pytest.raises(ValueError, match="job name"):
        f.lookup(ctx, "uid=a,dc=x", "")
