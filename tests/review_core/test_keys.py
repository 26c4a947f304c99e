"""Two entries mapping onto one record key, and one entry listed twice in one read."""

from __future__ import annotations

import json
import sqlite3

import yaml

from tests.review_core.conftest import make_staff


def _status(setup) -> dict:
    return json.loads(setup.syncd("status", "--json").stdout)[0]


def test_two_entries_with_one_key_are_quarantined_not_sharing_a_row(tmp_path):
    # The mapping keys on the badge number; two people were given the same badge.
    setup = make_staff(tmp_path, key="badge")
    setup.rows(("E1", "B-1", "Ann", "Sales"), ("E2", "B-1", "Bob", "IT"), ("E3", "B-3", "Cy", "IT"))
    first = setup.syncd("sync", "staff", "--no-progress")
    assert first.returncode == 0, first.stderr
    rows = setup.target()
    assert set(rows) == {"B-1", "B-3"}
    owner = rows["B-1"]["name"]
    loser = "E2" if owner == "Ann" else "E1"
    status = _status(setup)
    reasons = {q["source_id"]: q["reason"] for q in status["quarantine"]}
    assert set(reasons) == {loser} and "also the key of" in reasons[loser]
    assert status["objects"] == 2  # the loser is not in the state as owning B-1

    # Nothing takes turns: a second run changes nothing.
    again = setup.syncd("sync", "staff", "--no-progress")
    assert again.returncode == 0 and "created" not in again.stdout
    assert "updated" not in again.stdout and setup.target()["B-1"]["name"] == owner

    # The losing entry leaves the source: the row of the entry that still exists stays.
    keep = [r for r in (("E1", "B-1", "Ann", "Sales"), ("E2", "B-1", "Bob", "IT")) if r[0] != loser]
    setup.rows(*keep, ("E3", "B-3", "Cy", "IT"))
    setup.syncd("sync", "staff", "--no-progress")
    assert setup.target()["B-1"]["name"] == owner


def test_a_newcomer_claiming_a_synced_key_is_quarantined(tmp_path):
    setup = make_staff(tmp_path, key="badge")
    setup.rows(("E1", "B-1", "Ann", "Sales"))
    setup.syncd("sync", "staff", "--no-progress")
    # E0 sorts (and is read) before E1, so only the state can tell that B-1 is taken.
    setup.rows(("E0", "B-1", "Zed", "IT"), ("E1", "B-1", "Ann", "Sales"))
    out = setup.syncd("sync", "staff", "--no-progress")
    assert out.returncode == 0
    assert setup.target()["B-1"]["name"] == "Ann"
    assert [q["source_id"] for q in _status(setup)["quarantine"]] == ["E0"]
    # Once E1 leaves, E0 maps onto a free key and leaves the quarantine.
    setup.rows(("E0", "B-1", "Zed", "IT"))
    setup.syncd("sync", "staff", "--no-progress", "--allow-deletes")
    setup.syncd("sync", "staff", "--no-progress")
    assert setup.target()["B-1"]["name"] == "Zed"
    assert _status(setup)["quarantine"] == []


def test_an_id_listed_twice_in_one_read_does_not_flip_every_run(staff):
    staff.rows(("E1", "B-1", "Ann", "Sales"), ("E1", "B-1", "Ann", "Support"))
    staff.syncd("sync", "staff", "--no-progress")
    dept = staff.target()["E1"]["dept"]
    for _ in range(2):
        out = staff.syncd("sync", "staff", "--no-progress")
        assert "nothing to change" in out.stdout, out.stdout
        assert staff.target()["E1"]["dept"] == dept
    runs = _status(staff)["runs"]
    assert runs[0]["counts"].get("duplicate") == 1


def _refuse_delete_of(setup, key: str) -> None:
    con = sqlite3.connect(setup.dir / "out.sqlite")
    con.execute(
        f"CREATE TRIGGER refuse BEFORE DELETE ON people WHEN old.key = '{key}' "
        "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
    )
    con.commit()
    con.close()


def _allow_deletes(setup) -> None:
    con = sqlite3.connect(setup.dir / "out.sqlite")
    con.execute("DROP TRIGGER refuse")
    con.commit()
    con.close()


def test_a_key_change_whose_old_item_could_not_be_deleted_is_retried(tmp_path):
    setup = make_staff(tmp_path, key="badge")
    setup.rows(("E1", "B-1", "Ann", "Sales"))
    setup.syncd("sync", "staff", "--no-progress")
    _refuse_delete_of(setup, "B-1")
    setup.rows(("E1", "B-2", "Ann", "Sales"))  # new badge: delete B-1, create B-2
    for attempt in (1, 2):
        out = setup.syncd("sync", "staff", "--no-progress")
        assert out.returncode == 1, out  # the failed delete is retried on every run
        [q] = _status(setup)["quarantine"]
        assert q["source_id"] == "E1" and "refused" in q["reason"]
        assert q["attempts"] == attempt
    _allow_deletes(setup)
    out = setup.syncd("sync", "staff", "--no-progress")
    assert out.returncode == 0, out
    assert set(setup.target()) == {"B-2"}
    assert _status(setup)["quarantine"] == []
    again = setup.syncd("sync", "staff", "--no-progress")
    assert "nothing to change" in again.stdout


def test_a_failed_delete_found_by_a_full_read_is_retried_by_the_next_run(tmp_path):
    # Incremental by an updated column: deletions are found by complete reads only.
    setup = make_staff(tmp_path, job={"max_deletes": 5})
    cfg = yaml.safe_load(setup.config.read_text())
    cfg["jobs"]["staff"]["source"]["updated_column"] = "dept"
    setup.config.write_text(yaml.safe_dump(cfg))
    setup.rows(("E1", "B-1", "Ann", "a"), ("E2", "B-2", "Bob", "b"))
    setup.syncd("sync", "staff", "--no-progress")
    setup.rows(("E1", "B-1", "Ann", "a"))  # E2 left
    assert "nothing to change" in setup.syncd("sync", "staff", "--no-progress").stdout
    _refuse_delete_of(setup, "E2")
    out = setup.syncd("sync", "staff", "--no-progress", "--full")
    assert out.returncode == 1 and "1 failed" in out.stdout, out
    _allow_deletes(setup)
    # A plain run (no --full) must retry the delete, not forget it until the next full.
    out = setup.syncd("sync", "staff", "--no-progress")
    assert out.returncode == 0 and "1 deleted" in out.stdout, out
    assert set(setup.target()) == {"E1"}
    assert _status(setup)["quarantine"] == []
    again = setup.syncd("sync", "staff", "--no-progress")
    assert "nothing to change" in again.stdout, again


def test_a_quarantined_entry_that_leaves_the_source_leaves_the_quarantine(staff):
    staff.rows(("E1", "B-1", None, "Sales"), ("E2", "B-2", "Bob", "IT"))  # E1: no name
    staff.syncd("sync", "staff", "--no-progress")
    assert [q["source_id"] for q in _status(staff)["quarantine"]] == ["E1"]
    staff.rows(("E2", "B-2", "Bob", "IT"))
    out = staff.syncd("sync", "staff", "--no-progress")
    assert out.returncode == 0, out
    assert _status(staff)["quarantine"] == []
    assert set(staff.target()) == {"E2"}


def test_a_mapping_change_reaches_records_an_incremental_read_would_not_see(tmp_path):
    setup = make_staff(tmp_path)
    cfg = yaml.safe_load(setup.config.read_text())
    cfg["jobs"]["staff"]["source"]["updated_column"] = "dept"
    setup.config.write_text(yaml.safe_dump(cfg))
    setup.rows(("E1", "B-1", "Ann", "a"), ("E2", "B-2", "Bob", "b"))
    setup.syncd("sync", "staff", "--no-progress")
    assert "nothing to change" in setup.syncd("sync", "staff", "--no-progress").stdout
    mapping = setup.dir / "staff.yaml"
    mapping.write_text(
        mapping.read_text().replace("{{ full_name | first }}", "{{ full_name | first | upper }}")
    )
    plan = setup.syncd("plan", "staff")
    assert "update 2" in plan.stdout, plan.stdout
    out = setup.syncd("sync", "staff", "--no-progress")
    assert "2 updated" in out.stdout, out
    assert {r["name"] for r in setup.target().values()} == {"ANN", "BOB"}
    again = setup.syncd("sync", "staff", "--no-progress")
    assert "nothing to change" in again.stdout and "method sql-incremental" in again.stdout


def test_a_newcomer_read_after_the_synced_owner_is_quarantined(tmp_path):
    setup = make_staff(tmp_path, key="badge")
    setup.rows(("E1", "B-1", "Ann", "Sales"))
    setup.syncd("sync", "staff", "--no-progress")
    # E1 (read first, changed, so mapped again) keeps the key its state gives it; E2,
    # read after it in the same run, claims that key too.
    setup.rows(("E1", "B-1", "Ann", "IT"), ("E2", "B-1", "Zed", "Sales"))
    out = setup.syncd("sync", "staff", "--no-progress")
    assert out.returncode == 0, out
    assert setup.target()["B-1"]["name"] == "Ann" and setup.target()["B-1"]["dept"] == "IT"
    assert [q["source_id"] for q in _status(setup)["quarantine"]] == ["E2"]
