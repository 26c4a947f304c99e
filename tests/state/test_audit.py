"""The audit log and retention, on a real SQLite state store."""

from __future__ import annotations

import datetime as _dt
import os
from types import SimpleNamespace

import pytest
from sqlalchemy import inspect, select, text, update

from syncd.config import RetentionSection
from syncd.contracts import Action, ActionKind, ActionResult
from syncd.state import ObjectState, StateStore
from syncd.state import schema as state_schema
from syncd.state.audit import (
    AuditEntry,
    apply_retention,
    history,
    prune_reports,
    prune_store,
)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = StateStore(url)
    yield s
    s.close()


def _entry(kind: ActionKind, sid: str, changed=(), fields=None, run_id=1) -> AuditEntry:
    action = Action(kind, sid, f"k-{sid}", fields or {}, tuple(changed), None, f"cn={sid},o=x")
    return AuditEntry.of("inv", run_id, action, ActionResult(action, True, target_id=f"t-{sid}"))


def test_a_version_1_store_is_upgraded_with_the_audit_table(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with monkeypatch.context() as m:
        m.setattr(state_schema, "MIGRATIONS", state_schema.MIGRATIONS[:1])
        StateStore(url).close()
    s = StateStore(url)
    try:
        assert s.schema_version() >= 2
        assert "audit" in inspect(s.engine).get_table_names()
    finally:
        s.close()


def test_audit_rows_carry_names_not_values_and_filter(store):
    create = _entry(ActionKind.CREATE, "a", fields={"mail": "ada@example.com", "cn": "Ada"})
    upd = _entry(ActionKind.UPDATE, "a", changed=("mail",), fields={"mail": "x@y", "cn": "Ada"})
    gone = _entry(ActionKind.DELETE, "b", run_id=2)
    store.commit("inv", upserts=[], audit=[create, upd, gone])
    rows = history(store, "inv")
    assert [(r.kind, r.fields) for r in rows] == [
        ("create", ("mail", "cn")),
        ("update", ("mail",)),
        ("delete", ()),
    ]
    assert rows[0].target_id == "t-a" and rows[2].run_id == 2 and rows[0].at is not None
    with store.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(select(state_schema.audit)) for v in row)
    assert "ada@example.com" not in dump and "Ada" not in dump.replace("cn=", "")
    assert [r.kind for r in history(store, "inv", dn="CN=A,O=X")] == ["create", "update"]
    assert [r.kind for r in history(store, "inv", dn="b")] == ["delete"]
    future = _dt.datetime.now(_dt.UTC) + _dt.timedelta(hours=1)
    assert history(store, "inv", since=future) == []
    assert [r.kind for r in history(store, "inv", limit=1)] == ["delete"], "the newest"


def test_audit_rows_are_written_in_the_commit_transaction_or_not_at_all(store):
    # A cursor write that fails makes the whole commit fail: no object, no audit row.
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER no_cursor BEFORE INSERT ON cursors "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER no_cursor BEFORE INSERT ON cursors "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )
    state = ObjectState("a", "k-a", "t-a", "fp", {}, "cn=a,o=x")
    with pytest.raises(Exception, match="refused"):
        store.commit("inv", upserts=[state], audit=[_entry(ActionKind.CREATE, "a")], cursor="c1")
    assert history(store, "inv") == [] and store.count_objects("inv") == 0


def test_retention_keeps_latest_and_last_good_run(store, tmp_path):
    ids = [store.start_run("inv", method="full", node="n") for _ in range(4)]
    for run_id, status in zip(ids, ("ok", "ok", "failed", "failed"), strict=True):
        store.finish_run(run_id, status=status, counts={})
    other = store.start_run("hr", method="full", node="n")
    store.finish_run(other, status="ok", counts={})
    store.commit("inv", audit=[_entry(ActionKind.CREATE, "a")])
    old = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=400)
    with store.engine.begin() as conn:
        conn.execute(update(state_schema.runs).values(finished=old, started=old))
        conn.execute(update(state_schema.audit).values(at=old))
    store.commit("inv", audit=[_entry(ActionKind.UPDATE, "a", changed=("cn",))])
    pruned = prune_store(
        store,
        runs_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=90),
        audit_before=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=365),
    )
    assert pruned.runs == 2 and pruned.audit == 1
    left = {(r.job, r.id, r.status) for r in store.runs(limit=50)}
    # inv: its last ok run (ids[1]) and its latest (ids[3]); hr: its only run.
    assert left == {("inv", ids[1], "ok"), ("inv", ids[3], "failed"), ("hr", other, "ok")}
    assert [r.kind for r in history(store, "inv")] == ["update"]


def test_report_files_of_the_job_only_are_pruned(tmp_path, store):
    reports = tmp_path / "reports"
    reports.mkdir()
    names = [
        "inv-20260101T000000Z-run1.txt",
        "inv-20260101T000000Z-run1.json",
        "inv-20260101T000000Z-run1.jsonl",
        "inv-x-20260101T000000Z-run1.txt",  # job "inv-x", not "inv"
        "inv-notes.txt",  # not a report
        "inv-20261201T000000Z-run9.txt",  # recent
    ]
    old = (_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=100)).timestamp()
    for name in names:
        (reports / name).write_text("x")
        if "run9" not in name:
            os.utime(reports / name, (old, old))
    cutoff = _dt.datetime.now(_dt.UTC) - _dt.timedelta(days=90)
    assert prune_reports(reports, "inv", cutoff) == 3
    assert sorted(p.name for p in reports.iterdir()) == sorted(names[3:])
    # Through the config: state.retention.reports of each job with a report_dir.
    (reports / "inv-20260101T000000Z-run2.txt").write_text("x")
    os.utime(reports / "inv-20260101T000000Z-run2.txt", (old, old))
    cfg = SimpleNamespace(
        retention=RetentionSection(reports="30d", runs=None, audit=None),
        jobs={"inv": SimpleNamespace(report_dir=reports)},
    )
    assert apply_retention(cfg, store).reports == 1
    cfg.retention = RetentionSection(reports=None)
    (reports / "inv-20260101T000000Z-run3.txt").write_text("x")
    os.utime(reports / "inv-20260101T000000Z-run3.txt", (old, old))
    assert apply_retention(cfg, store).reports == 0, "null keeps them forever"


def test_the_only_note_is_the_engines():
    from syncd.engine import ONLY_NOTE
    from syncd.state import audit

    assert audit.ONLY_NOTE == ONLY_NOTE
    assert audit.is_only_run([f"{ONLY_NOTE}2 asked for"]) and not audit.is_only_run(["x"])
