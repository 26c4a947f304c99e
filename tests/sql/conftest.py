"""A database per test for the SQL connector tests: SQLite file or real PostgreSQL."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from syncd.connectors.sql import SqlConnection


@dataclass
class Db:
    """A test database: ``connection`` for the connector, ``sql()`` to look behind it."""

    backend: str
    connection: SqlConnection
    raw: str  # sqlite path or libpq DSN

    def sql(self, statement: str, params: tuple = ()) -> list[tuple[Any, ...]]:
        if self.backend == "sqlite":
            db = sqlite3.connect(self.raw)
            try:
                rows = db.execute(statement, params).fetchall()
                db.commit()
                return rows
            finally:
                db.close()
        statement = statement.replace("?", "%s")
        with psycopg.connect(self.raw, autocommit=True) as conn:
            cur = conn.execute(statement, params or None)
            return cur.fetchall() if cur.description else []

    def columns(self, table: str) -> dict[str, str]:
        """column -> declared type (lower case)."""
        if self.backend == "sqlite":
            return {r[1]: r[2].lower() for r in self.sql(f"PRAGMA table_info({table})")}
        rows = self.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name=?",
            (table,),
        )
        return {name: typ.lower() for name, typ in rows}


def make_db(backend: str, request, tmp_path, monkeypatch) -> Db:
    if backend == "sqlite":
        path = tmp_path / "data.sqlite"
        return Db("sqlite", SqlConnection(url=f"sqlite:///{path}"), str(path))
    server = request.getfixturevalue("postgres_server")
    url = request.getfixturevalue("postgres_url")
    database = url.rsplit("/", 1)[1]
    monkeypatch.setenv("SYNCD_TEST_SQL_PW", server.password)
    conn = SqlConnection(
        url=f"postgresql://{server.user}@127.0.0.1:{server.port}/{database}",
        password={"env": "SYNCD_TEST_SQL_PW"},
        timeout=5,
    )
    return Db("postgres", conn, server.dsn(database))


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path, monkeypatch) -> Db:
    return make_db(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def pg_db(request, tmp_path, monkeypatch) -> Db:
    return make_db("postgres", request, tmp_path, monkeypatch)
