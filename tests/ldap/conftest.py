"""Helpers for the LDAP source tests: configs for a test slapd, reading everything."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from syncd.connectors.ldap.connection import LdapConnection
from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions
from syncd.contracts import Change, Read
from tests.servers.slapd import ROOT_PW, Slapd

PEOPLE = "ou=people,dc=example,dc=com"


@pytest.fixture
def root_pw_file(tmp_path) -> Path:
    path = tmp_path / "root.pw"
    path.write_text(ROOT_PW + "\n")
    return path


def conn_cfg(server: Slapd, pw_file: Path | None, **kw) -> LdapConnection:
    """A connection block for ``server`` as its root DN (plain ldap:// on loopback)."""
    data = {"url": server.url, "start_tls": False}
    if pw_file is not None:
        data.update(bind_dn=server.root_dn, password={"file": str(pw_file)})
    data.update(kw)
    return LdapConnection.model_validate(data)


def make_source(server: Slapd, pw_file: Path | None, conn_kw=None, **opts) -> LdapSource:
    opts.setdefault("base", PEOPLE)
    options = LdapSourceOptions.model_validate(opts)
    return LdapSource(conn_cfg(server, pw_file, **(conn_kw or {})), options, job="test")


def read_all(
    source: LdapSource, cursor: str | None = None, *, full: bool = False
) -> tuple[list[Change], Read]:
    read = source.read(cursor, full=full)
    changes = list(read.changes)
    assert read.outcome is not None
    return changes, read


def person_ldif(i: int, base: str = PEOPLE, **extra: str) -> str:
    lines = [
        f"dn: uid=p{i:06d},{base}",
        "objectClass: inetOrgPerson",
        f"uid: p{i:06d}",
        f"cn: Person {i}",
        f"sn: Number{i}",
        f"mail: p{i}@example.com",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n\n"


def people_ldif(n: int, start: int = 0) -> str:
    return "".join(person_ldif(i) for i in range(start, start + n))


def non_loopback_ipv4() -> str | None:
    """This machine's primary non-loopback IPv4 address (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.200", 9))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip
