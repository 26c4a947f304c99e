"""Fingerprints of mapped records: what the planner compares with the state store.

``fingerprint(fields)`` returns ``(fingerprint, digests)``: one short digest per field
(16 hex characters of blake2b) and one overall fingerprint over all of them. A record
whose fingerprint equals the stored one is unchanged; otherwise comparing the per-field
digests says which fields changed (``Action.changed``), without storing the values.

Canonical encoding (stable across runs, processes and Python versions):

* every value is encoded with a one-letter type tag, so ``"1"``, ``1``, ``1.0`` and
  ``True`` differ, and ``b"abc"`` differs from ``"abc"``;
* ``None`` is its own tag (an absent field and a field set to None are the same record:
  both mean "empty");
* lists (and tuples) are encoded element by element with length prefixes: **order
  matters** and ``["a", "b"]`` differs from ``["b", "a"]`` and from ``["ab"]``. A
  mapping that wants order-insensitive comparison sorts its values;
* floats use ``repr`` (shortest round-trip form); dates and datetimes their ISO form;
  ``Decimal`` its ``str``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from decimal import Decimal
from hashlib import blake2b
from typing import Any

FIELD_DIGEST_SIZE = 8  # bytes: 16 hex characters per field
FINGERPRINT_SIZE = 16  # bytes: 32 hex characters overall


def encode(value: Any) -> bytes:
    """Canonical, type-tagged bytes for one field value.

    Raises TypeError for a value of a type records may not hold (dict, set, object...).
    """
    # Order of checks: bool before int (bool is an int subclass); str first as the
    # overwhelmingly common case.
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if value is None:
        return b"n"
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, int):
        return b"i" + str(value).encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return b"x" + bytes(value)
    if isinstance(value, float):
        return b"d" + repr(value).encode()
    if isinstance(value, list | tuple):
        parts = [b"l", str(len(value)).encode(), b":"]
        for item in value:
            enc = encode(item)
            parts += [str(len(enc)).encode(), b":", enc]
        return b"".join(parts)
    if isinstance(value, _dt.datetime):
        return b"T" + value.isoformat().encode()
    if isinstance(value, _dt.date):
        return b"D" + value.isoformat().encode()
    if isinstance(value, _dt.time):
        return b"H" + value.isoformat().encode()
    if isinstance(value, Decimal):
        return b"N" + str(value).encode()
    raise TypeError(f"a record field cannot hold a {type(value).__name__}")


def field_digest(value: Any) -> str:
    """16 hex characters identifying ``value`` (see :func:`encode`)."""
    return blake2b(encode(value), digest_size=FIELD_DIGEST_SIZE).hexdigest()


_ORDER: dict[tuple[str, ...], list[str]] = {}
"""Field names as a record holds them -> sorted: every record of a mapping has the same
few layouts, so the sort is done once per layout (bounded below)."""


_FIELD_HASH = blake2b(digest_size=FIELD_DIGEST_SIZE)
_OVERALL_HASH = blake2b(digest_size=FINGERPRINT_SIZE)
"""Empty hashers, never updated: ``.copy()`` + ``update`` is ~40% cheaper than building a
new blake2b with keyword arguments, and gives the same digest."""

_TEXT_DIGESTS: dict[str, str] = {}
"""Short text value -> its field digest. Directories repeat many values (locations,
departments, containers, group DNs); a look-up is ~20x cheaper than a blake2b. Bounded:
cleared when full, and only values up to _TEXT_CACHED_LEN characters are kept."""
_TEXT_CACHE_SIZE = 8192
_TEXT_CACHED_LEN = 256


def fingerprint(fields: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """``(fingerprint, {field: digest})`` of a record.

    Fields whose value is None are left out of both (None means absent), so adding an
    always-empty field to a mapping does not make every record look changed.
    Raises TypeError naming the field whose value has an unsupported type.
    """
    # Hot path of every planned record: text values are encoded inline (the same bytes
    # as encode()) or found in a small cache; the sorted field order is cached per layout.
    digests: dict[str, str] = {}
    new_hash = _FIELD_HASH.copy
    cache = _TEXT_DIGESTS
    for name, value in fields.items():
        if type(value) is str:
            digest = cache.get(value)
            if digest is None:
                h = new_hash()
                h.update(b"s" + value.encode("utf-8", "surrogatepass"))
                digest = h.hexdigest()
                if len(value) <= _TEXT_CACHED_LEN:
                    if len(cache) >= _TEXT_CACHE_SIZE:
                        cache.clear()
                    cache[value] = digest
            digests[name] = digest
            continue
        if value is None:
            continue
        try:
            enc = encode(value)
        except TypeError as err:
            raise TypeError(f"field {name!r}: {err}") from None
        h = new_hash()
        h.update(enc)
        digests[name] = h.hexdigest()
    names = tuple(digests)
    order = _ORDER.get(names)
    if order is None:
        order = sorted(names)
        if len(_ORDER) < 1000:
            _ORDER[names] = order
    h = _OVERALL_HASH.copy()
    overall = "\x00".join([f"{name}\x00{digests[name]}" for name in order])
    h.update(overall.encode("utf-8", "surrogatepass"))
    return h.hexdigest(), digests


def changed_fields(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[str, ...]:
    """Names of fields whose digest differs between two digest maps (added, removed or
    changed), in the order of ``new`` then the removed ones sorted."""
    changed = [name for name, digest in new.items() if old.get(name) != digest]
    changed += sorted(name for name in old if name not in new)
    return tuple(changed)
