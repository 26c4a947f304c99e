"""One entry at a time (issue 11.3): `plan/sync --only DN|ID` and `syncd explain`.
Real slapd (LDAP source and target), SQLite target, CSV source, the real CLI."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.e2e.conftest import Setup, device, write_config
from tests.e2e.hrsetup import EXISTING, JPEG, PEOPLE, Hr, dump, row

pytestmark = pytest.mark.slapd

DEVICES = "ou=devices,dc=example,dc=com"


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
        got = con.execute("SELECT cursor FROM cursors WHERE job='inventory'").fetchone()
        return got[0] if got else None
    finally:
        con.close()


def uuid_of(slapd, dn: str) -> str:
    out = slapd.ldap("ldapsearch", "-LLL", "-b", dn, "-s", "base", "entryUUID").stdout
    return next(line.split(": ")[1] for line in out.splitlines() if line.startswith("entryUUID"))


@pytest.fixture
def syncrepl(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    config = write_config(work, slapd, url, source={"changes": "syncrepl"})
    return Setup(work, config, slapd, url)


def test_only_reads_that_entry_plans_no_deletes_and_keeps_the_cursor(syncrepl):
    s = syncrepl
    s.slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(3)))
    s.syncd("sync", "inventory", "--no-progress")
    first = cursor(s)
    s.slapd.modify(f"dn: cn=pc-1,{DEVICES}\nchangetype: modify\nreplace: l\nl: Oslo\n")
    s.slapd.modify(f"dn: cn=pc-2,{DEVICES}\nchangetype: modify\nreplace: l\nl: Rome\n")

    by_dn = json.loads(
        s.syncd("plan", "inventory", "--only", f"cn=pc-1,{DEVICES}", "--json").stdout
    )
    assert [a["dn"] for a in by_dn["actions"]] == [f"cn=pc-1,{DEVICES}"]
    assert by_dn["actions"][0]["changes"] == [{"field": "location", "old": "Paris", "new": "Oslo"}]

    uid = uuid_of(s.slapd, f"cn=pc-2,{DEVICES}")
    by_id = json.loads(s.syncd("plan", "inventory", "--only", uid, "--json").stdout)
    assert [a["source_id"] for a in by_id["actions"]] == [uid]

    out = s.syncd("sync", "inventory", "--only", f"cn=pc-1,{DEVICES}", "--no-progress").stdout
    assert "1 updated" in out and "deleted" not in out, out
    got = rows(s)
    assert got["pc-1"]["location"] == "Oslo" and got["pc-2"]["location"] == "Paris"
    assert set(got) == {"pc-0", "pc-1", "pc-2"}, "absent entries are not deleted"
    assert cursor(s) == first, "an --only run does not move the cursor"

    # the next regular run still sees pc-2's change (the cursor stayed)
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 updated" in out, out
    assert rows(s)["pc-2"]["location"] == "Rome"


def test_only_values_are_escaped_and_dns_must_be_in_base(syncrepl):
    s = syncrepl
    s.slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(2)))
    res = s.syncd("plan", "inventory", "--only", "*)(cn=*", "--json")
    data = json.loads(res.stdout)
    assert data["actions"] == [], "a filter in an id must not match anything"
    assert any("not found in the source: *)(cn=*" in n for n in data["notes"])
    outside = s.syncd("plan", "inventory", "--only", f"uid=x,{PEOPLE}", check=False)
    assert outside.returncode == 2 and "not a DN under the job's base" in outside.stderr
    both = s.syncd("plan", "inventory", "--only", f"cn=pc-1,{DEVICES}", "--full", check=False)
    assert both.returncode == 2 and "exclude each other" in both.stderr


@pytest.fixture
def hr(tmp_path, slapd):
    slapd.add(EXISTING)
    work = tmp_path / "work"
    work.mkdir()
    setup = Hr(work, slapd)
    setup.export(
        row("E0001", "Jane", "Doe", "Sales", pw="Hunter2-Secret", pin="4711", photo=JPEG),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
    )
    return setup


def test_hr_only_one_joiner_then_the_rest(hr):
    plan = hr.syncd("plan", "hr", "--only", "E0001").stdout
    assert "create 1" in plan and "update" not in plan, plan
    hr.syncd("sync", "hr", "--only", "E0001", "--no-progress")
    people = dump(hr.slapd)
    assert f"uid=jane.doe,ou=sales,{PEOPLE}".lower() in people
    assert f"uid=bboss,{PEOPLE}".lower() in people, "the others are untouched"
    out = hr.syncd("sync", "hr", "--no-progress").stdout
    assert "2 updated" in out and "created" not in out, out
    # a leaver is not planned by an --only run of someone else
    hr.export(
        row("E0001", "Jane", "Doe", "Sales", "Boss"),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        n=2,
    )
    only = hr.syncd("plan", "hr", "--only", "E0001").stdout
    assert "delete" not in only and "title: 'Clerk' -> 'Boss'" in only, only


def test_explain_shows_source_mapping_state_and_action(hr):
    out = hr.syncd("explain", "hr", "E0001").stdout
    assert "1. source entry" in out and "  surname: 'Doe'" in out, out
    assert "initialpassword: <secret>" in out.lower()
    assert "  pin: <secret>" in out  # feeds a field marked secret
    assert "Hunter2" not in out and "4711" not in out
    assert "photo: " in out
    assert "2. mapped by hr-map.yaml" in out and "  key: E0001" in out
    assert "  uid: 'jane.doe'" in out and "  userPassword: <secret>" in out
    assert "jpegPhoto: <jpeg 4.0 KiB sha256:" in out
    assert "3. state\n  never synced" in out
    assert "4. planned action\n  create: uid=jane.doe,ou=Sales," in out
    hr.syncd("sync", "hr", "--no-progress")
    hr.export(
        row("E0001", "Jane", "Doe", "Sales", "Boss"),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
        n=2,
    )
    out = hr.syncd("explain", "hr", "E0001").stdout
    assert "fields changed since last pushed: title, jpegPhoto, userPassword, roomNumber" in out, (
        out
    )
    assert "title: 'Clerk' -> 'Boss'" in out
    missing = hr.syncd("explain", "hr", "E4242").stdout
    assert "source: not found" in missing


def test_explain_an_ldap_entry_by_dn(syncrepl):
    s = syncrepl
    s.slapd.add(device("pc-1", "SN-1", description="desk"))
    out = s.syncd("explain", "inventory", f"cn=pc-1,{DEVICES}").stdout
    assert f"dn: cn=pc-1,{DEVICES}" in out and "serialnumber: 'SN-1'" in out, out
    assert "  hostname: 'pc-1'" in out and "never synced" in out
    assert "create: cn=pc-1" in out


def test_an_only_run_does_not_hide_a_mapping_change_from_the_next_run(syncrepl):
    s = syncrepl
    s.slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(3)))
    s.syncd("sync", "inventory", "--no-progress")
    mapping = s.dir / "devices.yaml"
    mapping.write_text(
        mapping.read_text().replace("hostname: cn", 'hostname: "{{ cn | first | upper }}"')
    )
    out = s.syncd("sync", "inventory", "--only", f"cn=pc-0,{DEVICES}", "--no-progress").stdout
    assert "1 updated" in out, out
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "2 updated" in out and "mapping file changed" in out, out
    assert set(rows(s)) == {"PC-0", "PC-1", "PC-2"}
