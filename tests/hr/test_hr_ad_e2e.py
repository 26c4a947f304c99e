"""The HR job into Samba AD through the engine with the shipped mapping
(mappings/hr-csv-ad.yaml): joiners enabled over LDAPS, a mover, a leaver disabled."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import ldap3
import pytest
import yaml

from syncd.config import load_config
from syncd.connectors.ldap.target import ACCOUNTDISABLE, same_dn
from syncd.engine import run_job

pytestmark = pytest.mark.samba


def uniq(name: str) -> str:
    """sAMAccountName is unique in the whole (session-shared) domain."""
    return f"{name[:10]}-{uuid.uuid4().hex[:8]}"


ROOT = Path(__file__).resolve().parents[2]
HEADER = "Personalnummer;Vorname;Nachname;E-Mail;Abteilung;Funktion;Vorgesetzter;Eintritt;Austritt"


def export(path: Path, rows: list[str]) -> None:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    os.utime(path, (time.time() - 120, time.time() - 120))


def test_hr_csv_to_ad(samba_dc, samba_ou, tmp_path):
    tag = samba_ou.split(",")[0][-6:]
    groups = samba_dc.add_ou("groups", samba_ou)
    staff = samba_dc.add_group(groups, "staff", sAMAccountName=uniq("staff"))
    sales = samba_dc.add_group(groups, "dept-sales", sAMAccountName=uniq("dept-sales"))
    samba_dc.add_group(groups, "dept-eng", sAMAccountName=uniq("dept-eng"))
    pw = tmp_path / "admin.pw"
    pw.write_text(samba_dc.admin_pw)
    cfg = yaml.safe_load((ROOT / "examples" / "hr-nightly.yaml").read_text())
    cfg["state"] = {"url": f"sqlite:///{tmp_path}/state.db"}
    cfg["connections"]["hr_export"].update(path=str(tmp_path / "hr.csv"), min_age=0)
    cfg["connections"]["directory"] = {
        "type": "ldap",
        "url": samba_dc.ldaps_url,
        "ca_file": samba_dc.ca_file,
        "bind_dn": samba_dc.admin_dn,
        "password": {"file": str(pw)},
    }
    job = cfg["jobs"]["hr-nightly"]
    job["mapping"] = str(ROOT / "mappings" / "hr-csv-ad.yaml")
    job["source"].update(min_rows=1, max_drop=None)
    job["max_deletes"] = 5
    job["report_dir"] = str(tmp_path / "reports")
    job["target"] = {
        "connection": "directory",
        "directory": "ad",
        "base": samba_ou,
        "dn_template": "cn={cn},ou={department}," + samba_ou,
        "references": {"manager": "employeeID"},
        "group_base": groups,
        "correlate": [{"field": "employeeID", "attribute": "employeeID"}],
    }
    path = tmp_path / "hr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    csv_file = tmp_path / "hr.csv"
    rows = [
        f"8{tag}1;Alan;Turing{tag};alan.{tag}@example.test;Sales;Boss;;2020-01-01;",
        f"8{tag}2;Edsger;Dijkstra{tag};edsger.{tag}@example.test;Sales;Dev;8{tag}1;2020-01-01;",
    ]
    export(csv_file, rows)
    rep = run_job(config, "hr-nightly")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 2
    conn = samba_dc.connection()

    def get(emp: str) -> dict:
        conn.search(
            samba_ou,
            f"(employeeID={emp})",
            attributes=["userAccountControl", "manager", "sAMAccountName", "memberOf"],
        )
        [e] = [e for e in conn.response if e.get("type") == "searchResEntry"]
        return {"dn": e["dn"], **e["attributes"]}

    def uac(e: dict) -> int:
        v = e["userAccountControl"]
        return int(v[0] if isinstance(v, list) else v)

    alan, edsger = get(f"8{tag}1"), get(f"8{tag}2")
    assert same_dn(alan["dn"], f"CN=Alan Turing{tag},OU=Sales,{samba_ou}")
    assert not uac(alan) & ACCOUNTDISABLE and not uac(edsger) & ACCOUNTDISABLE
    manager = edsger["manager"]
    assert same_dn(manager[0] if isinstance(manager, list) else manager, alan["dn"])
    member_of = {m.lower() for m in edsger["memberOf"]}
    assert staff.lower() in member_of and sales.lower() in member_of
    # Edsger moves to Eng, Alan leaves.
    export(csv_file, [rows[1].replace(";Sales;", ";Eng;").replace(f";8{tag}1;", ";;")])
    rep2 = run_job(config, "hr-nightly")
    assert rep2.status == "ok", rep2.error
    assert (rep2.counts["updated"], rep2.counts["deleted"]) == (1, 1)
    edsger = get(f"8{tag}2")
    assert same_dn(edsger["dn"], f"CN=Edsger Dijkstra{tag},OU=Eng,{samba_ou}")
    assert sales.lower() not in {m.lower() for m in edsger["memberOf"]}
    assert uac(get(f"8{tag}1")) & ACCOUNTDISABLE
    conn.search(edsger["dn"], "(objectClass=*)", ldap3.BASE, attributes=["manager"])
    assert not conn.response[0]["attributes"].get("manager")
    text = Path(rep2.report_path).read_text()
    assert "Movers (moved or renamed): 1" in text and "Leavers" in text
