"""SQL source: rows of a table, a view or a read-only query, as Change objects.

* One row is one object; ``id_column`` gives its source id. Attribute names are the
  column names lower-cased; each value is a one-element list of the native value (str,
  bytes, int, float, Decimal, date/datetime, bool); NULL columns are left out. An array
  column (PostgreSQL) gives several values.
* Without ``updated_column`` every read is complete (``complete=True``): objects no longer
  listed are gone.
* With ``updated_column`` the first read (and ``full=True``) is complete and records the
  highest value seen as the cursor; later reads fetch ``updated_column >= cursor`` (``>=``:
  rows written later within the same clock tick are not missed) and leave out rows
  already delivered at exactly that value unchanged (the cursor remembers a short hash of
  each). Incremental reads are not complete, so deletions are found by full reads only,
  and rows whose ``updated_column`` is NULL are seen by full reads only.
* Everything runs in a read-only transaction (PostgreSQL ``READ ONLY``, SQLite
  ``query_only``); rows are streamed (server-side cursor on PostgreSQL).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import logging
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from hashlib import blake2b
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    bindparam,
    event,
    select,
    text,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError, NoSuchTableError, SQLAlchemyError
from sqlalchemy.types import NullType

from syncd.connectors.sql.connection import SqlConnection, doctor_connect, error_line, make_engine
from syncd.contracts import Change, CheckResult, Op, Read, ReadOutcome, Source
from syncd.errors import ConnectionFailed, SourceError
from syncd.state.fingerprint import encode

log = logging.getLogger(__name__)

MAX_SEEN = 5000
"""Most row hashes kept in the cursor for rows at the watermark; beyond that those rows
are simply delivered again next time (harmless: unchanged records plan nothing)."""

WATERMARK = "_syncd_watermark"
"""Label of the raw updated-column value selected next to the row (table/view reads)."""

_QUERY_START = re.compile(r"^\s*(--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|with|values)\b", re.I | re.S)


class SqlSourceOptions(BaseModel):
    """A job's ``source:`` block for a SQL connection: exactly one of table, view, query."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    table: str | None = Field(None, description="table to read")
    view: str | None = Field(None, description="view to read")
    query: str | None = Field(
        None, description="a SELECT statement to read (run in a read-only transaction)"
    )
    db_schema: str | None = Field(
        None, alias="schema", description="database schema of the table or view"
    )
    id_column: str = Field(description="column with the stable id of each row (source id)")
    updated_column: str | None = Field(
        None,
        description="column with a last-modified timestamp or counter: later runs read only "
        "rows whose value is >= the highest value seen before",
    )
    columns: list[str] | None = Field(
        None, description="columns to read (default: all); id and updated columns are added"
    )
    batch_size: int = Field(1000, ge=1, le=100_000, description="rows fetched at a time")

    @model_validator(mode="after")
    def _exactly_one(self) -> SqlSourceOptions:
        given = [k for k in ("table", "view", "query") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of table, view, query")
        return self

    @field_validator("query")
    @classmethod
    def _select_only(cls, value: str | None) -> str | None:
        if value is None:
            return value
        body = value.strip().rstrip(";").strip()
        if not _QUERY_START.match(body):
            raise ValueError("the query must be a SELECT (or WITH ... SELECT) statement")
        if ";" in _strip_literals(body):
            raise ValueError("the query must be one statement (no ';' inside)")
        return body

    @property
    def relation(self) -> str | None:
        return self.table or self.view


def _strip_literals(sql: str) -> str:
    """The SQL without string literals and comments (to look for ';' outside them)."""
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", "", sql, flags=re.S)


# ----------------------------------------------------------------- cursor values
def _tag(value: Any) -> dict[str, Any]:
    if isinstance(value, _dt.datetime):
        return {"t": "datetime", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"t": "date", "v": value.isoformat()}
    if isinstance(value, bool):
        return {"t": "bool", "v": value}
    if isinstance(value, int):
        return {"t": "int", "v": value}
    if isinstance(value, float):
        return {"t": "float", "v": value}
    if isinstance(value, Decimal):
        return {"t": "decimal", "v": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"t": "bytes", "v": base64.b64encode(bytes(value)).decode()}
    return {"t": "str", "v": str(value)}


def _untag(tagged: dict[str, Any]) -> Any:
    t, v = tagged["t"], tagged["v"]
    if t == "datetime":
        return _dt.datetime.fromisoformat(v)
    if t == "date":
        return _dt.date.fromisoformat(v)
    if t == "decimal":
        return Decimal(v)
    if t == "bytes":
        return base64.b64decode(v)
    return v


def encode_cursor(watermark: Any, seen: dict[str, str]) -> str:
    return json.dumps({"v": _tag(watermark), "seen": seen}, separators=(",", ":"))


def decode_cursor(cursor: str) -> tuple[Any, dict[str, str]]:
    """(watermark, {source id: row hash}); raises ValueError for a foreign cursor."""
    data = json.loads(cursor)
    return _untag(data["v"]), dict(data.get("seen") or {})


def _row_hash(attributes: dict[str, list[Any]]) -> str:
    h = blake2b(digest_size=8)
    for name in sorted(attributes):
        h.update(name.encode())
        h.update(encode(attributes[name]))
    return h.hexdigest()


def _value(value: Any) -> list[Any]:
    """A column value as the attribute's value list (see module docstring)."""
    if isinstance(value, memoryview | bytearray):
        return [bytes(value)]
    if isinstance(value, list | tuple):
        return [v for item in value for v in _value(item)]
    if isinstance(value, uuid.UUID):
        return [str(value)]
    if isinstance(value, dict):
        return [json.dumps(value, ensure_ascii=False, sort_keys=True)]
    return [value]


def _source_id(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


class SqlSource(Source):
    """Rows of a table, view or query; see the module docstring."""

    incremental = True

    connection: SqlConnection
    options: SqlSourceOptions

    def __init__(self, connection: SqlConnection, options: SqlSourceOptions, *, job: str):
        super().__init__(connection, options, job=job)
        self.incremental = options.updated_column is not None  # type: ignore[misc]
        self.engine: Engine | None = None
        self._secret: str | None = None

    def scope(self) -> dict[str, Any]:
        """What is read (table, view or query, schema, columns, id column)."""
        o = self.options
        return {
            "table": o.table,
            "view": o.view,
            "query": o.query,
            "db_schema": o.db_schema,
            "id_column": o.id_column,
            "columns": o.columns,
        }

    def describe(self) -> str:
        o = self.options
        what = f"{'table' if o.table else 'view'} {o.relation}" if o.relation else "query"
        return f"sql {what} at {self.connection.safe_url()}"

    def _engine(self) -> Engine:
        if self.engine is None:
            if self.connection.password is not None:
                self._secret = self.connection.password.reveal()
            engine = make_engine(self.connection)
            if engine.dialect.name == "sqlite":

                @event.listens_for(engine, "connect")
                def _read_only(dbapi_conn, _record):
                    dbapi_conn.execute("PRAGMA query_only = ON")

            self.engine = engine
        return self.engine

    def _begin_read_only(self, conn: Connection) -> None:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    def _statement(self, conn: Connection, watermark: Any | None):
        """The SELECT to run (and the id/updated column names as they come back)."""
        o = self.options
        if o.relation:
            try:
                table = Table(o.relation, MetaData(), schema=o.db_schema, autoload_with=conn)
            except NoSuchTableError:
                raise SourceError(f"{self.describe()}: no such table or view") from None
            by_lower = {c.name.lower(): c for c in table.columns}

            def col(name: str):
                found = by_lower.get(name.lower())
                if found is None:
                    raise SourceError(f"{self.describe()}: column {name!r} does not exist")
                return found

            wanted = [col(o.id_column)]
            if o.updated_column:
                wanted.append(col(o.updated_column))
            if o.columns:
                wanted += [col(c) for c in o.columns]
            else:
                wanted = list(table.columns)
            if o.updated_column:
                # The watermark is compared as the driver stores it, not as SQLAlchemy
                # converts it: SQLite keeps timestamps as text whose format may differ from
                # the one SQLAlchemy would bind ("08:02:00" < "08:02:00.000000").
                raw = type_coerce(col(o.updated_column), NullType())
                wanted.append(raw.label(WATERMARK))
            stmt = select(*dict.fromkeys(wanted))
            if watermark is not None:
                stmt = stmt.where(raw >= bindparam("watermark", watermark, type_=NullType()))
            return stmt, {}
        q = conn.dialect.identifier_preparer.quote
        cols = "*"
        if o.columns:
            names = [o.id_column, *([o.updated_column] if o.updated_column else []), *o.columns]
            cols = ", ".join(q(n) for n in dict.fromkeys(names))
        sql = f"SELECT {cols} FROM ({o.query}) AS syncd_q"
        params: dict[str, Any] = {}
        if watermark is not None:
            sql += f" WHERE {q(o.updated_column)} >= :watermark"
            params["watermark"] = watermark
        return text(sql), params

    def read(self, cursor: str | None, *, full: bool = False) -> Read:
        """Start a read (see the module docstring). Raises ConnectionFailed when the
        database cannot be reached and SourceError when the table, a column or the query
        is wrong; a failure while rows stream raises SourceError from the iteration."""
        o = self.options
        watermark: Any | None = None
        seen: dict[str, str] = {}
        notes: list[str] = []
        if o.updated_column and cursor and not full:
            try:
                watermark, seen = decode_cursor(cursor)
            except (ValueError, KeyError, TypeError):
                notes.append("stored cursor is not a SQL watermark: read everything")
        engine = self._engine()
        try:
            conn = engine.connect()
        except DBAPIError as err:
            raise ConnectionFailed(f"{self.describe()}: {error_line(err, self._secret)}") from None
        try:
            self._begin_read_only(conn)
            stmt, params = self._statement(conn, watermark)
            result = conn.execution_options(yield_per=o.batch_size).execute(stmt, params)
        except SourceError:
            conn.close()
            raise
        except SQLAlchemyError as err:
            conn.close()
            raise SourceError(f"{self.describe()}: {error_line(err, self._secret)}") from None
        read = Read(iter(()))
        read.changes = self._stream(conn, result, read, watermark, seen, notes)
        return read

    def _stream(
        self,
        conn: Connection,
        result: Any,
        read: Read,
        watermark: Any | None,
        seen: dict[str, str],
        notes: list[str],
    ) -> Iterator[Change]:
        o = self.options
        id_key = o.id_column.lower()
        upd_key = o.updated_column.lower() if o.updated_column else None
        high = watermark
        high_seen: dict[str, str] = {}
        skipped_no_id = skipped_same = 0
        try:
            for row in result:
                attributes: dict[str, list[Any]] = {}
                mapping = row._mapping
                for name, value in mapping.items():
                    if value is not None and name != WATERMARK:
                        attributes[str(name).lower()] = _value(value)
                sid_values = attributes.get(id_key)
                if not sid_values:
                    skipped_no_id += 1
                    continue
                sid = _source_id(sid_values[0])
                if upd_key is not None:
                    if WATERMARK in mapping:
                        updated = mapping[WATERMARK]
                    else:
                        updated = next(
                            (v for k, v in mapping.items() if str(k).lower() == upd_key), None
                        )
                    if updated is not None:
                        digest = _row_hash(attributes)
                        if (
                            watermark is not None
                            and updated == watermark
                            and seen.get(sid) == digest
                        ):
                            skipped_same += 1
                            continue
                        if high is None or updated > high:
                            high, high_seen = updated, {}
                        if updated == high and len(high_seen) <= MAX_SEEN:
                            high_seen[sid] = digest
                yield Change(Op.UPSERT, sid, None, attributes)
        except DBAPIError as err:
            raise SourceError(
                f"{self.describe()}: read failed: {error_line(err, self._secret)}"
            ) from None
        finally:
            conn.close()
        if skipped_no_id:
            notes.append(f"{skipped_no_id} row(s) without a value in {o.id_column} left out")
        if skipped_same:
            log.debug(
                "%s: %d unchanged row(s) at the watermark left out", self.describe(), skipped_same
            )
        cursor = None
        if upd_key is not None and high is not None:
            if high == watermark:
                high_seen = {**seen, **high_seen}
            cursor = encode_cursor(high, high_seen if len(high_seen) <= MAX_SEEN else {})
        complete = watermark is None
        read.outcome = ReadOutcome(
            cursor=cursor,
            complete=complete,
            method="sql" if complete else "sql-incremental",
            notes=notes,
        )

    def check(self) -> list[CheckResult]:
        """Reachable and authenticated; the table/view/query answers with the id column."""
        try:
            engine = self._engine()
        except Exception as err:
            return [CheckResult("database reachable", False, str(err))]
        results = [doctor_connect(engine, self.connection)]
        if not results[0].ok:
            return results
        try:
            with engine.connect() as conn:
                self._begin_read_only(conn)
                stmt, params = self._statement(conn, None)
                if hasattr(stmt, "limit"):
                    stmt = stmt.limit(1)
                row = conn.execute(stmt, params).first()
                names = [str(k).lower() for k in row._mapping] if row is not None else []
        except (SourceError, SQLAlchemyError) as err:
            detail = str(err) if isinstance(err, SourceError) else error_line(err, self._secret)
            results.append(CheckResult("rows readable", False, detail))
            return results
        if row is not None and self.options.id_column.lower() not in names:
            results.append(
                CheckResult(
                    "rows readable", False, f"no column {self.options.id_column!r} in the rows"
                )
            )
        else:
            results.append(CheckResult("rows readable", True, self.describe()))
        return results

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        self.engine = None
