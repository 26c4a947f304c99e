"""Whole jobs against 389 Directory Server: a modify under syncrepl plans no deletes, a
delete is applied, and switching methods keeps every object (no re-create, no
quarantine). The mapping keys on entryUUID, which 389-ds leaves out of the changed
entries of an incremental refresh unless they are read again."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from tests.e2e.conftest import Setup, write_config

pytestmark = pytest.mark.ds389


def device(ou: str, cn: str, serial: str) -> str:
    return f"dn: cn={cn},{ou}\nobjectClass: device\ncn: {cn}\nserialNumber: {serial}\nl: Paris\n"


def setup(tmp_path, ds389, ou, changes: str) -> Setup:
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    url = f"sqlite:///{work}/inventory.db"
    source = {"changes": changes, "base": ou}
    return Setup(work, write_config(work, ds389, url, source=source), ds389, url)


def switch_method(s: Setup, changes: str) -> None:
    cfg = yaml.safe_load(s.config.read_text())
    cfg["jobs"]["inventory"]["source"]["changes"] = changes
    s.config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def rows(s: Setup) -> dict[str, dict]:
    con = sqlite3.connect(s.dir / "inventory.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["hostname"]: dict(r) for r in con.execute("SELECT * FROM devices")}
    finally:
        con.close()


def plan(s: Setup) -> list[str]:
    out = json.loads(s.syncd("plan", "inventory", "--json").stdout)
    return sorted(a["kind"] for a in out["actions"])


def last_run(s: Setup) -> dict:
    return json.loads(s.syncd("status", "--json").stdout)[0]["runs"][0]


def test_syncrepl_modify_and_delete_on_389ds(tmp_path, ds389, ds389_ou):
    s = setup(tmp_path, ds389, ds389_ou, "auto")
    ds389.add("\n".join(device(ds389_ou, f"pc-{i}", f"SN-{i}") for i in range(20)))
    s.syncd("sync", "inventory", "--no-progress")
    assert len(rows(s)) == 20 and last_run(s)["method"] == "syncrepl"

    ds389.modify(f"dn: cn=pc-3,{ds389_ou}\nchangetype: modify\nreplace: l\nl: Lisboa\n")
    # Before the fix: 1 update and 19 deletes (the refresh was taken as a full listing).
    assert plan(s) == ["update"]
    s.syncd("sync", "inventory", "--no-progress")
    run = last_run(s)
    assert run["counts"]["updated"] == 1 and run["counts"].get("quarantined", 0) == 0, run
    assert rows(s)["pc-3"]["location"] == "Lisboa" and len(rows(s)) == 20

    ds389.delete(f"cn=pc-4,{ds389_ou}")
    assert plan(s) == ["delete"]
    s.syncd("sync", "inventory", "--no-progress")
    assert "pc-4" not in rows(s) and len(rows(s)) == 19


@pytest.mark.parametrize(("before", "after"), [("timestamp", "auto"), ("auto", "full")])
def test_switching_methods_on_389ds_changes_nothing(tmp_path, ds389, ds389_ou, before, after):
    s = setup(tmp_path, ds389, ds389_ou, before)
    ds389.add("\n".join(device(ds389_ou, f"pc-{i}", f"SN-{i}") for i in range(5)))
    s.syncd("sync", "inventory", "--no-progress")
    assert len(rows(s)) == 5
    switch_method(s, after)
    out = s.syncd("sync", "inventory", "--no-progress").stdout
    assert "nothing to change" in out, out
    run = last_run(s)
    assert run["counts"].get("quarantined", 0) == 0 and run["counts"].get("created", 0) == 0
    assert json.loads(s.syncd("status", "--json").stdout)[0]["quarantine"] == []
