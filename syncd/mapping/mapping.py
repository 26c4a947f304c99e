"""The compiled mapping: turns one :class:`~syncd.contracts.Change` into a record.

Speed matters (a first run maps the whole directory), so:

* plain attribute fields are dict look-ups and never touch Jinja;
* all single-expression values of a mapping (skip conditions, key, fields) are compiled
  into **one** sandboxed template of ``{% set %}`` statements, run once per record; the
  native values are read back from the template context, so no result is ever turned
  into text and re-parsed (no ``ast.literal_eval``: a ``cn`` of ``['a','b']`` stays
  that string). Skip conditions come first and guard the rest, so a skipped entry costs
  only its conditions;
* text templates (text around expressions) are rare and rendered one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from collections.abc import Mapping as AbstractMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SecurityError

from syncd.contracts import Change, FieldValue
from syncd.errors import ConfigError, MappingError, UserError
from syncd.mapping import types
from syncd.mapping.filters import LOOKUP_KEY
from syncd.mapping.limits import bounded_text, end_render, start_render
from syncd.mapping.loader import TOO_DEEP, MappingSpec, ValueSpec, find_all, parse_mapping
from syncd.mapping.sandbox import MappingEnvironment

__all__ = ["MappedRecord", "Mapping"]

log = logging.getLogger(__name__)

Lookup = Callable[..., str | None]
SPECIAL_NAMES = ("dn", "source_id", "attrs")
_EMPTY: list[Any] = []  # shared "absent attribute"; the sandbox cannot mutate it
_MAX_REASON = 300


@dataclass(slots=True)
class MappedRecord:
    """One target record: the stable key and the fields, in mapping order."""

    key: str
    fields: dict[str, FieldValue]


class _Attrs(AbstractMapping):
    """``attrs`` in expressions: the entry's attributes, read-only, case-insensitive,
    absent names giving an empty list."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, list[Any]]):
        self._data = data

    def __getitem__(self, name: str) -> list[Any]:
        if not isinstance(name, str):
            raise KeyError(name)
        return self._data.get(name.lower(), _EMPTY)

    def get(self, name: str, default: Any = None) -> Any:
        value = self._data.get(name.lower()) if isinstance(name, str) else None
        return default if value is None else value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


_MAPPING_METHODS = frozenset(["get", "keys", "items", "values"])


def _constant_attrs_read(n: nodes.Node) -> str | None:
    """The attribute name when ``n`` is ``attrs['x']``, ``attrs.x`` or
    ``attrs.get('x')`` with a constant name; None for anything else."""
    if isinstance(n, nodes.Call):
        fn = n.node
        if (
            isinstance(fn, nodes.Getattr)
            and fn.attr == "get"
            and isinstance(fn.node, nodes.Name)
            and fn.node.name == "attrs"
            and n.args
            and isinstance(n.args[0], nodes.Const)
            and isinstance(n.args[0].value, str)
        ):
            return n.args[0].value
        return None
    if not (isinstance(n.node, nodes.Name) and n.node.name == "attrs"):
        return None
    if isinstance(n, nodes.Getattr):
        return None if n.attr in _MAPPING_METHODS else n.attr
    if isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str):
        return n.arg.value
    return None


def _reason(what: str, err: BaseException) -> str:
    text = f"{what}: {type(err).__name__}: {err}"
    text = " ".join(text.split())  # one line, whatever the value held
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


class Mapping:
    """A loaded, compiled mapping file. Immutable and safe to share between threads."""

    def __init__(self, spec: MappingSpec, env: MappingEnvironment | None = None):
        self.source = spec.source
        self.description = spec.description
        self._env = env or MappingEnvironment()
        self._fields = spec.fields
        self.field_names: tuple[str, ...] = tuple(f.name for f in spec.fields)
        self.required: tuple[str, ...] = tuple(f.name for f in spec.fields if f.required)
        self.secret_fields: frozenset[str] = frozenset(
            [f.name for f in spec.fields if f.secret]
            # the source attributes a secret field copies are as secret (syncd explain)
            + [f.value.attr for f in spec.fields if f.secret and f.value.attr]
        )
        self._key = spec.key
        self._skip = spec.skip
        self._compile()

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: Path | str) -> Mapping:
        """Read, validate and compile a mapping file.

        Raises :class:`ConfigError` listing every problem as ``FILE:LINE: what``.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such mapping file") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
        except OSError as err:
            raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<mapping>") -> Mapping:
        """Like :meth:`load`, for mapping text; ``source`` names it in messages."""
        env = MappingEnvironment()
        spec, problems = parse_mapping(text, source, env)
        if problems or spec is None:
            raise ConfigError(problems or [f"{source}:1: unusable mapping"])
        try:
            mapping = cls(spec, env)
        except TemplateError as err:
            # Every expression compiled on its own in the loader; this would be a bug
            # in how they are combined, still reported as a config problem.
            raise ConfigError(f"{source}:1: cannot compile the mapping: {err}") from err
        except (RecursionError, SyntaxError):
            raise ConfigError(f"{source}:1: the mapping is {TOO_DEEP}") from None
        log.debug(
            "mapping %s: %d fields, %d expressions in one program, %d text templates",
            source,
            len(mapping.field_names),
            len(mapping._slots),
            len(mapping._templates),
        )
        return mapping

    @classmethod
    def validate_text(cls, text: str, source: str = "<mapping>") -> list[str]:
        """Every problem of mapping ``text``; an empty list when it is valid."""
        try:
            cls.from_text(text, source)
        except ConfigError as err:
            return err.problems
        return []

    # ------------------------------------------------------------ compiling

    def _compile(self) -> None:
        # Slots of the combined template, in evaluation order: (slot, description).
        self._slots: list[tuple[str, str]] = []
        self._templates: dict[str, Any] = {}
        self._post: list[tuple[str, str, str | None, Any, bool]] = []
        exprs: list[tuple[str, nodes.Expr]] = []
        names: set[str] = set()
        self._dynamic_attrs = False
        read_attrs: set[str] = set()

        def use(spec: ValueSpec, slot: str, what: str) -> str:
            """Register a value; return how the per-record code finds it."""
            if spec.kind in ("attr", "list"):
                assert spec.attr is not None
                read_attrs.add(spec.attr)
                return spec.kind
            if spec.kind == "dn":
                return "dn"
            ast = spec.expr if spec.kind == "expr" else spec.template
            assert ast is not None
            names.update(self._free_names(ast, read_attrs))
            if spec.kind == "expr":
                assert spec.expr is not None
                exprs.append((slot, spec.expr))
                self._slots.append((slot, what))
                return "slot"
            self._templates[slot] = self._env.from_string(spec.template)  # type: ignore[arg-type]
            return "template"

        skip_slots = [f"syncd_s{n}" for n in range(len(self._skip))]
        self._text_skips: list[tuple[str, str]] = []
        self._expr_skips: list[str] = []
        for n, spec in enumerate(self._skip):
            what = f"skip condition {n + 1}"
            if use(spec, skip_slots[n], what) == "template":
                self._text_skips.append((skip_slots[n], what))
            else:
                self._expr_skips.append(skip_slots[n])
        self._key_how = None
        self._key_attr = None
        if self._key is not None:
            self._key_how = use(self._key, "syncd_k", "key")
            self._key_attr = self._key.attr
        for n, f in enumerate(self._fields):
            slot = f"syncd_f{n}"
            how = use(f.value, slot, f"field '{f.name}'")
            ref = f.value.attr if how in ("attr", "list") else slot
            check = f.required or f.default is not None
            self._post.append((f.name, how, ref, f.type, check))

        self._defaults = {f.name: f.default for f in self._fields if f.default is not None}

        # Names an expression can use, resolved per record. Special names and Jinja
        # globals win over attributes of the same name.
        self._attr_names = tuple(
            sorted(
                (n, n.lower())
                for n in names
                if n not in SPECIAL_NAMES and n not in self._env.globals
            )
        )
        self._uses_attrs = "attrs" in names
        read_attrs.update(lower for _, lower in self._attr_names)
        if self._key_attr:
            read_attrs.add(self._key_attr)
        self._attributes = None if self._dynamic_attrs else frozenset(read_attrs)
        self._base_vars = dict(self._env.globals)
        self._program = self._build_program(exprs, skip_slots) if exprs else None

    def _free_names(self, ast: nodes.Node, read_attrs: set[str]) -> set[str]:
        """Names an expression reads. ``attrs['x']``/``attrs.x`` with a constant name is
        an attribute read we can list; any other use of ``attrs`` makes the attribute
        set unknowable (``self._dynamic_attrs``)."""
        stored = {n.name for n in find_all(ast, nodes.Name) if n.ctx in ("store", "param")}
        loaded = {n.name for n in find_all(ast, nodes.Name) if n.ctx == "load"}
        if "attrs" in loaded:
            constant_uses = 0
            for n in find_all(ast, (nodes.Getitem, nodes.Getattr, nodes.Call)):
                name = _constant_attrs_read(n)
                if name is not None:
                    read_attrs.add(name.lower())
                    constant_uses += 1
            total = sum(
                1 for n in find_all(ast, nodes.Name) if n.name == "attrs" and n.ctx == "load"
            )
            if constant_uses < total:
                self._dynamic_attrs = True
        return loaded - stored

    def _build_program(self, exprs: list[tuple[str, nodes.Expr]], skip_slots: list[str]) -> Any:
        """One template: ``{% set s0 = .. %}{% if not s0 is truthy %} ... {% set f0 = .. %}``."""

        def assign(slot: str, expr: nodes.Expr) -> nodes.Assign:
            return nodes.Assign(nodes.Name(slot, "store", lineno=1), expr, lineno=1)

        skip_exprs = {slot: e for slot, e in exprs if slot in skip_slots}
        body: list[nodes.Node] = [assign(s, e) for s, e in exprs if s not in skip_exprs]
        for slot in reversed(skip_slots):
            if slot not in skip_exprs:
                continue  # a text-template skip condition is evaluated on its own
            guard = nodes.Not(
                nodes.Test(
                    nodes.Name(slot, "load", lineno=1), "truthy", [], [], None, None, lineno=1
                ),
                lineno=1,
            )
            body = [assign(slot, skip_exprs[slot]), nodes.If(guard, body, [], [], lineno=1)]
        tree = nodes.Template(body, lineno=1)
        tree.set_environment(self._env)
        return self._env.from_string(tree)

    # ------------------------------------------------------------ introspection

    @property
    def attributes(self) -> set[str] | None:
        """Lower-cased source attributes this mapping reads (for the source's attribute
        list), or None when an expression reads ``attrs`` dynamically."""
        return None if self._attributes is None else set(self._attributes)

    @property
    def key_attribute(self) -> str | None:
        """Lower-cased attribute the key is read from when it is a plain attribute; None
        when the key is the source id or an expression."""
        return self._key_attr if self._key_how == "attr" else None

    # ------------------------------------------------------------ mapping

    def map(self, change: Change, lookup: Lookup | None = None) -> MappedRecord | None:
        """Map one upserted entry.

        Returns None when a skip condition is true. Raises :class:`MappingError` with a
        one-line reason naming the field (or key/skip condition) for an entry that
        cannot be mapped: an expression that raised or tried to leave the sandbox, a
        value of the wrong type, an empty key or required field.

        ``lookup(job, dn)`` is what the ``lookup`` filter calls. A
        :class:`~syncd.errors.UserError` it raises (the state store is gone...) is not
        this entry's fault and propagates unchanged; any other exception quarantines
        the entry like an expression error. A render that would build a value beyond
        :data:`~syncd.mapping.limits.MAX_SIZE` or take longer than
        :data:`~syncd.mapping.limits.TIME_LIMIT` is a MappingError too.
        """
        if self._program is None and not self._templates:
            return self._map(change, lookup)  # plain attributes: nothing to bound
        budget = start_render()
        try:
            return self._map(change, lookup)
        finally:
            end_render(budget)

    def _map(self, change: Change, lookup: Lookup | None) -> MappedRecord | None:
        attrs = change.attributes
        results: dict[str, Any] = {}
        template_vars: dict[str, Any] | None = None
        if self._program is not None or self._templates:
            template_vars = self._vars(change, lookup)
        for slot, what in self._text_skips:
            if types.truthy(self._render(slot, what, template_vars)):  # type: ignore[arg-type]
                return None
        if self._program is not None:
            results = self._run(template_vars)  # type: ignore[arg-type]
            for slot in self._expr_skips:
                # A true condition stops the program: later slots are never set.
                if slot not in results or types.truthy(results[slot]):
                    return None

        key = self._map_key(change, results, template_vars)
        fields: dict[str, FieldValue] = {}
        for name, how, ref, type_name, check in self._post:
            if how == "attr":
                vals = attrs.get(ref)  # type: ignore[arg-type]
                value = vals[0] if vals else None
                if type_name is not None:
                    value = self._shape(value, type_name, name)
            elif how == "slot":
                value = results[ref]
                if type_name is not None or (value is not None and type(value) is not str):
                    value = self._shape(value, type_name, name)
            elif how == "list":
                value = list(attrs.get(ref) or _EMPTY)  # type: ignore[arg-type]
                if type_name != "list":
                    value = self._shape(value, type_name, name)
            elif how == "dn":
                value = change.dn
                if type_name is not None:
                    value = self._shape(value, type_name, name)
            else:
                value = self._render(ref, f"field '{name}'", template_vars)  # type: ignore[arg-type]
                value = self._shape(value, type_name, name)
            if check and (value is None or value == "" or value == _EMPTY or value == b""):
                if name in self._defaults:
                    value = self._defaults[name]
                else:
                    raise MappingError(f"required field '{name}' is empty")
            fields[name] = value
        return MappedRecord(key, fields)

    def _vars(self, change: Change, lookup: Lookup | None) -> dict[str, Any]:
        attrs = change.attributes
        v = self._base_vars.copy()
        for name, lower in self._attr_names:
            v[name] = attrs.get(lower, _EMPTY)
        v["dn"] = change.dn
        v["source_id"] = change.source_id
        if self._uses_attrs:
            v["attrs"] = _Attrs(attrs)
        v[LOOKUP_KEY] = lookup
        return v

    def _run(self, template_vars: dict[str, Any]) -> dict[str, Any]:
        # What Template.new_context(vars, shared=True) does, minus its argument handling
        # (measurably cheaper per entry); the program has no blocks.
        ctx = Context(self._env, template_vars, None, {})
        try:
            for _ in self._program.root_render_func(ctx):
                pass
        except UserError:
            raise  # from the engine's lookup: the run has a problem, not this entry
        except Exception as err:
            # Slots are assigned in order, so the first one missing is the one that
            # raised.
            done = ctx.vars
            what = next((w for s, w in self._slots if s not in done), "mapping")
            raise MappingError(_reason(what, err)) from None
        return ctx.vars

    def _render(self, slot: str, what: str, template_vars: dict[str, Any]) -> str:
        template = self._templates[slot]
        try:
            ctx = template.new_context(template_vars, shared=True)
            return bounded_text(template.root_render_func(ctx))
        except UserError:
            raise
        except Exception as err:
            raise MappingError(_reason(what, err)) from None

    def _shape(self, value: Any, type_name: str | None, name: str) -> Any:
        try:
            value = types.normalise(value)
            return types.coerce(value, type_name) if type_name else value
        except (ValueError, TypeError, SecurityError) as err:
            reason = f"field '{name}': {' '.join(str(err).split())}"
            raise MappingError(reason[:_MAX_REASON]) from None

    def _map_key(self, change: Change, results: dict[str, Any], template_vars: Any) -> str:
        how = self._key_how
        if how is None:
            key: Any = change.source_id
            label = "the source id"
        elif how == "attr":
            vals = change.attributes.get(self._key_attr)  # type: ignore[arg-type]
            key = vals[0] if vals else None
            label = f"the key attribute {self._key.text}"  # type: ignore[union-attr]
            if isinstance(key, bytes):
                raise MappingError(
                    f"{label} is binary: use an expression such as "
                    f"'{{{{ {self._key.text} | first | guid }}}}'"  # type: ignore[union-attr]
                )
        else:
            if how == "slot":
                key = results["syncd_k"]
            else:
                key = self._render("syncd_k", "key", template_vars)
            label = "the key"
            try:
                key = types.normalise(key)
            except TypeError as err:
                raise MappingError(f"key: {err}") from None
            if isinstance(key, list):
                if len(key) > 1:
                    raise MappingError(f"key: {len(key)} values where one is expected")
                key = key[0] if key else None
            if isinstance(key, bytes):
                raise MappingError("key: binary value (use | guid, | hex or | b64)")
            if isinstance(key, bool):
                raise MappingError("key: a boolean is not a key")
            if isinstance(key, int | float):
                key = str(key)
        if key is None or not isinstance(key, str) or not key.strip():
            raise MappingError(f"{label} is empty")
        return key

    def __repr__(self) -> str:
        return f"<Mapping {self.source} fields={list(self.field_names)}>"
