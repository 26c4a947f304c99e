"""Plans show the effect (issue 11.1): DNs, renames, every field old -> new, secrets
never, binary summarised; --json the same; --ldif a change file ldapmodify applies
with the very result a sync gives. Real slapd, SQLite, the real CLI."""

from __future__ import annotations

import json

import pytest

from tests.e2e.hrsetup import EXISTING, JPEG, PEOPLE, Hr, dump, row
from tests.servers.slapd import Slapd

pytestmark = pytest.mark.slapd

BOSS_OLD = f"uid=bboss,{PEOPLE}"
BOSS_NEW = f"uid=big.boss,ou=Sales,{PEOPLE}"


@pytest.fixture
def hr(tmp_path, slapd):
    slapd.add(EXISTING)
    work = tmp_path / "work"
    work.mkdir()
    return Hr(work, slapd)


def night1(hr: Hr) -> None:
    hr.export(
        row("E0001", "Jane", "Doe", "Sales", pw="Hunter2-Secret", pin="4711", photo=JPEG),
        row("E0002", "Big", "Boss", "Sales", "CEO"),
        row("E0009", "Old", "Timer", "Eng"),
    )


def test_plan_names_dns_renames_and_old_new_values(hr):
    night1(hr)
    out = hr.syncd("plan", "hr").stdout
    # the correlated entry that the sync renames: old DN -> new DN, each attribute
    assert f"~ {BOSS_OLD} -> {BOSS_NEW}" in out, out
    assert "link to existing entry" in out
    assert "title: 'Manager' -> 'CEO'" in out
    assert "cn: 'B Boss' -> 'Big Boss'" in out
    # the joiner: its DN and its values; binary summarised, secrets never
    assert f"+ uid=jane.doe,ou=Sales,{PEOPLE}" in out
    assert "sn: (none) -> 'Doe'" in out
    assert "jpegPhoto: (none) -> <jpeg 4.0 KiB sha256:" in out
    assert "userPassword: (none) -> <secret>" in out
    assert "roomNumber: (none) -> <secret>" in out  # marked secret: true in the mapping
    assert "Hunter2" not in out and "4711" not in out
    # the group membership the sync adds
    assert "groups: (none) -> 'cn=staff,ou=groups,dc=example,dc=com'" in out

    data = json.loads(hr.syncd("plan", "hr", "--json").stdout)
    raw = json.dumps(data)
    assert "Hunter2" not in raw and "4711" not in raw
    [boss] = [a for a in data["actions"] if a["key"] == "E0002"]
    assert boss["target_dn"] == BOSS_OLD and boss["new_dn"] == BOSS_NEW
    changes = {c["field"]: (c["old"], c["new"]) for c in boss["changes"]}
    assert changes["title"] == ("Manager", "CEO")
    [jane] = [a for a in data["actions"] if a["key"] == "E0001"]
    changes = {c["field"]: (c["old"], c["new"]) for c in jane["changes"]}
    assert changes["userPassword"] == ([], "<secret>")
    assert changes["jpegPhoto"][1].startswith("<jpeg 4.0 KiB sha256:")
    assert jane["fields"]["userPassword"] == "<secret>"

    # and the plan wrote nothing
    assert dump(hr.slapd)[BOSS_OLD.lower()]["title"] == ["b'Manager'"]


def test_plan_ldif_applied_by_ldapmodify_equals_a_sync(hr, tmp_path):
    night1(hr)
    ldif = hr.syncd("plan", "hr", "--ldif").stdout
    assert "changetype: modrdn" in ldif and "changetype: add" in ldif
    assert "Hunter2" not in ldif and "4711" not in ldif
    path = tmp_path / "plan.ldif"
    path.write_text(ldif)
    with Slapd(tmp_path / "copy") as copy:
        copy.add(EXISTING)
        copy.ldap("ldapmodify", "-f", str(path))
        hr.syncd("sync", "hr", "--no-progress")
        got, want = dump(copy), dump(hr.slapd)
        groups = "ou=groups,dc=example,dc=com"
        assert dump(copy, groups) == dump(hr.slapd, groups)
    # secrets are left out of the LDIF: the only difference allowed
    assert "userpassword" in want[f"uid=jane.doe,ou=sales,{PEOPLE}".lower()]
    for entry in want.values():
        entry.pop("userpassword", None)
        entry.pop("roomnumber", None)
    assert got == want


def test_plan_of_disable_shows_move_and_marker(hr):
    night1(hr)
    hr.syncd("sync", "hr", "--no-progress")
    hr.export(row("E0001", "Jane", "Doe", "Sales"), row("E0009", "Old", "Timer", "Eng"), n=2)
    out = hr.syncd("plan", "hr").stdout
    assert f"- {BOSS_NEW} -> uid=big.boss,ou=disabled,dc=example,dc=com" in out, out
    assert "employeeType: (none) -> 'disabled'" in out
    # Jane lost her photo in the export: cleared, shown summarised
    assert "jpegPhoto: <jpeg 4.0 KiB sha256:" in out and "-> (none)" in out


def test_plan_for_a_sql_target_shows_the_row_old_new(inventory):
    from tests.e2e.conftest import device
    from tests.e2e.test_inventory import load

    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    inventory.syncd("sync", "inventory", "--no-progress")
    inventory.slapd.modify(
        "dn: cn=pc-2,ou=devices,dc=example,dc=com\nchangetype: modify\nreplace: l\nl: Osaka\n"
    )
    out = inventory.syncd("plan", "inventory").stdout
    assert "~ cn=pc-2,ou=devices,dc=example,dc=com" in out, out
    assert "location: 'Paris' -> 'Osaka'" in out
    data = json.loads(inventory.syncd("plan", "inventory", "--json").stdout)
    [action] = data["actions"]
    assert action["changes"] == [{"field": "location", "old": "Paris", "new": "Osaka"}]
    ldif = inventory.syncd("plan", "inventory", "--ldif", check=False)
    assert ldif.returncode != 0 and "needs an LDAP target" in ldif.stderr
