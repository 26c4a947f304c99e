"""RunReporter: categories, bounded memory, the three files, status helpers."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

from syncd.contracts import Action, ActionKind, ActionResult
from syncd.report import RunReporter, categorize, latest_report, summary_line


def result(kind: ActionKind, key: str, detail: str | None = None, ok: bool = True, **kw):
    action = Action(kind, source_id=key, key=key, target_id=kw.pop("target_id", None))
    return ActionResult(action, ok=ok, detail=detail, **kw)


def test_categories():
    C, U, D = ActionKind.CREATE, ActionKind.UPDATE, ActionKind.DELETE
    assert categorize(result(C, "1", "created uid=a,ou=x")) == "joiners"
    assert categorize(result(C, "1", "created disabled uid=a,ou=disabled")) == "joiners"
    assert categorize(result(U, "1", "moved from uid=a,ou=x to uid=a,ou=y")) == "movers"
    assert categorize(result(D, "1", "disabled; moved from a to b")) == "leavers"
    assert categorize(result(U, "1", "disabled")) == "leavers"  # end date passed
    assert categorize(result(C, "1", "linked uid=a; re-enabled")) == "re_enabled"
    assert categorize(result(U, "1", "linked uid=a,ou=x")) == "linked"
    assert categorize(result(U, "1", "linked uid=a,ou=x; moved from a to b")) == "linked"
    assert categorize(result(U, "1", None)) == "updated"
    assert categorize(result(U, "1", "already up to date")) == "up_to_date"
    # an OU called "disabled" in a move is not a disable
    assert categorize(result(U, "1", "moved from uid=a,ou=disabled,dc=x to uid=a,ou=s")) == "movers"
    assert categorize(result(U, "1", ok=False, error="boom")) == "errors"


def test_files_and_bounded_details(tmp_path):
    rep = RunReporter(tmp_path / "reports", "hr-nightly", 7, False, max_details=3)
    for i in range(10):
        rep.action(result(ActionKind.CREATE, f"J{i}", f"created uid=j{i},ou=people"))
    rep.action(result(ActionKind.UPDATE, "M1", "moved from uid=m,ou=a to uid=m,ou=b"))
    rep.action(result(ActionKind.DELETE, "L1", "disabled"))
    rep.action(
        result(ActionKind.UPDATE, "E1", ok=False, error="modify refused: insufficientAccess")
    )
    rep.problem("A1", None, "ambiguous: matches uid=t1,ou=p, uid=t2,ou=p")
    rep.problem("Q1", None, "mapping: mail is required")
    run = SimpleNamespace(
        status="failed",
        method="csv",
        started=datetime(2026, 11, 28, 2, 30, tzinfo=UTC),
        duration=12.5,
        counts=Counter(read=100, created=10, updated=1, deleted=1, failed=1),
        error="1 write(s) failed",
        notes=["read hr.csv: 100 rows"],
    )
    text_path = rep.finish(run)
    text = text_path.read_text()
    assert "job hr-nightly, run 7" in text
    assert "Joiners (accounts created): 10" in text
    assert "J0" in text and "J2" in text and "J3" not in text  # only the first 3 ...
    assert "... and 7 more in" in text  # ... the rest is in the details file
    assert "Movers (moved or renamed): 1" in text and "M1" in text
    assert "Ambiguous (left alone): 1" in text and "uid=t2,ou=p" in text
    assert "insufficientAccess" in text and "read hr.csv: 100 rows" in text
    data = json.loads(text_path.with_suffix(".json").read_text())
    assert data["categories"]["joiners"]["count"] == 10
    assert len(data["categories"]["joiners"]["first"]) == 3
    assert data["categories"]["leavers"]["count"] == 1
    assert data["categories"]["quarantined"]["count"] == 1
    lines = (tmp_path / "reports" / data["details_file"]).read_text().splitlines()
    assert len(lines) == 15 and json.loads(lines[0])["key"] == "J0"
    assert latest_report(tmp_path / "reports", "hr-nightly") == text_path.with_suffix(".json")
    assert latest_report(tmp_path / "reports", "hr") is None  # no prefix confusion
    line = summary_line(text_path.with_suffix(".json"))
    assert line.startswith("failed: 10 joiners, 1 movers, 1 leavers") and str(text_path) in line


def test_dry_run_without_problems_writes_report(tmp_path):
    rep = RunReporter(tmp_path, "hr", None, True)
    text = rep.finish(SimpleNamespace(status="dry-run", counts={}, notes=[])).read_text()
    assert "DRY RUN" in text and "summary: 0 joiners" in text


def test_a_warning_counts_once_in_its_category_and_once_as_warning(tmp_path):
    rep = RunReporter(tmp_path, "hr", 1, False)
    missing = "warning: group cn=nosuch,ou=groups,dc=x does not exist"
    rep.action(result(ActionKind.CREATE, "J1", f"created uid=j1,ou=p; {missing}"))
    rep.action(result(ActionKind.CREATE, "J2", "created uid=j2,ou=p"))
    rep.action(result(ActionKind.UPDATE, "M1", f"moved from uid=m,ou=a to uid=m,ou=b; {missing}"))
    rep.action(result(ActionKind.DELETE, "L1", "disabled"))
    rep.action(result(ActionKind.UPDATE, "E1", ok=False, error="refused"))
    rep.problem("Q1", None, "field 'mail': ValueError: email: the local part 'zoë' is not ASCII")
    text = rep.finish(SimpleNamespace(status="ok", counts={})).read_text()
    cats = json.loads(text and (tmp_path / f"{rep.stem}.json").read_text())["categories"]
    counts = {c: v["count"] for c, v in cats.items()}
    assert counts["joiners"] == 2 and counts["movers"] == 1 and counts["leavers"] == 1
    assert counts["errors"] == 1 and counts["quarantined"] == 1
    assert counts["warnings"] == 2
    assert [i["key"] for i in cats["warnings"]["first"]] == ["J1", "M1"]
    assert "Warnings (done, with something to look at): 2" in text
    assert "J1: warning: group cn=nosuch" in text
