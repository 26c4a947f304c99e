"""SQL connector review: reserved words, mixed case and a non-public schema on a real
PostgreSQL (and SQLite where it applies)."""

from __future__ import annotations

import pytest

from syncd.connectors.sql.source import SqlSource, SqlSourceOptions
from syncd.connectors.sql.target import SqlTarget, SqlTargetOptions
from syncd.contracts import Action, ActionKind
from syncd.errors import TargetError
from tests.sql.conftest import make_db


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path, monkeypatch):
    return make_db(request.param, request, tmp_path, monkeypatch)


@pytest.fixture
def pg(request, tmp_path, monkeypatch):
    return make_db("postgres", request, tmp_path, monkeypatch)


def _read(src: SqlSource, cursor=None):
    read = src.read(cursor)
    changes = list(read.changes)
    return changes, read.outcome


def test_source_with_reserved_word_columns_in_a_schema(pg):
    pg.sql('CREATE SCHEMA "HR Data"')
    pg.sql(
        'CREATE TABLE "HR Data"."User" ("order" text PRIMARY KEY, "select" text, '
        '"Group" text, "from" timestamptz)'
    )
    pg.sql(
        'INSERT INTO "HR Data"."User" VALUES '
        "('1', 'a', 'g1', '2026-01-01T00:00:00Z'), ('2', 'b', 'g2', '2026-01-02T00:00:00Z')"
    )
    opts = SqlSourceOptions.model_validate(
        {"table": "User", "schema": "HR Data", "id_column": "order", "updated_column": "from"}
    )
    src = SqlSource(pg.connection, opts, job="j")
    try:
        changes, outcome = _read(src)
        assert sorted(c.source_id for c in changes) == ["1", "2"]
        assert changes[0].attributes["group"] in (["g1"], ["g2"])
        pg.sql(
            """UPDATE "HR Data"."User" SET "select"='c', "from"='2026-02-01' """
            """WHERE "order"='1'"""
        )
        again, _ = _read(src, outcome.cursor)
        assert [c.source_id for c in again] == ["1"]
    finally:
        src.close()
    # the same through a query with `columns`
    opts = SqlSourceOptions.model_validate(
        {
            "query": 'SELECT * FROM "HR Data"."User"',
            "id_column": "order",
            "columns": ["select", "Group"],
        }
    )
    src = SqlSource(pg.connection, opts, job="j")
    try:
        changes, _ = _read(src)
        assert {c.source_id: c.attributes["select"] for c in changes} == {"1": ["c"], "2": ["b"]}
    finally:
        src.close()


def test_target_with_reserved_word_columns(db):
    opts = SqlTargetOptions.model_validate(
        {
            "table": "order",
            "key_column": "select",
            "columns": {"group": "Group", "from": "from"},
            "on_delete": "soft",
            "deleted_column": "where",
        }
    )
    target = SqlTarget(db.connection, opts, job="j")
    try:
        target.open()
        acts = [
            Action(ActionKind.CREATE, "s1", "k1", {"group": "g", "from": "x"}),
            Action(ActionKind.CREATE, "s2", "k2", {"group": "h", "from": "y"}),
        ]
        assert all(r.ok for r in target.apply(acts))
        assert all(r.ok for r in target.apply([Action(ActionKind.DELETE, "s2", "k2")]))
    finally:
        target.close()
    rows = db.sql('SELECT "select", "Group", "where" IS NULL FROM "order"')
    assert sorted((r[0], r[1], bool(r[2])) for r in rows) == [
        ("k1", "g", True),
        ("k2", "h", False),
    ]


def test_missing_column_hint_quotes_identifiers(db):
    db.sql('CREATE TABLE "Devices" ("key" text PRIMARY KEY)')
    opts = SqlTargetOptions.model_validate({"table": "Devices"})
    target = SqlTarget(db.connection, opts, job="j")
    try:
        target.open()
        with pytest.raises(TargetError) as err:
            target.apply([Action(ActionKind.CREATE, "s1", "k1", {"order": "1", "Host Name": "h"})])
    finally:
        target.close()
    text = str(err.value)
    assert 'ALTER TABLE "Devices" ADD COLUMN "Host Name" TEXT' in text
    assert 'ADD COLUMN "order" TEXT' in text
    # and the statement works as given
    for stmt in text.split("add with: ", 1)[1].rstrip(")").split("; "):
        db.sql(stmt)
    assert set(db.columns("Devices")) == {"key", "order", "Host Name"}


def test_a_url_with_a_bad_port_is_a_clear_config_problem():
    from pydantic import ValidationError

    from syncd.connectors.sql import SqlConnection

    with pytest.raises(ValidationError) as err:
        SqlConnection.model_validate({"url": "postgresql://inv@db.example.com:5432x/inv"})
    [problem] = err.value.errors()
    assert "not a database URL" in problem["msg"]


def test_target_table_in_a_non_public_schema(pg):
    pg.sql('CREATE SCHEMA "Inventory"')
    opts = SqlTargetOptions.model_validate(
        {"table": "Devices", "schema": "Inventory", "on_delete": "soft"}
    )
    target = SqlTarget(pg.connection, opts, job="j")
    try:
        target.open()
        acts = [Action(ActionKind.CREATE, "s1", "k1", {"name": "a", "ips": ["1", "2"]})]
        assert all(r.ok for r in target.apply(acts))
        assert all(r.ok for r in target.apply([Action(ActionKind.DELETE, "s1", "k1")]))
    finally:
        target.close()
    rows = pg.sql('SELECT "key", name, deleted_at IS NOT NULL FROM "Inventory"."Devices"')
    assert rows == [("k1", "a", True)]
    assert pg.sql("SELECT count(*) FROM information_schema.tables WHERE table_name='Devices'") == [
        (1,)
    ]


def test_a_nul_value_fails_only_its_own_row_on_postgres(pg):
    """PostgreSQL refuses NUL in text and in JSONB: that record fails alone (retried
    next run), the rest of the batch is written."""
    opts = SqlTargetOptions.model_validate({"table": "people"})
    target = SqlTarget(pg.connection, opts, job="j")
    try:
        target.open()
        acts = [
            Action(ActionKind.CREATE, "s1", "k1", {"name": "ok", "tags": ["a"]}),
            Action(ActionKind.CREATE, "s2", "k2", {"name": "bad\x00", "tags": ["a"]}),
            Action(ActionKind.CREATE, "s3", "k3", {"name": "ok", "tags": ["b\x00"]}),
            Action(ActionKind.CREATE, "s4", "k4", {"name": "ok", "tags": ["c"]}),
        ]
        results = target.apply(acts)
    finally:
        target.close()
    assert [r.ok for r in results] == [True, False, False, True]
    assert all(r.error and "\x00" not in r.error for r in results if not r.ok)
    assert sorted(r[0] for r in pg.sql("SELECT key FROM people")) == ["k1", "k4"]


def test_a_password_in_connect_args_is_refused():
    """connect_args would carry a clear-text password past the secret rules (and
    `syncd validate` refuses literal secrets everywhere else)."""
    from pydantic import ValidationError

    from syncd.connectors.sql import SqlConnection

    with pytest.raises(ValidationError) as err:
        SqlConnection.model_validate(
            {"url": "postgresql://inv@db/inv", "connect_args": {"password": "hunter2"}}
        )
    [problem] = err.value.errors()
    assert "must not hold password" in problem["msg"] and "hunter2" not in problem["msg"]


def test_typed_columns_take_the_values_mappings_produce(db):
    """column_types datetime/date/boolean: mappings give ISO text (type: datetime,
    filetime, generalized_time) and LDAP booleans as TRUE/FALSE. On SQLite every such
    row failed ('SQLite DateTime type only accepts Python datetime'), on both 'TRUE'."""
    opts = SqlTargetOptions.model_validate(
        {
            "table": "dev",
            "column_types": {"seen": "datetime", "born": "date", "ok": "boolean"},
        }
    )
    target = SqlTarget(db.connection, opts, job="j")
    try:
        target.open()
        acts = [
            Action(
                ActionKind.CREATE,
                "s1",
                "k1",
                {"seen": "2026-11-28T01:02:03+00:00", "born": "1990-05-17", "ok": "TRUE"},
            ),
            Action(
                ActionKind.CREATE,
                "s2",
                "k2",
                {"seen": "2026-11-28T01:02:03Z", "born": "1990-05-17T00:00:00Z", "ok": False},
            ),
            Action(ActionKind.CREATE, "s3", "k3", {"seen": None, "born": None, "ok": "no"}),
        ]
        results = target.apply(acts)
    finally:
        target.close()
    assert [r.error for r in results] == [None, None, None]
    rows = db.sql("SELECT key, born, ok FROM dev ORDER BY key")
    assert [(k, str(b) if b else None, bool(o)) for k, b, o in rows] == [
        ("k1", "1990-05-17", True),
        ("k2", "1990-05-17", False),
        ("k3", None, False),
    ]
