"""The nightly HR job end to end with an export as a German Excel writes it."""

from __future__ import annotations

import os
import time

import pytest

from syncd.engine import run_job
from tests.hr.test_hr_e2e import HEADER

pytestmark = pytest.mark.slapd


def excel_export(path, rows: list[list[str]]) -> None:
    """cp1252, semicolons, CRLF, Excel's trailing empty columns."""
    lines = [HEADER + ";;"] + [";".join(r) + ";;" for r in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    past = time.time() - 120
    os.utime(path, (past, past))


def person(emp: str, first: str, last: str, start="2020-01-01", end="") -> list[str]:
    mail = f"e{emp}@example.com"  # OpenLDAP's mail is IA5 (ASCII) only
    return [emp, first, last, mail, "Sales", "Clerk", "", start, end]


def test_german_excel_export_never_disables_a_running_contract(hr):
    cfg, csv_file, reader = hr
    cfg.connections["hr_export"].options = cfg.connections["hr_export"].options.model_copy(
        update={"encoding": "cp1252"}
    )
    night1 = [person("2001", "Jörg", "Müller", end="2099-01-15"), person("2002", "Zoë", "Ek")]
    excel_export(csv_file, night1)
    rep = run_job(cfg, "hr-nightly")
    assert rep.status == "ok", rep.error
    assert rep.counts["created"] == 2
    entry = reader.one("(employeeNumber=2001)")
    assert entry["sn"].value == "Müller"
    # Night 2: someone opened the export in Excel and saved it: dates are now German.
    night2 = [person("2001", "Jörg", "Müller", "01.01.2020", "15.01.2099"), night1[1]]
    excel_export(csv_file, night2)
    rep = run_job(cfg, "hr-nightly")
    assert rep.counts.get("quarantined") == 1, rep.counts
    assert not rep.counts.get("disable") and not rep.counts.get("deleted")
    entry = reader.one("(employeeNumber=2001)")
    assert "employeeType" not in entry.entry_attributes  # not disabled
    assert "ou=disabled" not in entry.entry_dn.lower()
