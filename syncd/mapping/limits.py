"""Size and time bounds of one mapping render (one entry).

Two rules, both checked *before* the work is done wherever a single step could be big:

* no value an expression builds (a string, bytes, a list...) may exceed
  :data:`MAX_SIZE` characters or items. Operations whose result can be much bigger
  than their inputs (repetition, padding, ``%``/``format`` widths, ``replace``,
  ``join``, concatenation, ``sum`` of lists) compute the size of their result first;
  every other call and filter has its result checked after it ran (those results are
  at most a small multiple of their inputs);
* one entry's render may take at most :data:`TIME_LIMIT` seconds (wall clock, time
  spent in the engine's ``lookup`` not counted). Every loop iteration and every call
  (macros, methods, recursive loops) checks the deadline, so loops and recursion stop
  at it; without them an expression does a bounded number of bounded steps.

A step that breaks a bound raises :class:`~jinja2.sandbox.SecurityError`; the mapping
turns it into a MappingError for that entry (quarantined, the run goes on).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from time import monotonic
from typing import Any

from jinja2.sandbox import SecurityError

__all__ = [
    "MAX_SIZE",
    "TIME_LIMIT",
    "check_printf",
    "check_size",
    "checked_result",
    "end_render",
    "lookup_time",
    "start_render",
    "tick",
]

MAX_SIZE = 1_000_000
"""Largest string/bytes/list (characters or items) an expression may build."""

TIME_LIMIT = 2.0
"""Seconds one entry's render may take (a plain mapping takes tens of microseconds)."""

_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)


class _State(threading.local):
    deadline: float | None = None


_state = _State()


def start_render() -> float | None:
    """Start the time budget of one render in this thread; returns what
    :func:`end_render` restores (a function pair rather than a context manager: this
    runs once per entry, and the pair costs a fraction of one)."""
    previous = _state.deadline
    _state.deadline = monotonic() + TIME_LIMIT
    return previous


def end_render(previous: float | None) -> None:
    _state.deadline = previous


def tick() -> None:
    """Raise SecurityError when the current render is past its deadline (no-op outside
    a render, e.g. when Jinja folds constants at load time)."""
    deadline = _state.deadline
    if deadline is not None and monotonic() > deadline:
        raise SecurityError(
            f"the mapping took longer than {TIME_LIMIT:g} s for this entry "
            "(a loop or a recursion too big)"
        )


class lookup_time:
    """Time spent inside (the engine's lookups: state store queries) is not counted
    against the render's budget: a group with many members must not time out because
    the state database is slow."""

    __slots__ = ("_start",)

    def __enter__(self) -> None:
        self._start = monotonic()

    def __exit__(self, *exc: object) -> None:
        if _state.deadline is not None:
            _state.deadline += monotonic() - self._start


def check_size(size: int, what: str) -> None:
    """Raise SecurityError when a result of ``size`` characters/items is too big."""
    if size > MAX_SIZE:
        raise SecurityError(
            f"{what} would exceed the size limit ({MAX_SIZE:,} characters or items)"
        )


def checked_result(value: Any, what: str) -> Any:
    """``value`` itself, after checking its size (for results of calls and filters)."""
    if isinstance(value, _SIZED) and len(value) > MAX_SIZE:
        check_size(len(value), what)
    return value


def bounded_iter(value: Iterable[Any]) -> Iterator[Any]:
    """What every ``{% for %}`` loops over: the same items, with the deadline checked."""
    for n, item in enumerate(value):
        if not n & 63:
            tick()
        yield item


def bounded_join(parts: Iterable[Any], sep: Any = "", what: str = "join") -> Any:
    """``sep.join(parts)`` with the result's size computed first."""
    items = parts if isinstance(parts, list | tuple) else list(parts)
    size = len(sep) * max(len(items) - 1, 0)
    for item in items:
        if isinstance(item, str | bytes | bytearray):
            size += len(item)
    check_size(size, what)
    return sep.join(items)


def bounded_text(chunks: Iterable[str]) -> str:
    """A template's output, refused as soon as it passes the size limit."""
    out = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_SIZE:
            check_size(size, "the text")
        out.append(chunk)
    return "".join(out)


# printf-style conversions: %(key)flags width .precision length conversion
_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0 +-]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?(?P<conv>.)",
    re.DOTALL,
)


def _printed_size(value: Any, conv: str, seen: dict[int, int]) -> int:
    """About how long one converted value is (an upper bound for the usual types)."""
    if isinstance(value, str):
        return len(value) if conv in "sc" else 2 + 6 * len(value)  # %r/%a escape
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 3  # digits (octal: the most)
    if isinstance(value, float):
        return 320  # %f of 1e308
    key = id(value)
    if key not in seen:
        seen[key] = len(repr(value))
    return seen[key]


def check_printf(fmt: str | bytes, args: Any) -> None:
    """Raise SecurityError when ``fmt % args`` would exceed the size limit: every
    width and precision (written or taken from the arguments with ``*``) and the sum of
    all converted values are checked before anything is formatted."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    positional = list(args) if isinstance(args, tuple) else [args]
    named = args if hasattr(args, "keys") else None
    pos = 0
    total = len(text)
    seen: dict[int, int] = {}

    def take() -> Any:
        nonlocal pos
        value = positional[pos] if pos < len(positional) else None
        pos += 1
        return value

    for m in _PRINTF.finditer(text):
        conv = m.group("conv")
        if conv == "%":
            continue
        sizes = []
        for spec in (m.group("width"), m.group("prec")):
            if spec == "*":
                value = take()
                sizes.append(abs(value) if isinstance(value, int) else 0)
            else:
                sizes.append(int(spec) if spec else 0)
        if max(sizes) > MAX_SIZE:
            check_size(max(sizes), "a format width or precision")
        if m.group("key") is not None and named is not None:
            try:
                value = named[m.group("key")]
            except (KeyError, TypeError):
                value = None
        else:
            value = take()
        total += sum(sizes) + _printed_size(value, conv, seen)
        if total > MAX_SIZE:
            check_size(total, "the formatted text")
