"""Operator commands through the real CLI against a real slapd and SQLite target:
``quarantine list|retry|clear``, ``forget``, ``sync --json``, ``status --check``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.e2e.conftest import MAPPING, Setup, device, write_config

# The serial number is the record key: two devices with one serial claim one target row.
SERIAL_KEY = MAPPING.replace("key: entryUUID", "key: serialNumber")


def rows(setup) -> dict[str, dict]:
    con = sqlite3.connect(setup.dir / "inventory.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["hostname"]: dict(r) for r in con.execute("SELECT * FROM devices")}
    finally:
        con.close()


@pytest.fixture
def incremental(tmp_path, slapd):
    """The inventory job reading by syncrepl (only changes), keyed by serial number."""
    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    cfg = write_config(work, slapd, url, source={"changes": "syncrepl"}, mapping=SERIAL_KEY)
    return Setup(work, cfg, slapd, url)


def _quarantine(setup, *args: str) -> list[dict]:
    return json.loads(setup.syncd("quarantine", "list", *args, "--json").stdout)


def test_quarantine_list_retry_makes_an_unchanged_entry_sync(incremental):
    s = incremental
    s.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-2", "SN-1"), device("pc-3", "SN-3")]))
    s.syncd("sync", "inventory", "--no-progress")
    [q] = _quarantine(s, "inventory")
    assert "also the key of" in q["reason"] and q["attempts"] == 1
    assert q["first_seen"] and q["last_seen"] and q["job"] == "inventory"
    synced, loser = ("pc-1", "pc-2") if "pc-1" in rows(s) else ("pc-2", "pc-1")
    assert set(rows(s)) == {synced, "pc-3"}
    assert q["dn"].startswith(f"cn={loser},")
    text = s.syncd("quarantine", "list").stdout
    assert loser in text and "also the key of" in text and "attempts" in text

    # The device holding the serial leaves; the other one did not change, so an
    # incremental read does not list it again: it stays quarantined and unsynced.
    s.slapd.delete(f"cn={synced},ou=devices,dc=example,dc=com")
    s.syncd("sync", "inventory", "--no-progress")
    assert set(rows(s)) == {"pc-3"} and len(_quarantine(s)) == 1

    out = s.syncd("quarantine", "retry", "inventory", q["dn"]).stdout
    assert "1 entries will be retried" in out
    res = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 created" in res
    assert set(rows(s)) == {loser, "pc-3"}
    assert _quarantine(s) == []


def test_quarantine_retry_names_unknown_entries_and_clear_asks(incremental):
    s = incremental
    s.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-2", "SN-1")]))
    s.syncd("sync", "inventory", "--no-progress")
    bad = s.syncd("quarantine", "retry", "inventory", "cn=nobody", check=False)
    assert bad.returncode == 2 and "not in quarantine: cn=nobody" in bad.stderr
    assert "Traceback" not in bad.stderr

    cmd = [sys.executable, "-m", "syncd", "-c", str(s.config), "quarantine", "clear", "inventory"]
    no = subprocess.run(cmd, input="n\n", capture_output=True, text=True, timeout=60)
    assert no.returncode != 0 and "drop 1 quarantine entries" in no.stdout
    assert len(_quarantine(s)) == 1, "answering no keeps the entries"
    yes = s.syncd("quarantine", "clear", "inventory", "--yes").stdout
    assert "dropped 1" in yes and _quarantine(s) == []


def test_forget_resets_state_and_the_next_run_creates_not_deletes(inventory):
    inventory.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-2", "SN-2")]))
    inventory.syncd("sync", "inventory", "--no-progress")
    cmd = [sys.executable, "-m", "syncd", "-c", str(inventory.config), "forget", "inventory"]
    no = subprocess.run(cmd, input="n\n", capture_output=True, text=True, timeout=60)
    assert no.returncode != 0 and "forget 2 synced objects" in no.stdout
    assert "deletes nothing" in no.stdout
    status = json.loads(inventory.syncd("status", "--json").stdout)
    assert status[0]["objects"] == 2, "answering no changes nothing"

    out = inventory.syncd("forget", "inventory", "--yes").stdout
    assert "forgot 2 objects" in out and "first run" in out
    status = json.loads(inventory.syncd("status", "--json").stdout)
    assert status[0]["objects"] == 0 and status[0]["runs"], "run history is kept"
    # pc-2 left the directory meanwhile: a run after forget does not know it was synced,
    # so it is not deleted; pc-1 is written again (an upsert by key).
    inventory.slapd.delete("cn=pc-2,ou=devices,dc=example,dc=com")
    again = inventory.syncd("sync", "inventory", "--no-progress").stdout
    assert "1 created" in again and "deleted" not in again
    assert set(rows(inventory)) == {"pc-1", "pc-2"}


def test_sync_json_is_the_run_report(inventory):
    inventory.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-bad", serial=None)]))
    res = inventory.syncd("sync", "inventory", "--no-progress", "--json")
    data = json.loads(res.stdout)
    assert data["job"] == "inventory" and data["status"] == "ok"
    assert data["counts"]["created"] == 1 and data["counts"]["quarantined"] == 1
    assert data["run_id"] >= 1 and data["method"] == "full" and data["duration"] >= 0
    # A gated run still answers JSON on stdout, and the exit code says what happened.
    cfg = inventory.config.read_text().replace("(objectClass=device)", "(objectClass=none)")
    inventory.config.write_text(cfg)
    gated = inventory.syncd("sync", "inventory", "--no-progress", "--json", check=False)
    assert gated.returncode == 6
    out = json.loads(gated.stdout)
    assert out["status"] == "gated" and "no objects" in out["error"]


def test_status_check_follows_nagios_conventions(inventory):
    never = inventory.syncd("status", "--check", check=False)
    assert never.returncode == 1 and never.stdout.startswith("SYNCD WARNING - inventory: never")
    inventory.slapd.add(device("pc-1", "SN-1"))
    inventory.syncd("sync", "inventory", "--no-progress")
    ok = inventory.syncd("status", "--check", check=False)
    assert ok.returncode == 0, ok.stdout
    assert ok.stdout.startswith("SYNCD OK - inventory: last success")
    assert len(ok.stdout.splitlines()) == 1
    assert "| 'inventory_age'=" in ok.stdout and "'inventory_quarantined'=0" in ok.stdout

    # Too old: a success older than the warning / critical age.
    import time

    time.sleep(1.1)
    warn = inventory.syncd("status", "--check", "--warning", "1s", "--critical", "1h", check=False)
    assert warn.returncode == 1 and warn.stdout.startswith("SYNCD WARNING")
    crit = inventory.syncd("status", "--check", "--warning", "1s", "--critical", "1s", check=False)
    assert crit.returncode == 2 and crit.stdout.startswith("SYNCD CRITICAL")

    # The last run failed: CRITICAL with its reason.
    cfg = inventory.config.read_text().replace("ou=devices,dc=example", "ou=gone,dc=example")
    inventory.config.write_text(cfg)
    inventory.syncd("sync", "inventory", "--no-progress", check=False)
    failed = inventory.syncd("status", "--check", check=False)
    assert failed.returncode == 2
    assert failed.stdout.startswith("SYNCD CRITICAL - inventory: last run failed")

    # A state store that cannot be read: UNKNOWN (3), still one line.
    (inventory.dir / "state.db").unlink()
    (inventory.dir / "state.db").mkdir()
    unknown = inventory.syncd("status", "--check", check=False)
    assert unknown.returncode == 3 and unknown.stdout.startswith("SYNCD UNKNOWN - ")
    assert len(unknown.stdout.splitlines()) == 1


def test_history_lists_applied_changes_with_field_names_only(inventory):
    inventory.slapd.add("\n".join([device("pc-1", "SN-1"), device("pc-2", "SN-2", "Lyon")]))
    inventory.syncd("sync", "inventory", "--no-progress")
    inventory.slapd.modify(
        "dn: cn=pc-2,ou=devices,dc=example,dc=com\nchangetype: modify\nreplace: l\nl: Osaka\n"
    )
    inventory.slapd.delete("cn=pc-1,ou=devices,dc=example,dc=com")
    inventory.syncd("sync", "inventory", "--no-progress")
    runs = json.loads(inventory.syncd("status", "--json").stdout)[0]["runs"]
    first, second = runs[1]["id"], runs[0]["id"]

    data = json.loads(inventory.syncd("history", "inventory", "--json").stdout)
    assert [(d["kind"], d["run_id"]) for d in data] == [
        ("create", first),
        ("create", first),
        ("update", second),
        ("delete", second),
    ]
    update = next(d for d in data if d["kind"] == "update")
    assert update["fields"] == ["location"] and update["dn"].startswith("cn=pc-2,")
    assert update["key"] and update["target_id"] == update["key"]
    created = [d for d in data if d["kind"] == "create"]
    assert set(created[0]["fields"]) >= {"hostname", "serial", "location"}
    text = inventory.syncd("history", "inventory").stdout
    assert "Osaka" not in text and "Lyon" not in text and "SN-2" not in text, "no values"
    assert "update  cn=pc-2,ou=devices,dc=example,dc=com" in text and "fields: location" in text

    only = json.loads(
        inventory.syncd(
            "history", "inventory", "--dn", "CN=PC-1,ou=devices,dc=example,dc=com", "--json"
        ).stdout
    )
    assert [d["kind"] for d in only] == ["create", "delete"]
    assert (
        json.loads(
            inventory.syncd("history", "inventory", "--since", "2999-01-01", "--json").stdout
        )
        == []
    )
    assert (
        len(json.loads(inventory.syncd("history", "inventory", "--since", "1h", "--json").stdout))
        == 4
    )
    bad = inventory.syncd("history", "inventory", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr


def test_retention_from_the_config_prunes_at_the_end_of_a_sync(tmp_path, slapd):
    import time

    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    cfg = write_config(work, slapd, url)
    text = cfg.read_text().replace(
        "state:\n", "state:\n  retention: {runs: 1s, audit: 1s, reports: 1s}\n", 1
    )
    cfg.write_text(text)
    s = Setup(work, cfg, slapd, url)
    s.slapd.add(device("pc-1", "SN-1"))
    s.syncd("sync", "inventory", "--no-progress")
    assert len(json.loads(s.syncd("history", "inventory", "--json").stdout)) == 1
    time.sleep(1.2)
    s.slapd.add(device("pc-2", "SN-2"))
    s.syncd("sync", "inventory", "--no-progress")
    # The first run's audit row is older than 1 s: gone; the second run's stays.
    assert [d["dn"][:7] for d in json.loads(s.syncd("history", "inventory", "--json").stdout)] == [
        "cn=pc-2"
    ]
    time.sleep(1.2)
    s.syncd("sync", "inventory", "--no-progress")
    runs = json.loads(s.syncd("status", "--json", "--runs", "10").stdout)[0]["runs"]
    # Three ok runs, all older than 1 s but the latest (which is also the last ok one).
    assert len(runs) == 1
