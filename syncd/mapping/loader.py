"""Read a mapping file into a :class:`MappingSpec`, collecting every problem at once.

Each problem is one line, ``FILE:LINE: what is wrong``. The YAML is walked as a node
tree (not loaded into plain dicts) so every key and value keeps its line, duplicate keys
are caught, and one bad field does not hide the next.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateError

from syncd.mapping import types
from syncd.mapping.sandbox import MappingEnvironment
from syncd.yamlsrc import deep_line

__all__ = [
    "SUPPORTED_VERSION",
    "FieldSpec",
    "MappingSpec",
    "ValueSpec",
    "find_all",
    "parse_mapping",
]

SUPPORTED_VERSION = 1
_TOP_KEYS = ("version", "description", "key", "fields", "required", "skip")
_FIELD_KEYS = ("value", "type", "default", "required", "secret")
# LDAP attribute names (RFC 4512 descr or OID, with options) and, for CSV and SQL
# sources, column names with underscores.
ATTRIBUTE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_-]*|\d+(?:\.\d+)+)(?:;[A-Za-z0-9-]+)*\Z")
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")
_TEMPLATE_MARKS = ("{{", "{%", "{#")
_FORBIDDEN_NODES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
TOO_DEEP = "nested too deeply (brackets or operators more than about 50 levels deep)"
"""Why an expression whose parse or compile ran out of stack is refused (Jinja's parser
and Python's compiler recurse once per level)."""
_YAML_MAX_DEPTH = 100


@dataclass(slots=True)
class ValueSpec:
    """Where a value comes from.

    kind: ``attr`` (first value of an attribute), ``list`` (all values), ``dn`` (the
    entry's DN), ``expr`` (one Jinja expression: native result) or ``template`` (text
    with expressions in it: a string result)."""

    kind: str
    line: int
    text: str
    attr: str | None = None
    expr: nodes.Expr | None = None
    template: nodes.Template | None = None


@dataclass(slots=True)
class FieldSpec:
    name: str
    value: ValueSpec
    line: int
    type: str | None = None
    default: Any = None
    required: bool = False
    secret: bool = False
    """Plans, explain and run reports show ``<secret>`` instead of its values."""


@dataclass(slots=True)
class MappingSpec:
    source: str
    version: int
    fields: list[FieldSpec]
    key: ValueSpec | None = None
    skip: list[ValueSpec] = field(default_factory=list)
    description: str | None = None


def find_all(ast: nodes.Node, kinds: Any) -> Iterator[Any]:
    """``ast`` itself (when it is one of ``kinds``) and every descendant that is.
    (Jinja's ``Node.find_all`` skips the node it starts from.)"""
    if isinstance(ast, kinds):
        yield ast
    yield from ast.find_all(kinds)


class _Problems:
    def __init__(self, source: str):
        self.source = source
        self._found: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self._found.append((line, message))

    @property
    def items(self) -> list[str]:
        """Every problem as ``FILE:LINE: message``, in file order."""
        ordered = sorted(self._found, key=lambda item: item[0])
        return [f"{self.source}:{line}: {message}" for line, message in ordered]


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _unknown_key(key: str, allowed: tuple[str, ...], where: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown key '{key}' in {where}{hint}"


def _mapping_items(node: yaml.MappingNode, problems: _Problems) -> list[tuple[str, yaml.Node, int]]:
    """(key, value node, line) for each entry; non-text and duplicate keys reported."""
    seen: dict[str, int] = {}
    out = []
    for key_node, value_node in node.value:
        line = _line(key_node)
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
            problems.add(line, f"a key must be text, not {_describe(key_node)}")
            continue
        key = key_node.value
        if key in seen:
            problems.add(line, f"duplicate key '{key}' (first at line {seen[key]})")
            continue
        seen[key] = line
        out.append((key, value_node, line))
    return out


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    kinds = {"null": "empty", "str": "text", "bool": "a boolean", "int": "a number"}
    kind = kinds.get(tag, "a number" if tag == "float" else f"a {tag}")
    return kind if tag in ("null", "str") else f"{kind} ({node.value})"


def _scalar(node: yaml.Node) -> Any:
    """The Python value of a scalar node (SafeLoader rules), or raise ValueError."""
    if not isinstance(node, yaml.ScalarNode):
        raise ValueError(_describe(node))
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _text(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str":
        return node.value
    return None


class _Parser:
    def __init__(self, source: str, env: MappingEnvironment):
        self.problems = _Problems(source)
        self.env = env
        self.source = source

    # ------------------------------------------------------------ expressions

    def _jinja_line(self, node: yaml.Node, err_line: int | None) -> int:
        line = _line(node)
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            line += 1  # a block scalar's text starts on the line after the indicator
        return line + max((err_line or 1) - 1, 0)

    def _template(self, node: yaml.Node, text: str, what: str) -> ValueSpec | None:
        """Parse a value holding ``{{ ... }}``: exactly one expression -> ``expr``,
        anything else -> ``template``."""
        try:
            ast = self.env.parse(text.strip())
        except TemplateSyntaxError as err:
            self.problems.add(self._jinja_line(node, err.lineno), f"{what}: {err.message}")
            return None
        except RecursionError:
            self.problems.add(_line(node), f"{what}: {TOO_DEEP}")
            return None
        body = ast.body
        if (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            spec = ValueSpec("expr", _line(node), text, expr=body[0].nodes[0])
            checked: nodes.Node = spec.expr  # type: ignore[assignment]
        else:
            spec = ValueSpec("template", _line(node), text, template=ast)
            checked = ast
        return spec if self._check_ast(checked, node, what) else None

    def _bare_expression(self, node: yaml.Node, text: str, what: str) -> ValueSpec | None:
        """A skip condition written without braces: ``"'x' in description"``."""
        return self._template(node, "{{ " + text + " }}", what)

    def _check_ast(self, ast: nodes.Node, node: yaml.Node, what: str) -> bool:
        """Report what the sandbox would only stop at run time, and unknown filters."""
        try:
            return self._check_nodes(ast, node, what)
        except (RecursionError, SyntaxError):
            # Python's compiler refuses deep nesting with a SyntaxError of its own.
            self.problems.add(_line(node), f"{what}: {TOO_DEEP}")
            return False

    def _check_nodes(self, ast: nodes.Node, node: yaml.Node, what: str) -> bool:
        ok = True
        stored = {n.name for n in find_all(ast, nodes.Name) if n.ctx != "load"}
        for n in find_all(
            ast, (nodes.Filter, nodes.Test, nodes.Getattr, nodes.Getitem, nodes.Call)
        ):
            line = self._jinja_line(node, n.lineno)
            if isinstance(n, nodes.Filter) and n.name not in self.env.filters:
                self.problems.add(line, f"{what}: no filter named '{n.name}'")
                ok = False
            elif isinstance(n, nodes.Test) and n.name not in self.env.tests:
                self.problems.add(line, f"{what}: no test named '{n.name}'")
                ok = False
            elif isinstance(n, nodes.Filter | nodes.Test):
                table = self.env.filters if isinstance(n, nodes.Filter) else self.env.tests
                reason = _bad_arguments(table[n.name], n)
                if reason:
                    kind = "filter" if isinstance(n, nodes.Filter) else "test"
                    self.problems.add(line, f"{what}: {kind} '{n.name}': {reason}")
                    ok = False
            elif isinstance(n, nodes.Getattr) and n.attr.startswith("_"):
                self.problems.add(line, f"{what}: attribute '{n.attr}' is not accessible")
                ok = False
            elif (
                isinstance(n, nodes.Getitem)
                and isinstance(n.arg, nodes.Const)
                and isinstance(n.arg.value, str)
                and n.arg.value.startswith("_")
            ):
                self.problems.add(line, f"{what}: item '{n.arg.value}' is not accessible")
                ok = False
            elif (
                isinstance(n, nodes.Call)
                and isinstance(n.node, nodes.Name)
                and n.node.name not in self.env.globals
                and n.node.name not in stored
            ):
                # Free names are attributes (lists), never functions: int('1') is a
                # mistake for '1' | int.
                self.problems.add(
                    line, f"{what}: '{n.node.name}' is not a function here (filters: x | name)"
                )
                ok = False
        for n in find_all(ast, _FORBIDDEN_NODES):
            self.problems.add(
                self._jinja_line(node, n.lineno),
                f"{what}: {type(n).__name__.lower()} is not allowed in a mapping",
            )
            ok = False
        if ok:
            # Compile on its own so a compile-time error points at this value.
            wrapped = ast if isinstance(ast, nodes.Template) else _as_template(ast)
            try:
                self.env.compile(wrapped)
            except TemplateError as err:
                line = self._jinja_line(node, getattr(err, "lineno", None))
                self.problems.add(line, f"{what}: {err.message or err}")
                ok = False
        return ok

    # ------------------------------------------------------------ values

    def value(self, node: yaml.Node, what: str, *, allow_list: bool) -> ValueSpec | None:
        """A field's value: attribute name, ``[attribute]``, ``dn`` or a template."""
        line = _line(node)
        text = _text(node)
        if text is not None:
            if any(m in text for m in _TEMPLATE_MARKS):
                return self._template(node, text, what)
            name = text.strip()
            if name.lower() == "dn":
                return ValueSpec("dn", line, name)
            if ATTRIBUTE_NAME.match(name):
                return ValueSpec("attr", line, name, attr=name.lower())
            self.problems.add(
                line,
                f"{what}: {text[:60]!r} is neither an attribute name nor a {{{{ expression }}}}",
            )
            return None
        if allow_list and isinstance(node, yaml.SequenceNode):
            items = node.value
            name = _text(items[0]) if len(items) == 1 else None
            if name is not None and ATTRIBUTE_NAME.match(name.strip()):
                name = name.strip()
                return ValueSpec("list", line, name, attr=name.lower())
            self.problems.add(line, f"{what}: the list form takes exactly one attribute name")
            return None
        self.problems.add(
            line,
            f"{what}: expected an attribute name, [attribute] or '{{{{ expression }}}}', "
            f"not {_describe(node)}",
        )
        return None

    def field(self, name: str, node: yaml.Node, line: int) -> FieldSpec | None:
        what = f"field '{name}'"
        if not FIELD_NAME.match(name):
            self.problems.add(line, f"{what}: a field name is letters, digits, '_', '-', '.'")
        if not isinstance(node, yaml.MappingNode):
            value = self.value(node, what, allow_list=True)
            if value is None:
                return None
            return FieldSpec(name, value, line, type="list" if value.kind == "list" else None)
        spec = FieldSpec(name, ValueSpec("attr", line, ""), line)
        value: ValueSpec | None = None
        default_node: yaml.Node | None = None
        ok = True
        for key, sub, sub_line in _mapping_items(node, self.problems):
            if key == "value":
                value = self.value(sub, what, allow_list=True)
                ok = ok and value is not None
            elif key == "type":
                type_name = _text(sub)
                try:
                    types.parse_type(type_name or "")
                    spec.type = type_name
                except ValueError as err:
                    self.problems.add(sub_line, f"{what}: {err}")
                    ok = False
            elif key == "default":
                default_node = sub
            elif key == "required":
                flag = _scalar(sub) if isinstance(sub, yaml.ScalarNode) else None
                if not isinstance(flag, bool):
                    self.problems.add(sub_line, f"{what}: required must be true or false")
                    ok = False
                else:
                    spec.required = flag
            elif key == "secret":
                flag = _scalar(sub) if isinstance(sub, yaml.ScalarNode) else None
                if not isinstance(flag, bool):
                    self.problems.add(sub_line, f"{what}: secret must be true or false")
                    ok = False
                else:
                    spec.secret = flag
            else:
                self.problems.add(sub_line, _unknown_key(key, _FIELD_KEYS, what))
                ok = False
        if value is None:
            if ok:
                self.problems.add(line, f"{what}: missing 'value'")
            return None
        spec.value = value
        if value.kind == "list":
            if spec.type is None:
                spec.type = "list"
            elif not spec.type.startswith("list"):
                self.problems.add(
                    line, f"{what}: [attribute] gives several values: use type list[{spec.type}]"
                )
                ok = False
        if default_node is not None:
            ok = self._default(spec, default_node, what) and ok
        return spec if ok else None

    def _default(self, spec: FieldSpec, node: yaml.Node, what: str) -> bool:
        try:
            raw = yaml.SafeLoader("").construct_object(node, deep=True)
            value = types.normalise(raw)
            spec.default = types.coerce(value, spec.type) if spec.type else value
        except (ValueError, TypeError) as err:
            self.problems.add(_line(node), f"{what}: bad default: {err}")
            return False
        return True

    # ------------------------------------------------------------ document

    def document(self, root: yaml.Node | None) -> MappingSpec | None:
        p = self.problems
        if root is None:
            p.add(1, "the mapping file is empty (it needs version: 1 and fields:)")
            return None
        if not isinstance(root, yaml.MappingNode):
            p.add(_line(root), f"a mapping file is a YAML mapping, not {_describe(root)}")
            return None
        items = {k: (v, line) for k, v, line in _mapping_items(root, p)}
        for key, (_, line) in items.items():
            if key not in _TOP_KEYS:
                p.add(line, _unknown_key(key, _TOP_KEYS, "the mapping"))
        version = self._version(items)
        spec = MappingSpec(self.source, version or SUPPORTED_VERSION, [])
        if "description" in items:
            node, line = items["description"]
            spec.description = _text(node)
            if spec.description is None:
                p.add(line, "description must be text")
        if "key" in items:
            node, line = items["key"]
            spec.key = self.value(node, "key", allow_list=False)
            if spec.key is not None and spec.key.kind == "dn":
                p.add(line, "key: a DN changes on rename; use a stable id (entryUUID, objectGUID)")
        spec.fields = self._fields(items)
        self._required(items, spec)
        self._skip(items, spec)
        return spec

    def _version(self, items: dict[str, tuple[yaml.Node, int]]) -> int | None:
        if "version" not in items:
            self.problems.add(1, f"missing 'version' (add version: {SUPPORTED_VERSION})")
            return None
        node, line = items["version"]
        try:
            version = _scalar(node)
        except ValueError:
            version = None
        if version != SUPPORTED_VERSION or isinstance(version, bool):
            self.problems.add(
                line,
                f"unsupported mapping version {_describe(node) if version is None else version!r}"
                f" (this syncd reads version {SUPPORTED_VERSION})",
            )
            return None
        return version

    def _fields(self, items: dict[str, tuple[yaml.Node, int]]) -> list[FieldSpec]:
        if "fields" not in items:
            self.problems.add(1, "missing 'fields' (the target fields and where they come from)")
            return []
        node, line = items["fields"]
        if not isinstance(node, yaml.MappingNode) or not node.value:
            self.problems.add(line, "fields must be a non-empty mapping of name: source")
            return []
        out = []
        for name, sub, sub_line in _mapping_items(node, self.problems):
            spec = self.field(name, sub, sub_line)
            if spec is not None:
                out.append(spec)
        return out

    def _required(self, items: dict[str, tuple[yaml.Node, int]], spec: MappingSpec) -> None:
        if "required" not in items:
            return
        node, line = items["required"]
        entries = node.value if isinstance(node, yaml.SequenceNode) else None
        if entries is None:
            self.problems.add(line, "required must be a list of field names")
            return
        by_name = {f.name: f for f in spec.fields}
        for entry in entries:
            name = _text(entry)
            if name is None:
                self.problems.add(_line(entry), f"required: {_describe(entry)} is not a field name")
            elif name in by_name:
                by_name[name].required = True
            else:
                self.problems.add(_line(entry), f"required: no field named '{name}'")

    def _skip(self, items: dict[str, tuple[yaml.Node, int]], spec: MappingSpec) -> None:
        if "skip" not in items:
            return
        node, _ = items["skip"]
        entries = node.value if isinstance(node, yaml.SequenceNode) else [node]
        for n, entry in enumerate(entries, start=1):
            what = f"skip condition {n}"
            text = _text(entry)
            if text is None or not text.strip():
                self.problems.add(
                    _line(entry), f"{what}: expected an expression, not {_describe(entry)}"
                )
                continue
            if any(m in text for m in _TEMPLATE_MARKS):
                value = self._template(entry, text, what)
            else:
                value = self._bare_expression(entry, text, what)
            if value is not None:
                spec.skip.append(value)


def _bad_arguments(func: Any, call: nodes.Filter | nodes.Test) -> str | None:
    """Why ``call``'s arguments cannot fit ``func``'s signature, or None. Checked at
    load time so a missing argument is one config error, not one quarantined entry per
    record. Calls with ``*args``/``**kwargs`` and Jinja's builtins are left to run
    time."""
    if call.dyn_args is not None or call.dyn_kwargs is not None:
        return None
    # Only our own filters: some Jinja builtins are wrapped so that their visible
    # signature does not show the arguments Jinja passes them.
    if not getattr(func, "__module__", "").startswith("syncd.mapping."):
        return None
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    # Jinja passes the context/environment first when the function asks for it, then
    # the value being filtered or tested.
    leading = 1 + (getattr(func, "jinja_pass_arg", None) is not None)
    try:
        signature.bind(
            *[None] * (leading + len(call.args)),
            **dict.fromkeys((kw.key for kw in call.kwargs), None),
        )
    except TypeError as err:
        return str(err)
    return None


def _as_template(expr: nodes.Node) -> nodes.Template:
    out = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
    return out


def parse_mapping(
    text: str, source: str, env: MappingEnvironment
) -> tuple[MappingSpec | None, list[str]]:
    """Parse mapping ``text`` (from ``source``, used in messages). Returns the spec (None
    when the file is unusable) and the list of problems (empty when it is valid)."""
    parser = _Parser(source, env)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        parser.problems.add(line, f"YAML syntax error: {reason}")
        return None, parser.problems.items
    except RecursionError:
        parser.problems.add(deep_line(text, _YAML_MAX_DEPTH), "YAML nested too deeply")
        return None, parser.problems.items
    spec = parser.document(root)
    return spec, parser.problems.items
