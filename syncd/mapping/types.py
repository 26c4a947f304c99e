"""Field values: what an expression may return, and the optional ``type:`` coercions.

A record field holds ``str | int | float | bool | bytes | None`` or a list of those
(see :mod:`syncd.contracts`). :func:`normalise` turns whatever an expression returned
into that shape (tuples and sets become lists, a ``datetime`` becomes ISO text, Jinja's
``Undefined`` becomes None) and refuses anything else. :func:`coerce` applies a field's
``type:``. Both raise ``ValueError``/``TypeError`` with a short reason.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from jinja2 import Undefined

from syncd.mapping import filters

__all__ = ["SCALAR_TYPES", "TYPES", "coerce", "is_empty", "normalise", "parse_type"]

SCALAR_TYPES = ("str", "int", "float", "bool", "bytes", "datetime")
TYPES = (*SCALAR_TYPES, "list", *(f"list[{t}]" for t in SCALAR_TYPES))

_SCALARS = (str, int, float, bool, bytes)
_TRUE = frozenset(["true", "yes", "on", "1"])
_FALSE = frozenset(["false", "no", "off", "0", ""])
_GENTIME_LIKE = re.compile(r"\d{10}")


def parse_type(name: str) -> tuple[bool, str | None]:
    """``'list[int]'`` -> ``(True, 'int')``, ``'list'`` -> ``(True, None)``,
    ``'str'`` -> ``(False, 'str')``. Raises ValueError for an unknown type."""
    if name not in TYPES:
        raise ValueError(f"unknown type {name!r} (one of: {', '.join(TYPES)})")
    if name == "list":
        return True, None
    if name.startswith("list["):
        return True, name[5:-1]
    return False, name


def is_empty(value: Any) -> bool:
    """None, "" and [] count as empty (for ``required`` and ``default``)."""
    return value is None or value == "" or (isinstance(value, list) and not value)


def _scalar(value: Any) -> Any:
    # Exact base types only: a str subclass (Markup) or an IntEnum would fingerprint
    # and compare differently from the plain value.
    if value is None:
        return None
    t = type(value)
    if t in (str, int, float, bool, bytes):
        return value
    if isinstance(value, Undefined):
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(
        f"the expression gave a {t.__name__}; a field holds text, numbers, booleans, "
        "bytes or a list of them"
    )


def normalise(value: Any) -> Any:
    """Bring an expression's result into field-value shape (see module doc)."""
    t = type(value)
    if t is str or value is None:
        return value
    if t is list or t is tuple:
        return [_scalar(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_scalar(v) for v in value), key=lambda v: (str(type(v)), v))
    if isinstance(value, list | tuple):
        return [_scalar(v) for v in value]
    return _scalar(value)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _to_str(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("binary value is not text (use | b64 or | hex)") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    text = _to_str(value).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a whole number") from None


def _to_float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    text = _to_str(value).strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a number") from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = _to_str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{text[:40]!r} is not a boolean (TRUE/FALSE, yes/no, 1/0)")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"cannot make bytes from {type(value).__name__}")


def _to_datetime(value: Any) -> str:
    text = _to_str(value).strip()
    if _GENTIME_LIKE.match(text) and "-" not in text[:8]:
        result = filters.generalized_time(text)
        assert result is not None
        return result
    try:
        return _iso(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a date/time") from None


_CONVERT = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "bytes": _to_bytes,
    "datetime": _to_datetime,
}


def coerce(value: Any, type_name: str) -> Any:
    """Convert a normalised value to ``type_name`` (one of :data:`TYPES`).

    A scalar type accepts a list of at most one value (an attribute is a list); None
    stays None. ``list[...]`` converts each element; ``list`` wraps a single value.
    """
    is_list, scalar = parse_type(type_name)
    if is_list:
        items = [] if value is None else value if isinstance(value, list) else [value]
        if scalar is None:
            return list(items)
        convert = _CONVERT[scalar]
        return [None if v is None else convert(v) for v in items]
    if isinstance(value, list):
        if len(value) > 1:
            raise ValueError(
                f"{len(value)} values where one {type_name} is expected (use | first or | join)"
            )
        value = value[0] if value else None
    if value is None:
        return None
    return _CONVERT[scalar](value)


def truthy(value: Any) -> bool:
    """Truth of a skip condition, with LDAP's booleans in mind: the strings "FALSE",
    "no", "off", "0" and "" are false; a list is true when any of its values is."""
    if value is None or isinstance(value, Undefined):
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    if isinstance(value, bytes):
        return bool(value)
    if isinstance(value, list | tuple | set | frozenset):
        return any(truthy(v) for v in value)
    return bool(value)
