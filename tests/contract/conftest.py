"""Harnesses of the SQL target for the contract suite: SQLite (an existing table the
target uses as is) and PostgreSQL (a table the target creates, with JSONB)."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from typing import Any

import psycopg
import pytest

from syncd.connectors.sql import SqlConnection, SqlTarget, SqlTargetOptions
from syncd.contracts import Target
from tests.contract.harness import BAD_PASSWORD, Stored, TargetHarness, register
from tests.servers.ports import free_port


def _multi(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    assert isinstance(value, list), f"multi column holds {value!r}"
    return value


@register
class SqliteHarness(TargetHarness):
    """An existing SQLite table (created here, reflected by the target)."""

    name = "sql-sqlite"
    capabilities = frozenset(
        {
            "down",
            "delete",
            "soft_delete",
            "bad_record",
            "multi_order",
            "multi_duplicates",
            "read_back",
        }
    )

    def __init__(self, path):
        super().__init__()
        self.path = path
        with sqlite3.connect(path) as db:
            db.execute(
                "CREATE TABLE devices (key TEXT PRIMARY KEY, name TEXT NOT NULL, tags TEXT, "
                "deleted_at TIMESTAMP, notes TEXT)"
            )

    def _options(self, soft_delete: bool = False) -> SqlTargetOptions:
        return SqlTargetOptions(
            table="devices",
            columns={"text": "name", "multi": "tags"},
            on_delete="soft" if soft_delete else "delete",
        )

    def make_target(self, *, soft_delete: bool = False) -> Target:
        conn = SqlConnection(url=f"sqlite:///{self.path}")
        return SqlTarget(conn, self._options(soft_delete), job="contract")

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"text": text, "multi": list(multi)}

    def _rows(self, where: str) -> list[tuple]:
        db = sqlite3.connect(self.path)
        try:
            return db.execute(f"SELECT key, name, tags FROM devices WHERE {where}").fetchall()
        finally:
            db.close()

    def stored(self) -> list[Stored]:
        return [Stored(k, n, _multi(t)) for k, n, t in self._rows("deleted_at IS NULL")]

    def soft_deleted(self) -> set[str]:
        return {k for k, _, _ in self._rows("deleted_at IS NOT NULL")}

    def bad_fields(self, key: str) -> dict[str, Any]:
        return {"text": None, "multi": []}  # name is NOT NULL

    def make_down_target(self) -> Target:
        conn = SqlConnection(url=f"sqlite:///{self.path.parent}/no-such-dir/sub/db.sqlite")
        return SqlTarget(conn, self._options(), job="contract")


@register
class PostgresHarness(TargetHarness):
    """A PostgreSQL table the target creates itself (text + JSONB), password auth."""

    name = "sql-postgres"
    capabilities = frozenset(
        {
            "credentials",
            "down",
            "delete",
            "soft_delete",
            "bad_record",
            "multi_order",
            "read_back",
            "multi_duplicates",
        }
    )

    def __init__(self, cluster, url: str, monkeypatch):
        super().__init__()
        self.cluster = cluster
        self.database = url.rsplit("/", 1)[1]
        self.env = f"SYNCD_CONTRACT_PW_{uuid.uuid4().hex[:8]}"
        self.bad_env = self.env + "_BAD"
        monkeypatch.setenv(self.env, cluster.password)
        monkeypatch.setenv(self.bad_env, BAD_PASSWORD)
        assert os.environ[self.env]

    def _connection(self, port: int | None = None, env: str | None = None) -> SqlConnection:
        return SqlConnection(
            url=f"postgresql+psycopg://{self.cluster.user}@127.0.0.1:"
            f"{port or self.cluster.port}/{self.database}",
            password={"env": env or self.env},
            timeout=5,
        )

    def _options(self, soft_delete: bool = False) -> SqlTargetOptions:
        return SqlTargetOptions(
            table="contacts", schema="public", on_delete="soft" if soft_delete else "delete"
        )

    def make_target(self, *, soft_delete: bool = False) -> Target:
        return SqlTarget(self._connection(), self._options(soft_delete), job="contract")

    def fields(self, key: str, text: str, multi: list[str]) -> dict[str, Any]:
        return {"display_name": text, "emails": list(multi)}

    def _rows(self, where: str) -> list[tuple]:
        with psycopg.connect(self.cluster.dsn(self.database)) as db:
            exists = db.execute("SELECT to_regclass('public.contacts')").fetchone()[0]
            if exists is None:
                return []
            cols = {
                r[0]
                for r in db.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name='contacts'"
                )
            }
            if "deleted_at" not in cols:
                where = "TRUE" if where == "deleted_at IS NULL" else "FALSE"
            return db.execute(
                f"SELECT key, display_name, emails FROM public.contacts WHERE {where}"
            ).fetchall()

    def stored(self) -> list[Stored]:
        return [Stored(k, n, _multi(t)) for k, n, t in self._rows("deleted_at IS NULL")]

    def soft_deleted(self) -> set[str]:
        return {k for k, _, _ in self._rows("deleted_at IS NOT NULL")}

    def bad_fields(self, key: str) -> dict[str, Any]:
        return {"display_name": "NUL \x00 byte", "emails": []}  # PostgreSQL text refuses NUL

    def make_bad_credentials_target(self) -> Target:
        return SqlTarget(self._connection(env=self.bad_env), self._options(), job="contract")

    def make_down_target(self) -> Target:
        return SqlTarget(self._connection(port=free_port()), self._options(), job="contract")


@pytest.fixture
def harness_sql_sqlite(tmp_path):
    h = SqliteHarness(tmp_path / "contract.sqlite")
    yield h
    h.close()


@pytest.fixture
def harness_sql_postgres(postgres_server, postgres_url, monkeypatch):
    h = PostgresHarness(postgres_server, postgres_url, monkeypatch)
    yield h
    h.close()
