"""A value the target refuses for good fails that field only (issue 13.2).

slapd enforces IA5String on ``mail``: a non-ASCII address is refused with
invalidAttributeSyntax. The entry is still written with its other fields, the run
advances, the field is quarantined with its reason, and it is written again once its
value changes.
"""

from __future__ import annotations

import sqlite3

import ldap3
import pytest

from tests.e2e.test_crash_window import PEOPLE, Setup

pytestmark = pytest.mark.slapd

MAPPING = (
    "version: 1\nkey: id\nfields:\n  uid: uid\n  cn: uid\n  sn: uid\n  l: location\n  mail: mail\n"
)


def export(s: Setup, rows: list[tuple[str, str, str]]) -> None:
    lines = ["id;uid;location;mail"] + [f"{i};u{i};{loc};{mail}" for i, loc, mail in rows]
    s.csv.write_text("\n".join(lines) + "\n", encoding="utf-8")


def entry(s: Setup, uid: str) -> dict:
    conn = ldap3.Connection(s.slapd.url, s.slapd.root_dn, s.slapd.root_pw, auto_bind=True)
    try:
        conn.search(PEOPLE, f"(uid={uid})", attributes=["l", "mail"])
        return {k.lower(): v for k, v in conn.entries[0].entry_attributes_as_dict.items()}
    finally:
        conn.unbind()


def quarantine(s: Setup) -> list[tuple[str, str]]:
    with sqlite3.connect(s.dir / "state.db") as db:
        return db.execute("SELECT source_id, reason FROM quarantine").fetchall()


def test_a_refused_field_is_quarantined_and_the_rest_written(tmp_path, slapd):
    s = Setup(tmp_path, f"sqlite:///{tmp_path}/state.db", "ldap", slapd)
    (tmp_path / "m.yaml").write_text(MAPPING)
    export(s, [("1", "Paris", "ok@example.com"), ("2", "Rome", "zoë@exämple.com")])
    first = s.sync()
    assert first.returncode == 0, first.stdout + first.stderr
    assert entry(s, "u2") == {"l": ["Rome"], "mail": []}
    assert entry(s, "u1")["mail"] == ["ok@example.com"]
    (problem,) = quarantine(s)
    assert problem[0] == "2" and "mail" in problem[1]

    # the other fields go on being synced; the refused one stays quarantined
    export(s, [("1", "Paris", "ok@example.com"), ("2", "Oslo", "zoë@exämple.com")])
    assert s.sync().returncode == 0
    assert entry(s, "u2") == {"l": ["Oslo"], "mail": []}
    assert len(quarantine(s)) == 1

    # a new value is written, and the field leaves the quarantine
    export(s, [("1", "Paris", "ok@example.com"), ("2", "Oslo", "zoe@example.com")])
    assert s.sync().returncode == 0
    assert entry(s, "u2") == {"l": ["Oslo"], "mail": ["zoe@example.com"]}
    assert quarantine(s) == []
