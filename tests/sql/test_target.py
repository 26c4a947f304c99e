"""SQL target specifics (the shared behaviour is in tests/contract)."""

from __future__ import annotations

import json
import time

import pytest
from pydantic import ValidationError

from syncd.connectors.sql import CONNECTOR, SqlConnection, SqlTarget, SqlTargetOptions
from syncd.contracts import Action, ActionKind
from syncd.errors import ConnectionFailed, SecretError, TargetError


def create(key: str, **fields) -> Action:
    return Action(ActionKind.CREATE, f"s-{key}", key, fields)


def update(key: str, changed: tuple[str, ...], **fields) -> Action:
    return Action(ActionKind.UPDATE, f"s-{key}", key, fields, changed=changed, target_id=key)


def remove(key: str) -> Action:
    return Action(ActionKind.DELETE, f"s-{key}", key, target_id=key)


def target(db, **options) -> SqlTarget:
    t = SqlTarget(db.connection, SqlTargetOptions(**options), job="t")
    t.open()
    return t


def test_created_table_infers_types(db):
    t = target(db, table="devices")
    try:
        [r] = t.apply(
            [
                create(
                    "k1",
                    hostname="pc-1",
                    ips=["10.0.0.1", "10.0.0.2"],
                    certs=[b"\x01\x02", b"\xff"],
                    photo=b"\x00\xffJPEG",
                    ram=16,
                    active=True,
                    serial=None,
                )
            ]
        )
        assert r.ok and r.target_id == "k1"
    finally:
        t.close()
    cols = db.columns("devices")
    assert set(cols) == {"key", "hostname", "ips", "certs", "photo", "ram", "active", "serial"}
    assert cols["ips"] in ("json", "jsonb") and cols["photo"] in ("blob", "bytea")
    assert cols["hostname"] == "text" and cols["ram"] == "text"
    [(host, ips, photo, ram, active, serial)] = db.sql(
        "SELECT hostname, ips, photo, ram, active, serial FROM devices WHERE key = 'k1'"
    )
    ips = json.loads(ips) if isinstance(ips, str) else ips
    assert (host, ips, bytes(photo), ram, active, serial) == (
        "pc-1",
        ["10.0.0.1", "10.0.0.2"],
        b"\x00\xffJPEG",
        "16",
        "true",
        None,
    )
    [(certs,)] = db.sql("SELECT certs FROM devices")
    assert (json.loads(certs) if isinstance(certs, str) else certs) == ["0102", "ff"]  # hex


def test_column_types_and_renames(db):
    t = target(
        db,
        table="inventory",
        key_column="uuid",
        columns={"hostname": "host_name", "ram": "ram_gb"},
        column_types={"ram_gb": "integer", "host_name": "text", "seen": "datetime"},
    )
    try:
        # every column's type is configured: the table exists before any record
        assert set(db.columns("inventory")) == {"uuid", "host_name", "ram_gb", "seen"}
        assert t.apply([create("u1", hostname="srv", ram=64)])[0].ok
        assert db.sql("SELECT uuid, host_name, ram_gb FROM inventory") == [("u1", "srv", 64)]
        assert db.columns("inventory")["ram_gb"] in ("integer", "int")
    finally:
        t.close()


def test_existing_table_used_as_is_and_unowned_columns_kept(db):
    db.sql(
        "CREATE TABLE hosts (id TEXT PRIMARY KEY, name TEXT, comment TEXT, "
        "extra_notes TEXT DEFAULT 'kept')"
    )
    t = target(db, table="hosts", key_column="id", columns={"hostname": "name"})
    try:
        assert t.apply([create("h1", hostname="one", comment="first")])[0].ok
        db.sql("UPDATE hosts SET extra_notes = 'written by a human' WHERE id = 'h1'")
        assert t.apply([update("h1", ("hostname",), hostname="uno", comment="first")])[0].ok
        assert db.sql("SELECT name, comment, extra_notes FROM hosts") == [
            ("uno", "first", "written by a human")
        ]
        # a field the table has no column for: a TargetError naming the column
        with pytest.raises(TargetError, match="'location' missing"):
            t.apply([create("h2", hostname="two", comment="c", location="Paris")])
        assert db.sql("SELECT count(*) FROM hosts") == [(1,)]
    finally:
        t.close()


def test_configured_column_missing_from_existing_table(db):
    db.sql("CREATE TABLE hosts (key TEXT PRIMARY KEY, name TEXT)")
    with pytest.raises(TargetError, match="'serial_no' missing"):
        target(db, table="hosts", columns={"serial": "serial_no"})
    with pytest.raises(TargetError, match="'deleted_at' missing"):
        target(db, table="hosts", on_delete="soft")


def test_missing_table_without_create_table(db):
    with pytest.raises(TargetError, match="does not exist"):
        target(db, table="absent", create_table=False)


def test_key_column_must_be_unique(db):
    db.sql("CREATE TABLE loose (key TEXT, name TEXT)")
    with pytest.raises(TargetError, match="primary key or have a unique index"):
        target(db, table="loose")
    db.sql("CREATE UNIQUE INDEX loose_key ON loose (key)")
    t = target(db, table="loose")
    try:
        assert t.apply([create("a", name="x")])[0].ok
        assert t.apply([create("a", name="y")])[0].ok
        assert db.sql("SELECT key, name FROM loose") == [("a", "y")]
    finally:
        t.close()


def test_soft_delete_with_custom_column(db):
    t = target(db, table="people", on_delete="soft", deleted_column="gone_since")
    try:
        t.apply([create("p1", name="Ann"), create("p2", name="Bob")])
        [r] = t.apply([remove("p1")])
        assert r.ok and r.detail == "soft-deleted"
        [(first,)] = db.sql("SELECT gone_since FROM people WHERE key = 'p1'")
        assert first is not None
        time.sleep(0.01)
        t.apply([remove("p1")])  # the first deletion time is kept
        assert db.sql("SELECT gone_since FROM people WHERE key = 'p1'") == [(first,)]
        assert db.sql("SELECT key FROM people WHERE gone_since IS NULL") == [("p2",)]
        t.apply([create("p1", name="Ann again")])
        assert db.sql("SELECT name, gone_since FROM people WHERE key = 'p1'") == [
            ("Ann again", None)
        ]
    finally:
        t.close()


def test_bad_rows_fail_alone_in_a_large_batch(db):
    db.sql("CREATE TABLE strict (key TEXT PRIMARY KEY, name TEXT NOT NULL)")
    t = target(db, table="strict")
    try:
        actions = [create(f"r{i}", name=None if i in (3, 7) else f"n{i}") for i in range(10)]
        results = t.apply(actions)
        assert [r.ok for r in results] == [i not in (3, 7) for i in range(10)]
        assert "null" in results[3].error.lower()
        assert db.sql("SELECT count(*) FROM strict") == [(8,)]
    finally:
        t.close()


def test_duplicate_keys_in_one_batch_last_wins(db):
    t = target(db, table="dups")
    try:
        results = t.apply([create("d", name="first"), create("d", name="second")])
        assert [r.ok for r in results] == [True, True]
        assert db.sql("SELECT key, name FROM dups") == [("d", "second")]
    finally:
        t.close()


def test_batches_are_fast(db):
    t = target(db, table="bulk", batch_size=500)
    n = 3000
    try:
        started = time.perf_counter()
        for start in range(0, n, t.batch_size):
            batch = [
                create(f"k{i}", hostname=f"host-{i}", ips=[f"10.0.{i % 250}.1"], serial=f"S{i}")
                for i in range(start, start + t.batch_size)
            ]
            assert all(r.ok for r in t.apply(batch))
        per_row = (time.perf_counter() - started) / n * 1e6
    finally:
        t.close()
    assert db.sql("SELECT count(*) FROM bulk") == [(n,)]
    print(f"{db.backend}: {per_row:.0f} us per upserted row")
    assert per_row < 1000  # one statement per row would be several times slower


def test_server_down_mid_run_and_back(postgres_private, monkeypatch):
    pg = postgres_private
    monkeypatch.setenv("SYNCD_TEST_PG_DOWN_PW", pg.password)
    conn = SqlConnection(
        url=f"postgresql+psycopg://{pg.user}@127.0.0.1:{pg.port}/postgres",
        password={"env": "SYNCD_TEST_PG_DOWN_PW"},
        timeout=3,
    )
    t = SqlTarget(conn, SqlTargetOptions(table="devices"), job="t")
    t.open()
    try:
        assert t.apply([create("a", name="A")])[0].ok
        pg.stop()
        started = time.monotonic()
        with pytest.raises(TargetError) as err:
            t.apply([create("b", name="B"), create("c", name="C")])
        assert time.monotonic() - started < 15
        assert pg.password not in str(err.value)
        pg.start()
        assert t.apply([create("b", name="B")])[0].ok  # reconnects by itself
        assert sorted(pg.psql("postgres", "SELECT key FROM devices")) == [("a",), ("b",)]
    finally:
        t.close()


def test_missing_secret_is_a_secret_error(pg_db, monkeypatch):
    monkeypatch.delenv("SYNCD_TEST_SQL_PW")
    t = SqlTarget(pg_db.connection, SqlTargetOptions(table="x"), job="t")
    with pytest.raises(SecretError, match="SYNCD_TEST_SQL_PW"):
        t.open()


def test_wrong_password(pg_db, monkeypatch):
    monkeypatch.setenv("SYNCD_TEST_SQL_PW", "definitely-wrong-pw")
    t = SqlTarget(pg_db.connection, SqlTargetOptions(table="x"), job="t")
    with pytest.raises(ConnectionFailed) as err:
        t.open()
    assert "password authentication failed" in str(err.value)
    assert "definitely-wrong-pw" not in str(err.value)


def test_doctor_checks(db, monkeypatch):
    ok = SqlTarget(db.connection, SqlTargetOptions(table="devices"), job="t").check()
    assert [(c.name, c.ok) for c in ok] == [("database reachable", True), ("table", True)]
    assert "created on the first run" in ok[1].detail
    missing = SqlTarget(
        db.connection, SqlTargetOptions(table="devices", create_table=False), job="t"
    ).check()
    assert [c.ok for c in missing] == [True, False] and missing[1].hint
    db.sql("CREATE TABLE devices (key TEXT PRIMARY KEY, name TEXT)")
    present = SqlTarget(db.connection, SqlTargetOptions(table="devices"), job="t").check()
    assert [c.ok for c in present] == [True, True] and "2 columns" in present[1].detail
    if db.backend == "postgres":
        monkeypatch.setenv("SYNCD_TEST_SQL_PW", "nope")
        bad = SqlTarget(db.connection, SqlTargetOptions(table="devices"), job="t").check()
        assert [c.ok for c in bad] == [False] and "password" in bad[0].detail


def test_connection_model(tmp_path):
    with pytest.raises(ValidationError, match="must not contain the password"):
        SqlConnection(url="postgresql://u:secret@db/x")
    with pytest.raises(ValidationError, match="not a database URL"):
        SqlConnection(url="nonsense")
    with pytest.raises(ValidationError, match="extra"):
        SqlConnection(url="sqlite:///x.db", user="x")
    assert SqlConnection(url="postgresql://u@db/x").url == "postgresql+psycopg://u@db/x"
    rel = SqlConnection.model_validate(
        {"url": "sqlite:///data/inv.db"}, context={"base_dir": tmp_path}
    )
    assert rel.url == f"sqlite:///{tmp_path}/data/inv.db"
    absolute = SqlConnection.model_validate(
        {"url": "sqlite:////srv/inv.db"}, context={"base_dir": tmp_path}
    )
    assert absolute.url == "sqlite:////srv/inv.db"
    with pytest.raises(ValidationError, match="both map to column"):
        SqlTargetOptions(table="t", columns={"a": "x", "b": "x"})
    with pytest.raises(ValidationError, match="key column"):
        SqlTargetOptions(table="t", columns={"a": "key"})
    assert SqlTargetOptions.model_validate({"table": "t", "schema": "inv"}).db_schema == "inv"


def test_registered_as_connector():
    from syncd import registry

    spec = registry.get("sql")
    assert spec is CONNECTOR
    assert spec.target_class is SqlTarget and spec.source_class.__name__ == "SqlSource"


def test_no_right_to_create_the_table(pg_db, postgres_server, monkeypatch):
    # PostgreSQL 15 lets only the owner create tables in "public".
    pg_db.sql("CREATE ROLE clerk LOGIN PASSWORD 'clerk-pw'")
    monkeypatch.setenv("SYNCD_TEST_CLERK_PW", "clerk-pw")
    database = pg_db.raw.rsplit("dbname=", 1)[1]
    conn = SqlConnection(
        url=f"postgresql://clerk@127.0.0.1:{postgres_server.port}/{database}",
        password={"env": "SYNCD_TEST_CLERK_PW"},
    )
    t = SqlTarget(conn, SqlTargetOptions(table="devices", column_types={"name": "text"}), job="t")
    with pytest.raises(TargetError, match="permission denied"):
        t.open()
    t.close()


def test_missing_column_message_says_how_to_add_it(db):
    db.sql("CREATE TABLE hosts (key TEXT PRIMARY KEY, name TEXT)")
    t = target(db, table="hosts")
    try:
        with pytest.raises(TargetError) as err:
            t.apply([create("h1", name="one", serial="S1", site="Paris")])
    finally:
        t.close()
    msg = str(err.value)
    assert "columns 'serial', 'site' missing" in msg
    advice = msg.split("(add with: ", 1)[1].rstrip(")")
    assert (
        advice == "ALTER TABLE hosts ADD COLUMN serial TEXT; ALTER TABLE hosts ADD COLUMN site TEXT"
    )
    for statement in advice.split("; "):  # the advice works as given
        db.sql(statement)
    t = target(db, table="hosts")
    try:
        assert t.apply([create("h1", name="one", serial="S1", site="Paris")])[0].ok
    finally:
        t.close()
