"""Reading an SQL target's rows back, for drift repair on a complete run.

A row counts as drifted when someone deleted it, soft-deleted it, or changed a column
syncd writes. The comparison goes through the same value conversion the target applies
when it writes (:meth:`SqlTarget._row`), then both sides are reduced to one canonical
text per value, so that what the database hands back (an aware or naive datetime, a
Decimal for a numeric column, a memoryview for bytes) equals what syncd wrote.

Memory: one 16-byte digest per row, read once per run in pages.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from syncd.contracts import Action, ActionKind, FieldValue, ReadBack
from syncd.errors import TargetError

if TYPE_CHECKING:
    from syncd.connectors.sql.target import SqlTarget


def canonical(value: Any) -> str:
    """One text per value that survives the round trip through the database."""
    if value is None:
        return "\x00"
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
        if number == number.to_integral_value():
            return f"n{int(number)}"
        return f"n{number.normalize()}"
    if isinstance(value, _dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(_dt.UTC).replace(tzinfo=None)
        return "t" + value.isoformat()
    if isinstance(value, _dt.date):
        return "d" + value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "x" + bytes(value).hex()
    if isinstance(value, list | dict | tuple):
        return "j" + json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return "s" + str(value)


def _digest(values: list[Any]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for v in values:
        h.update(canonical(v).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")
    return h.digest()


class SqlReadBack(ReadBack):
    """The rows of one SQL target table, as digests of the columns syncd writes."""

    PAGE = 2000

    def __init__(self, target: SqlTarget):
        self.target = target
        self._cols: tuple[str, ...] | None = None
        self._rows: dict[str, bytes] = {}

    def _wanted(self, state: Any, fields: dict[str, FieldValue]) -> tuple[tuple[str, ...], list]:
        row = self.target._row(Action(ActionKind.UPDATE, state.source_id, state.key, fields))
        key_col = self.target.options.key_column
        cols = tuple(sorted(c for c in row if c != key_col))
        return cols, [row[c] for c in cols]

    def _load(self, cols: tuple[str, ...]) -> None:
        """Read every row's digest over ``cols`` (every record of a mapping writes the
        same columns, so this happens once per run)."""
        t = self.target
        self._cols, self._rows = cols, {}
        if t.table is None:
            return
        key = t.table.c[t.options.key_column]
        stmt = select(key, *(t.table.c[c] for c in cols))
        assert t.engine is not None
        with t.engine.connect() as conn:
            result = conn.execution_options(yield_per=self.PAGE).execute(stmt)
            for row in result:
                self._rows[str(row[0])] = _digest(list(row[1:]))

    def differs(self, state: Any, fields: dict[str, FieldValue]) -> str | None:
        try:
            cols, values = self._wanted(state, fields)
        except TargetError:
            return None  # the write itself reports it (a missing column...)
        if cols != self._cols:
            self._load(cols)
        have = self._rows.get(state.key)
        if have is None:
            return "missing"
        return "edited" if have != _digest(values) else None
