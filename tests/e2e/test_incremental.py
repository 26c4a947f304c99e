"""Incremental runs end to end: slapd change tracking -> engine -> SQLite table."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from tests.e2e.conftest import Setup, device, write_config


def rows(setup) -> dict[str, dict]:
    con = sqlite3.connect(setup.dir / "inventory.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["hostname"]: dict(r) for r in con.execute("SELECT * FROM devices")}
    finally:
        con.close()


def cursor(setup) -> str | None:
    con = sqlite3.connect(setup.dir / "state.db")
    try:
        row = con.execute("SELECT cursor FROM cursors WHERE job='inventory'").fetchone()
        return row[0] if row else None
    finally:
        con.close()


@pytest.fixture(params=["syncrepl", "timestamp", "auto"])
def incremental(request, tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    config = write_config(work, slapd, url, source={"changes": request.param})
    return Setup(work, config, slapd, url)


def last_run(setup) -> dict:
    return json.loads(setup.syncd("status", "--json").stdout)[0]["runs"][0]


def test_changes_between_runs_reach_the_target(incremental):
    s = incremental
    s.slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(5)))
    s.syncd("sync", "inventory", "--no-progress")
    assert len(rows(s)) == 5
    first_cursor = cursor(s)
    assert first_cursor

    s.slapd.modify(
        "dn: cn=pc-1,ou=devices,dc=example,dc=com\nchangetype: modify\nreplace: l\nl: Lisboa\n"
    )
    s.slapd.add(device("pc-new", "SN-new"))
    # a rename keeps the object: same entryUUID, new DN and hostname
    s.slapd.ldap("ldapmodrdn", "-r", "cn=pc-2,ou=devices,dc=example,dc=com", "cn=pc-2b")
    plan = json.loads(s.syncd("plan", "inventory", "--json").stdout)
    kinds = sorted(a["kind"] for a in plan["actions"])
    assert kinds == ["create", "update", "update"], plan
    assert cursor(s) == first_cursor, "a dry run never advances the cursor"

    s.syncd("sync", "inventory", "--no-progress")
    got = rows(s)
    assert got["pc-1"]["location"] == "Lisboa"
    assert "pc-new" in got and "pc-2b" in got and "pc-2" not in got
    assert len(got) == 6
    assert cursor(s) != first_cursor
    assert last_run(s)["status"] == "ok"


def test_syncrepl_reads_only_changes_and_deletes(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, source={"changes": "syncrepl"}), slapd, url)
    slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(40)))
    s.syncd("sync", "inventory", "--no-progress")
    slapd.modify(
        "dn: cn=pc-3,ou=devices,dc=example,dc=com\nchangetype: modify\n"
        "replace: serialNumber\nserialNumber: SN-33\n"
    )
    slapd.delete("cn=pc-4,ou=devices,dc=example,dc=com")
    s.syncd("sync", "inventory", "--no-progress")
    run = last_run(s)
    assert run["method"] == "syncrepl"
    assert run["counts"]["read"] <= 3, run  # the change and the delete, not 40 entries
    assert run["counts"]["deleted"] == 1 and run["counts"]["updated"] == 1
    got = rows(s)
    assert "pc-4" not in got and got["pc-3"]["serial"] == "SN-33" and len(got) == 39


def test_syncrepl_survives_slapd_restart_and_invalid_cookie(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, source={"changes": "syncrepl"}), slapd, url)
    slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(6)))
    s.syncd("sync", "inventory", "--no-progress")
    slapd.restart()
    slapd.delete("cn=pc-0,ou=devices,dc=example,dc=com")
    s.syncd("sync", "inventory", "--no-progress")
    assert "pc-0" not in rows(s) and len(rows(s)) == 5
    # garble the stored cookie: the next run falls back to a full refresh and says so
    con = sqlite3.connect(work / "state.db")
    raw = json.loads(con.execute("SELECT cursor FROM cursors").fetchone()[0])
    bogus = base64.b64encode(b"rid=000,csn=20000101000000.000000Z#000000#000#000000").decode()
    con.execute("UPDATE cursors SET cursor=?", (json.dumps({**raw, "cookie": bogus}),))
    con.commit()
    con.close()
    slapd.delete("cn=pc-1,ou=devices,dc=example,dc=com")
    s.syncd("sync", "inventory", "--no-progress")
    assert "pc-1" not in rows(s) and len(rows(s)) == 4
    # the fallback is said in the run record
    assert any("cookie" in n.lower() for n in last_run(s)["notes"]), last_run(s)


def test_rename_without_field_change_updates_the_dn_the_state_knows(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, source={"changes": "syncrepl"}), slapd, url)
    slapd.add(device("pc-1", "SN-1"))
    s.syncd("sync", "inventory", "--no-progress")
    # without -r the old cn value stays (and stays first): the record does not change
    slapd.ldap("ldapmodrdn", "cn=pc-1,ou=devices,dc=example,dc=com", "cn=pc-1-alias")
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "nothing to change" in out
    con = sqlite3.connect(work / "state.db")
    try:
        [(dn,)] = con.execute("SELECT dn FROM objects").fetchall()
    finally:
        con.close()
    assert dn.lower() == "cn=pc-1-alias,ou=devices,dc=example,dc=com"
