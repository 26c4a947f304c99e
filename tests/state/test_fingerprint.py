"""Record fingerprints: canonical, type-aware, order-aware for lists, fast."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest

from syncd.state.fingerprint import changed_fields, field_digest, fingerprint


def test_shape_and_stability():
    fp, digests = fingerprint({"cn": "pc-1", "ips": ["10.0.0.1", "10.0.0.2"]})
    assert len(fp) == 32 and all(len(d) == 16 for d in digests.values())
    assert set(digests) == {"cn", "ips"}
    # Golden values: a change here makes every stored object look changed after an
    # upgrade (one full rewrite of every target). Change only on purpose.
    assert digests["cn"] == field_digest("pc-1") == "f2a6db3b7a55331d"
    assert fp == "7694076af9a628696fd558d6b1abc6a2"
    assert fp == fingerprint({"ips": ["10.0.0.1", "10.0.0.2"], "cn": "pc-1"})[0]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("abc", b"abc"),  # text and bytes of the same content
        ("1", 1),
        (1, 1.0),
        (1, True),
        (0, False),
        ("", None),
        ([], None),
        ("", []),
        (["a", "b"], ["b", "a"]),  # list order matters
        (["ab"], ["a", "b"]),
        (["a", "b"], "a,b"),
        ([["a"], "b"], ["a", ["b"]]),
        ("e\u0301", "\u00e9"),  # no Unicode normalisation: NFD differs from NFC
        (dt.date(2026, 1, 2), "2026-01-02"),
        (Decimal("1.0"), 1.0),
    ],
)
def test_values_that_must_differ(a, b):
    assert field_digest(a) != field_digest(b)
    assert fingerprint({"f": a})[0] != fingerprint({"f": b})[0]


def test_none_means_absent():
    assert fingerprint({"a": "x", "b": None}) == fingerprint({"a": "x"})


def test_field_names_count():
    assert fingerprint({"a": "x"})[0] != fingerprint({"b": "x"})[0]
    assert fingerprint({"a": "x", "b": "y"})[0] != fingerprint({"a": "y", "b": "x"})[0]


def test_changed_fields():
    _, old = fingerprint({"a": "1", "b": "2", "c": "3"})
    _, new = fingerprint({"a": "1", "b": "two", "d": "4"})
    assert changed_fields(old, new) == ("b", "d", "c")
    assert changed_fields(new, new) == ()


def test_unsupported_type_names_the_field():
    with pytest.raises(TypeError, match="field 'meta': a record field cannot hold a dict"):
        fingerprint({"ok": "x", "meta": {"k": "v"}})


def test_fast_enough():
    record = {
        "hostname": "pc-1234",
        "serial": "SN-99999",
        "description": "A laptop",
        "location": "Paris",
        "department": "IT",
        "owner": "uid=jdoe,ou=people,dc=example,dc=com",
        "ips": ["10.0.0.1", "10.0.0.2"],
        "photo": b"\x00" * 200,
    }
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        fingerprint(record)
    per_record = (time.perf_counter() - started) / n * 1e6
    print(f"fingerprint: {per_record:.1f} us per record")
    assert per_record < 100  # about 10 us here; generous for loaded CI machines
