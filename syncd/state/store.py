"""The state store: what syncd pushed, per job (SQLAlchemy Core; SQLite or PostgreSQL).

Every write goes through :meth:`StateStore.commit` (or the run records), each one ONE
transaction: after a crash the store holds either everything a commit carried or none
of it. Object upserts are batched ``INSERT .. ON CONFLICT DO UPDATE`` executemany
statements (about 15 us per row on SQLite, against 400 us one row at a time).

SQLite: the file's directory is created; WAL journal (readers never block the writer);
``synchronous=NORMAL`` (an OS crash may lose the last commits, never corrupt: the next
run then repeats that work, which targets accept as they are idempotent); foreign keys
on; a 30 s busy timeout when two processes write.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    union,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from syncd.errors import ConfigError, ConnectionFailed, UserError
from syncd.mapping.dn import dn_key
from syncd.state import schema
from syncd.state.schema import (
    cursors,
    inflight,
    objects,
    quarantine,
    runs,
    schema_version,
    target_state,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

IN_CHUNK: Final = 500
"""Most values in one SQL ``IN (...)`` list (SQLite's variable limit is far above)."""

ANALYZE_AFTER: Final = 10_000
"""Object rows written by this store (over its runs) after which finish_run has
PostgreSQL refresh the table's statistics (see StateStore._analyze)."""


class _Keep:
    """Type of :data:`KEEP`."""

    _instance: _Keep | None = None

    def __new__(cls) -> _Keep:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEP"

    def __bool__(self) -> bool:
        return False


KEEP: Final = _Keep()
"""``commit(cursor=KEEP)`` (the default) leaves the job's cursor as it is;
``cursor=None`` clears it."""


class StoredDigests(Mapping[str, str]):
    """An object's field digests as the store holds them (JSON text), decoded on first
    use: most objects a run reads are unchanged, and the planner needs their digests
    only when the fingerprint differs."""

    __slots__ = ("_data", "text")

    def __init__(self, text: str):
        self.text = text
        self._data: dict[str, str] | None = None

    def _decoded(self) -> dict[str, str]:
        if self._data is None:
            self._data = _load(self.text) if self.text else {}
        return self._data

    def __getitem__(self, name: str) -> str:
        return self._decoded()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._decoded().get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


@dataclass(slots=True)
class ObjectState:
    """What the store knows about one synced object."""

    source_id: str
    key: str
    target_id: str | None
    fingerprint: str
    digests: dict[str, str] | StoredDigests
    dn: str | None
    entry_digest: str | None = None
    """Digest of the source entry this state was planned from (None: unknown)."""


@dataclass(slots=True)
class InFlight:
    """One action handed to a target whose outcome the state has not committed yet."""

    source_id: str
    key: str
    kind: str
    """create | update | delete"""
    target_id: str | None = None
    dn: str | None = None


@dataclass(slots=True)
class QuarantineEntry:
    """An object whose mapping or write failed; retried on later runs."""

    job: str
    source_id: str
    dn: str | None
    reason: str
    first_seen: _dt.datetime | None = None
    last_seen: _dt.datetime | None = None
    attempts: int = 0

    @classmethod
    def new(cls, job: str, source_id: str, dn: str | None, reason: str) -> QuarantineEntry:
        """An entry to pass to :meth:`StateStore.commit` (times and attempts are the
        store's business)."""
        return cls(job, source_id, dn, reason)


@dataclass(slots=True)
class RunRecord:
    """One run of a job as recorded by start_run/finish_run."""

    id: int
    job: str
    node: str
    method: str
    status: str
    started: _dt.datetime
    finished: _dt.datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (None while running)."""
        if self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _text(value: str | None) -> str | None:
    """Free text (a DN, a reason, an error) as the store keeps it: PostgreSQL text
    cannot hold NUL, and one hostile value must not make every commit of a job fail."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\\x00")


def _chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def safe_url(url: URL | str) -> str:
    """The URL with its password masked, for messages."""
    try:
        u = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<invalid url>"
    from syncd.urls import redact_url  # also masks ?password= and the like

    return redact_url(u.render_as_string(hide_password=True))


def _parse_url(url: str) -> URL:
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        # Not echoed: an unparsable URL may hold a password nobody can mask.
        raise ConfigError(
            "state: url is not a database URL (sqlite:///PATH or "
            "postgresql+psycopg://user@host:port/db)"
        ) from None
    # "postgresql://" means psycopg2 to SQLAlchemy; syncd ships psycopg 3.
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _sqlite_engine(u: URL) -> Engine:
    db = u.database or ""
    memory = db in ("", ":memory:") or u.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    elif u.query.get("uri") != "true":  # a file: URI (e.g. ?mode=ro) names its own path
        path = Path(db).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(
                f"state: cannot create directory {path.parent}: {err.strerror}"
            ) from None
    engine = create_engine(u, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise
        # begin lazily and commit around DDL): real transactions, transactional DDL.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock at BEGIN: a deferred transaction that reads first
        # could fail with SQLITE_BUSY when it later wants to write.
        mode = conn.get_execution_options().get("syncd_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())

    return engine


class StateNotReady(UserError):
    """A store opened with ``migrate=False`` has no schema yet (``version`` None) or an
    older one; opening it would have to write."""

    def __init__(self, url: str, version: int | None):
        self.version = version
        super().__init__(
            f"state database {url} has schema version {version}, this syncd needs "
            f"{schema.latest()}: a dry run or a read-only command does not migrate it "
            "(syncd sync or the daemon does)"
        )


def _db_errors(method: Callable[..., _T]) -> Callable[..., _T]:
    """Turn a lost or refused database connection into ConnectionFailed (a user error
    with one clear line); any other database error is a bug and keeps its traceback."""

    @functools.wraps(method)
    def wrapper(self: StateStore, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except OperationalError as err:
            raise ConnectionFailed(f"state database {self.url}: {_short(err)}") from err

    return wrapper


class StateStore:
    """Per-job state of syncd in one database. See the module docstring.

    Raises ConfigError for a bad URL, ConnectionFailed when the database cannot be
    reached, and UserError when its schema is newer than this code knows.
    """

    def __init__(self, url: str, *, migrate: bool = True):
        u = _parse_url(url)
        self._may_migrate = migrate
        self.url = safe_url(u)
        self.dialect = u.get_backend_name()
        try:
            if self.dialect == "sqlite":
                self.engine = _sqlite_engine(u)
            elif self.dialect == "postgresql":
                self.engine = create_engine(
                    u, pool_pre_ping=True, connect_args={"connect_timeout": 10}
                )
            else:
                raise ConfigError(
                    f"state: {u.drivername!r} databases are not supported as the state store "
                    "(use sqlite:///PATH or postgresql+psycopg://...)"
                )
        except NoSuchModuleError:
            raise ConfigError(
                f"state: no database driver for {u.drivername!r} "
                "(use sqlite:///PATH or postgresql+psycopg://...)"
            ) from None
        except ModuleNotFoundError as err:
            raise ConfigError(
                f"state: the driver module {err.name!r} for {u.drivername!r} is not installed"
            ) from None
        self._write_engine = self.engine.execution_options(syncd_begin="IMMEDIATE")
        try:
            self._migrate()
        except OperationalError as err:
            self.engine.dispose()
            raise ConnectionFailed(f"state database {self.url}: {_short(err)}") from None
        except DBAPIError as err:  # e.g. no right to create tables
            self.engine.dispose()
            raise UserError(f"state database {self.url}: {_short(err)}") from None
        except BaseException:
            self.engine.dispose()
            raise
        self._upsert_objects = self._make_upsert_objects()
        self._rows_since_analyze = 0
        self._raw_upsert_objects = self._compile_raw(self._upsert_objects, self._OBJECT_COLUMNS)
        self._upsert_quarantine = self._make_upsert_quarantine()
        self._upsert_cursor = self._make_upsert_cursor()
        self._upsert_inflight = self._make_upsert_inflight()
        self._raw_upsert_inflight = self._compile_raw(self._upsert_inflight, self._INFLIGHT_COLUMNS)

    # ----------------------------------------------------------------- schema
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction (BEGIN IMMEDIATE on SQLite)."""
        with self._write_engine.begin() as conn:
            yield conn

    def _refuse_newer(self, current: int) -> None:
        raise UserError(
            f"state database {self.url} has schema version {current}, but this syncd knows "
            f"versions up to {schema.latest()}: upgrade syncd (or use another state database)"
        )

    def _current_version(self) -> int | None:
        """The schema version, read without taking a write lock (None: no schema yet)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table("schema_version"):
                return None
            return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0

    def _migrate(self) -> None:
        current = self._current_version()
        if current == schema.latest():
            return  # the common case: no write lock, so read-only users can open it
        if current is not None and current > schema.latest():
            self._refuse_newer(current)
        if not self._may_migrate:  # a dry run writes nothing, not even a schema
            raise StateNotReady(self.url, current)
        with self._write() as conn:
            if self.dialect == "postgresql":
                # Several nodes may start at once: one migrates, the others wait.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7153551204)")
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
            latest = schema.latest()
            if current > latest:
                self._refuse_newer(current)
            for version in range(current, latest):
                log.info("state database %s: migrating to schema version %d", self.url, version + 1)
                schema.MIGRATIONS[version](conn)
                conn.execute(insert(schema_version).values(version=version + 1, applied_at=_now()))

    @_db_errors
    def schema_version(self) -> int:
        """The schema version of the database."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0

    def _insert(self, table):
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        return dialect_insert(table)

    def _make_upsert_objects(self):
        stmt = self._insert(objects)
        cols = (
            "key",
            "target_id",
            "fingerprint",
            "digests",
            "dn",
            "dn_norm",
            "updated_at",
            "entry_digest",
        )
        return stmt.on_conflict_do_update(
            index_elements=[objects.c.job, objects.c.source_id],
            set_={c: stmt.excluded[c] for c in cols},
        )

    _OBJECT_COLUMNS = (
        "job",
        "source_id",
        "key",
        "target_id",
        "fingerprint",
        "digests",
        "dn",
        "dn_norm",
        "updated_at",
        "entry_digest",
    )

    _INFLIGHT_COLUMNS = ("job", "source_id", "key", "kind", "target_id", "dn", "since")

    def _compile_raw(self, stmt, columns: tuple[str, ...]) -> str | None:
        """The upsert as driver SQL taking ``columns`` in this order, for the hot paths
        that bypass SQLAlchemy's per-row parameter processing (about half the cost of a
        commit). None when the dialect is not one whose parameter format is known here
        or the compiled statement orders its parameters differently."""
        if self.dialect not in ("sqlite", "postgresql"):
            return None
        compiled = stmt.compile(dialect=self.engine.dialect)
        if compiled.positional and tuple(compiled.positiontup) != columns:
            return None
        return str(compiled)

    def _make_upsert_quarantine(self):
        stmt = self._insert(quarantine)
        return stmt.on_conflict_do_update(
            index_elements=[quarantine.c.job, quarantine.c.source_id],
            set_={
                "dn": stmt.excluded.dn,
                "reason": stmt.excluded.reason,
                "last_seen": stmt.excluded.last_seen,
                "attempts": quarantine.c.attempts + 1,
            },
        )

    def _make_upsert_cursor(self):
        stmt = self._insert(cursors)
        return stmt.on_conflict_do_update(
            index_elements=[cursors.c.job],
            set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
        )

    def _make_upsert_inflight(self):
        stmt = self._insert(inflight)
        return stmt.on_conflict_do_update(
            index_elements=[inflight.c.job, inflight.c.source_id, inflight.c.key],
            set_={c: stmt.excluded[c] for c in ("kind", "target_id", "dn", "since")},
        )

    # ---------------------------------------------------------------- reading
    @_db_errors
    def get_target_state(self, job: str) -> dict[str, str]:
        """The values a target asked to keep for ``job`` (see ``Target.drift``)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(target_state.c.key, target_state.c.value).where(target_state.c.job == job)
            )
            return {k: v for k, v in rows}

    @_db_errors
    def get_cursor(self, job: str) -> str | None:
        """The cursor last committed for ``job`` (None if none)."""
        with self.engine.connect() as conn:
            return conn.execute(select(cursors.c.cursor).where(cursors.c.job == job)).scalar()

    @staticmethod
    def _state(row: Any) -> ObjectState:
        # Positional: Row attribute access by name costs more than the rest together.
        source_id, key, target_id, fp, digests, dn, entry = row[:7]
        return ObjectState(source_id, key, target_id, fp, StoredDigests(digests), dn, entry)

    _STATE_COLS = (
        objects.c.source_id,
        objects.c.key,
        objects.c.target_id,
        objects.c.fingerprint,
        objects.c.digests,
        objects.c.dn,
        objects.c.entry_digest,
    )

    @_db_errors
    def objects_for(self, job: str, source_ids: Sequence[str]) -> dict[str, ObjectState]:
        """The known objects among ``source_ids`` (one query per 500 ids)."""
        state_of = self._state
        found: dict[str, ObjectState] = {}
        for row in self._rows_for(job, source_ids, self._STATE_COLS):
            state = state_of(row)
            found[state.source_id] = state
        return found

    _DIGEST_COLS = (objects.c.source_id, objects.c.entry_digest)
    _KEY_COLS = (objects.c.source_id, objects.c.key)

    @_db_errors
    def entry_digests_for(self, job: str, source_ids: Sequence[str]) -> dict[str, str | None]:
        """``{source id: entry digest}`` of the known objects among ``source_ids``: what
        deciding to skip an unchanged entry needs, two short columns instead of a whole
        state row (a no-change complete read asks this of every object and
        :meth:`objects_for` of none)."""
        return dict(self._rows_for(job, source_ids, self._DIGEST_COLS))

    @_db_errors
    def keys_for(self, job: str, source_ids: Sequence[str]) -> dict[str, str]:
        """``{source id: record key}`` of the known objects among ``source_ids``."""
        return dict(self._rows_for(job, source_ids, self._KEY_COLS))

    def _rows_for(self, job: str, source_ids: Sequence[str], cols: tuple) -> Iterator[Any]:
        """Rows of ``cols`` of the objects among ``source_ids`` (one query per 500 ids)."""
        ids = list(dict.fromkeys(source_ids))
        if not ids:
            return
        names = tuple(c.name for c in cols)
        with self.engine.connect() as conn:
            for chunk in _chunks(ids):
                sql = self._rows_for_sql(names, len(chunk))
                if sql is None:
                    yield from conn.execute(
                        select(*cols).where(objects.c.job == job, objects.c.source_id.in_(chunk))
                    )
                elif self.dialect == "sqlite":
                    yield from self._fetch_raw(conn, sql, (job, *chunk))
                else:
                    yield from conn.exec_driver_sql(sql, (job, *chunk))

    def _fetch_raw(self, conn: Connection, sql: str, params: tuple) -> list[tuple]:
        """Rows of ``sql`` through the SQLite driver's own cursor: every column read is
        text, so SQLAlchemy's result rows would only add per-row cost (a no-change
        complete run reads every object's row). Driver errors become what
        :func:`_db_errors` would have made of SQLAlchemy's."""
        import sqlite3

        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        except sqlite3.OperationalError as err:
            raise ConnectionFailed(f"state database {self.url}: {err}") from err
        finally:
            cursor.close()

    @functools.lru_cache(maxsize=16)  # noqa: B019 (one store per process; few sizes)
    def _rows_for_sql(self, names: tuple[str, ...], n: int) -> str | None:
        """_rows_for's query for ``n`` ids as driver SQL: SQLAlchemy's compiling of an
        IN list per batch cost more than the query itself (a no-change run reads every
        object's row). None for a driver whose placeholder is not known here."""
        mark = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(self.engine.dialect.paramstyle)
        if mark is None:
            return None
        marks = ", ".join([mark] * n)
        return (
            f"SELECT {', '.join(names)} FROM objects WHERE job = {mark} AND source_id IN ({marks})"
        )

    @_db_errors
    def objects_by_dn(self, job: str, dns: Sequence[str]) -> dict[str, ObjectState]:
        """Known objects whose DN is one of ``dns``, compared as DNs (RFC 4514: case,
        spaces around separators, escapes; see :func:`syncd.mapping.dn.normalize_dn`).
        Keyed by the DN as asked for."""
        wanted: dict[str, list[str]] = {}
        for dn in dns:
            wanted.setdefault(_text(dn_key(dn)) or "", []).append(dn)
        found: dict[str, ObjectState] = {}
        if not wanted:
            return found
        with self.engine.connect() as conn:
            for chunk in _chunks(list(wanted)):
                rows = conn.execute(
                    select(*self._STATE_COLS, objects.c.dn_norm).where(
                        objects.c.job == job, objects.c.dn_norm.in_(chunk)
                    )
                )
                for row in rows:
                    state = self._state(row)
                    for asked in wanted[row.dn_norm]:
                        found[asked] = state
        return found

    def iter_objects(self, job: str, *, batch: int = 1000) -> Iterator[ObjectState]:
        """Every object of ``job``, streamed ``batch`` rows at a time (ordered by
        source id), without loading them all into memory."""
        query = select(*self._STATE_COLS).where(objects.c.job == job)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch).execute(
                    query.order_by(objects.c.source_id)
                )
                for row in result:
                    yield self._state(row)
        except OperationalError as err:
            raise ConnectionFailed(f"state database {self.url}: {_short(err)}") from err

    def iter_source_ids(self, job: str, *, batch: int = 5000) -> Iterator[str]:
        """The source id of every object of ``job``, streamed (cheaper than
        :meth:`iter_objects` when most objects only need a membership test)."""
        query = select(objects.c.source_id).where(objects.c.job == job)
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=batch).execute(query)
                for (source_id,) in result:
                    yield source_id
        except OperationalError as err:
            raise ConnectionFailed(f"state database {self.url}: {_short(err)}") from err

    @_db_errors
    def inflight(self, job: str) -> dict[str, list[InFlight]]:
        """Source id -> the actions of ``job`` a target was handed but whose outcome was
        never committed (a run died in between): their state rows are not to be trusted."""
        found: dict[str, list[InFlight]] = {}
        query = select(
            inflight.c.source_id,
            inflight.c.key,
            inflight.c.kind,
            inflight.c.target_id,
            inflight.c.dn,
        ).where(inflight.c.job == job)
        with self.engine.connect() as conn:
            for sid, key, kind, target_id, dn in conn.execute(query):
                found.setdefault(sid, []).append(InFlight(sid, key, kind, target_id, dn))
        return found

    @_db_errors
    def has_objects(self, job: str) -> bool:
        """True when ``job`` has at least one synced object (one index probe, unlike
        :meth:`count_objects`)."""
        with self.engine.connect() as conn:
            query = select(objects.c.source_id).where(objects.c.job == job).limit(1)
            return conn.execute(query).first() is not None

    @_db_errors
    def count_objects(self, job: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(objects).where(objects.c.job == job)
            ).scalar_one()

    @_db_errors
    def last_change(self, job: str) -> _dt.datetime | None:
        """When an object of ``job`` was last written (created, updated, renamed); None
        if the job has none. Jobs that look members up in ``job`` compare it with their
        own last run."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.max(objects.c.updated_at)).where(objects.c.job == job)
            ).scalar_one()

    # ---------------------------------------------------------------- writing
    @_db_errors
    def remember_entry_digests(self, job: str, digests: dict[str, str]) -> None:
        """Set the entry digest (source id -> digest) of objects already synced, in one
        transaction. Nothing else changes, not even ``updated_at``: their records did
        not change, so jobs that look members up here have nothing to follow."""
        if not digests:
            return
        stmt = (
            update(objects)
            .where(objects.c.job == bindparam("b_job"), objects.c.source_id == bindparam("b_sid"))
            .values(entry_digest=bindparam("b_digest"))
        )
        params = [{"b_job": job, "b_sid": sid, "b_digest": d} for sid, d in digests.items()]
        with self._write() as conn:
            conn.execute(stmt, params)

    @_db_errors
    def mark_inflight(self, job: str, entries: Sequence[InFlight]) -> None:
        """Record, in ONE transaction, that these actions are about to be handed to the
        target. :meth:`commit` with ``settled=`` clears them once the target answered;
        whatever is still here at the next run was possibly written, possibly not."""
        if not entries:
            return
        now = _now()
        raw = self._raw_upsert_inflight if self.dialect == "sqlite" else None
        # On SQLite, driver tuples in _INFLIGHT_COLUMNS order with the stamp as
        # SQLAlchemy's SQLite DateTime stores it (see commit): a first run marks every row.
        stamp: Any = (
            now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f") if raw is not None else now
        )
        columns = self._INFLIGHT_COLUMNS
        rows: dict[tuple[str, str], Any] = {}
        for e in entries:  # last one wins; one INSERT must not touch a row twice
            values = (job, e.source_id, e.key, e.kind, e.target_id, _text(e.dn), stamp)
            rows[(e.source_id, e.key)] = (
                values if raw is not None else dict(zip(columns, values, strict=True))
            )
        with self._write() as conn:
            if raw is not None:
                conn.exec_driver_sql(raw, list(rows.values()))
            else:
                conn.execute(self._upsert_inflight, list(rows.values()))

    @_db_errors
    def commit(
        self,
        job: str,
        *,
        upserts: Sequence[ObjectState] = (),
        deletes: Sequence[str] = (),
        quarantined: Sequence[QuarantineEntry] = (),
        unquarantined: Sequence[str] = (),
        cursor: str | _Keep | None = KEEP,
        settled: Sequence[str] = (),
        target_values: dict[str, str | None] | None = None,
        audit: Sequence[Any] = (),
    ) -> None:
        """Write all of it in ONE transaction, or nothing.

        ``settled``: source ids whose in-flight marks (:meth:`mark_inflight`) go, as the
        target answered for them (cleared first). Then deletes, then upserts (a key
        change is a delete and a create of the same source id: the create wins), then
        unquarantined, then quarantined (each quarantining counts one attempt more),
        then the cursor. ``target_values``: per-job values of the target (key -> value;
        None removes the key), written with the cursor. The ``audit`` rows
        (:class:`syncd.state.audit.AuditEntry`) are written with them.
        """
        now = _now()
        raw = self._raw_upsert_objects
        if raw is not None and self.dialect == "sqlite":
            # As SQLAlchemy's SQLite DateTime stores it, so reading back is unchanged.
            stamp: Any = now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            stamp = now.replace(tzinfo=None)
        rows: dict[str, Any] = {}
        for o in upserts:  # last one wins; one INSERT must not touch a row twice
            values = (
                job,
                o.source_id,
                o.key,
                o.target_id,
                o.fingerprint,
                o.digests.text if type(o.digests) is StoredDigests else _dump_digests(o.digests),
                _text(o.dn),
                _text(dn_key(o.dn)) if o.dn is not None else None,
                stamp,
                o.entry_digest,
            )
            rows[o.source_id] = (
                values
                if raw is not None and self.dialect == "sqlite"
                else dict(zip(self._OBJECT_COLUMNS, values, strict=True))
            )
        problems: dict[str, dict[str, Any]] = {}
        for q in quarantined:
            if q.job != job:
                raise ValueError(f"quarantine entry of job {q.job!r} committed for job {job!r}")
            problems[q.source_id] = {
                "job": job,
                "source_id": q.source_id,
                "dn": _text(q.dn),
                "reason": _text(q.reason),
                "first_seen": now,
                "last_seen": now,
                "attempts": 1,
            }
        with self._write() as conn:
            for chunk in _chunks(list(dict.fromkeys(settled))):
                conn.execute(
                    delete(inflight).where(inflight.c.job == job, inflight.c.source_id.in_(chunk))
                )
            for chunk in _chunks(list(dict.fromkeys(deletes))):
                conn.execute(
                    delete(objects).where(objects.c.job == job, objects.c.source_id.in_(chunk))
                )
            self._rows_since_analyze += len(rows)
            if rows and raw is not None:
                conn.exec_driver_sql(raw, list(rows.values()))
            elif rows:
                conn.execute(self._upsert_objects, list(rows.values()))
            for chunk in _chunks(list(dict.fromkeys(unquarantined))):
                conn.execute(
                    delete(quarantine).where(
                        quarantine.c.job == job, quarantine.c.source_id.in_(chunk)
                    )
                )
            if problems:
                conn.execute(self._upsert_quarantine, list(problems.values()))
            if cursor is not KEEP:
                conn.execute(self._upsert_cursor, {"job": job, "cursor": cursor, "updated_at": now})
            if target_values:
                self._write_target_values(conn, job, target_values, now)
            if audit:
                from syncd.state import audit as audit_log

                audit_log.write(conn, audit, now)

    def _write_target_values(
        self, conn: Connection, job: str, values: dict[str, str | None], now: _dt.datetime
    ) -> None:
        gone = [k for k, v in values.items() if v is None]
        for chunk in _chunks(gone):
            conn.execute(
                delete(target_state).where(target_state.c.job == job, target_state.c.key.in_(chunk))
            )
        kept = [
            {"job": job, "key": k, "value": v, "updated_at": now}
            for k, v in values.items()
            if v is not None
        ]
        if kept:
            stmt = self._insert(target_state)
            stmt = stmt.on_conflict_do_update(
                index_elements=[target_state.c.job, target_state.c.key],
                set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
            )
            conn.execute(stmt, kept)

    # ------------------------------------------------------------------- runs
    @_db_errors
    def start_run(self, job: str, *, method: str, node: str) -> int:
        """Record the start of a run; returns its id for :meth:`finish_run`."""
        with self._write() as conn:
            result = conn.execute(
                insert(runs).values(
                    job=job,
                    node=node,
                    method=method,
                    status="running",
                    started=_now(),
                    counts="{}",
                    notes="[]",
                )
            )
            return int(result.inserted_primary_key[0])

    @_db_errors
    def mark_interrupted(self, job: str) -> int:
        """Mark every run of ``job`` still recorded as "running" as "interrupted" (call it
        while holding the job's lock: no such run is alive then, it was killed before it
        could record its end). Returns how many were marked."""
        with self._write() as conn:
            result = conn.execute(
                update(runs)
                .where(runs.c.job == job, runs.c.status == "running")
                .values(
                    status="interrupted",
                    finished=_now(),
                    error="the run ended without recording its end (killed or lost power)",
                )
            )
            return int(result.rowcount or 0)

    @_db_errors
    def finish_run(
        self,
        run_id: int,
        *,
        status: str,
        counts: dict[str, int],
        error: str | None = None,
        notes: Sequence[str] = (),
        method: str | None = None,
    ) -> None:
        """Record how run ``run_id`` ended (``method`` updates the one given at start,
        which may not have been known then)."""
        values: dict[str, Any] = {
            "status": status,
            "finished": _now(),
            "counts": json.dumps(dict(counts), sort_keys=True),
            "error": _text(error),
            "notes": json.dumps(list(notes)),  # JSON writes NUL as \u0000
        }
        if method is not None:
            values["method"] = method
        with self._write() as conn:
            conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
        if self._rows_since_analyze >= ANALYZE_AFTER:
            self._analyze()

    def _analyze(self) -> None:
        """Refresh PostgreSQL's statistics of the objects table after a run wrote many
        rows. Without them the planner still believes the table is as small as it was
        at the last autovacuum and reads a job's whole index for every batch of the
        next run (measured: a no-change run of 100k objects 6.9 s -> 2.9 s, for 0.23 s
        of ANALYZE). Not essential: a refusal (another owner) is only logged."""
        self._rows_since_analyze = 0
        if self.dialect != "postgresql":
            return  # SQLite's planner uses the primary key for these queries anyway
        try:
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "ANALYZE objects"
                )
        except DBAPIError as err:
            log.info("state database %s: ANALYZE objects: %s", self.url, _short(err))

    @_db_errors
    def runs(self, job: str | None = None, limit: int = 10) -> list[RunRecord]:
        """The latest ``limit`` runs (of ``job``, or of all jobs), newest first."""
        query = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if job is not None:
            query = query.where(runs.c.job == job)
        with self.engine.connect() as conn:
            return [
                RunRecord(
                    id=r.id,
                    job=r.job,
                    node=r.node,
                    method=r.method,
                    status=r.status,
                    started=r.started,
                    finished=r.finished,
                    counts=json.loads(r.counts or "{}"),
                    error=r.error,
                    notes=json.loads(r.notes or "[]"),
                )
                for r in conn.execute(query)
            ]

    @_db_errors
    def quarantine(self, job: str | None = None) -> list[QuarantineEntry]:
        """Quarantined objects (of ``job`` or all), most recently seen first."""
        query = select(quarantine).order_by(
            quarantine.c.job, quarantine.c.last_seen.desc(), quarantine.c.source_id
        )
        if job is not None:
            query = query.where(quarantine.c.job == job)
        with self.engine.connect() as conn:
            return [
                QuarantineEntry(
                    job=r.job,
                    source_id=r.source_id,
                    dn=r.dn,
                    reason=r.reason,
                    first_seen=r.first_seen,
                    last_seen=r.last_seen,
                    attempts=r.attempts,
                )
                for r in conn.execute(query)
            ]

    @_db_errors
    def jobs(self) -> list[str]:
        """Every job the store holds anything for, sorted."""
        query = union(
            select(cursors.c.job),
            select(objects.c.job).distinct(),
            select(runs.c.job).distinct(),
            select(quarantine.c.job).distinct(),
        )
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(query))

    def close(self) -> None:
        """Release every connection. Safe to call twice."""
        self.engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url})"


_load = json.JSONDecoder().decode
_dump_digests = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _short(err: DBAPIError) -> str:
    """First line of a driver error, without SQLAlchemy's SQL/background lines."""
    text = str(err.orig) if err.orig is not None else str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__
