"""The audit log: one row per change a target confirmed, and retention of history.

The engine hands :class:`AuditEntry` rows to :meth:`StateStore.commit` with the batch
they belong to, so an audit row exists exactly when the state says the change was
made (same transaction). A row names the job, run, kind, source id, record key, DN,
target id and the *names* of the fields written; never their values, which are
personal data (the target holds them; the source is their record).

``syncd history`` reads them back (:func:`history`); :func:`prune` applies the
retention of runs, audit rows and report files.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select

from syncd.state.schema import audit, runs
from syncd.state.store import StateStore, _db_errors, _text

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AuditEntry:
    """One applied change, as the audit log keeps it."""

    job: str
    run_id: int | None
    kind: str
    source_id: str
    key: str
    dn: str | None
    target_id: str | None
    fields: tuple[str, ...]
    at: _dt.datetime | None = None
    """set by the store when the row is written"""

    @classmethod
    def of(cls, job: str, run_id: int | None, action: Any, result: Any) -> AuditEntry:
        """The entry for an action the target confirmed (its
        :class:`~syncd.contracts.ActionResult`): an update names the fields it changed, a
        create every field, a delete none."""
        target_id = result.target_id or action.target_id
        kind = action.kind.value
        if kind == "update":
            names = tuple(action.changed)
        elif kind == "create":
            names = tuple(action.fields)
        else:
            names = ()
        return cls(job, run_id, kind, action.source_id, action.key, action.dn, target_id, names)


_COLUMNS = (
    "job",
    "run_id",
    "at",
    "kind",
    "source_id",
    "key",
    "dn",
    "dn_norm",
    "target_id",
    "fields",
)
_raw_sqlite: str | None = None


def _values(entries: Iterable[AuditEntry], at: Any) -> Iterator[tuple[Any, ...]]:
    names: dict[tuple[str, ...], str] = {}  # a run's creates all name the same fields
    for e in entries:
        fields = names.get(e.fields)
        if fields is None:
            fields = names[e.fields] = json.dumps(list(e.fields), ensure_ascii=False)
        yield (
            e.job,
            e.run_id,
            at,
            e.kind,
            _text(e.source_id) or "",
            _text(e.key) or "",
            _text(e.dn),
            _text(e.dn.lower()) if e.dn is not None else None,
            _text(e.target_id),
            fields,
        )


def write(conn: Connection, entries: Sequence[AuditEntry], now: _dt.datetime) -> None:
    """Insert ``entries`` in the caller's transaction (:meth:`StateStore.commit`).

    On SQLite the rows go to the driver as tuples with the time as SQLAlchemy stores it
    (about 3x cheaper than SQLAlchemy's per-row parameter processing, which would
    otherwise triple the cost of committing a first run's creates)."""
    global _raw_sqlite
    if conn.dialect.name == "sqlite":
        if _raw_sqlite is None:
            compiled = insert(audit).compile(dialect=conn.dialect, column_keys=list(_COLUMNS))
            assert tuple(compiled.positiontup or ()) == _COLUMNS, compiled.positiontup
            _raw_sqlite = str(compiled)
        stamp = now.astimezone(_dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        conn.exec_driver_sql(_raw_sqlite, list(_values(entries, stamp)))
        return
    rows = [dict(zip(_COLUMNS, v, strict=True)) for v in _values(entries, now)]
    conn.execute(insert(audit), rows)


@_db_errors
def history(
    store: StateStore,
    job: str,
    *,
    since: _dt.datetime | None = None,
    dn: str | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """The latest ``limit`` changes of ``job`` (since ``since``, of the object with DN
    ``dn``, compared case-insensitively; or whose source id or key is ``dn``), oldest
    first."""
    query = select(audit).where(audit.c.job == job)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if dn is not None:
        query = query.where(
            or_(
                audit.c.dn_norm == dn.lower(),
                audit.c.source_id == dn,
                audit.c.key == dn,
            )
        )
    query = query.order_by(audit.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        found = [
            AuditEntry(
                r.job,
                r.run_id,
                r.kind,
                r.source_id,
                r.key,
                r.dn,
                r.target_id,
                tuple(json.loads(r.fields or "[]")),
                r.at,
            )
            for r in conn.execute(query)
        ]
    found.reverse()
    return found


# ------------------------------------------------------------------- retention
@dataclass(frozen=True, slots=True)
class Pruned:
    runs: int = 0
    audit: int = 0
    reports: int = 0


@_db_errors
def prune_store(
    store: StateStore,
    *,
    runs_before: _dt.datetime | None,
    audit_before: _dt.datetime | None,
    jobs: Sequence[str] | None = None,
) -> Pruned:
    """Delete finished runs that ended before ``runs_before`` and audit rows written
    before ``audit_before`` (None: keep all), for ``jobs`` or every job.

    Never deleted: each job's latest run and latest successful run (the engine, the
    daemon's metrics and ``status --check`` rely on them).
    """
    removed_runs = removed_audit = 0
    with store._write() as conn:
        if runs_before is not None:
            latest = select(func.max(runs.c.id)).group_by(runs.c.job)
            keep = {r[0] for r in conn.execute(latest)} | _last_ok_runs(conn)
            clause = and_(runs.c.finished.is_not(None), runs.c.finished < runs_before)
            if keep:
                clause = and_(clause, runs.c.id.not_in(sorted(keep)))
            if jobs is not None:
                clause = and_(clause, runs.c.job.in_(list(jobs)))
            removed_runs = conn.execute(delete(runs).where(clause)).rowcount or 0
        if audit_before is not None:
            clause = audit.c.at < audit_before
            if jobs is not None:
                clause = and_(clause, audit.c.job.in_(list(jobs)))
            removed_audit = conn.execute(delete(audit).where(clause)).rowcount or 0
    return Pruned(runs=removed_runs, audit=removed_audit)


ONLY_NOTE = "only: "
"""The note of a ``sync --only`` run (syncd.engine.ONLY_NOTE): a partial run, which the
engine does not take as a job's last successful run."""


def is_only_run(notes: Sequence[str]) -> bool:
    """A run of a few entries (``sync --only``), by its notes."""
    return any(n.startswith(ONLY_NOTE) for n in notes or ())


def _last_ok_runs(conn: Connection) -> set[int]:
    """Per job, the id of its latest ok run and of its latest ok run that was not a
    ``--only`` run (what the engine compares mapping digests and look-ups with)."""
    keep: set[int] = set()
    seen_any: set[str] = set()
    seen_regular: set[str] = set()
    query = select(runs.c.id, runs.c.job, runs.c.notes).where(runs.c.status == "ok")
    for run_id, job, notes in conn.execute(query.order_by(runs.c.id.desc())):
        if job not in seen_any:
            seen_any.add(job)
            keep.add(run_id)
        if job not in seen_regular and not is_only_run(json.loads(notes or "[]")):
            seen_regular.add(job)
            keep.add(run_id)
    return keep


_REPORT_FILE = r"-\d{8}T\d{6}Z-(?:run\d+|dry-run)\.(?:txt|json|jsonl)"


def prune_reports(directory: Path, job: str, before: _dt.datetime) -> int:
    """Delete ``job``'s run report files in ``directory`` last written before
    ``before``. Only files named as :class:`syncd.report.RunReporter` names them are
    touched (another job's, or anything else there, never). Returns how many."""
    if not directory.is_dir():
        return 0
    safe_job = "".join(c if c.isalnum() or c in "-_." else "_" for c in job)
    pattern = re.compile(re.escape(safe_job) + _REPORT_FILE + r"$")
    cutoff = before.timestamp()
    removed = 0
    for path in directory.iterdir():
        if not pattern.match(path.name):
            continue
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError as err:  # a report we cannot remove must not fail the run
            log.warning("retention: cannot remove %s: %s", path, err.strerror or err)
    return removed


def apply_retention(cfg: Any, store: StateStore, *, now: _dt.datetime | None = None) -> Pruned:
    """Apply ``state.retention`` of ``cfg``: old runs and audit rows of every job in the
    store, and old report files of every configured job that writes them. Returns what
    was removed (and logs it at INFO)."""
    now = now or _dt.datetime.now(_dt.UTC)
    retention = cfg.retention

    def before(what: str) -> _dt.datetime | None:
        seconds = retention.seconds(what)
        return None if seconds is None else now - _dt.timedelta(seconds=seconds)

    pruned = prune_store(store, runs_before=before("runs"), audit_before=before("audit"))
    reports = 0
    report_cutoff = before("reports")
    if report_cutoff is not None:
        for name, job in sorted(cfg.jobs.items()):
            if job.report_dir is not None:
                reports += prune_reports(job.report_dir, name, report_cutoff)
    pruned = Pruned(pruned.runs, pruned.audit, reports)
    if pruned.runs or pruned.audit or pruned.reports:
        log.info(
            "retention: removed %d old runs, %d audit rows, %d report files",
            pruned.runs,
            pruned.audit,
            pruned.reports,
        )
    return pruned
