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
