"""A small SQL -> SQL job (both SQLite, real databases) to drive the engine through the CLI."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import run_in_process

MAPPING = """\
version: 1
key: "{{ %s | first }}"
fields:
  name: "{{ full_name | first }}"
  dept: dept
required: [name]
"""


@dataclass
class Staff:
    """An HR table ``staff`` in hr.sqlite synced into table ``people`` of out.sqlite."""

    dir: Path
    config: Path

    def rows(self, *values: tuple) -> None:
        with sqlite3.connect(self.dir / "hr.sqlite") as con:
            con.execute("DELETE FROM staff")
            con.executemany("INSERT INTO staff VALUES (?, ?, ?, ?)", values)

    def target(self) -> dict[str, dict]:
        con = sqlite3.connect(self.dir / "out.sqlite")
        con.row_factory = sqlite3.Row
        try:
            return {r["key"]: dict(r) for r in con.execute("SELECT * FROM people")}
        finally:
            con.close()

    def syncd(self, *args: str):
        return run_in_process(["-c", str(self.config), *args])


def make_staff(tmp_path: Path, *, key: str = "emp_id", job: dict | None = None) -> Staff:
    with sqlite3.connect(tmp_path / "hr.sqlite") as con:
        # No primary key: an export or a joined view can list an id twice.
        con.execute("CREATE TABLE staff (emp_id TEXT, badge TEXT, full_name TEXT, dept TEXT)")
    (tmp_path / "staff.yaml").write_text(MAPPING % key)
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        "connections": {
            "hr": {"type": "sql", "url": "sqlite:///hr.sqlite"},
            "out": {"type": "sql", "url": "sqlite:///out.sqlite"},
        },
        "jobs": {
            "staff": {
                "source": {"connection": "hr", "table": "staff", "id_column": "emp_id"},
                "mapping": "staff.yaml",
                "target": {"connection": "out", "table": "people"},
                "max_deletes": 100,
                **(job or {}),
            }
        },
    }
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Staff(tmp_path, path)


@pytest.fixture
def staff(tmp_path):
    return make_staff(tmp_path)
