"""kill -9 after the target confirmed a batch but before the state commit.

The target then holds the batch while the state still describes the old target. The
next runs must converge anyway, in the three cases that used to stay wrong for good:

(a) a value changed A -> B (applied, not committed), then back to A in the source;
(b) an entry deleted (applied, not committed), then restored with its old values;
(c) an entry created (applied, not committed), then deleted from the source.

The kill lands exactly in that window through the engine's test hook
``SYNCD_TEST_CRASH_AFTER_APPLY`` (see syncd/engine.py). Source: a CSV export (its ids
are stable, so a restored row is the same object); targets: a SQL table and a real
slapd; state: SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import ldap3
import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = "ou=people,dc=example,dc=com"

MAPPINGS = {
    "sql": "version: 1\nkey: id\nfields:\n  uid: uid\n  location: location\n",
    "ldap": "version: 1\nkey: id\nfields:\n  uid: uid\n  cn: uid\n  sn: uid\n  l: location\n",
}


def export(path: Path, rows: dict[str, str]) -> None:
    """Write the CSV export: id -> location (uid is derived from the id)."""
    lines = ["id;uid;location"] + [f"{i};u{i};{loc}" for i, loc in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class Setup:
    def __init__(self, tmp_path: Path, state_url: str, target_kind: str, slapd=None):
        self.dir = tmp_path
        self.csv = tmp_path / "export.csv"
        self.kind = target_kind
        self.slapd = slapd
        (tmp_path / "m.yaml").write_text(MAPPINGS[target_kind])
        connections: dict = {
            "hr": {"type": "csv", "path": str(self.csv), "delimiter": ";", "min_age": 0}
        }
        if target_kind == "sql":
            self.db = tmp_path / "target.db"
            connections["out"] = {"type": "sql", "url": f"sqlite:///{self.db}"}
            target = {"connection": "out", "table": "people"}
        else:
            (tmp_path / "pw").write_text(slapd.root_pw + "\n")
            connections["out"] = {
                "type": "ldap",
                "url": slapd.url,
                "start_tls": False,
                "bind_dn": slapd.root_dn,
                "password": {"file": str(tmp_path / "pw")},
            }
            target = {
                "connection": "out",
                "base": PEOPLE,
                "dn_template": "uid={uid}," + PEOPLE,
                "object_classes": ["inetOrgPerson"],
                "on_delete": "delete",
            }
        state: dict = {"url": state_url}
        url = make_url(state_url)
        if url.password:  # the config takes the password from a file, never the URL
            (tmp_path / "statepw").write_text(str(url.password))
            state = {
                "url": f"{url.drivername}://{url.username}@{url.host}:{url.port}/{url.database}",
                "password": {"file": str(tmp_path / "statepw")},
            }
        cfg = {
            "version": 1,
            "state": state,
            "connections": connections,
            "jobs": {
                "people": {
                    "source": {"connection": "hr", "id_column": "id", "max_drop": None},
                    "mapping": "m.yaml",
                    "target": target,
                    "max_deletes": 10,
                }
            },
        }
        self.config = tmp_path / "syncd.yaml"
        self.config.write_text(yaml.safe_dump(cfg))

    def sync(self, *extra: str, crash: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("SYNCD_TEST_CRASH_AFTER_APPLY", None)
        if crash:
            env["SYNCD_TEST_CRASH_AFTER_APPLY"] = "1"
        cmd = [sys.executable, "-m", "syncd", "-q", "-c", str(self.config)]
        cmd += ["sync", "--no-progress", "people", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)

    def target(self) -> dict[str, str]:
        """What the target holds: id -> location."""
        if self.kind == "sql":
            with sqlite3.connect(self.db) as db:
                return dict(db.execute('SELECT "key", location FROM people').fetchall())
        conn = ldap3.Connection(
            self.slapd.url, self.slapd.root_dn, self.slapd.root_pw, auto_bind=True
        )
        try:
            conn.search(PEOPLE, "(employeeNumber=*)", attributes=["employeeNumber", "l"])
            return {str(e.employeeNumber): str(e.l) for e in conn.entries}
        finally:
            conn.unbind()


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("target_kind", ["sql", "ldap"])
def test_kill_between_apply_and_commit_converges(tmp_path, state_url, target_kind, request):
    slapd = request.getfixturevalue("slapd") if target_kind == "ldap" else None
    s = Setup(tmp_path, state_url, target_kind, slapd)
    export(s.csv, {"1": "Paris", "2": "Rome", "9": "Oslo"})
    first = s.sync()
    assert first.returncode == 0, first.stderr
    assert s.target() == {"1": "Paris", "2": "Rome", "9": "Oslo"}

    # One batch: 1 changes A -> B, 2 is deleted, 3 is created. The target applies it,
    # then the process dies before the state commit.
    export(s.csv, {"1": "Berlin", "3": "Lima", "9": "Oslo"})
    crashed = s.sync(crash=True)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert s.target() == {"1": "Berlin", "3": "Lima", "9": "Oslo"}, "the batch was applied"

    # (a) back to A, (b) restored with its old values, (c) created then deleted.
    export(s.csv, {"1": "Paris", "2": "Rome", "9": "Oslo"})
    again = s.sync()
    assert again.returncode == 0, again.stderr
    assert s.target() == {"1": "Paris", "2": "Rome", "9": "Oslo"}

    # and it stays converged: the next complete read has nothing to do
    full = s.sync("--full")
    assert full.returncode == 0, full.stderr
    assert s.target() == {"1": "Paris", "2": "Rome", "9": "Oslo"}
