"""The inventory job end to end: a real slapd -> syncd CLI -> a real SQLite table."""

from __future__ import annotations

import json
import sqlite3

from tests.e2e.conftest import device, write_config


def rows(setup, where: str = "") -> dict[str, dict]:
    con = sqlite3.connect(setup.dir / "inventory.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["hostname"]: dict(r) for r in con.execute(f"SELECT * FROM devices {where}")}
    finally:
        con.close()


def load(setup, *entries: str) -> None:
    setup.slapd.add("\n".join(entries))


def test_first_run_creates_second_moves_nothing_changes_follow(inventory):
    load(
        inventory,
        device("pc-1", "SN-1", "Paris", owner="uid=ada,ou=people,dc=example,dc=com"),
        device("pc-2", "SN-2", "東京"),
        device("pc-3", "SN-3", "Zürich"),
    )
    out = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "3 created" in out
    got = rows(inventory)
    assert set(got) == {"pc-1", "pc-2", "pc-3"}
    assert got["pc-1"]["owner"] == "ada" and got["pc-2"]["location"] == "東京"

    again = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "nothing to change" in again

    inventory.slapd.modify(
        "dn: cn=pc-2,ou=devices,dc=example,dc=com\nchangetype: modify\nreplace: l\nl: Osaka\n"
    )
    inventory.slapd.delete("cn=pc-3,ou=devices,dc=example,dc=com")
    load(inventory, device("pc-4", "SN-4"))
    plan = inventory.syncd("plan", "inventory").stdout
    assert "create 1" in plan and "update 1" in plan and "delete 1" in plan
    assert "location: '東京' -> 'Osaka'" in plan
    assert rows(inventory)["pc-2"]["location"] == "東京", "plan must not write"

    out = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 created" in out and "1 updated" in out and "1 deleted" in out
    got = rows(inventory)
    assert set(got) == {"pc-1", "pc-2", "pc-4"} and got["pc-2"]["location"] == "Osaka"


def test_plan_json_lists_actions_and_writes_nothing(inventory):
    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    data = json.loads(inventory.syncd("plan", "inventory", "--json").stdout)
    assert data["counts"]["create"] == 2
    assert {a["fields"]["hostname"] for a in data["actions"]} == {"pc-1", "pc-2"}
    assert not (inventory.dir / "inventory.db").exists() or not rows(inventory)
    status = json.loads(inventory.syncd("status", "--json").stdout)
    assert status[0]["runs"] == [], "a dry run leaves no run record"
    assert inventory.syncd("plan", "inventory", "--check", check=False).returncode == 1


def test_bad_entry_is_quarantined_and_run_goes_on(inventory):
    load(inventory, device("pc-ok", "SN-1"), device("pc-bad", serial=None))
    res = inventory.syncd("sync", "inventory", "--no-progress")
    assert "1 created" in res.stdout and "1 quarantined" in res.stdout
    assert set(rows(inventory)) == {"pc-ok"}
    status = json.loads(inventory.syncd("status", "--json").stdout)
    [q] = status[0]["quarantine"]
    assert "serial" in q["reason"] and q["dn"].startswith("cn=pc-bad")
    # fixed in the directory: it leaves the quarantine on the next run
    inventory.slapd.modify(
        "dn: cn=pc-bad,ou=devices,dc=example,dc=com\nchangetype: modify\n"
        "add: serialNumber\nserialNumber: SN-9\n"
    )
    inventory.syncd("sync", "inventory", "--no-progress")
    assert set(rows(inventory)) == {"pc-ok", "pc-bad"}
    assert json.loads(inventory.syncd("status", "--json").stdout)[0]["quarantine"] == []


def test_quarantined_entry_is_not_deleted_from_target(inventory):
    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    inventory.syncd("sync", "inventory", "--no-progress")
    inventory.slapd.modify(
        "dn: cn=pc-2,ou=devices,dc=example,dc=com\nchangetype: modify\ndelete: serialNumber\n"
    )
    out = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "deleted" not in out and "1 quarantined" in out
    assert set(rows(inventory)) == {"pc-1", "pc-2"}


def test_skip_condition_takes_object_out_of_target(inventory):
    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"), device("pc-3", "SN-3"))
    inventory.syncd("sync", "inventory", "--no-progress")
    inventory.slapd.modify(
        "dn: cn=pc-3,ou=devices,dc=example,dc=com\nchangetype: modify\n"
        "replace: description\ndescription: RETIRED in 2026\n"
    )
    out = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 deleted" in out and "1 skipped" in out
    assert set(rows(inventory)) == {"pc-1", "pc-2"}


def test_deletion_threshold_stops_before_writing(inventory):
    load(inventory, *(device(f"pc-{i}", f"SN-{i}") for i in range(10)))
    inventory.syncd("sync", "inventory", "--no-progress")
    for i in range(6):
        inventory.slapd.delete(f"cn=pc-{i},ou=devices,dc=example,dc=com")
    load(inventory, device("pc-new", "SN-new"))
    res = inventory.syncd("sync", "inventory", "--no-progress", check=False)
    assert res.returncode == 6
    assert (
        "deletes or disables 6 objects, more than max_deletes allows (50% of 10 = 5)" in res.stderr
    )
    assert "Traceback" not in res.stderr
    assert len(rows(inventory)) == 10 and "pc-new" not in rows(inventory), "nothing written"
    status = json.loads(inventory.syncd("status", "--json").stdout)
    assert status[0]["runs"][0]["status"] == "gated"
    res = inventory.syncd("sync", "inventory", "--no-progress", "--allow-deletes")
    assert set(rows(inventory)) == {"pc-6", "pc-7", "pc-8", "pc-9", "pc-new"}


def test_empty_source_is_refused_not_taken_as_everything_deleted(inventory):
    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    inventory.syncd("sync", "inventory", "--no-progress")
    cfg = inventory.config.read_text().replace("(objectClass=device)", "(objectClass=nomatch)")
    inventory.config.write_text(cfg)
    res = inventory.syncd("sync", "inventory", "--no-progress", check=False)
    assert res.returncode == 6 and "returned no objects" in res.stderr
    assert set(rows(inventory)) == {"pc-1", "pc-2"}


def test_missing_base_dn_is_a_failed_read(inventory):
    load(inventory, device("pc-1", "SN-1"))
    inventory.syncd("sync", "inventory", "--no-progress")
    cfg = inventory.config.read_text().replace("ou=devices,dc=example", "ou=gone,dc=example")
    inventory.config.write_text(cfg)
    res = inventory.syncd("sync", "inventory", "--no-progress", check=False)
    assert res.returncode == 4, res.stderr
    assert "Traceback" not in res.stderr
    assert set(rows(inventory)) == {"pc-1"}


def test_soft_delete_flags_the_row_and_return_clears_it(tmp_path, slapd):
    work = tmp_path / "w"
    work.mkdir()
    from tests.e2e.conftest import Setup

    url = f"sqlite:///{work}/inventory.db"
    setup = Setup(work, write_config(work, slapd, url, target={"on_delete": "soft"}), slapd, url)
    load(setup, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    setup.syncd("sync", "inventory", "--no-progress")
    slapd.delete("cn=pc-2,ou=devices,dc=example,dc=com")
    setup.syncd("sync", "inventory", "--no-progress")
    got = rows(setup)
    assert set(got) == {"pc-1", "pc-2"}
    assert got["pc-2"]["deleted_at"] is not None and got["pc-1"]["deleted_at"] is None


def test_user_errors_are_one_line_without_traceback(inventory, tmp_path):
    # wrong password
    (inventory.dir / "pw").write_text("Not-The-Pa55word")
    res = inventory.syncd("sync", "inventory", check=False, subprocess_=True)
    assert res.returncode == 3 and "invalid credentials" in res.stderr.lower()
    assert "Traceback" not in res.stderr and "Not-The-Pa55word" not in res.stderr
    # missing secret file
    (inventory.dir / "pw").unlink()
    res = inventory.syncd("validate", check=False)
    assert res.returncode == 2 and "no such file" in res.stderr
    # unknown job
    res = inventory.syncd("sync", "nope", check=False)
    assert res.returncode == 2 and "no job named 'nope'" in res.stderr
    # unreachable host
    cfg = inventory.config.read_text().replace(inventory.slapd.url, "ldap://127.0.0.1:1")
    inventory.config.write_text(cfg)
    (inventory.dir / "pw").write_text("x")
    res = inventory.syncd("sync", "inventory", check=False)
    assert res.returncode == 3 and "Traceback" not in res.stderr
    # broken YAML
    inventory.config.write_text("version: 1\njobs: [\n")
    res = inventory.syncd("validate", check=False)
    assert res.returncode == 2 and f"{inventory.config}:" in res.stderr


def test_report_dir_writes_a_report_status_summarises(tmp_path, slapd):
    from tests.e2e.conftest import Setup

    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    setup = Setup(work, write_config(work, slapd, url, job={"report_dir": "reports"}), slapd, url)
    load(setup, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    setup.syncd("sync", "inventory", "--no-progress")
    reports = list((work / "reports").glob("inventory-*.txt"))
    assert len(reports) == 1, "relative report_dir is relative to the config file"
    [job] = json.loads(setup.syncd("status", "--json").stdout)
    assert job["report"].startswith("ok: 2 joiners"), job["report"]
    assert "last report: ok: 2 joiners" in setup.syncd("status").stdout


def test_stop_while_reading_writes_nothing_and_says_stopped(inventory):
    import threading

    from syncd.config import load_config
    from syncd.engine import run_job

    load(inventory, device("pc-1", "SN-1"), device("pc-2", "SN-2"))
    stop = threading.Event()
    stop.set()  # as if SIGTERM arrived during the read
    report = run_job(load_config(inventory.config), "inventory", stop_event=stop)
    assert report.status == "stopped" and report.error is None
    db = inventory.dir / "inventory.db"
    if db.exists():  # the target may have been opened; it must hold nothing
        con = sqlite3.connect(db)
        try:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
            assert "devices" not in tables or not con.execute("SELECT 1 FROM devices").fetchall()
        finally:
            con.close()
    [job] = json.loads(inventory.syncd("status", "--json").stdout)
    assert job["runs"][0]["status"] == "stopped" and job["objects"] == 0
