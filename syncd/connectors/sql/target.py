"""SQL target: one row per record in a table, upserted by the record key.

* The table is created if missing (``create_table: true``): a text primary key column
  (``key_column``) plus one column per record field (``columns`` renames fields). Column
  types come from ``column_types`` or are inferred from the first record written:
  lists -> JSON (JSONB on PostgreSQL), bytes -> binary, anything else -> text (bytes
  inside a list or in a text column are written as hex; lists in a text column as JSON;
  booleans in a text column as true/false). An existing table is used as it is
  (reflected); a column it lacks is a TargetError naming it and the ALTER TABLE to run.
* Writes are batched ``INSERT .. ON CONFLICT (key) DO UPDATE`` executemany statements in
  one transaction per batch; if the batch fails, each action is retried on its own so
  exactly the bad rows fail. The complete record is written on every create/update
  (columns the sync does not own are never touched), so a repeated batch is harmless.
* ``on_delete: soft`` sets ``deleted_column`` (a timestamp) instead of deleting; a record
  that comes back clears it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.exc import (
    DBAPIError,
    NoSuchTableError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.types import TypeEngine

from syncd.connectors.sql.connection import (
    SqlConnection,
    doctor_connect,
    error_line,
    make_engine,
)
from syncd.contracts import (
    Action,
    ActionKind,
    ActionResult,
    CheckResult,
    Current,
    FieldChange,
    ReadBack,
    Target,
)
from syncd.errors import ConnectionFailed, TargetError

log = logging.getLogger(__name__)

ColumnType = Literal[
    "text", "integer", "bigint", "float", "boolean", "datetime", "date", "binary", "json"
]

_TYPES: dict[str, Any] = {
    "text": Text,
    "integer": Integer,
    "bigint": BigInteger,
    "float": Float,
    "boolean": Boolean,
    "datetime": lambda: DateTime(timezone=True),
    "date": Date,
    "binary": LargeBinary,
    "json": lambda: _json_type(),
}


class SqlTargetOptions(BaseModel):
    """A job's ``target:`` block for a SQL connection."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    table: str = Field(description="table to write, e.g. devices")
    db_schema: str | None = Field(
        None, alias="schema", description="database schema of the table (PostgreSQL)"
    )
    key_column: str = Field("key", description="column holding the record key (unique)")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="record field -> column name; fields not listed use their own name",
    )
    column_types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="column -> type for a table syncd creates (text, integer, bigint, float, "
        "boolean, datetime, date, binary, json); default: inferred (lists json, bytes binary, "
        "else text)",
    )
    create_table: bool = Field(True, description="create the table if it does not exist")
    on_delete: Literal["delete", "soft"] = Field(
        "delete",
        description="delete: remove the row; soft: set deleted_column and keep the row",
    )
    deleted_column: str = Field(
        "deleted_at", description="timestamp column set by soft deletes (NULL when live)"
    )
    batch_size: int = Field(500, ge=1, le=10_000, description="actions per transaction")

    @field_validator("columns")
    @classmethod
    def _distinct_columns(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for fld, col in value.items():
            if col in seen:
                raise ValueError(f"fields {seen[col]!r} and {fld!r} both map to column {col!r}")
            seen[col] = fld
        return value

    @model_validator(mode="after")
    def _key_not_a_field_column(self) -> SqlTargetOptions:
        if self.key_column in self.columns.values():
            raise ValueError(
                f"column {self.key_column!r} is the key column; no field may map to it"
            )
        return self

    def column_for(self, field: str) -> str:
        return self.columns.get(field, field)


def _json_type() -> TypeEngine:
    """JSON, JSONB on PostgreSQL. The PostgreSQL dialect is imported only here: loading it
    (about 0.1 s) is wasted on every run of a SQLite job."""
    from sqlalchemy.dialects.postgresql import JSONB

    return JSON().with_variant(JSONB(), "postgresql")


def _infer_type(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "json"
    if isinstance(value, bytes | bytearray | memoryview):
        return "binary"
    return "text"


def _kind(col_type: TypeEngine) -> str:
    """Coarse kind of a (reflected) column type, for value conversion."""
    if isinstance(col_type, JSON) or type(col_type).__name__.upper() in ("JSON", "JSONB"):
        return "json"
    if isinstance(col_type, LargeBinary) or type(col_type).__name__.upper() in (
        "BLOB",
        "BYTEA",
        "VARBINARY",
        "BINARY",
    ):
        return "binary"
    try:
        py = col_type.python_type
    except NotImplementedError:
        return "other"
    if py is str:
        return "text"
    if py is _dt.datetime:
        return "datetime"
    if py is _dt.date:
        return "date"
    if py is bool:
        return "boolean"
    return "other"


def _to_column(value: Any, kind: str) -> Any:
    """Convert a record value for a column of ``kind`` (see module docstring)."""
    if value is None:
        return None
    if kind == "json":
        if isinstance(value, list | tuple):
            return [_jsonable(v) for v in value]
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).hex()
        return value
    if kind == "binary":
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, list | tuple):
            return json.dumps(list(value), ensure_ascii=False).encode("utf-8")
        return bytes(value) if isinstance(value, bytearray | memoryview) else value
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple):
            return json.dumps([_jsonable(v) for v in value], ensure_ascii=False)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).hex()
        if isinstance(value, _dt.date | _dt.datetime | _dt.time):
            return value.isoformat()
        return str(value)
    if isinstance(value, str):
        # Mappings give dates as ISO text and LDAP booleans as TRUE/FALSE; SQLite's
        # DateTime/Date/Boolean types take only Python objects (every row failed).
        # Text that does not parse goes as it is: the database takes it or refuses
        # that row.
        if kind == "datetime":
            return _parse_datetime(value)
        if kind == "date":
            return _parse_date(value)
        if kind == "boolean":
            return _BOOLEANS.get(value.strip().lower(), value)
    return value


_BOOLEANS = {
    "true": True,
    "false": False,
    "yes": True,
    "no": False,
    "on": True,
    "off": False,
    "1": True,
    "0": False,
}


def _parse_datetime(text: str) -> Any:
    try:
        return _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return text


def _parse_date(text: str) -> Any:
    try:
        return _dt.date.fromisoformat(text.strip())
    except ValueError:
        parsed = _parse_datetime(text)
        return parsed.date() if isinstance(parsed, _dt.datetime) else text


def _fatal(err: StatementError) -> bool:
    """Is this error about the database (stop the batch) rather than one row?"""
    return isinstance(err, OperationalError) or bool(getattr(err, "connection_invalidated", False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, _dt.date | _dt.datetime | _dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class SqlTarget(Target):
    """Rows in a table; see the module docstring."""

    supports_delete = True
    supports_soft_delete = True

    connection: SqlConnection
    options: SqlTargetOptions

    def __init__(self, connection: SqlConnection, options: SqlTargetOptions, *, job: str):
        super().__init__(connection, options, job=job)
        self.batch_size = options.batch_size
        self.engine: Engine | None = None
        self.table: Table | None = None
        self._kinds: dict[str, str] = {}
        self._layouts: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
        self._upserts: dict[tuple[str, ...], Any] = {}
        self._raw_upserts: dict[Any, tuple[str, tuple[str, ...]] | None] = {}
        self._secret: str | None = None

    # ------------------------------------------------------------------ set-up
    def describe(self) -> str:
        o = self.options
        name = f"{o.db_schema}.{o.table}" if o.db_schema else o.table
        return f"sql table {name} at {self.connection.safe_url()}"

    def _fail_connect(self, err: BaseException) -> ConnectionFailed:
        return ConnectionFailed(f"{self.describe()}: {error_line(err, self._secret)}")

    def open(self) -> None:
        """Connect, check the credentials, reflect (or create) the table.

        Raises ConnectionFailed (unreachable, refused, wrong password) or TargetError
        (table missing and create_table false, key column not unique, column missing).
        """
        if self.engine is not None:
            return
        if self.connection.password is not None:
            self._secret = self.connection.password.reveal()
        self.engine = make_engine(self.connection)
        try:
            with self.engine.connect() as conn:
                self.table = self._reflect(conn)
                if self.table is None:
                    if not self.options.create_table:
                        raise TargetError(
                            f"{self.describe()}: the table does not exist "
                            "(create it, or set create_table: true)"
                        )
                    if self._known_columns_complete():
                        self.table = self._create(conn, {})
                        conn.commit()
                else:
                    self._check_table(self.table, ())
        except OperationalError as err:  # unreachable, refused, bad credentials
            self._dispose()
            raise self._fail_connect(err) from None
        except DBAPIError as err:  # e.g. no right to read or create the table
            self._dispose()
            raise TargetError(f"{self.describe()}: {error_line(err, self._secret)}") from None
        except BaseException:
            self._dispose()
            raise

    def _dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        self.engine = None

    def _reflect(self, conn: Connection) -> Table | None:
        try:
            table = Table(
                self.options.table, MetaData(), schema=self.options.db_schema, autoload_with=conn
            )
        except NoSuchTableError:
            return None
        self._learn(table)
        return table

    def _learn(self, table: Table) -> None:
        self._kinds = {c.name: _kind(c.type) for c in table.columns}
        self._layouts: dict[tuple[str, ...], list[tuple[str, str, str]]] = {}
        self._upserts: dict[tuple[str, ...], Any] = {}

    def _known_columns_complete(self) -> bool:
        """Can the table be created before any record is seen? Only if every column's
        type is configured (else types are inferred from the first record)."""
        cols = set(self.options.columns.values()) | set(self.options.column_types)
        return bool(cols) and all(c in self.options.column_types for c in cols)

    def _create(self, conn: Connection, fields: dict[str, Any]) -> Table:
        """Create the table for records like ``fields`` (types: configured or inferred)."""
        o = self.options
        cols: dict[str, str] = {}
        for col, typ in o.column_types.items():
            cols[col] = typ
        for col in o.columns.values():
            cols.setdefault(col, "text")
        for fld, value in fields.items():
            col = o.column_for(fld)
            if col != o.key_column:
                cols.setdefault(col, _infer_type(value))
        cols.pop(o.key_column, None)
        columns = [Column(o.key_column, Text, primary_key=True)]
        columns += [Column(name, _TYPES[typ]()) for name, typ in cols.items()]
        if o.on_delete == "soft" and o.deleted_column not in cols:
            columns.append(Column(o.deleted_column, DateTime(timezone=True)))
        table = Table(o.table, MetaData(), *columns, schema=o.db_schema)
        table.create(conn, checkfirst=True)
        log.info("%s: created table with columns %s", self.describe(), ", ".join(table.c.keys()))
        # Reflect what is really there (another process may have created it first).
        reflected = self._reflect(conn)
        assert reflected is not None
        self._check_table(reflected, ())
        return reflected

    def _check_table(self, table: Table, fields: Sequence[str]) -> None:
        """TargetError unless the key column is unique and every needed column exists."""
        o = self.options
        if o.key_column not in table.c:
            raise TargetError(f"{self.describe()}: key column {o.key_column!r} is missing")
        if not self._key_is_unique(table):
            raise TargetError(
                f"{self.describe()}: key column {o.key_column!r} must be the primary key "
                "or have a unique index (upserts rely on it)"
            )
        needed = [o.column_for(f) for f in fields] + list(o.columns.values())
        if o.on_delete == "soft":
            needed.append(o.deleted_column)
        missing = sorted({c for c in needed if c not in table.c and c != o.key_column})
        if missing:
            raise self._missing_columns(missing)

    def _missing_columns(self, missing: Sequence[str]) -> TargetError:
        """The error for columns the table lacks, with the statement that adds them
        (syncd never alters an existing table itself)."""
        o = self.options
        # Quoted as the database needs (mixed case, spaces, reserved words like
        # "order"), so the statement can be run as it is shown.
        quote = (
            self.engine.dialect.identifier_preparer.quote
            if self.engine is not None
            else (lambda n: n)
        )
        name = quote(o.table) if not o.db_schema else f"{quote(o.db_schema)}.{quote(o.table)}"
        adds = "; ".join(
            f"ALTER TABLE {name} ADD COLUMN {quote(c)} "
            f"{'TIMESTAMP' if c == o.deleted_column else 'TEXT'}"
            for c in missing
        )
        return TargetError(
            f"{self.describe()}: column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(c) for c in missing)} missing from the table "
            f"(add with: {adds})"
        )

    def _key_is_unique(self, table: Table) -> bool:
        key = self.options.key_column
        if [c.name for c in table.primary_key.columns] == [key]:
            return True
        for cons in table.constraints:
            if isinstance(cons, UniqueConstraint) and [c.name for c in cons.columns] == [key]:
                return True
        return any(idx.unique and [c.name for c in idx.columns] == [key] for idx in table.indexes)

    # ------------------------------------------------------------------ apply
    def current(
        self, actions: Sequence[Action], secret: Callable[[str], bool] | None = None
    ) -> list[Current | None]:
        """The rows the actions would change, as they are now: for each action the
        fields whose column holds something else than the action writes (old -> new).
        Reads only; a missing table is not created. Raises ConnectionFailed."""
        o = self.options
        url = self.connection.sqlalchemy_url()
        if self.engine is None and url.get_backend_name() == "sqlite":
            name = url.database or ""
            if name and name != ":memory:" and not name.startswith("file:"):
                from pathlib import Path

                if not Path(name).exists():  # connecting would create the file
                    return [None] * len(actions)  # no row yet: new values only
        if self.engine is None:
            if self.connection.password is not None:
                self._secret = self.connection.password.reveal()
            self.engine = make_engine(self.connection)
        try:
            with self.engine.connect() as conn:
                table = self.table if self.table is not None else self._reflect(conn)
                rows: dict[str, Any] = {}
                if table is not None:
                    key_col = table.c[o.key_column]
                    wanted = list(dict.fromkeys(a.key for a in actions))
                    for start in range(0, len(wanted), 500):
                        query = select(table).where(key_col.in_(wanted[start : start + 500]))
                        for row in conn.execute(query):
                            rows[row._mapping[o.key_column]] = dict(row._mapping)
        except OperationalError as err:
            raise self._fail_connect(err) from None
        out: list[Current | None] = []
        for action in actions:
            row = rows.get(action.key)
            cur = Current()
            out.append(cur)
            if action.kind is ActionKind.DELETE:
                if row is None:
                    cur.notes.append("already gone")
                elif o.on_delete == "soft":
                    cur.notes.append(f"soft delete: {o.deleted_column} set")
                else:
                    cur.notes.append("row deleted")
                continue
            if table is None:
                cur.notes.append(f"table {o.table} does not exist yet")
            names = action.changed if row is not None and action.changed else tuple(action.fields)
            for name in names:
                col = o.column_for(name)
                have = row.get(col) if row is not None else None
                old = [] if have is None else list(have) if isinstance(have, list) else [have]
                value = action.fields.get(name)
                new = [] if value is None else list(value) if isinstance(value, list) else [value]
                if [str(v) for v in old] != [str(v) for v in new]:
                    cur.changes.append(FieldChange(name, old, new))
        return out

    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """Apply a batch in one transaction; if it fails, each action alone, so only
        the bad rows fail. Raises TargetError when the database itself is unusable
        (connection lost, locked, disk full: OperationalError), ConnectionFailed when it
        cannot be opened."""
        if self.engine is None:
            self.open()
        assert self.engine is not None
        if not actions:
            return []
        try:
            with self.engine.connect() as conn:
                self._ensure_table(conn, actions)
                try:
                    with conn.begin():
                        return self._apply_all(conn, actions)
                except StatementError as err:
                    if _fatal(err):
                        raise
                    log.info(
                        "%s: batch of %d failed (%s); retrying one by one",
                        self.describe(),
                        len(actions),
                        error_line(err, self._secret),
                    )
                return [self._apply_one(conn, a) for a in actions]
        except StatementError as err:
            raise TargetError(
                f"{self.describe()}: database unusable: {error_line(err, self._secret)}"
            ) from None

    def _ensure_table(self, conn: Connection, actions: Sequence[Action]) -> None:
        """Create the table from the first record if it was not known at open()."""
        if self.table is not None:
            return
        first = next((a for a in actions if a.kind is not ActionKind.DELETE), None)
        if first is None:
            return
        self.table = self._reflect(conn) or self._create(conn, first.fields)
        conn.commit()

    def _apply_one(self, conn: Connection, action: Action) -> ActionResult:
        try:
            with conn.begin():
                return self._apply_all(conn, [action])[0]
        except StatementError as err:
            if _fatal(err):
                raise
            return ActionResult(action, False, error=error_line(err, self._secret))
        except TargetError as err:
            return ActionResult(action, False, error=str(err))

    def _apply_all(self, conn: Connection, actions: Sequence[Action]) -> list[ActionResult]:
        """All actions in the current transaction; raises on the first database error."""
        o = self.options
        results: list[ActionResult | None] = [None] * len(actions)
        deletes = [i for i, a in enumerate(actions) if a.kind is ActionKind.DELETE]
        writes = [i for i, a in enumerate(actions) if a.kind is not ActionKind.DELETE]
        now = _dt.datetime.now(_dt.UTC)
        if deletes and self.table is not None:
            keys = list(dict.fromkeys(actions[i].key for i in deletes))
            key_col = self.table.c[o.key_column]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                if o.on_delete == "soft":
                    deleted = self.table.c[o.deleted_column]
                    conn.execute(
                        update(self.table)
                        .where(key_col.in_(chunk), deleted.is_(None))
                        .values({o.deleted_column: now})
                    )
                else:
                    conn.execute(delete(self.table).where(key_col.in_(chunk)))
        detail = "soft-deleted" if o.on_delete == "soft" else None
        for i in deletes:
            results[i] = ActionResult(actions[i], True, detail=detail)
        # Group writes by their column set: one executemany per group (normally one).
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        for i in writes:
            row = self._row(actions[i])
            groups.setdefault(tuple(row), {})[actions[i].key] = row  # last one wins
        for cols, rows in groups.items():
            self._execute_upsert(conn, self._upsert(cols), list(rows.values()))
        for i in writes:
            results[i] = ActionResult(actions[i], True, target_id=actions[i].key)
        return [r for r in results if r is not None]

    def _layout(self, names: tuple[str, ...]) -> list[tuple[str, str, str]]:
        """(field, column, kind) for records with these field names; cached, as every
        record of a mapping has the same fields. TargetError names missing columns."""
        layout = self._layouts.get(names)
        if layout is None:
            o = self.options
            layout, missing = [], []
            for fld in names:
                col = o.column_for(fld)
                if col == o.key_column:
                    continue
                if col not in self._kinds:
                    missing.append(col)
                    continue
                layout.append((fld, col, self._kinds[col]))
            if missing:
                raise self._missing_columns(sorted(missing))
            self._layouts[names] = layout
        return layout

    def _row(self, action: Action) -> dict[str, Any]:
        o = self.options
        fields = action.fields
        row: dict[str, Any] = {o.key_column: action.key}
        for fld, col, kind in self._layout(tuple(fields)):
            value = fields[fld]
            if value is None or kind == "other" or (kind == "text" and type(value) is str):
                row[col] = value
            else:
                row[col] = _to_column(value, kind)
        if o.on_delete == "soft":
            row[o.deleted_column] = None
        return row

    def _upsert(self, cols: tuple[str, ...]):
        cached = self._upserts.get(cols)
        if cached is None:
            cached = self._upserts[cols] = self._make_upsert(cols)
        return cached

    def _execute_upsert(self, conn: Connection, stmt: Any, rows: list[dict[str, Any]]) -> None:
        """One executemany of an upsert. On SQLite, when no column needs SQLAlchemy's
        value processing (text and integer columns), the rows go to the driver as tuples:
        SQLAlchemy's per-row parameter handling cost about a third of the write."""
        if stmt not in self._raw_upserts:
            self._raw_upserts[stmt] = self._compile_raw(stmt, rows[0])
        raw = self._raw_upserts[stmt]
        if raw is None:
            conn.execute(stmt, rows)
            return
        sql, names = raw
        conn.exec_driver_sql(sql, [tuple([row[n] for n in names]) for row in rows])

    def _compile_raw(self, stmt: Any, row: dict[str, Any]) -> tuple[str, tuple[str, ...]] | None:
        """(driver SQL, row keys in parameter order), or None when the plain path must be
        used (not SQLite, or some column's values need processing)."""
        assert self.engine is not None
        if self.engine.dialect.name != "sqlite":
            return None
        compiled = stmt.compile(dialect=self.engine.dialect)
        names = tuple(compiled.positiontup or ())
        if not compiled.positional or compiled._bind_processors or set(names) != set(row):
            return None
        return str(compiled), names

    def _make_upsert(self, cols: tuple[str, ...]):
        assert self.table is not None and self.engine is not None
        name = self.engine.dialect.name
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        elif name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            raise TargetError(
                f"{self.describe()}: upserts are implemented for SQLite and PostgreSQL, not {name}"
            )
        stmt = dialect_insert(self.table)
        key = self.options.key_column
        updates = {c: stmt.excluded[c] for c in cols if c != key}
        if not updates:
            return stmt.on_conflict_do_nothing(index_elements=[self.table.c[key]])
        return stmt.on_conflict_do_update(index_elements=[self.table.c[key]], set_=updates)

    def read_back(self) -> ReadBack:
        """The table's rows as digests of the columns syncd writes (see readback.py)."""
        from syncd.connectors.sql.readback import SqlReadBack

        return SqlReadBack(self)

    # ------------------------------------------------------------------ doctor
    def check(self) -> list[CheckResult]:
        """Reachable and authenticated; table present with a unique key column."""
        try:
            engine = make_engine(self.connection)
        except Exception as err:
            return [CheckResult("database reachable", False, str(err))]
        try:
            results = [doctor_connect(engine, self.connection)]
            if not results[0].ok:
                return results
            try:
                with engine.connect() as conn:
                    table = self._reflect(conn)
            except SQLAlchemyError as err:
                results.append(CheckResult("table", False, error_line(err, self._secret)))
                return results
            if table is None:
                ok = self.options.create_table
                results.append(
                    CheckResult(
                        "table",
                        ok,
                        f"{self.options.table} does not exist"
                        + (" (created on the first run)" if ok else ""),
                        "" if ok else "create it or set create_table: true",
                    )
                )
                return results
            try:
                self._check_table(table, ())
            except TargetError as err:
                results.append(CheckResult("table", False, str(err)))
            else:
                results.append(
                    CheckResult("table", True, f"{self.options.table}: {len(table.c)} columns")
                )
            return results
        finally:
            engine.dispose()

    def close(self) -> None:
        self._dispose()
