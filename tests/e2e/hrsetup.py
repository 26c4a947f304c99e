"""An HR job through the real CLI: a CSV export -> the test slapd (LDAP target)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import yaml

from tests.e2e.conftest import run_in_process

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
DISABLED = f"ou=disabled,{BASE}"
HEADER = "employeeId;givenName;surname;title;department;photo;initialPassword;pin"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16 + b"\xff\xd9"

MAPPING = """\
version: 1
key: employeeId
fields:
  uid: "{{ ((givenName | first) ~ '.' ~ (surname | first)) | lower }}"
  cn: "{{ givenName | first }} {{ surname | first }}"
  givenName: givenName
  sn: surname
  title: title
  departmentNumber: department
  employeeNumber: employeeId
  jpegPhoto: "{{ (photo | first | b64decode) if (photo | first) else none }}"
  userPassword: initialPassword
  roomNumber: {value: pin, secret: true}
  groups: "{{ ['staff'] }}"
required: [uid, sn, departmentNumber]
"""

EXISTING = f"""\
dn: ou=disabled,{BASE}
objectClass: organizationalUnit
ou: disabled

dn: cn=staff,{GROUPS}
objectClass: groupOfNames
cn: staff
member: cn=nobody,{BASE}

dn: uid=bboss,{PEOPLE}
objectClass: inetOrgPerson
uid: bboss
cn: B Boss
sn: Boss
title: Manager
employeeNumber: E0002
telephoneNumber: 100

dn: ou=Eng,{PEOPLE}
objectClass: organizationalUnit
ou: Eng

dn: uid=old.timer,ou=Eng,{PEOPLE}
objectClass: inetOrgPerson
uid: old.timer
cn: Old Timer
sn: Timer
employeeNumber: E0009
"""


def row(emp: str, first: str, last: str, dept: str, title: str = "Clerk", **kw: str) -> str:
    photo = base64.b64encode(kw["photo"]).decode() if kw.get("photo") else ""
    return f"{emp};{first};{last};{title};{dept};{photo};{kw.get('pw', '')};{kw.get('pin', '')}"


class Hr:
    """The job ``hr`` (CSV drop directory -> slapd ou=people) and its CLI."""

    def __init__(self, work: Path, slapd, *, max_deletes: int | str = 5):
        self.dir = work
        self.slapd = slapd
        self.drop = work / "drop"
        self.drop.mkdir()
        (work / "pw").write_text(slapd.root_pw + "\n")
        (work / "hr-map.yaml").write_text(MAPPING)
        cfg = {
            "version": 1,
            "state": {"url": f"sqlite:///{work}/state.db"},
            "connections": {
                "export": {
                    "type": "csv",
                    "path": str(self.drop),
                    "glob": "hr-*.csv",
                    "delimiter": ";",
                    "min_age": 0,
                },
                "directory": {
                    "type": "ldap",
                    "url": slapd.url,
                    "start_tls": False,
                    "bind_dn": slapd.root_dn,
                    "password": {"file": str(work / "pw")},
                },
            },
            "jobs": {
                "hr": {
                    "source": {
                        "connection": "export",
                        "id_column": "employeeId",
                        "max_drop": "50%",
                    },
                    "mapping": "hr-map.yaml",
                    "target": {
                        "connection": "directory",
                        "base": PEOPLE,
                        "dn_template": f"uid={{uid}},ou={{departmentNumber}},{PEOPLE}",
                        "disabled_ou": DISABLED,
                        "disabled_attributes": {"employeeType": "disabled"},
                        "group_base": GROUPS,
                        "correlate": [{"field": "employeeNumber", "attribute": "employeeNumber"}],
                    },
                    "max_deletes": max_deletes,
                }
            },
        }
        self.config = work / "syncd.yaml"
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def export(self, *rows: str, n: int = 1) -> Path:
        path = self.drop / f"hr-{n}.csv"
        path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
        past = time.time() - 120 + n
        os.utime(path, (past, past))
        return path

    def syncd(self, *args: str, check: bool = True):
        result = run_in_process(["-c", str(self.config), *args])
        if check and result.returncode != 0:
            raise AssertionError(
                f"syncd {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result


def dump(slapd, base: str = PEOPLE) -> dict[str, dict[str, list[str]]]:
    """Every entry under ``base`` as {lower DN: {attribute: sorted values}} (operational
    attributes left out), for comparing two directories."""
    import ldap3

    conn = ldap3.Connection(slapd.url, slapd.root_dn, slapd.root_pw, auto_bind=True)
    try:
        conn.search(base, "(objectClass=*)", attributes=["*"])
        out = {}
        for e in conn.response:
            attrs = {
                k.lower(): sorted(repr(v) for v in vals) for k, vals in e["raw_attributes"].items()
            }
            out[e["dn"].lower()] = attrs
        return out
    finally:
        conn.unbind()
