"""An inventory job from Samba AD through the real CLI into SQLite, with the shipped
mapping (mappings/inventory-ad-computer.yaml): first run, then incremental runs that
carry a modify, a move, an add and a delete to the table."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.samba

ROOT = Path(__file__).resolve().parents[2]


def write_config(work: Path, dc, base: str, changes: str) -> Path:
    (work / "pw").write_text(dc.admin_pw + "\n")
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{work}/state.db"},
        "connections": {
            "ad": {
                "type": "ldap",
                "url": dc.url,
                "bind_dn": dc.admin_dn,
                "password": {"file": str(work / "pw")},
                "ca_file": dc.ca_file,
            },
            "db": {"type": "sql", "url": f"sqlite:///{work}/inventory.db"},
        },
        "jobs": {
            "inventory": {
                "source": {
                    "connection": "ad",
                    "base": base,
                    "filter": "(objectCategory=computer)",
                    "changes": changes,
                },
                "mapping": str(ROOT / "mappings" / "inventory-ad-computer.yaml"),
                "target": {"connection": "db", "table": "computers"},
                "max_deletes": "50%",
            }
        },
    }
    path = work / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def syncd(config: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "syncd", "-c", str(config), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"syncd {args}: {result.stdout}\n{result.stderr}"
    return result


def rows(work: Path) -> dict[str, dict]:
    con = sqlite3.connect(work / "inventory.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["hostname"]: dict(r) for r in con.execute("SELECT * FROM computers")}
    finally:
        con.close()


@pytest.mark.parametrize("changes", ["dirsync", "usn"])
def test_inventory_job_follows_ad_changes(samba_dc, samba_ou, tmp_path, changes):
    tag = samba_ou[5:13]
    site = samba_dc.add_ou("site", samba_ou)
    pcs = {
        f"pc{i}-{tag}": samba_dc.add_computer(
            site,
            f"pc{i}-{tag}",
            dNSHostName=f"PC{i}.Example.Test",
            operatingSystem="Windows 11",
        )
        for i in range(4)
    }
    config = write_config(tmp_path, samba_dc, samba_ou, changes)
    syncd(config, "sync", "inventory", "--no-progress")
    got = rows(tmp_path)
    assert set(got) == set(pcs)
    pc0 = got[f"pc0-{tag}"]
    assert pc0["dns_name"] == "pc0.example.test"
    assert pc0["os"] == "Windows 11"
    assert pc0["container"].lower() == site.lower()
    assert pc0["disabled"] in (0, False, "false", "False")

    samba_dc.modify(pcs[f"pc0-{tag}"], operatingSystem="Windows 12")
    moved_to = samba_dc.add_ou("lab", samba_ou)
    samba_dc.move(pcs[f"pc1-{tag}"], moved_to)
    samba_dc.delete(pcs[f"pc2-{tag}"])
    samba_dc.add_computer(site, f"pc9-{tag}", operatingSystem="Linux")

    plan = json.loads(syncd(config, "plan", "inventory", "--json").stdout)
    kinds = sorted(a["kind"] for a in plan["actions"])
    assert kinds == ["create", "delete", "update", "update"], plan
    syncd(config, "sync", "inventory", "--no-progress")
    got = rows(tmp_path)
    assert set(got) == {f"pc0-{tag}", f"pc1-{tag}", f"pc3-{tag}", f"pc9-{tag}"}
    assert got[f"pc0-{tag}"]["os"] == "Windows 12"
    assert got[f"pc1-{tag}"]["container"].lower() == moved_to.lower()
    assert got[f"pc9-{tag}"]["os"] == "Linux"

    status = json.loads(syncd(config, "status", "--json").stdout)[0]
    last = status["runs"][0]
    assert last["status"] == "ok"
    assert last["method"] == changes
