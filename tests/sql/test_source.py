"""SQL source: table, view and query reads; incremental reads by an updated column."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from syncd.connectors.sql import SqlConnection, SqlSource, SqlSourceOptions
from syncd.connectors.sql.source import decode_cursor
from syncd.contracts import Op
from syncd.errors import ConnectionFailed, SourceError
from tests.servers.ports import free_port

T0 = dt.datetime(2026, 1, 1, 8, 0, 0)


def setup_people(db) -> None:
    blob = "BLOB" if db.backend == "sqlite" else "BYTEA"
    stamp = "TIMESTAMP"
    db.sql(
        f'CREATE TABLE people (emp_id TEXT, "DisplayName" TEXT, dept TEXT, grade INTEGER, '
        f"photo {blob}, updated {stamp})"
    )
    rows = [
        ("E1", "Ann Ávila", "Sales", 3, b"\x00\x01", T0),
        ("E2", "Bob 东", "IT", None, None, T0 + dt.timedelta(minutes=1)),
        ("E3", "Cem", "IT", 5, None, T0 + dt.timedelta(minutes=2)),
    ]
    for r in rows:
        insert(db, *r)


def insert(db, emp_id, name, dept, grade, photo, updated) -> None:
    db.sql(
        'INSERT INTO people (emp_id, "DisplayName", dept, grade, photo, updated) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        (emp_id, name, dept, grade, photo, updated),
    )


def stamp(db, minutes: int):
    """The watermark as the database holds it (SQLite: the text sqlite3 stored)."""
    value = T0 + dt.timedelta(minutes=minutes)
    return str(value) if db.backend == "sqlite" else value


def source(db, **options) -> SqlSource:
    return SqlSource(db.connection, SqlSourceOptions(**options), job="hr")


def read_all(src: SqlSource, cursor=None, *, full=False):
    read = src.read(cursor, full=full)
    changes = list(read.changes)
    assert read.outcome is not None
    return changes, read.outcome


def test_full_read_of_a_table(db):
    setup_people(db)
    src = source(db, table="people", id_column="emp_id")
    try:
        changes, outcome = read_all(src)
    finally:
        src.close()
    assert outcome.complete and outcome.cursor is None and outcome.method == "sql"
    by_id = {c.source_id: c for c in changes}
    assert set(by_id) == {"E1", "E2", "E3"}
    assert all(c.op is Op.UPSERT for c in changes)
    ann = by_id["E1"].attributes
    assert ann["displayname"] == ["Ann Ávila"]  # names lower-cased
    assert ann["grade"] == [3] and ann["photo"] == [b"\x00\x01"]  # native types
    assert isinstance(ann["updated"][0], dt.datetime)
    assert "grade" not in by_id["E2"].attributes  # NULL columns are left out
    assert by_id["E2"].attributes["displayname"] == ["Bob 东"]


def test_incremental_by_updated_column(db):
    setup_people(db)
    src = source(db, table="people", id_column="emp_id", updated_column="updated", batch_size=2)
    try:
        changes, first = read_all(src)
        assert first.complete and len(changes) == 3
        watermark, seen = decode_cursor(first.cursor)
        assert watermark == stamp(db, 2) and set(seen) == {"E3"}

        # Nothing changed: nothing delivered (E3 sits at the watermark, unchanged).
        changes, second = read_all(src, first.cursor)
        assert changes == [] and not second.complete and second.method == "sql-incremental"
        assert second.cursor == first.cursor

        # A row changed within the same clock tick as the watermark is not missed,
        # a newer row and a newly updated one are read; older rows are not.
        db.sql("UPDATE people SET dept = 'Ops' WHERE emp_id = 'E3'")
        insert(db, "E4", "Dee", "IT", 1, None, T0 + dt.timedelta(minutes=5))
        db.sql(
            "UPDATE people SET grade = 4, updated = ? WHERE emp_id = 'E1'",
            (T0 + dt.timedelta(minutes=4),),
        )
        changes, third = read_all(src, second.cursor)
        assert sorted(c.source_id for c in changes) == ["E1", "E3", "E4"]
        assert {c.source_id: c.attributes.get("dept") for c in changes}["E3"] == ["Ops"]
        assert decode_cursor(third.cursor)[0] == stamp(db, 5)

        changes, fourth = read_all(src, third.cursor)
        assert changes == []

        # full=True reads everything again and is complete
        changes, full = read_all(src, fourth.cursor, full=True)
        assert len(changes) == 4 and full.complete
        assert decode_cursor(full.cursor)[0] == stamp(db, 5)

        # a cursor that is not ours: a full read, with a note
        changes, foreign = read_all(src, "cookie-from-something-else")
        assert len(changes) == 4 and foreign.complete and foreign.notes
    finally:
        src.close()


def test_view_and_columns(db):
    setup_people(db)
    db.sql(
        'CREATE VIEW it_people AS SELECT emp_id, "DisplayName", dept FROM people '
        "WHERE dept = 'IT'"
    )
    src = source(db, view="it_people", id_column="EMP_ID", columns=["dept"])
    try:
        changes, outcome = read_all(src)
    finally:
        src.close()
    assert outcome.complete
    assert sorted(c.source_id for c in changes) == ["E2", "E3"]
    assert set(changes[0].attributes) == {"emp_id", "dept"}


def test_query(db):
    setup_people(db)
    db.sql("CREATE TABLE depts (name TEXT, cost_center TEXT)")
    db.sql("INSERT INTO depts VALUES ('IT', 'CC-7'), ('Sales', 'CC-1')")
    query = """
        -- people with their cost centre
        SELECT p.emp_id AS id, p."DisplayName" AS name, d.cost_center, p.updated
        FROM people p JOIN depts d ON d.name = p.dept
        WHERE p.dept <> 'nobody; really'
    """
    src = source(db, query=query, id_column="id", updated_column="updated")
    try:
        changes, outcome = read_all(src)
        assert {c.source_id: c.attributes["cost_center"] for c in changes} == {
            "E1": ["CC-1"],
            "E2": ["CC-7"],
            "E3": ["CC-7"],
        }
        insert(db, "E9", "Eve", "Sales", 2, None, T0 + dt.timedelta(hours=1))
        changes, later = read_all(src, outcome.cursor)
        assert [c.source_id for c in changes] == ["E9"] and not later.complete
    finally:
        src.close()


def test_query_must_be_one_select():
    for bad in ("DELETE FROM people", "SELECT 1; DROP TABLE people", "UPDATE x SET y = 1"):
        with pytest.raises(ValidationError, match=r"SELECT|one statement"):
            SqlSourceOptions(query=bad, id_column="id")
    with pytest.raises(ValidationError, match="exactly one of"):
        SqlSourceOptions(table="a", view="b", id_column="id")
    with pytest.raises(ValidationError, match="exactly one of"):
        SqlSourceOptions(id_column="id")
    ok = SqlSourceOptions(query="WITH x AS (SELECT 1 AS id) SELECT * FROM x;", id_column="id")
    assert not ok.query.endswith(";")


def test_reads_are_read_only(pg_db):
    """A SELECT calling a function that writes passes the SELECT check, but the
    read-only transaction refuses the write: nothing is deleted."""
    setup_people(pg_db)
    pg_db.sql(
        "CREATE FUNCTION purge() RETURNS bigint LANGUAGE sql AS "
        "$$ WITH d AS (DELETE FROM people RETURNING 1) SELECT count(*) FROM d $$"
    )
    src = source(pg_db, query="SELECT emp_id, purge() AS n FROM people", id_column="emp_id")
    try:
        with pytest.raises(SourceError, match="read-only transaction"):
            read_all(src)
    finally:
        src.close()
    assert pg_db.sql("SELECT count(*) FROM people") == [(3,)]


def test_rows_without_id_are_left_out_with_a_note(db):
    setup_people(db)
    insert(db, None, "Nobody", "IT", 1, None, T0)
    src = source(db, table="people", id_column="emp_id")
    try:
        changes, outcome = read_all(src)
    finally:
        src.close()
    assert len(changes) == 3
    assert any("without a value in emp_id" in n for n in outcome.notes)


def test_errors(db):
    setup_people(db)
    src = source(db, table="nope", id_column="id")
    with pytest.raises(SourceError, match="no such table"):
        src.read(None)
    src.close()
    src = source(db, table="people", id_column="emp_id", updated_column="changed_at")
    with pytest.raises(SourceError, match="'changed_at' does not exist"):
        src.read(None)
    src.close()
    src = source(db, query="SELECT no_such_column FROM people", id_column="x")
    with pytest.raises(SourceError):
        src.read(None)
    src.close()


def test_unreachable_database(tmp_path):
    conn = SqlConnection(url=f"postgresql://u@127.0.0.1:{free_port()}/x", timeout=2)
    src = SqlSource(conn, SqlSourceOptions(table="t", id_column="id"), job="hr")
    with pytest.raises(ConnectionFailed, match=r"127\.0\.0\.1"):
        src.read(None)
    conn = SqlConnection(url=f"sqlite:///{tmp_path}/missing/dir/x.db")
    src = SqlSource(conn, SqlSourceOptions(table="t", id_column="id"), job="hr")
    with pytest.raises(ConnectionFailed):
        src.read(None)


def test_doctor(db):
    setup_people(db)
    good = source(db, table="people", id_column="emp_id").check()
    assert [c.ok for c in good] == [True, True]
    bad = source(db, table="people", id_column="nope").check()
    assert [c.ok for c in bad] == [True, False] and "nope" in bad[1].detail
    missing = source(db, table="absent", id_column="id").check()
    assert [c.ok for c in missing] == [True, False]


def test_cursor_is_json_text(db):
    setup_people(db)
    src = source(db, table="people", id_column="emp_id", updated_column="grade")
    try:
        _, outcome = read_all(src)
    finally:
        src.close()
    data = json.loads(outcome.cursor)
    assert data["v"] == {"t": "int", "v": 5} and list(data["seen"]) == ["E3"]


def test_rows_are_streamed(db):
    import tracemalloc

    db.sql("CREATE TABLE big (id INTEGER PRIMARY KEY, name TEXT, note TEXT)")
    if db.backend == "sqlite":
        db.sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
            "INSERT INTO big SELECT i, 'name ' || i, printf('%.200c', 'x') FROM n"
        )
    else:
        db.sql(
            "INSERT INTO big SELECT i, 'name ' || i, repeat('x', 200) "
            "FROM generate_series(1, 20000) AS i"
        )
    src = source(db, table="big", id_column="id", batch_size=500)
    tracemalloc.start()
    try:
        read = src.read(None)
        count = sum(1 for _ in read.changes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        src.close()
    assert count == 20000 and read.outcome.complete
    # 20k rows held at once take about 9 MB (measured with batch_size=100000)
    assert peak < 4_000_000, f"the read held {peak} bytes at once"
