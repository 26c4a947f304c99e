"""`changes: auto` for an ordinary account under a size limit, through the real CLI:
the run falls back to a paged method, records why, and syncs every entry once."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.e2e.conftest import Setup, device, write_config
from tests.servers.slapd import BASE, Slapd

pytestmark = pytest.mark.slapd

READER = f"uid=reader,{BASE}"


class AsReader:
    def __init__(self, server):
        self.url, self.root_dn, self.root_pw = server.url, READER, "reader-pw"


def test_auto_run_notes_the_fallback_and_syncs_everything(tmp_path):
    ldif = (
        f"dn: {READER}\nobjectClass: account\nobjectClass: simpleSecurityObject\n"
        "uid: reader\nuserPassword: reader-pw\n\n"
        + "\n".join(device(f"pc-{i}", f"SN-{i}") for i in range(15))
    )
    line = f'limits dn.exact="{READER}" size=5 size.pr=unlimited size.prtotal=unlimited'
    with Slapd(tmp_path / "slapd", ldif=ldif, limits=line) as server:
        work = tmp_path / "w"
        work.mkdir()
        url = f"sqlite:///{work}/inventory.db"
        config = write_config(work, AsReader(server), url, source={"changes": "auto"})
        s = Setup(work, config, server, url)
        out = s.syncd("sync", "inventory", "--no-progress")
        run = json.loads(s.syncd("status", "--json").stdout)[0]["runs"][0]
        assert run["status"] == "ok" and run["method"] == "timestamp", out.stdout
        assert any(
            "syncrepl refused by size limit: falling back to timestamp" in n for n in run["notes"]
        ), run["notes"]
        assert run["counts"]["created"] == 15 and not run["counts"].get("duplicate"), run
        con = sqlite3.connect(work / "inventory.db")
        try:
            assert con.execute("SELECT count(*) FROM devices").fetchone()[0] == 15
        finally:
            con.close()
