"""RawChange: a digested entry's attributes are decoded on first use, exactly as an
eager decode would give them, and the Change behaves as a plain one everywhere."""

from __future__ import annotations

import copy
import pickle

import pytest

from syncd.connectors.ldap import values
from syncd.connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    RawChange,
    digest_key,
    to_change,
)
from syncd.contracts import Change, Op

# Server order kept; two descriptions of cn merge; a binary attribute that is valid
# UTF-8 stays bytes; a broken UTF-8 value stays bytes; an option is kept; an empty
# description of the id attribute comes before the real one.
RAW = [
    (b"entryUUID", []),
    (b"cn", [b"A", "Zoë".encode()]),
    (b"entryUUID", [b"3F2504E0-4F89-11D3-9A0C-0305E82C3301"]),
    (b"jpegPhoto;binary", [b"plain"]),
    (b"CN;lang-de", [b"c"]),
    (b"description", [b"ok", b"\xff\xfe"]),
    (b"modifyTimestamp", [b"20261206000000Z"]),
]
DROP = frozenset({"modifytimestamp"})


def made(raw: list = RAW, id_attribute: str = "entryuuid", **kw) -> Change | None:
    key = digest_key(id_attribute, BINARY_ATTRIBUTES, DROP)
    return to_change(
        b"cn=A,dc=x", raw, id_attribute, drop=DROP, body=b"bytes", digest_key=key, **kw
    )


def eager(raw: list = RAW, id_attribute: str = "entryuuid") -> Change | None:
    return to_change(b"cn=A,dc=x", raw, id_attribute, drop=DROP)


def test_a_digested_entry_is_decoded_only_when_its_attributes_are_read(monkeypatch):
    calls = []
    real = values.decode_attributes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(values, "decode_attributes", counting)
    change = made()
    assert isinstance(change, RawChange)
    assert change.source_id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert change.raw_digest is not None and change.dn == "cn=A,dc=x"
    assert calls == []  # id, DN and digest need no decode of the other values
    first = change.attributes
    assert calls == [1]
    assert change.attributes is first  # decoded once
    assert calls == [1]


def test_the_lazy_decode_gives_what_the_eager_one_gives():
    lazy, plain = made(), eager()
    assert lazy is not None and plain is not None
    assert lazy.source_id == plain.source_id
    assert lazy.attributes == plain.attributes
    assert list(lazy.attributes) == list(plain.attributes)  # the server's order
    assert lazy.attributes["cn"] == ["A", "Zoë"]
    assert lazy.attributes["jpegphoto"] == [b"plain"]
    assert lazy.attributes["description"] == ["ok", b"\xff\xfe"]
    assert "modifytimestamp" not in lazy.attributes


@pytest.mark.parametrize(
    ("id_attribute", "raw", "expected"),
    [
        (
            "objectguid",
            [(b"objectGUID", [bytes(range(16))])],
            "03020100-0504-0706-0809-0a0b0c0d0e0f",
        ),
        ("uid", [(b"UID", [b"\xffraw"])], b"\xffraw".hex()),  # not UTF-8: hex, as eager
        ("cn", [(b"cn", [b"a"]), (b"cn", [b"b"])], "a"),
    ],
)
def test_the_id_is_the_eager_decode_first_value(id_attribute, raw, expected):
    lazy, plain = made(raw, id_attribute), eager(raw, id_attribute)
    assert lazy is not None and plain is not None
    assert lazy.source_id == plain.source_id == expected


def test_an_entry_without_the_id_attribute_gives_none_as_before():
    raw = [(b"cn", [b"a"]), (b"entryUUID", [])]
    assert made(raw) is None and eager(raw) is None


def test_a_given_id_is_kept():
    lazy = made(sid="from-the-control")
    assert lazy is not None and lazy.source_id == "from-the-control"


def test_it_compares_pickles_and_copies_as_a_plain_change():
    lazy = made()
    assert lazy is not None
    plain = Change(lazy.op, lazy.source_id, lazy.dn, dict(lazy.attributes), lazy.raw_digest)
    fresh = made()
    assert lazy == plain and plain == lazy and lazy == fresh
    assert lazy != Change(Op.UPSERT, lazy.source_id, lazy.dn, {}, lazy.raw_digest)
    assert made() != eager()  # no raw digest on the eager one
    for other in (pickle.loads(pickle.dumps(made())), copy.copy(made()), copy.deepcopy(made())):
        assert type(other) is Change and other == plain
    assert repr(made()) == repr(plain)
    with pytest.raises(TypeError):
        hash(lazy)


def test_assigned_attributes_replace_the_raw_ones():
    lazy = made()
    assert lazy is not None
    lazy.attributes = {"cn": ["new"]}
    assert lazy.attributes == {"cn": ["new"]}
    again = made()
    assert again is not None
    again.attributes.pop("cn")  # a caller's edit of the decoded dict stays
    assert "cn" not in again.attributes
