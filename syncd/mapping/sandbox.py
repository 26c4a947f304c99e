"""The Jinja2 environment mapping expressions run in.

It is Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no access to
``_``-prefixed or internal attributes, no ``str.format`` attribute tricks, no mutation of
lists and dicts) with:

* the directory filters of :mod:`syncd.mapping.filters` (some replace Jinja builtins
  whose behaviour is wrong for multi-valued attributes, e.g. ``first`` of a string);
* no loader, so ``include``/``import``/``extends`` cannot read files;
* guards against the cheapest ways to exhaust memory or CPU from an expression:
  ``'x' * 10**10``, ``10 ** 10 ** 10``, ``'%999999999d' % 1`` and huge format widths;
  and without the text-layout builtins (``center``, ``indent``, ``wordwrap``,
  ``urlize``) and globals (``lipsum``, ``cycler``, ``joiner``) directory data never
  needs. This is not a complete defence against a mapping author who wants to burn
  CPU (Jinja has loops), but it stops one-liners from taking the daemon down.
* ``finalize`` for text templates: None renders as "", a one-value list as that value;
  a list of several values or a binary value in text is an error instead of ``['a',
  'b']`` or ``b'...'`` silently landing in a target.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from syncd.mapping.filters import FILTERS, TESTS
from syncd.mapping.types import truthy

__all__ = ["MAX_SIZE", "MappingEnvironment", "SecurityError"]

MAX_SIZE = 1_000_000
"""Largest string/list/bytes an expression may build by repetition or formatting."""
_MAX_POW_BITS = 100_000
_BIG_WIDTH = re.compile(r"\d{7,}")  # a 7-digit width or precision is >= MAX_SIZE

_REMOVED_FILTERS = ("center", "indent", "wordwrap", "urlize", "xmlattr")
_REMOVED_GLOBALS = ("lipsum", "cycler", "joiner")


def _today() -> str:
    import datetime

    return datetime.date.today().isoformat()


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        if not value:
            return ""
        if len(value) == 1:
            return _finalize(value[0])
        raise TypeError(f"a list of {len(value)} values in text: use | join(', ') or | first")
    if isinstance(value, bytes):
        raise TypeError("a binary value in text: use | b64 or | hex")
    return value


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox used for every mapping expression (one instance per mapping)."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self) -> None:
        super().__init__(
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=False,
            # Compiled expressions are cached per mapping by us; Jinja's own cache
            # is for templates loaded by name, which we never do.
            cache_size=0,
        )
        for name in _REMOVED_FILTERS:
            self.filters.pop(name, None)
        for name in _REMOVED_GLOBALS:
            self.globals.pop(name, None)
        self.filters.update(FILTERS)
        # today(): the local date as ISO text, for HR start/end dates (called per record,
        # so a long-running daemon sees the date change).
        self.globals["today"] = _today
        self.filters["format"] = _format_filter
        self.tests.update(TESTS)
        self.tests["truthy"] = truthy

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Raise at once instead of returning an undefined value: a lenient Undefined
        would render as "" and hide an escape attempt."""
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        """Refuse repetition, powers and %-formatting that would build huge values."""
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | bytes | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_SIZE
                ):
                    raise SecurityError("repetition would exceed the size limit")
            return operator.mul(left, right)
        if operator_ == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and max(left.bit_length(), 1) * right > _MAX_POW_BITS
            ):
                raise SecurityError("power would exceed the size limit")
            return operator.pow(left, right)
        if operator_ == "%":
            if isinstance(left, str | bytes):
                _check_format_widths(left if isinstance(left, str) else left.decode("latin-1"))
            return operator.mod(left, right)
        return super().call_binop(context, operator_, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        """``'...'.format(...)`` in an expression: the sandbox's safe formatter (no
        ``{0.__class__}``), plus a cap on field widths."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_widths(value.__self__)
        return wrapped


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format`` filter (printf style) with the width cap."""
    if args and kwargs:
        raise TypeError("format: positional and keyword arguments cannot be mixed")
    text = str(value)
    _check_format_widths(text)
    return text % (kwargs or args)


def _check_format_widths(fmt: str) -> None:
    if _BIG_WIDTH.search(fmt):
        raise SecurityError("format width would exceed the size limit")
