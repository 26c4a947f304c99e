"""A whole job through the engine: HR rows in SQLite (SQL source, incremental by an
updated column) -> mapping -> a PostgreSQL table (SQL target, soft delete)."""

from __future__ import annotations

import sqlite3

import yaml

from syncd.config import load_config
from syncd.engine import run_job

MAPPING = """\
version: 1
# (underscored column names go through expressions: the mapping loader accepts only
# LDAP-style attribute names as plain references)
key: "{{ emp_id | first }}"
fields:
  name: "{{ full_name | first }}"
  dept: dept
  mail: "{{ email | first | lower }}"
required: [name]
"""


def hr_row(db, emp_id, name, dept, email, minute) -> None:
    with sqlite3.connect(db) as con:
        con.execute(
            "INSERT OR REPLACE INTO staff VALUES (?, ?, ?, ?, ?)",
            (emp_id, name, dept, email, f"2026-02-01 09:{minute:02d}:00"),
        )


def test_sql_to_sql_job(tmp_path, postgres_server, postgres_url, monkeypatch):
    hr = tmp_path / "hr.sqlite"
    with sqlite3.connect(hr) as con:
        con.execute(
            "CREATE TABLE staff (emp_id TEXT PRIMARY KEY, full_name TEXT, dept TEXT, "
            "email TEXT, changed TEXT)"
        )
    hr_row(hr, "E1", "Ann", "Sales", "Ann@Example.com", 1)
    hr_row(hr, "E2", "Bob", "IT", "BOB@example.com", 2)
    monkeypatch.setenv("SYNCD_JOB_DB_PW", postgres_server.password)
    (tmp_path / "staff.yaml").write_text(MAPPING)
    database = postgres_url.rsplit("/", 1)[1]
    config = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state/state.db"},
        "connections": {
            "hr": {"type": "sql", "url": "sqlite:///hr.sqlite"},  # relative to the config
            "inv": {
                "type": "sql",
                "url": f"postgresql://{postgres_server.user}@127.0.0.1:"
                f"{postgres_server.port}/{database}",
                "password": {"env": "SYNCD_JOB_DB_PW"},
            },
        },
        "jobs": {
            "staff": {
                "source": {
                    "connection": "hr",
                    "table": "staff",
                    "id_column": "emp_id",
                    "updated_column": "changed",
                },
                "mapping": "staff.yaml",
                "target": {"connection": "inv", "table": "people", "on_delete": "soft"},
                "max_deletes": "50%",
            }
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)

    def people() -> dict[str, tuple]:
        rows = postgres_server.psql(
            database, "SELECT key, name, dept, mail, deleted_at IS NOT NULL FROM people"
        )
        return {r[0]: r[1:] for r in rows}

    first = run_job(cfg, "staff")
    assert first.status == "ok", first.error
    assert first.counts["created"] == 2
    assert people() == {
        "E1": ("Ann", "Sales", "ann@example.com", False),
        "E2": ("Bob", "IT", "bob@example.com", False),
    }

    # Incremental: one change, one new row; the unchanged row is not even read.
    hr_row(hr, "E2", "Bob", "Ops", "bob@example.com", 5)
    hr_row(hr, "E3", "Cem", "IT", "cem@example.com", 6)
    second = run_job(cfg, "staff")
    assert second.status == "ok", second.error
    assert second.method == "sql-incremental"
    assert (second.counts["read"], second.counts["created"], second.counts["updated"]) == (2, 1, 1)
    assert people()["E2"][1] == "Ops" and "E3" in people()

    # A deleted row is seen by a full read only: then it is soft-deleted.
    with sqlite3.connect(hr) as con:
        con.execute("DELETE FROM staff WHERE emp_id = 'E1'")
    assert run_job(cfg, "staff").counts["deleted"] == 0
    full = run_job(cfg, "staff", full=True)
    assert full.status == "ok", full.error
    assert full.counts["deleted"] == 1
    assert people()["E1"][3] is True and people()["E3"][3] is False
    assert run_job(cfg, "staff").counts["read"] == 0
