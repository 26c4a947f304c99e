"""The nightly HR job end to end: CSV export -> mapping -> engine -> LdapTarget -> slapd.

Night after night: first run with correlation, then joiners, movers, leavers, a
returner, duplicates, an ambiguous match, and a broken export that writes nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from syncd.config import load_config
from syncd.engine import run_job
from syncd.errors import SourceError
from tests.hr.conftest import DISABLED, GROUPS, PEOPLE, Reader, add_groups

pytestmark = pytest.mark.slapd

ROOT = Path(__file__).resolve().parents[2]
HEADER = "Personalnummer;Vorname;Nachname;E-Mail;Abteilung;Funktion;Vorgesetzter;Eintritt;Austritt"


def export(path: Path, rows: list[str]) -> None:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8-sig")
    past = time.time() - 120
    os.utime(path, (past, past))


def row(emp, first, last, dept, title="Clerk", mgr="", start="2020-01-01", end="") -> str:
    mail = f"{first}.{last}@example.com".lower()
    return f"{emp};{first};{last};{mail};{dept};{title};{mgr};{start};{end}"


@pytest.fixture
def hr(tmp_path, slapd, root_pw_file):
    """A config like examples/hr-nightly.yaml pointed at the test slapd."""
    add_groups(slapd, f"cn=staff,{GROUPS}", f"cn=dept-sales,{GROUPS}", f"cn=dept-eng,{GROUPS}")
    example = yaml.safe_load((ROOT / "examples" / "hr-nightly.yaml").read_text())
    example["state"] = {"url": f"sqlite:///{tmp_path}/state.db"}
    csv_conn = example["connections"]["hr_export"]
    csv_conn.update(path=str(tmp_path / "drop"), min_age=0)
    example["connections"]["directory"] = {
        "type": "ldap",
        "url": slapd.url,
        "start_tls": False,
        "bind_dn": slapd.root_dn,
        "password": {"file": str(root_pw_file)},
    }
    job = example["jobs"]["hr-nightly"]
    job["mapping"] = str(ROOT / "mappings" / "hr-csv-openldap.yaml")
    job["source"].update(min_rows=1, max_drop="30%")
    job["max_deletes"] = 3
    job["report_dir"] = str(tmp_path / "reports")
    (tmp_path / "drop").mkdir()
    cfg_path = tmp_path / "hr.yaml"
    cfg_path.write_text(yaml.safe_dump(example))
    return load_config(cfg_path), tmp_path / "drop" / "hr-export-1.csv", Reader(slapd)


def categories(rep) -> dict[str, int]:
    data = json.loads(Path(rep.report_path).with_suffix(".json").read_text())
    return {k: v["count"] for k, v in data["categories"].items() if v["count"]}


def test_nights_of_hr_reconciliation(hr, slapd):
    cfg, csv_file, reader = hr
    # Accounts that exist before syncd: one to link by employee number, one by mail,
    # and two that share a mail address (ambiguous).
    slapd.add(
        f"""dn: uid=boss,{PEOPLE}
objectClass: inetOrgPerson
uid: boss
cn: Big Boss
sn: Boss
employeeNumber: 1000
telephoneNumber: 100

dn: uid=old.mail,{PEOPLE}
objectClass: inetOrgPerson
uid: old.mail
cn: Mail Match
sn: Match
mail: mia.match@example.com

dn: uid=twin1,{PEOPLE}
objectClass: inetOrgPerson
uid: twin1
cn: Twin
sn: Twin
mail: tom.twin@example.com

dn: uid=twin2,{PEOPLE}
objectClass: inetOrgPerson
uid: twin2
cn: Twin
sn: Twin
mail: tom.twin@example.com
"""
    )
    night1 = [
        row(1000, "Big", "Boss", "Sales", "CEO"),
        row(1001, "Jane", "Doe", "Sales", mgr="1000"),
        row(1002, "Ann", "Lee", "Sales", mgr="1000"),
        row(1003, "Mia", "Match", "Eng", mgr="1000"),
        row(1004, "Tom", "Twin", "Eng"),
        row(1005, "Fred", "Future", "Eng", start="2999-01-01"),
        row(1006, "Dup", "One", "Sales"),
        row(1006, "Dup", "Two", "Eng"),
    ]
    export(csv_file, night1)
    plan = run_job(cfg, "hr-nightly", apply=False)
    assert plan.counts["correlated"] == 2 and plan.counts["ambiguous"] == 1
    assert reader.find("(uid=jane.doe)") == []  # a plan writes nothing
    plan.plan.close()

    rep = run_job(cfg, "hr-nightly")
    assert rep.status == "ok", rep.error
    cats = categories(rep)
    # Mia gets her employee number written (linked); the boss already had his and is
    # moved into his department's OU (a mover).
    assert cats == {"joiners": 3, "linked": 1, "movers": 1, "ambiguous": 1}, cats
    boss = reader.one("(employeeNumber=1000)")
    assert boss.entry_dn.lower() == f"uid=big.boss,ou=sales,{PEOPLE}".lower()  # linked, moved
    assert boss.telephoneNumber.value == "100"  # not owned: kept
    jane = reader.one("(employeeNumber=1001)")
    assert jane.manager.value.lower() == boss.entry_dn.lower()
    assert reader.one("(uid=mia.match)").employeeNumber.value == "1003"  # linked by mail
    assert reader.find("(employeeNumber=1004)") == []  # ambiguous: left alone
    fred = reader.one("(employeeNumber=1005)")
    assert fred.employeeType.value == "disabled" and DISABLED.lower() in fred.entry_dn.lower()
    assert reader.find("(employeeNumber=1006)") == []  # duplicate id: left alone
    assert jane.entry_dn.lower() in reader.members(f"cn=dept-sales,{GROUPS}")
    assert jane.entry_dn.lower() in reader.members(f"cn=staff,{GROUPS}")
    text = Path(rep.report_path).read_text()
    assert "Ambiguous (left alone): 1" in text and "duplicate employeeId" in text

    # A second run right after moves nothing.
    again = run_job(cfg, "hr-nightly")
    assert again.status == "ok"
    assert again.counts["created"] == again.counts["updated"] == again.counts["deleted"] == 0

    # Night 2: Ann moves to Eng, Jane leaves, Nia joins; the duplicate is still there.
    night2 = [r for r in night1 if not r.startswith("1001;")]
    night2 = [
        r.replace("Sales;Clerk", "Eng;Engineer") if r.startswith("1002;") else r for r in night2
    ]
    night2.append(row(1007, "Nia", "New", "Sales"))
    export(csv_file, night2)
    rep2 = run_job(cfg, "hr-nightly")
    assert rep2.status == "ok", rep2.error
    assert categories(rep2) == {"joiners": 1, "movers": 1, "leavers": 1, "ambiguous": 1}
    ann = reader.one("(employeeNumber=1002)")
    assert ann.entry_dn.lower() == f"uid=ann.lee,ou=eng,{PEOPLE}".lower()
    assert ann.entry_dn.lower() in reader.members(f"cn=dept-eng,{GROUPS}")
    assert ann.entry_dn.lower() not in reader.members(f"cn=dept-sales,{GROUPS}")
    jane = reader.one("(employeeNumber=1001)")
    assert jane.employeeType.value == "disabled" and DISABLED.lower() in jane.entry_dn.lower()

    # Night 3: Jane is back.
    export(csv_file, [*night2, row(1001, "Jane", "Doe", "Sales", mgr="1000")])
    rep3 = run_job(cfg, "hr-nightly")
    assert rep3.status == "ok", rep3.error
    assert categories(rep3).get("re_enabled") == 1
    jane = reader.one("(employeeNumber=1001)")
    assert "employeeType" not in jane.entry_attributes
    assert jane.entry_dn.lower() == f"uid=jane.doe,ou=sales,{PEOPLE}".lower()

    # Night 4: a truncated export is a failed read: nothing is written.
    csv_file.write_text(HEADER + "\n" + row(1000, "Big", "Boss", "Sales")[:12], "utf-8")
    os.utime(csv_file, (time.time() - 120, time.time() - 120))
    with pytest.raises(SourceError):
        run_job(cfg, "hr-nightly")
    assert "employeeType" not in reader.one("(employeeNumber=1001)").entry_attributes
    assert len(reader.find("(employeeNumber=*)", base=PEOPLE)) == 5  # + Fred, disabled


def test_first_night_of_many_rows_sends_a_bounded_number_of_searches(hr, slapd, monkeypatch):
    """Issue 12: the first night correlates every row; the target answers from one
    paged read of its scopes and one read per batch, not ~3 searches per row."""
    from syncd.connectors.ldap.target import LdapTarget

    targets: list[LdapTarget] = []
    init = LdapTarget.__init__

    def counting(self, *args, **kwargs):
        init(self, *args, **kwargs)
        targets.append(self)

    monkeypatch.setattr(LdapTarget, "__init__", counting)
    cfg, csv_file, reader = hr
    n = 300
    people = [f"dn: ou=Sales,{PEOPLE}\nobjectClass: organizationalUnit\nou: Sales\n"]
    for i in range(n):
        people.append(
            f"dn: uid=p{i}.bulk,ou=Sales,{PEOPLE}\nobjectClass: inetOrgPerson\n"
            f"uid: p{i}.bulk\ncn: P{i} Bulk\nsn: Bulk\nmail: p{i}.bulk@example.com\n"
            f"employeeNumber: {5000 + i}\n"
        )
    people.append(  # two accounts share the mail of a new row: ambiguous
        f"dn: uid=twin1,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: twin1\ncn: T\nsn: T\n"
        f"mail: tom.twin@example.com\n\n"
        f"dn: uid=twin2,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: twin2\ncn: T\nsn: T\n"
        f"mail: tom.twin@example.com\n"
    )
    slapd.add("\n".join(people))
    rows = [row(5000 + i, f"P{i}", "Bulk", "Sales") for i in range(n)]
    # joiners: two with the same name (the second gets a numbered login), one ambiguous
    rows += [row(9001, "New", "Joiner", "Eng"), row(9002, "New", "Joiner", "Sales")]
    rows += [row(9003, "Tom", "Twin", "Eng")]
    export(csv_file, rows)
    rep = run_job(cfg, "hr-nightly")
    assert rep.status == "ok", rep.error
    assert rep.counts["correlated"] == n and rep.counts["ambiguous"] == 1, rep.counts
    assert rep.counts["created"] == 2, rep.counts
    searches = sum(t.ops["search"] for t in targets)
    # Per-entry look-ups sent about 3 per row (two scopes per correlation, one id
    # search per update): 900+ here.
    assert searches <= 80, [dict(t.ops) for t in targets]
    logins = {str(reader.one(f"(employeeNumber={k})")["uid"]) for k in (9001, 9002)}
    assert logins == {"new.joiner", "new.joiner2"}
    assert reader.one("(employeeNumber=5007)").title.value == "Clerk"
    assert reader.find("(employeeNumber=9003)") == []
