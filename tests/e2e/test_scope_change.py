"""A changed source scope (filter, base, attributes, bind account) while a cursor exists.

An incremental read from the old cursor only lists what changed in the directory, so
a narrowed filter would leave out-of-scope rows forever and a widened one would never
bring in the entries it now covers. The engine stores a digest of the scope with each
run and reads completely when it changed.
"""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from tests.e2e.conftest import Setup, device, write_config


def hostnames(setup) -> set[str]:
    con = sqlite3.connect(setup.dir / "inventory.db")
    try:
        return {r[0] for r in con.execute("SELECT hostname FROM devices")}
    finally:
        con.close()


def set_filter(setup, ldap_filter: str) -> None:
    cfg = yaml.safe_load(setup.config.read_text())
    cfg["jobs"]["inventory"]["source"]["filter"] = ldap_filter
    setup.config.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.parametrize("changes", ["syncrepl", "timestamp"])
def test_narrowed_then_widened_filter_reads_completely(tmp_path, slapd, changes):
    work = tmp_path / "w"
    work.mkdir()
    url = f"sqlite:///{work}/inventory.db"
    s = Setup(work, write_config(work, slapd, url, source={"changes": changes}), slapd, url)
    slapd.add("\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(6)))
    slapd.add("\n".join(device(f"srv-{i}", f"SN-s{i}") for i in range(2)))
    s.syncd("sync", "inventory", "--no-progress")
    assert len(hostnames(s)) == 8

    set_filter(s, "(&(objectClass=device)(cn=pc-*))")
    out = s.syncd("sync", "inventory", "--no-progress")
    assert hostnames(s) == {f"pc-{i}" for i in range(6)}, "out-of-scope rows must go"
    assert "source scope changed" in out.stdout + out.stderr

    set_filter(s, "(objectClass=device)")
    s.syncd("sync", "inventory", "--no-progress")
    assert len(hostnames(s)) == 8, "entries the widened filter covers must come in"

    # unchanged scope: the next run is incremental again and finds nothing to do
    plan = json.loads(s.syncd("plan", "inventory", "--json").stdout)
    assert plan["actions"] == []
