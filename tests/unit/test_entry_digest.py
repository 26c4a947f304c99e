"""entry_digest: equal for the same entry under the same mapping, different otherwise."""

from __future__ import annotations

from syncd.contracts import Change, Op
from syncd.engine import entry_digest


def change(dn: str = "cn=a,dc=x", **attrs: list) -> Change:
    return Change(Op.UPSERT, "id-1", dn, attrs or {"cn": ["a"], "l": ["Zürich"]})


def test_same_entry_same_salt_same_digest():
    assert entry_digest(b"m1", change()) == entry_digest(b"m1", change())


def test_any_difference_changes_the_digest():
    base = entry_digest(b"m1", change())
    others = {
        entry_digest(b"m2", change()),  # another mapping file
        entry_digest(b"m1", change(dn="cn=a,ou=moved,dc=x")),
        entry_digest(b"m1", change(cn=["a"], l=["Zurich"])),
        entry_digest(b"m1", change(cn=["a"], l=["Zürich", "Bern"])),
        entry_digest(b"m1", change(cn=["a"], l=[b"Z\xc3\xbcrich"])),  # bytes, not text
        entry_digest(b"m1", change(cn=["a"])),
        entry_digest(b"m1", Change(Op.UPSERT, "id-2", "cn=a,dc=x", change().attributes)),
    }
    assert base not in others and len(others) == 7


def test_digest_is_the_same_in_another_process():
    """The digest is stored and compared by the next run, in another process (another
    hash seed): it must not depend on anything but the values."""
    import os
    import subprocess
    import sys

    code = (
        "import datetime as d, decimal\n"
        "from syncd.contracts import Change, Op\n"
        "from syncd.engine import entry_digest\n"
        "a = {'cn': ['a'], 'photo': [b'\\xff\\xd8'], 'when': [d.datetime(2026, 1, 2, 3, 4)],"
        " 'n': [decimal.Decimal('1.50'), 7, None, True]}\n"
        "print(entry_digest(b'm', Change(Op.UPSERT, 'id-1', 'cn=a', a)))\n"
    )
    digests = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_a_value_pickle_refuses_still_gets_a_digest():
    class Odd:
        def __reduce__(self):
            raise TypeError("not picklable")

        def __repr__(self):
            return "Odd()"

    one = entry_digest(b"m1", change(cn=[Odd()]))
    assert one == entry_digest(b"m1", change(cn=[Odd()]))
    assert one != entry_digest(b"m1", change(cn=["Odd()"]))


# --- raw-entry digests (the LDAP source hashes an entry's bytes as received) ----------

from syncd.connectors.ldap.values import BINARY_ATTRIBUTES, digest_key, to_change  # noqa: E402

RAW = [(b"cn", [b"a"]), (b"entryUUID", [b"id-1"]), (b"l", [b"Z\xc3\xbcrich"])]


def raw_change(body: bytes, key: bytes) -> Change:
    made = to_change(b"cn=a,dc=x", RAW, "entryuuid", body=body, digest_key=key)
    assert made is not None
    return made


def test_raw_digest_follows_the_bytes_and_every_decoding_setting():
    key = digest_key("entryuuid", BINARY_ATTRIBUTES, frozenset())
    one = raw_change(b"entry bytes", key).raw_digest
    assert one is not None and one == raw_change(b"entry bytes", key).raw_digest
    others = {
        raw_change(b"entry bytes!", key).raw_digest,
        # the same bytes decode differently: l as bytes, l dropped, another id attribute
        raw_change(
            b"entry bytes", digest_key("entryuuid", BINARY_ATTRIBUTES | {"l"}, frozenset())
        ).raw_digest,
        raw_change(
            b"entry bytes", digest_key("entryuuid", BINARY_ATTRIBUTES, frozenset({"l"}))
        ).raw_digest,
        raw_change(b"entry bytes", digest_key("cn", BINARY_ATTRIBUTES, frozenset())).raw_digest,
    }
    assert one not in others and len(others) == 4


def test_without_body_or_key_there_is_no_raw_digest():
    assert to_change(b"cn=a,dc=x", RAW, "entryuuid").raw_digest is None
    assert to_change(b"cn=a,dc=x", RAW, "entryuuid", body=b"x").raw_digest is None


def test_entry_digest_of_a_raw_change_covers_its_bytes_not_its_decoded_values():
    key = digest_key("entryuuid", BINARY_ATTRIBUTES, frozenset())
    a = raw_change(b"entry bytes", key)
    decoded = Change(a.op, a.source_id, a.dn, a.attributes)
    assert entry_digest(b"m1", a) == entry_digest(b"m1", raw_change(b"entry bytes", key))
    assert entry_digest(b"m1", a) != entry_digest(b"m1", raw_change(b"other bytes", key))
    assert entry_digest(b"m2", a) != entry_digest(b"m1", a)  # another mapping file
    # never equal to the digest of the decoded values (a source that gives none)
    assert entry_digest(b"m1", a) != entry_digest(b"m1", decoded)
    other_id = raw_change(b"entry bytes", key)
    other_id.source_id = "id-2"
    assert entry_digest(b"m1", other_id) != entry_digest(b"m1", a)
