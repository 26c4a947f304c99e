"""The Jinja2 environment mapping expressions run in.

It is Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (no access to
``_``-prefixed or internal attributes, no ``str.format`` attribute tricks, no mutation of
lists and dicts) with:

* the directory filters of :mod:`syncd.mapping.filters` (some replace Jinja builtins
  whose behaviour is wrong for multi-valued attributes, e.g. ``first`` of a string);
* no loader, so ``include``/``import``/``extends`` cannot read files;
* the size and time bounds of :mod:`syncd.mapping.limits`, enforced where values are
  built rather than by looking for known patterns: every operator that can make a big
  value (``*``, ``**``, ``%``, ``+``, ``~``), every str/bytes method that can (``format``,
  ``replace``, ``join``, padding, ``expandtabs``, ``translate``), the ``format``,
  ``replace``, ``join`` and ``sum`` filters compute their result's size first; every
  other call and filter has its result checked; every loop iteration and call checks
  the render's deadline. No constant folding at load time, so nothing of an expression
  runs before a render;
* without the text-layout builtins (``center``, ``indent``, ``wordwrap``, ``urlize``)
  and globals (``lipsum``, ``cycler``, ``joiner``) directory data never needs;
* ``finalize`` for text templates: None renders as "", a one-value list as that value;
  a list of several values or a binary value in text is an error instead of ``['a',
  'b']`` or ``b'...'`` silently landing in a target.
"""

from __future__ import annotations

import functools
import operator
import re
import types
from collections.abc import Callable
from typing import Any

from jinja2 import nodes, pass_environment
from jinja2.compiler import CodeGenerator
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError

from syncd.mapping import limits
from syncd.mapping.filters import FILTERS, TESTS
from syncd.mapping.limits import MAX_SIZE, bounded_join, check_printf, check_size, tick
from syncd.mapping.types import truthy

__all__ = ["MAX_SIZE", "MappingEnvironment", "SecurityError"]

_MAX_POW_BITS = 100_000
_LOOP_FILTER = "syncd:loop"  # not an identifier: a mapping cannot name it

_REMOVED_FILTERS = ("center", "indent", "wordwrap", "urlize", "xmlattr")
_REMOVED_GLOBALS = ("lipsum", "cycler", "joiner")
_SEQUENCES = (str, bytes, list, tuple)


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


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``a ~ b`` built by a size-checking join."""

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class MappingEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox used for every mapping expression (one instance per mapping)."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])
    code_generator_class = _CodeGenerator

    def __init__(self) -> None:
        super().__init__(
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=False,
            # Compiled expressions are cached per mapping by us; Jinja's own cache
            # is for templates loaded by name, which we never do.
            cache_size=0,
            # Constant folding would run filters at load time, outside any bound.
            optimized=False,
        )
        for name in _REMOVED_FILTERS:
            self.filters.pop(name, None)
        for name in _REMOVED_GLOBALS:
            self.globals.pop(name, None)
        self.filters.update(FILTERS)
        self.filters["format"] = _format_filter
        self.filters["replace"] = _replace_filter
        self.filters["sum"] = _sum_filter
        self.filters = {
            name: fn if name in _BOUNDED_FILTERS else _checked(name, fn)
            for name, fn in self.filters.items()
        }
        self.filters[_LOOP_FILTER] = limits.bounded_iter
        # today(): the local date as ISO text, for HR start/end dates (called per record,
        # so a long-running daemon sees the date change).
        self.globals["today"] = _today
        self.tests.update(TESTS)
        self.tests["truthy"] = truthy

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then make every ``{% for %}`` loop over a deadline-checking iterator."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno
            )
        return tree

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Raise at once instead of returning an undefined value: a lenient Undefined
        would render as "" and hide an escape attempt."""
        raise SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call in an expression: deadline checked, result size checked."""
        tick()
        return limits.checked_result(
            super().call(__context, __obj, *args, **kwargs), "the call's result"
        )

    def concat_checked(self, parts: tuple[Any, ...]) -> str:
        """``a ~ b ~ c``: the text of each part, joined when the total fits."""
        return bounded_join([str(p) for p in parts], "", "concatenation")

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        """Refuse repetition, powers, %-formatting and ``+`` that would build huge values."""
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and isinstance(count, int):
                    check_size(len(seq) * count, "repetition")
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
                check_printf(left, right)
            return operator.mod(left, right)
        if operator_ == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                check_size(len(left) + len(right), "concatenation")
            return operator.add(left, right)
        return super().call_binop(context, operator_, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        """Methods of str and bytes that can build values much bigger than their inputs,
        wherever an expression reaches them (``x.format``, ``x['replace']``): ``format``
        and ``format_map`` through the sandbox's formatter (no ``{0.__class__}``) with
        each field's width and the total checked; the others check their result's size
        first."""
        if not isinstance(value, types.BuiltinMethodType | types.MethodType):
            return None
        owner = getattr(value, "__self__", None)
        if not isinstance(owner, str | bytes):
            return None
        name = value.__name__
        if name in ("format", "format_map") and isinstance(owner, str):
            return _bounded_format(self, owner, name == "format_map")
        guard = _METHOD_GUARDS.get(name)
        return functools.partial(guard, value) if guard is not None else None


# ---------------------------------------------------------------- str.format


class _BoundedFormatter(SandboxedFormatter):
    """The sandbox's formatter, refusing a field width/precision beyond the size limit
    (also one given by an argument, ``{:{}}``) and a total beyond it."""

    _total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in re.findall(r"\d+", format_spec):
            check_size(int(number), "a format width or precision")
        out = super().format_field(value, format_spec)
        self._total += len(out)
        check_size(self._total, "the formatted text")
        return out


def _bounded_format(env: MappingEnvironment, fmt: str, is_map: bool) -> Callable[..., str]:
    def wrapper(*args: Any, **kwargs: Any) -> str:
        if is_map:
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            args, kwargs = (), args[0]
        formatter = _BoundedFormatter(env)
        formatter._total = len(fmt)
        return formatter.vformat(fmt, args, kwargs)

    return wrapper


# ---------------------------------------------------------------- str/bytes methods


def _replace(method: Any, old: Any, new: Any, count: int = -1) -> Any:
    text = method.__self__
    hits = text.count(old) + (1 if not old else 0) if isinstance(old, type(text)) else 0
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    grow = len(new) - len(old) if isinstance(new, str | bytes) and hits else 0
    check_size(len(text) + hits * max(grow, 0), "replace")
    return method(old, new, count)


def _join(method: Any, iterable: Any) -> Any:
    return bounded_join(iterable, method.__self__)


def _pad(method: Any, width: Any, *args: Any) -> Any:
    if isinstance(width, int):
        check_size(width, method.__name__)
    return method(width, *args)


def _expandtabs(method: Any, tabsize: Any = 8) -> Any:
    text = method.__self__
    if isinstance(tabsize, int):
        tab = "\t" if isinstance(text, str) else b"\t"
        check_size(len(text) + text.count(tab) * max(tabsize, 0), "expandtabs")
    return method(tabsize)


def _translate(method: Any, table: Any, *args: Any) -> Any:
    text = method.__self__
    if hasattr(table, "values"):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        check_size(len(text) * longest, "translate")
    return method(table, *args)


_METHOD_GUARDS: dict[str, Callable[..., Any]] = {
    "replace": _replace,
    "join": _join,
    "ljust": _pad,
    "rjust": _pad,
    "center": _pad,
    "zfill": _pad,
    "expandtabs": _expandtabs,
    "translate": _translate,
}


# ---------------------------------------------------------------- filters


_BOUNDED_FILTERS = frozenset(
    # Never bigger than their input (or bounded themselves): no check needed, and these
    # are the ones every mapping uses, once per entry.
    [
        "first",
        "values",
        "join",
        "default",
        "d",
        "int",
        "float",
        "lower",
        "upper",
        "strip",
        "trim",
        "dn_value",
        "dn_values",
        "rdn",
        "rdn_value",
        "parent_dn",
        "dn_parts",
        "dn_normalize",
        "guid",
        "sid",
        "filetime",
        "generalized_time",
        "uac",
        "disabled",
        "phone",
        "email",
        "samaccountname",
        "lookup",
        "format",
        "replace",
        "sum",
        "length",
        "count",
    ]
)


def _checked(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its result's size checked (chained filters that grow their input,
    ``hex | hex | hex``, ``urlencode`` of ``%``..., stop at the size limit)."""
    what = f"filter {name}"

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        return limits.checked_result(fn(*args, **kwargs), what)

    return checked


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format`` filter (printf style) with the size bound."""
    if args and kwargs:
        raise TypeError("format: positional and keyword arguments cannot be mixed")
    text = str(value)
    values = kwargs or args
    check_printf(text, values)
    return text % values


def _replace_filter(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    """Jinja's ``replace`` filter (on text) with the result's size computed first."""
    text = str(value)
    return _replace(text.replace, str(old), str(new), -1 if count is None else count)


@pass_environment
def _sum_filter(env: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's ``sum`` filter; lists (and tuples) are concatenated in one pass, with the
    size checked first (the builtin ``sum`` copies the growing list for every item)."""
    items = list(iterable)
    if attribute is not None:
        items = list(map(make_attrgetter(env, attribute), items))
    if isinstance(start, list | tuple) and all(isinstance(i, type(start)) for i in items):
        check_size(len(start) + sum(len(i) for i in items), "sum")
        out = list(start)
        for item in items:
            out.extend(item)
        return out if isinstance(start, list) else tuple(out)
    if isinstance(start, _SEQUENCES):
        check_size(len(start) + sum(len(i) for i in items if isinstance(i, _SEQUENCES)), "sum")
    return sum(items, start)
