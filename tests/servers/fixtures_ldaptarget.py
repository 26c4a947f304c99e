"""Contract-suite harness for the LDAP target (syncd/connectors/ldap/target.py) on slapd."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import ldap3
import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.target import LdapTarget, LdapTargetOptions
from tests.contract.harness import BAD_PASSWORD, Stored, TargetHarness, register
from tests.servers.ports import free_port
from tests.servers.slapd import ROOT_PW, Slapd

PEOPLE = "ou=people,dc=example,dc=com"


@register
class LdapTargetHarness(TargetHarness):
    """inetOrgPerson entries under ou=people: uid = key, displayName = text,
    description = multi. Soft delete = the HR "disable" (employeeType: disabled)."""

    name = "ldap-openldap"
    capabilities = frozenset({"credentials", "down", "delete", "soft_delete", "bad_record"})
    apply_timeout = 15.0

    def __init__(self, server: Slapd, workdir: Path):
        super().__init__()
        self.server = server
        self.workdir = workdir
        self.good_pw = workdir / "root.pw"
        self.good_pw.write_text(ROOT_PW + "\n")
        self.bad_pw = workdir / "bad.pw"
        self.bad_pw.write_text(BAD_PASSWORD + "\n")
        self.reader = ldap3.Connection(
            server.url, server.root_dn, server.root_pw, auto_bind=True, raise_exceptions=True
        )

    def _conn(self, url: str, pw: Path) -> LdapConnection:
        return LdapConnection.model_validate(
            {
                "url": url,
                "start_tls": False,
                "bind_dn": self.server.root_dn,
                "password": {"file": str(pw)},
                "timeout": 3,
            }
        )

    def _options(self, soft_delete: bool) -> LdapTargetOptions:
        return LdapTargetOptions.model_validate(
            {
                "base": PEOPLE,
                "dn_template": "uid={uid}," + PEOPLE,
                "owned_attributes": ["uid", "cn", "sn", "displayName", "description"],
                "on_delete": "disable" if soft_delete else "delete",
                "disabled_attributes": {"employeeType": "disabled"},
            }
        )

    def make_target(self, *, soft_delete: bool = False) -> LdapTarget:
        return LdapTarget(
            self._conn(self.server.url, self.good_pw), self._options(soft_delete), job="contract"
        )

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"uid": key, "cn": text, "sn": text, "displayName": text, "description": multi}

    def _entries(self, filt: str) -> list[Any]:
        self.reader.search(PEOPLE, filt, attributes=["uid", "displayName", "description"])
        return list(self.reader.entries)

    def stored(self) -> list[Stored]:
        return [
            Stored(
                e.uid.value,
                e.displayName.value,
                list(e.description.values) if "description" in e.entry_attributes else [],
            )
            for e in self._entries("(&(objectClass=inetOrgPerson)(!(employeeType=disabled)))")
        ]

    def soft_deleted(self) -> set[str]:
        return {e.uid.value for e in self._entries("(employeeType=disabled)")}

    def bad_fields(self, key: str) -> dict[str, Any]:
        # inetOrgPerson needs sn: the server refuses the add (objectClassViolation).
        return {"uid": key, "cn": "No surname", "sn": None, "displayName": "x"}

    def make_bad_credentials_target(self) -> LdapTarget:
        return LdapTarget(
            self._conn(self.server.url, self.bad_pw), self._options(False), job="contract"
        )

    def make_down_target(self) -> LdapTarget:
        return LdapTarget(
            self._conn(f"ldap://127.0.0.1:{free_port()}", self.good_pw),
            self._options(False),
            job="contract",
        )

    def close(self) -> None:
        super().close()
        try:
            self.reader.unbind()
        except Exception:
            pass


@pytest.fixture
def harness_ldap_openldap(slapd, tmp_path):
    h = LdapTargetHarness(slapd, tmp_path)
    yield h
    h.close()


@register
class AdTargetHarness(TargetHarness):
    """AD users (Samba AD DC over LDAPS) in a fresh OU: cn = key, displayName = text,
    url (multi-valued) = multi. Soft delete = userAccountControl ACCOUNTDISABLE."""

    name = "ldap-samba"
    capabilities = frozenset({"credentials", "down", "delete", "soft_delete"})
    apply_timeout = 20.0

    def __init__(self, dc: Any, ou: str, workdir: Path):
        super().__init__()
        self.dc = dc
        self.ou = ou
        self.good_pw = workdir / "admin.pw"
        self.good_pw.write_text(dc.admin_pw)
        self.bad_pw = workdir / "bad.pw"
        self.bad_pw.write_text(BAD_PASSWORD)

    def _conn(self, url: str, pw: Path) -> LdapConnection:
        return LdapConnection.model_validate(
            {
                "url": url,
                "ca_file": self.dc.ca_file,
                "bind_dn": self.dc.admin_dn,
                "password": {"file": str(pw)},
                "timeout": 5,
            }
        )

    def _target(self, url: str, pw: Path, soft_delete: bool) -> LdapTarget:
        options = LdapTargetOptions.model_validate(
            {
                "directory": "ad",
                "base": self.ou,
                "dn_template": "cn={cn}," + self.ou,
                "owned_attributes": ["sAMAccountName", "sn", "displayName", "url"],
                "on_delete": "disable" if soft_delete else "delete",
            }
        )
        return LdapTarget(self._conn(url, pw), options, job="contract")

    def make_target(self, *, soft_delete: bool = False) -> LdapTarget:
        return self._target(self.dc.ldaps_url, self.good_pw, soft_delete)

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        sam = "c" + hashlib.sha1(f"{self.ou}/{key}".encode()).hexdigest()[:15]
        return {
            "cn": key,
            "sAMAccountName": sam,
            "sn": "Contract",
            "displayName": text,
            "url": multi,
        }

    def _users(self, disabled: bool) -> list[dict]:
        bit = "(userAccountControl:1.2.840.113556.1.4.803:=2)"
        filt = f"(&(objectClass=user){bit})" if disabled else f"(&(objectClass=user)(!{bit}))"
        conn = self.dc.connection()
        conn.search(self.ou, filt, attributes=["cn", "displayName", "url"])
        return [e["attributes"] for e in conn.response if e.get("type") == "searchResEntry"]

    @staticmethod
    def _one(value: Any) -> Any:
        return value[0] if isinstance(value, list) else value

    def stored(self) -> list[Stored]:
        return [
            Stored(self._one(a["cn"]), self._one(a["displayName"]), list(a.get("url") or []))
            for a in self._users(False)
        ]

    def soft_deleted(self) -> set[str]:
        return {self._one(a["cn"]) for a in self._users(True)}

    def make_bad_credentials_target(self) -> LdapTarget:
        return self._target(self.dc.ldaps_url, self.bad_pw, False)

    def make_down_target(self) -> LdapTarget:
        return self._target(f"ldaps://127.0.0.1:{free_port()}", self.good_pw, False)


@pytest.fixture
def harness_ldap_samba(samba_dc, samba_ou, tmp_path):
    h = AdTargetHarness(samba_dc, samba_ou, tmp_path)
    yield h
    h.close()
