"""Helpers for the Active Directory tests: a small directory in a test's own OU."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from syncd.connectors.ldap.source import LdapSourceOptions
from syncd.contracts import Change, Op, Read

FILTER = "(|(objectClass=user)(objectClass=group))"
ATTRIBUTES = ["cn", "description", "member", "objectClass", "sAMAccountName"]


@dataclass
class Tree:
    """Objects made by ``tree``: DNs by short name, GUIDs by short name."""

    root: str
    staff: str
    other: str
    dns: dict[str, str] = field(default_factory=dict)
    guids: dict[str, str] = field(default_factory=dict)

    def name_of(self, guid: str) -> str:
        return next((n for n, g in self.guids.items() if g == guid), guid)


@pytest.fixture
def tree(samba_dc, samba_ou) -> Tree:
    """In the test's OU: ``OU=staff`` (the scope) with users alice, bob, carol, computer
    pc1 and group team (alice, bob); ``OU=other`` (out of scope) with user dave."""
    staff = samba_dc.add_ou("staff", samba_ou)
    other = samba_dc.add_ou("other", samba_ou)
    t = Tree(samba_ou, staff, other)
    tag = samba_ou.split(",", 1)[0].split("=", 1)[1][2:]  # unique per test
    for name in ("alice", "bob", "carol"):
        t.dns[name] = samba_dc.add_user(staff, f"{name}-{tag}", description=f"{name} v1")
    t.dns["pc1"] = samba_dc.add_computer(staff, f"pc1-{tag}")
    t.dns["team"] = samba_dc.add_group(staff, f"team-{tag}", members=[t.dns["alice"], t.dns["bob"]])
    t.dns["dave"] = samba_dc.add_user(other, f"dave-{tag}")
    t.guids = {name: samba_dc.guid(dn) for name, dn in t.dns.items()}
    return t


def options(base: str, **kw) -> LdapSourceOptions:
    data = {"base": base, "filter": FILTER, "attributes": list(ATTRIBUTES)}
    data.update(kw)
    return LdapSourceOptions.model_validate(data)


def collect(read: Read) -> list[Change]:
    changes = list(read.changes)
    assert read.outcome is not None, "the read ended without an outcome"
    return changes


def upserts(changes: list[Change]) -> dict[str, Change]:
    out = {c.source_id: c for c in changes if c.op is Op.UPSERT}
    assert len(out) == sum(1 for c in changes if c.op is Op.UPSERT), "an object came twice"
    return out


def deletes(changes: list[Change]) -> set[str]:
    return {c.source_id for c in changes if c.op is Op.DELETE}


def cursor_of(read: Read) -> dict:
    assert read.outcome is not None and read.outcome.cursor
    return json.loads(read.outcome.cursor)
