"""Group members looked up in another job follow that job's changes, even when the
group entry itself does not change (incremental reads would not see it again)."""

from __future__ import annotations

import json
import sqlite3

import yaml

from tests.e2e.conftest import run_in_process

PEOPLE = "version: 1\nkey: entryUUID\nfields:\n  uid: uid\n  name: cn\n"
GROUPS = (
    "version: 1\nkey: entryUUID\nfields:\n  name: cn\n"
    "  members: \"{{ member | lookup('people', 'key') | sort }}\"\n"
)


def test_groups_follow_people_synced_after_them(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    (work / "pw").write_text(slapd.root_pw)
    (work / "people.yaml").write_text(PEOPLE)
    (work / "groups.yaml").write_text(GROUPS)
    ldap = {"connection": "dir", "changes": "syncrepl"}
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{work}/state.db"},
        "connections": {
            "dir": {
                "type": "ldap",
                "url": slapd.url,
                "bind_dn": slapd.root_dn,
                "password": {"file": str(work / "pw")},
                "start_tls": False,
            },
            "db": {"type": "sql", "url": f"sqlite:///{work}/out.db"},
        },
        "jobs": {
            "people": {
                "source": {
                    **ldap,
                    "base": "ou=people,dc=example,dc=com",
                    "filter": "(objectClass=inetOrgPerson)",
                },
                "mapping": "people.yaml",
                "target": {"connection": "db", "table": "people"},
            },
            "groups": {
                "source": {
                    **ldap,
                    "base": "ou=groups,dc=example,dc=com",
                    "filter": "(objectClass=groupOfNames)",
                },
                "mapping": "groups.yaml",
                "target": {"connection": "db", "table": "groups"},
            },
        },
    }
    config = work / "syncd.yaml"
    config.write_text(yaml.safe_dump(cfg))
    people = "".join(
        f"dn: uid={u},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: {u}\n"
        f"cn: {u}\nsn: {u}\n\n"
        for u in ("alice", "bob")
    )
    slapd.add(
        people + "dn: cn=staff,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\n"
        "cn: staff\nmember: uid=alice,ou=people,dc=example,dc=com\n"
        "member: uid=bob,ou=people,dc=example,dc=com\n"
    )

    def sync(job):
        res = run_in_process(["-c", str(config), "sync", "--no-progress", job])
        assert res.returncode == 0, res.stderr

    def members():
        con = sqlite3.connect(work / "out.db")
        try:
            return json.loads(con.execute("SELECT members FROM groups").fetchone()[0])
        finally:
            con.close()

    sync("groups")  # before the people job ever ran: nobody to resolve
    assert members() == []
    sync("people")
    sync("groups")  # the group entry did not change, the people job did
    con = sqlite3.connect(work / "out.db")
    try:
        keys = sorted(r[0] for r in con.execute('SELECT "key" FROM people'))
    finally:
        con.close()
    assert members() == keys and len(keys) == 2
    status = json.loads(run_in_process(["-c", str(config), "status", "--json", "groups"]).stdout)
    assert any("job people changed" in n for n in status[0]["runs"][0]["notes"])
    # nothing changed anywhere since: the next groups run is incremental again
    sync("groups")
    status = json.loads(run_in_process(["-c", str(config), "status", "--json", "groups"]).stdout)
    assert not any("job people changed" in n for n in status[0]["runs"][0]["notes"])


def test_members_written_differently_resolve_to_the_right_people(tmp_path, slapd):
    """Member values with spaces after commas, other case, hex or backslash escapes and
    multi-valued RDNs in another order name the same entries (RFC 4514): each resolves."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "pw").write_text(slapd.root_pw)
    (work / "people.yaml").write_text(
        "version: 1\nkey: entryUUID\nfields:\n  uid: uid\n  name: cn\n"
    )
    (work / "groups.yaml").write_text(
        "version: 1\nkey: entryUUID\nfields:\n  name: cn\n"
        "  members: \"{{ member | lookup('people', 'key') | sort }}\"\n"
        "  uids: \"{{ member | lookup('people', 'source_id') | length }}\"\n"
    )
    ldap = {"connection": "dir", "changes": "full"}
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{work}/state.db"},
        "connections": {
            "dir": {
                "type": "ldap",
                "url": slapd.url,
                "bind_dn": slapd.root_dn,
                "password": {"file": str(work / "pw")},
                "start_tls": False,
            },
            "db": {"type": "sql", "url": f"sqlite:///{work}/out.db"},
        },
        "jobs": {
            "people": {
                "source": {
                    **ldap,
                    "base": "ou=people,dc=example,dc=com",
                    "filter": "(objectClass=inetOrgPerson)",
                },
                "mapping": "people.yaml",
                "target": {"connection": "db", "table": "people"},
            },
            "groups": {
                "source": {
                    **ldap,
                    "base": "ou=groups,dc=example,dc=com",
                    "filter": "(objectClass=groupOfNames)",
                },
                "mapping": "groups.yaml",
                "target": {"connection": "db", "table": "groups"},
            },
        },
    }
    config = work / "syncd.yaml"
    config.write_text(yaml.safe_dump(cfg))
    people = [
        ("uid=alice", "uid: alice\ncn: alice\n"),
        ("cn=Smith\\, John", "uid: jsmith\ncn: Smith, John\n"),
        ("cn=José Ñúñez", "uid: jose\ncn: José Ñúñez\n"),
        ("cn=Bob+uid=bob", "uid: bob\ncn: Bob\n"),
        ("uid=carol", "uid: carol\ncn: carol\n"),  # not a member
    ]
    ldif = "".join(
        f"dn: {rdn},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n{attrs}sn: x\n\n"
        for rdn, attrs in people
    )
    members = [
        "uid=ALICE, ou=People, dc=Example, dc=COM",
        "cn=Smith\\2C John,ou=people,dc=example,dc=com",
        "cn=Jos\\C3\\A9 \\C3\\91\\C3\\BA\\C3\\B1ez , ou=people,dc=example,dc=com",
        "uid=bob+cn=BOB,ou=people,dc=example,dc=com",
    ]
    slapd.add(
        ldif + "dn: cn=staff,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\n"
        "cn: staff\n" + "".join(f"member: {m}\n" for m in members)
    )
    for job in ("people", "groups"):
        res = run_in_process(["-c", str(config), "sync", "--no-progress", job])
        assert res.returncode == 0, res.stderr
    con = sqlite3.connect(work / "out.db")
    try:
        by_uid = dict(con.execute('SELECT uid, "key" FROM people'))
        got, count = con.execute("SELECT members, uids FROM groups").fetchone()
    finally:
        con.close()
    want = sorted(by_uid[u] for u in ("alice", "jsmith", "jose", "bob"))
    assert json.loads(got) == want
    assert int(count) == 4
