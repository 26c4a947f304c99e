"""The state store on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from syncd.errors import ConfigError, ConnectionFailed, UserError
from syncd.state import KEEP, ObjectState, QuarantineEntry, StateStore
from syncd.state import schema as state_schema
from tests.servers.ports import free_port


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/deep/er/state.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    s = StateStore(url)
    yield s
    s.close()


def obj(i: int | str, fp: str = "fp", dn: str | None = None, **digests: str) -> ObjectState:
    return ObjectState(
        source_id=f"sid-{i}",
        key=f"key-{i}",
        target_id=f"tid-{i}",
        fingerprint=fp,
        digests=digests or {"cn": "0011223344556677"},
        dn=dn if dn is not None else f"cn=Device {i},ou=Devices,dc=example,dc=com",
    )


# ----------------------------------------------------------------- schema
def test_fresh_database_is_migrated(url, tmp_path):
    store = StateStore(url)
    try:
        assert store.schema_version() == state_schema.latest()
        names = set(inspect(store.engine).get_table_names())
        assert {"schema_version", "cursors", "objects", "runs", "quarantine"} <= names
        indexes = {i["name"] for i in inspect(store.engine).get_indexes("objects")}
        assert {"ix_objects_job_dn", "ix_objects_job_key"} <= indexes
        if url.startswith("sqlite"):
            assert (tmp_path / "deep" / "er" / "state.db").exists()
            with store.engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        store.close()
    # Reopening applies nothing twice.
    again = StateStore(url)
    try:
        with again.engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM schema_version")).scalar()
        assert n == state_schema.latest()
    finally:
        again.close()


def test_newer_schema_is_refused(url):
    StateStore(url).close()
    s = StateStore(url)
    with s.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO schema_version (version, applied_at) VALUES (99, :t)"),
            {"t": dt.datetime(2030, 1, 1)},
        )
    s.close()
    with pytest.raises(UserError) as err:
        StateStore(url)
    msg = str(err.value)
    assert "schema version 99" in msg and f"up to {state_schema.latest()}" in msg
    assert "upgrade syncd" in msg
    if "postgresql" in url:
        assert "pg-test-Secret" not in msg  # the password is masked in the URL shown


def test_migrations_apply_in_order_in_one_transaction(url, monkeypatch):
    # On top of version 1 whatever later versions exist: v2 and v3 here are the test's.
    monkeypatch.setattr(state_schema, "MIGRATIONS", state_schema.MIGRATIONS[:1])
    StateStore(url).close()
    base = state_schema.latest()  # the real migrations; two test ones go on top
    shipped = list(state_schema.MIGRATIONS)
    applied = []

    def v2(conn):
        applied.append(2)
        conn.execute(text("CREATE TABLE extra_v2 (x INTEGER)"))

    def v3_broken(conn):
        applied.append(3)
        conn.execute(text("CREATE TABLE extra_v3 (x INTEGER)"))
        raise RuntimeError("migration 3 is broken")

    monkeypatch.setattr(state_schema, "MIGRATIONS", [*state_schema.MIGRATIONS, v2, v3_broken])
    with pytest.raises(RuntimeError, match="migration 3"):
        StateStore(url)
    assert applied == [2, 3]
    # Nothing of the failed upgrade stayed: not v2's table, not its version row.
    monkeypatch.setattr(state_schema, "MIGRATIONS", shipped)
    s = StateStore(url)
    try:
        assert s.schema_version() == base
        assert not {"extra_v2", "extra_v3"} & set(inspect(s.engine).get_table_names())
    finally:
        s.close()
    monkeypatch.setattr(state_schema, "MIGRATIONS", [*shipped, v2])
    applied.clear()
    s = StateStore(url)
    try:
        assert applied == [2] and s.schema_version() == base + 1
        assert "extra_v2" in inspect(s.engine).get_table_names()
    finally:
        s.close()


def test_bad_urls_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a database URL"):
        StateStore("no url at all")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create directory"):
        StateStore(f"sqlite:///{blocker}/sub/state.db")
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as err:
        StateStore(f"postgresql://syncd:Sup3rSecret@127.0.0.1:{port}/state")
    assert time.monotonic() - started < 15
    assert "Sup3rSecret" not in str(err.value) and "***" in str(err.value)


def test_wrong_password_is_connection_failed(postgres_server, postgres_url):
    bad = postgres_url.replace(postgres_server.password, "not-the-password")
    with pytest.raises(ConnectionFailed) as err:
        StateStore(bad)
    assert "not-the-password" not in str(err.value)
    assert "password authentication failed" in str(err.value)


# ---------------------------------------------------------------- objects
def test_objects_commit_lookup_and_delete(store):
    store.commit("inv", upserts=[obj(i) for i in range(1200)])
    store.commit("other", upserts=[obj(1, fp="other-fp")])
    assert store.count_objects("inv") == 1200
    assert store.count_objects("other") == 1
    assert store.count_objects("nothing") == 0

    wanted = [f"sid-{i}" for i in range(0, 1200, 1)] + ["sid-missing"]
    found = store.objects_for("inv", wanted)  # more ids than one IN list holds
    assert len(found) == 1200 and "sid-missing" not in found
    assert found["sid-7"] == obj(7)
    assert store.objects_for("other", ["sid-1"])["sid-1"].fingerprint == "other-fp"
    assert store.objects_for("inv", []) == {}

    store.commit(
        "inv",
        upserts=[
            ObjectState("sid-7", "key-7", None, "fp2", {"cn": "ffff", "ip": "aaaa"}, "cn=new")
        ],
        deletes=["sid-8", "sid-9", "sid-never"],
    )
    got = store.objects_for("inv", ["sid-7", "sid-8", "sid-9"])
    assert list(got) == ["sid-7"]
    assert got["sid-7"].digests == {"cn": "ffff", "ip": "aaaa"}
    assert got["sid-7"].target_id is None and got["sid-7"].dn == "cn=new"
    assert store.count_objects("inv") == 1198
    assert store.count_objects("other") == 1  # other job untouched by the deletes
    assert store.jobs() == ["inv", "other"]


def test_objects_by_dn_ignores_case(store):
    store.commit(
        "inv",
        upserts=[
            obj(1, dn="CN=Printer One,OU=Devices,DC=Example,DC=Com"),
            obj(2, dn="cn=printer two,ou=devices,dc=example,dc=com"),
            obj(3, dn=None),
        ],
    )
    asked = [
        "cn=printer one,ou=devices,dc=example,dc=com",
        "CN=PRINTER TWO,OU=DEVICES,DC=EXAMPLE,DC=COM",
    ]
    found = store.objects_by_dn("inv", [*asked, "cn=nobody"])
    assert set(found) == set(asked)
    assert found[asked[0]].source_id == "sid-1"
    assert found[asked[1]].source_id == "sid-2"
    assert store.objects_by_dn("other-job", asked) == {}


def test_objects_by_dn_compares_dns_not_text(store):
    # RFC 4514: spaces around separators, case, hex and backslash escapes, the order of
    # a multi-valued RDN's parts do not make another DN.
    store.commit(
        "inv",
        upserts=[
            obj(1, dn="uid=alice,ou=people,dc=example,dc=com"),
            obj(2, dn="cn=Smith\\, John,ou=people,dc=example,dc=com"),
            obj(3, dn="cn=Jos\u00e9,ou=people,dc=example,dc=com"),
            obj(4, dn="cn=Bob+uid=bob,ou=people,dc=example,dc=com"),
        ],
    )
    asked = {
        "uid=ALICE, ou=People , dc=example,  dc=com": "sid-1",
        "cn=Smith\\2C John,ou=people,dc=example,dc=com": "sid-2",
        'cn="Smith, John",ou=people,dc=example,dc=com': "sid-2",
        "cn=Jos\\C3\\A9,ou=people,dc=example,dc=com": "sid-3",
        "cn=JOSE\u0301,ou=people,dc=example,dc=com".replace("E\u0301", "e\u0301"): "sid-3",
        "uid=bob + cn=BOB,ou=people,dc=example,dc=com": "sid-4",
    }
    found = store.objects_by_dn("inv", list(asked))
    assert {dn: state.source_id for dn, state in found.items()} == asked
    assert store.objects_by_dn("inv", ["uid=alice,ou=people,dc=other"]) == {}


def test_dn_norm_migration_rewrites_old_lower_cased_dns(store):
    # Rows from before the DN normal form: dn_norm held dn.lower().
    store.commit("inv", upserts=[obj(1, dn="uid=Alice, ou=People,dc=example,dc=com")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE objects SET dn_norm = lower(dn)"))
    asked = ["uid=alice,ou=people,dc=example,dc=com"]
    assert store.objects_by_dn("inv", asked) == {}
    with store.engine.begin() as conn:
        state_schema._v4_dn_norm(conn)
    found = store.objects_by_dn("inv", asked)
    assert [s.source_id for s in found.values()] == ["sid-1"]


def test_delete_then_upsert_of_same_source_id_keeps_the_new_row(store):
    store.commit("inv", upserts=[obj(1)])
    renamed = ObjectState("sid-1", "new-key", None, "fp-new", {}, None)
    store.commit("inv", deletes=["sid-1"], upserts=[renamed])
    assert store.objects_for("inv", ["sid-1"])["sid-1"].key == "new-key"


def test_cursor_keep_set_and_clear(store):
    assert store.get_cursor("inv") is None
    store.commit("inv", cursor="c1")
    store.commit("inv", upserts=[obj(1)])  # KEEP by default
    assert store.get_cursor("inv") == "c1"
    store.commit("inv", cursor=KEEP)
    assert store.get_cursor("inv") == "c1"
    store.commit("inv", cursor="c2" * 2000)  # long cursors (syncrepl cookies, seen sets)
    assert store.get_cursor("inv") == "c2" * 2000
    store.commit("inv", cursor=None)
    assert store.get_cursor("inv") is None
    assert store.get_cursor("other") is None


def test_commit_is_all_or_nothing(store):
    store.commit("inv", upserts=[obj(1), obj(2)], cursor="before")
    broken = ObjectState("sid-3", "key-3", None, None, {}, None)  # fingerprint NOT NULL
    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError
        store.commit(
            "inv",
            deletes=["sid-1"],  # runs first inside the transaction...
            upserts=[obj(2, fp="changed"), broken],
            quarantined=[QuarantineEntry.new("inv", "sid-9", None, "x")],
            cursor="after",
        )
    # ...and is rolled back with everything else.
    assert set(store.objects_for("inv", ["sid-1", "sid-2", "sid-3"])) == {"sid-1", "sid-2"}
    assert store.objects_for("inv", ["sid-2"])["sid-2"].fingerprint == "fp"
    assert store.get_cursor("inv") == "before"
    assert store.quarantine("inv") == []


def test_iter_objects_streams(store):
    n = 12_000
    store.commit("inv", upserts=[obj(i) for i in range(n)])
    store.commit("other", upserts=[obj(i) for i in range(10)])
    tracemalloc.start()
    try:
        it = store.iter_objects("inv", batch=500)
        first = next(it)
        # A write while a read is half way does not disturb either.
        store.commit("other", upserts=[obj(99)])
        count, last = 1, first.source_id
        ordered = True
        for state in it:
            count += 1
            ordered &= state.source_id > last
            last = state.source_id
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n and ordered
    # 12k states held at once would take far more than this (about 7 MB).
    assert peak < 2_500_000, f"iter_objects held {peak} bytes at once"
    assert store.count_objects("other") == 11


# ------------------------------------------------------------- quarantine
def test_quarantine_counts_attempts(store):
    q = QuarantineEntry.new
    store.commit("inv", quarantined=[q("inv", "s1", "cn=one", "bad mapping")])
    first = store.quarantine("inv")[0]
    assert (first.attempts, first.reason, first.dn) == (1, "bad mapping", "cn=one")
    time.sleep(0.01)
    store.commit(
        "inv", quarantined=[q("inv", "s1", "cn=one", "still bad"), q("inv", "s2", None, "x")]
    )
    store.commit("inv", quarantined=[q("inv", "s1", "cn=uno", "bad again")])
    store.commit("hr", quarantined=[q("hr", "s1", None, "hr problem")])
    entries = {e.source_id: e for e in store.quarantine("inv")}
    assert set(entries) == {"s1", "s2"}
    s1 = entries["s1"]
    assert (s1.attempts, s1.reason, s1.dn) == (3, "bad again", "cn=uno")
    assert s1.first_seen == first.first_seen and s1.last_seen > first.last_seen
    assert s1.first_seen.tzinfo is not None
    assert entries["s2"].attempts == 1
    assert len(store.quarantine()) == 3
    store.commit("inv", unquarantined=["s1", "s-unknown"])
    assert [e.source_id for e in store.quarantine("inv")] == ["s2"]
    assert [e.job for e in store.quarantine("hr")] == ["hr"]
    with pytest.raises(ValueError, match="job"):
        store.commit("inv", quarantined=[q("hr", "s3", None, "wrong job")])


# ------------------------------------------------------------------- runs
def test_runs_are_recorded(store):
    r1 = store.start_run("inv", method="full", node="node-a")
    r2 = store.start_run("hr", method="", node="node-b")
    running = store.runs("hr")[0]
    assert running.status == "running" and running.finished is None and running.duration is None
    store.finish_run(r1, status="ok", counts={"read": 10, "created": 3})
    store.finish_run(
        r2, status="failed", counts={"read": 0}, error="bind refused", notes=["n1"], method="csv"
    )
    r3 = store.start_run("inv", method="syncrepl", node="node-a")
    runs = store.runs("inv")
    assert [r.id for r in runs] == [r3, r1]
    assert runs[1].counts == {"read": 10, "created": 3} and runs[1].status == "ok"
    assert runs[1].duration is not None and runs[1].duration >= 0
    assert runs[1].node == "node-a" and runs[1].method == "full"
    hr = store.runs("hr")[0]
    assert (hr.error, hr.notes, hr.method, hr.node) == ("bind refused", ["n1"], "csv", "node-b")
    assert [r.id for r in store.runs(limit=2)] == [r3, r2]
    assert hr.started.tzinfo is not None and hr.finished >= hr.started
    assert store.jobs() == ["hr", "inv"]


# --------------------------------------------------------------- concurrency
def test_two_writers_at_once(url):
    stores = [StateStore(url), StateStore(url)]
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for batch in range(30):
                stores[n].commit(
                    f"job{n}",
                    upserts=[obj(f"{batch}-{i}") for i in range(50)],
                    cursor=str(batch),
                )
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert not errors, errors
        assert [s.count_objects(f"job{n}") for n, s in enumerate(stores)] == [1500, 1500]
        assert stores[0].get_cursor("job1") == "29"
    finally:
        for s in stores:
            s.close()


def test_sqlite_file_is_usable_by_sqlite3(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(f"sqlite:///{path}") as s:
        s.commit("inv", upserts=[obj(1)], cursor="c")
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT cursor FROM cursors WHERE job='inv'").fetchone() == ("c",)
        assert db.execute("SELECT dn_norm FROM objects").fetchone()[0].startswith("cn=device 1")
    finally:
        db.close()


def test_postgres_going_away_is_connection_failed(postgres_private):
    pg = postgres_private
    store = StateStore(pg.create_database("state"))
    try:
        store.commit("inv", upserts=[obj(1)], cursor="c1")
        pg.stop()
        with pytest.raises(ConnectionFailed, match="state database") as err:
            store.commit("inv", upserts=[obj(2)], cursor="c2")
        assert pg.password not in str(err.value)
        with pytest.raises(ConnectionFailed):
            list(store.iter_objects("inv"))
        pg.start()
        # the pool notices the dead connections and reconnects
        assert store.get_cursor("inv") == "c1"
        store.commit("inv", upserts=[obj(2)], cursor="c2")
        assert store.count_objects("inv") == 2
    finally:
        store.close()


def test_sqlite_read_only_open(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(f"sqlite:///{path}") as s:
        s.commit("inv", upserts=[obj(1)], cursor="c1")
        s.finish_run(s.start_run("inv", method="full", node="n"), status="ok", counts={})
    # e.g. `syncd status` by a user who may only read the file: no write lock needed
    with StateStore(f"sqlite:///file:{path}?mode=ro&uri=true") as ro:
        assert ro.get_cursor("inv") == "c1" and ro.runs("inv")[0].status == "ok"
        with pytest.raises(ConnectionFailed, match="readonly"):
            ro.commit("inv", cursor="c2")
    assert not Path("file:").exists()  # no directory named after the URI


def test_inflight_marks_round_trip_and_settle(store):
    """In-flight marks (written as driver tuples on SQLite) read back exactly, a second
    mark of the same action replaces the first, and commit(settled=) removes them."""
    from syncd.state.store import InFlight

    marks = [
        InFlight("sid-1", "key-1", "create", None, "cn=Ann,ou=People"),
        InFlight("sid-2", "key-2", "update", "tid-2", None),
        InFlight("sid-2", "key-2b", "delete", "tid-2b", "cn=Old\\, Name,ou=x"),
    ]
    before = dt.datetime.now(dt.UTC)
    store.mark_inflight("j", marks)
    store.mark_inflight("j", [InFlight("sid-1", "key-1", "update", "tid-1", "cn=Ann,ou=People")])
    store.mark_inflight("other", [InFlight("sid-1", "key-1", "create")])
    found = store.inflight("j")
    assert sorted(found) == ["sid-1", "sid-2"]
    assert found["sid-1"] == [InFlight("sid-1", "key-1", "update", "tid-1", "cn=Ann,ou=People")]
    assert sorted(found["sid-2"], key=lambda m: m.key) == marks[1:]
    from syncd.state.schema import inflight

    with store.engine.connect() as conn:
        stamps = [
            row[0] for row in conn.execute(inflight.select().with_only_columns(inflight.c.since))
        ]
    assert len(stamps) == 4
    for stamp in stamps:  # read back as an aware UTC time, not text
        assert isinstance(stamp, dt.datetime) and stamp.tzinfo is not None
        assert before - dt.timedelta(seconds=5) <= stamp <= dt.datetime.now(dt.UTC)
    store.commit("j", settled=["sid-1", "sid-2"])
    assert store.inflight("j") == {}
    assert list(store.inflight("other")) == ["sid-1"]


def test_many_written_rows_refresh_postgres_statistics(postgres_url, monkeypatch):
    """After a run that wrote many object rows, PostgreSQL knows the table's size, so
    the next run's batch look-ups use the primary key instead of scanning the job."""
    from syncd.state import store as store_module

    monkeypatch.setattr(store_module, "ANALYZE_AFTER", 50)
    s = StateStore(postgres_url)
    try:
        run = s.start_run("j", method="full", node="n")
        s.commit("j", upserts=[obj(i) for i in range(60)])
        s.finish_run(run, status="ok", counts={})
        with s.engine.connect() as conn:
            analyzed = conn.exec_driver_sql(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'objects'"
            ).scalar()
        assert analyzed is not None
        assert s._rows_since_analyze == 0
    finally:
        s.close()
