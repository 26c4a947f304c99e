"""RFC 4514 DN parsing used by the mapping's DN filters."""

from __future__ import annotations

import pytest

from syncd.mapping.dn import DNError, escape_value, parse_dn, split_first


def pairs(dn: str) -> list[list[tuple[str, str]]]:
    return [list(rdn) for rdn in parse_dn(dn).rdns]


def test_plain_dn():
    assert pairs("uid=jd,ou=people,dc=example,dc=com") == [
        [("uid", "jd")],
        [("ou", "people")],
        [("dc", "example")],
        [("dc", "com")],
    ]


def test_escaped_comma_and_multivalued_rdn():
    parsed = parse_dn(r"cn=Smith\, John+uid=js,ou=x")
    assert [list(r) for r in parsed.rdns] == [[("cn", "Smith, John"), ("uid", "js")], [("ou", "x")]]
    assert parsed.raw == (r"cn=Smith\, John+uid=js", "ou=x")


@pytest.mark.parametrize(
    ("dn", "value"),
    [
        (r"cn=a\+b\=c\\d,o=x", "a+b=c\\d"),
        (r"cn=J\C3\BCrgen,o=x", "Jürgen"),  # hex-escaped UTF-8, two bytes
        (r"cn=\E6\9D\B1\E4\BA\AC,o=x", "東京"),
        (r"cn=\ lead\ ,o=x", " lead "),  # escaped leading/trailing spaces are kept
        (r"cn=trail\20,o=x", "trail "),
        ("cn=trail   ,o=x", "trail"),  # unescaped trailing spaces are not
        (r"cn=\#hash,o=x", "#hash"),
        ('cn="quoted, old style",o=x', "quoted, old style"),
        ("cn=#04024869,o=x", "#04024869"),  # BER value kept as written
        ("cn=a=b,o=x", "a=b"),
        ("cn=Ελληνικά,o=x", "Ελληνικά"),
        ("cn=Иванов,o=x", "Иванов"),
        ("cn=محمد,o=x", "محمد"),
        ("cn=😀 phone,o=x", "😀 phone"),
        ("cn=,o=x", ""),
        (r"cn=a\zb,o=x", "azb"),  # escaping a character that needs none is harmless
    ],
)
def test_values(dn, value):
    assert parse_dn(dn).rdns[0][0][1] == value


def test_spaces_around_separators_and_semicolons():
    assert pairs("CN=WS1 , OU=Work ; DC=e ") == [[("CN", "WS1")], [("OU", "Work")], [("DC", "e")]]
    assert pairs("cn = a + uid = b,o=x") == [[("cn", "a"), ("uid", "b")], [("o", "x")]]


def test_numeric_oid_type_and_root_dn():
    assert pairs("2.5.4.3=x,o=y")[0] == [("2.5.4.3", "x")]
    assert parse_dn("").rdns == ()
    assert parse_dn("   ").rdns == ()


@pytest.mark.parametrize(
    "dn",
    ["cn", "=x", "cn=a,b", "cn=x,", "cn=a\\", r"cn=\FF,o=x", "c n=x", "cn=#0", 'cn="open'],
)
def test_invalid(dn):
    with pytest.raises(DNError):
        parse_dn(dn)


def test_not_text():
    with pytest.raises(DNError, match="must be text"):
        parse_dn(b"cn=x")  # type: ignore[arg-type]


def test_split_first_fast_and_full_paths_agree():
    for dn in [
        "cn=pc-1,ou=devices,dc=example,dc=com",
        "cn=pc-1, ou=devices , dc=example",
        r"cn=Smith\, John+uid=js,ou=x,dc=y",
        "cn=x",
    ]:
        parsed = parse_dn(dn)
        assert split_first(dn) == (parsed.raw[0], ",".join(parsed.raw[1:]))
    with pytest.raises(DNError):
        split_first("nonsense")
    with pytest.raises(DNError):
        split_first("")


def test_escape_value_round_trips():
    for value in ["Smith, John", " lead", "trail ", "#x", 'a"b+c;d<e>f\\g', "東京", "plain"]:
        assert parse_dn(f"cn={escape_value(value)},o=x").rdns[0][0][1] == value


def test_random_text_parses_or_raises_dnerror_only():
    import random

    rnd = random.Random(4514)
    alphabet = 'cnouid=,+;\\"# 0123456789abcdefABCDEFé東\x00'
    for _ in range(3000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        try:
            parsed = parse_dn(text)
        except DNError:
            continue
        assert len(parsed.rdns) == len(parsed.raw)
        for rdn in parsed.rdns:
            assert rdn and all(isinstance(t, str) and isinstance(v, str) for t, v in rdn)


def test_random_values_round_trip_through_escape_and_both_parsers():
    import random

    rnd = random.Random(2253)
    alphabet = ' ,+;"\\<>#=aZ9éß東😀\t'
    for _ in range(2000):
        values = [
            "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 10))) for _ in range(3)
        ]
        dn = ",".join(f"cn={escape_value(v)}" for v in values)
        assert [r[0][1] for r in parse_dn(dn).rdns] == values, dn
        first, parent = split_first(dn)
        assert parse_dn(first).rdns[0][0][1] == values[0]
        assert [r[0][1] for r in parse_dn(parent).rdns] == values[1:]


@pytest.mark.parametrize(
    "a, b",
    [
        ("uid=alice,ou=people,dc=example,dc=com", "UID=Alice, OU=People , dc=EXAMPLE,  dc=com"),
        ("cn=Smith\\, John,dc=x", "cn=Smith\\2C John,dc=x"),
        ("cn=Smith\\, John,dc=x", 'cn="Smith, John",dc=x'),
        ("cn=J\u00e9r\u00f4me,dc=x", "cn=J\\C3\\A9r\\C3\\B4me,dc=x"),
        ("cn=Je\u0301ro\u0302me,dc=x", "cn=J\u00e9r\u00f4me,dc=x"),  # NFD vs NFC
        ("cn=Bob+uid=bob,dc=x", "uid=bob + cn=BOB,dc=x"),
        ("cn=a  b,dc=x", "cn=a b,dc=x"),
    ],
)
def test_normalize_dn_gives_one_text_per_dn(a, b):
    from syncd.mapping.dn import normalize_dn, same_dn

    assert normalize_dn(a) == normalize_dn(b)
    assert same_dn(a, b)


def test_normalize_dn_keeps_different_dns_apart_and_escapes():
    from syncd.mapping.dn import build_dn, dn_key, normalize_dn

    assert normalize_dn("cn=a,dc=x") != normalize_dn("cn=a\\ ,dc=x")
    assert normalize_dn("cn=a\\,b,dc=x") != normalize_dn("cn=a,cn=b,dc=x")
    assert normalize_dn("cn=Smith\\, John+uid=js,dc=x") == "cn=smith\\, john+uid=js,dc=x"
    assert normalize_dn("cn=\\23x\\00y,dc=x") == "cn=\\#x\\00y,dc=x"
    assert build_dn([(("cn", " lead, trail "),), (("dc", "x"),)]) == "cn=\\ lead\\, trail\\ ,dc=x"
    assert dn_key("not a dn ") == "not a dn"
    with pytest.raises(DNError):
        escape_value("")


def test_plain_dn_fast_path_agrees_with_the_parser():
    """normalize_dn skips the parser for plain DNs; over many random DNs (specials,
    escapes, spaces in every place, multi-valued RDNs, non-ASCII) it must give exactly
    what the parser path gives, and raise where it raises."""
    import random

    from syncd.mapping.dn import DNError, _normalize_parsed, normalize_dn

    rng = random.Random(4514)
    pieces = [*"abcXYZ019-.", " ", "  ", ",", "+", "=", "#", "\\,", "\\2C", '"', ";"]
    pieces += ["\u00fc", "U\u0308", "\u00c9", "<", ">", "\\", "\t", "'", "*", "~"]
    types = ["cn", "CN", "ou", "uid", "2.5.4.3", "x-Attr", "1a", ""]
    fast = 0
    for _ in range(20000):
        rdns = []
        for _ in range(rng.randint(1, 4)):
            value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
            rdns.append(f"{rng.choice(types)}={value}")
        dn = rng.choice([",", ", ", " ,", ","]).join(rdns)
        try:
            want = _normalize_parsed(dn)
        except DNError:
            with pytest.raises(DNError):
                normalize_dn(dn)
            continue
        got = normalize_dn(dn)
        assert got == want, dn
        fast += got == dn.lower()
    assert fast > 1000  # the plain shapes were generated too
    for dn in ["uid=Alice,ou=People,dc=Example,dc=com", "cn=host 1,ou=a b c", "cn=a#b"]:
        assert normalize_dn(dn) == _normalize_parsed(dn) == dn.lower()
