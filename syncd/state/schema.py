"""Tables of the state store and the migrations that build them.

``MIGRATIONS[i]`` takes a schema from version ``i`` to ``i + 1``; the store applies the
missing ones in order, all in ONE transaction (DDL is transactional on SQLite and
PostgreSQL), and records each in ``schema_version``. A database whose version is newer
than ``LATEST`` is refused: an older syncd must not write a schema it does not know.

To change the schema: change the table definitions below AND append a migration that
takes a version-``LATEST`` database there (never edit an existing migration).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
)


class UTCDateTime(TypeDecorator):
    """Timestamps stored as naive UTC (SQLite has no time zones) and read back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column("job", Text, primary_key=True),
    Column("cursor", Text),
    Column("updated_at", UTCDateTime, nullable=False),
)

objects = Table(
    "objects",
    metadata,
    Column("job", Text, primary_key=True),
    Column("source_id", Text, primary_key=True),
    Column("key", Text, nullable=False),
    Column("target_id", Text),
    Column("fingerprint", Text, nullable=False),
    Column("digests", Text, nullable=False),  # JSON {field: digest}
    Column("dn", Text),
    Column("dn_norm", Text),  # syncd.mapping.dn.dn_key(dn), for look-ups by DN
    Column("updated_at", UTCDateTime, nullable=False),
    # Digest of the source entry as last mapped (with the mapping's digest): an entry
    # read again unchanged is not mapped again. NULL: unknown, map it (schema v6).
    Column("entry_digest", Text),
    Index("ix_objects_job_dn", "job", "dn_norm"),
    Index("ix_objects_job_key", "job", "key"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", Text, nullable=False),
    Column("node", Text, nullable=False),
    Column("method", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("started", UTCDateTime, nullable=False),
    Column("finished", UTCDateTime),
    Column("counts", Text, nullable=False),  # JSON {name: int}
    Column("error", Text),
    Column("notes", Text, nullable=False),  # JSON [str]
    Index("ix_runs_job_id", "job", "id"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("job", Text, primary_key=True),
    Column("source_id", Text, primary_key=True),
    Column("dn", Text),
    Column("reason", Text, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
)

inflight = Table(
    "inflight",
    metadata,
    Column("job", Text, primary_key=True),
    Column("source_id", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("kind", Text, nullable=False),  # create | update | delete
    Column("target_id", Text),
    Column("dn", Text),
    Column("since", UTCDateTime, nullable=False),
)
"""Actions handed to a target whose outcome is not committed yet (see
:meth:`syncd.state.StateStore.mark_inflight`): a row left here means a run died between
the target's write and the state commit, so the state of that object is not trusted."""


target_state = Table(
    "target_state",
    metadata,
    # Small per-job values a target asks the engine to keep between runs (a Graph delta
    # link per mailbox, a folder id): the target returns them, the engine commits them.
    Column("job", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", Text, nullable=False),
    Column("run_id", Integer),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", Text, nullable=False),  # create | update | delete
    Column("source_id", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("dn", Text),
    Column("dn_norm", Text),  # lower-cased dn, for `syncd history --dn`
    Column("target_id", Text),
    Column("fields", Text, nullable=False),  # JSON [field name]: names only, never values
    Index("ix_audit_job_at", "job", "at"),
    Index("ix_audit_job_dn", "job", "dn_norm"),
)
"""One row per change a target confirmed (the audit log; see syncd.state.audit)."""


def _v1_initial(conn: Connection) -> None:
    # The tables above are version 1 except where a later migration changed them: those
    # keep their version-1 definition here, so this step keeps building v1.
    v1 = MetaData()
    Table(
        "objects",
        v1,
        Column("job", Text, primary_key=True),
        Column("source_id", Text, primary_key=True),
        Column("key", Text, nullable=False),
        Column("target_id", Text),
        Column("fingerprint", Text, nullable=False),
        Column("digests", Text, nullable=False),
        Column("dn", Text),
        Column("dn_norm", Text),
        Column("updated_at", UTCDateTime, nullable=False),
        Index("ix_objects_job_dn", "job", "dn_norm"),
        Index("ix_objects_job_key", "job", "key"),
    )
    for table in (cursors, runs, quarantine):
        table.to_metadata(v1)
    v1.create_all(conn)


def _v2_inflight(conn: Connection) -> None:
    # checkfirst: a step interrupted after its DDL (SQLite commits DDL at once) can run
    # again; so can a store whose version rows were lost.
    inflight.create(conn, checkfirst=True)


Migration = Callable[[Connection], None]


def _v3_target_state(conn: Connection) -> None:
    metadata.create_all(conn, tables=[target_state])


def _v4_dn_norm(conn: Connection) -> None:
    # dn_norm was dn.lower(); it is now the RFC 4514 normal form (spaces around
    # separators, escapes, multi-valued RDN order no longer make another DN).
    from sqlalchemy import bindparam, select, update

    from syncd.mapping.dn import dn_key

    rows = conn.execute(
        select(objects.c.job, objects.c.source_id, objects.c.dn).where(objects.c.dn.is_not(None))
    ).fetchall()
    stmt = (
        update(objects)
        .where(objects.c.job == bindparam("j"), objects.c.source_id == bindparam("s"))
        .values(dn_norm=bindparam("n"))
    )
    params = [{"j": job, "s": sid, "n": dn_key(dn)} for job, sid, dn in rows]
    for start in range(0, len(params), 1000):
        conn.execute(stmt, params[start : start + 1000])


def _v5_audit(conn: Connection) -> None:
    audit.create(conn, checkfirst=True)


def _v6_entry_digest(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE objects ADD COLUMN entry_digest TEXT")


MIGRATIONS: list[Migration] = [
    _v1_initial,
    _v2_inflight,
    _v3_target_state,
    _v4_dn_norm,
    _v5_audit,
    _v6_entry_digest,
]
"""Step ``i`` takes version ``i`` to ``i + 1``. Append only."""


def latest() -> int:
    """The schema version this code writes."""
    return len(MIGRATIONS)
