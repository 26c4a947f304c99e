"""Helpers for the HR reconciliation tests: an LdapTarget against the test slapd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ldap3
import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.target import LdapTarget, LdapTargetOptions
from syncd.contracts import Action, ActionKind
from tests.servers.slapd import ROOT_PW, Slapd

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
DISABLED = f"ou=disabled,{BASE}"


@pytest.fixture
def root_pw_file(tmp_path) -> Path:
    path = tmp_path / "root.pw"
    path.write_text(ROOT_PW + "\n")
    return path


def ldap_conn_cfg(server: Slapd, pw_file: Path) -> LdapConnection:
    return LdapConnection.model_validate(
        {
            "url": server.url,
            "start_tls": False,
            "bind_dn": server.root_dn,
            "password": {"file": str(pw_file)},
        }
    )


def default_options(**overrides: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "base": PEOPLE,
        "dn_template": "uid={uid},ou={department},ou=people,dc=example,dc=com",
        "disabled_ou": DISABLED,
        "disabled_attributes": {"employeeType": "disabled"},
        "owned_attributes": ["uid", "cn", "sn", "givenName", "mail", "title", "departmentNumber"],
        "group_base": GROUPS,
        "correlate": [
            {"field": "employeeNumber", "attribute": "employeeNumber"},
            {"field": "mail", "attribute": "mail"},
        ],
    }
    opts.update(overrides)
    return opts


def make_target(server: Slapd, pw_file: Path, **overrides: Any) -> LdapTarget:
    options = LdapTargetOptions.model_validate(default_options(**overrides))
    target = LdapTarget(ldap_conn_cfg(server, pw_file), options, job="hr")
    target.open()
    return target


def person(key: str, first: str, last: str, department: str = "Sales", **extra: Any) -> dict:
    uid = extra.pop("uid", f"{first}.{last}".lower())
    fields = {
        "uid": uid,
        "cn": f"{first} {last}",
        "sn": last,
        "givenName": first,
        "mail": f"{uid}@example.com",
        "title": "Clerk",
        "department": department,
        "departmentNumber": department,
        "employeeNumber": key,
    }
    fields.update(extra)
    return fields


def create(key: str, fields: dict, target_id: str | None = None) -> Action:
    return Action(ActionKind.CREATE, source_id=key, key=key, fields=fields, target_id=target_id)


def update(key: str, fields: dict, target_id: str | None, changed=()) -> Action:
    return Action(
        ActionKind.UPDATE,
        source_id=key,
        key=key,
        fields=fields,
        target_id=target_id,
        changed=tuple(changed) or tuple(fields),
    )


def delete(key: str, target_id: str | None) -> Action:
    return Action(ActionKind.DELETE, source_id=key, key=key, target_id=target_id)


class Reader:
    """Reads the directory directly as the root DN (independently of the target)."""

    def __init__(self, server: Slapd):
        self.conn = ldap3.Connection(
            server.url, server.root_dn, server.root_pw, auto_bind=True, raise_exceptions=True
        )

    def find(self, filt: str, base: str = BASE, attrs=("*", "+")) -> list:
        self.conn.search(base, filt, attributes=list(attrs))
        return list(self.conn.entries)

    def one(self, filt: str, base: str = BASE):
        found = self.find(filt, base)
        assert len(found) == 1, f"{filt}: {[e.entry_dn for e in found]}"
        return found[0]

    def members(self, group_dn: str) -> list[str]:
        self.conn.search(group_dn, "(objectClass=*)", ldap3.BASE, attributes=["member"])
        return [str(v).lower() for v in self.conn.entries[0]["member"].values]

    def close(self) -> None:
        self.conn.unbind()


@pytest.fixture
def reader(slapd):
    r = Reader(slapd)
    yield r
    r.close()


def add_groups(server: Slapd, *dns: str) -> None:
    """groupOfNames needs a member: each group starts with a placeholder member."""
    ldif = []
    for dn in dns:
        cn = dn.split(",")[0].split("=")[1]
        ldif.append(f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\nmember: cn=nobody,{BASE}\n")
    server.add("\n".join(ldif))
