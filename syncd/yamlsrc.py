"""Load YAML while remembering where every value came from.

pydantic reports errors by location (``("jobs", "inventory", "target", "table")``); to
tell a user ``syncd.yaml:14: ...`` we keep a map from such paths to line numbers.
Duplicate keys, which PyYAML silently lets win, are reported as problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from syncd.errors import ConfigError

Loc = tuple[Any, ...]

MAX_VALUES = 100_000
"""Most values (after expanding aliases) a config may hold. A few nested aliases
("billion laughs") expand exponentially; no real config comes near this."""


@dataclass
class YamlDoc:
    """A parsed YAML document plus the line (1-based) of every path in it."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    values: int = 0

    def line_of(self, loc: Sequence[Any]) -> int | None:
        """The line of the deepest known prefix of ``loc``."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def where(self, loc: Sequence[Any]) -> str:
        line = self.line_of(loc)
        return f"{self.path}:{line}" if line else str(self.path)


def load_yaml(path: Path) -> YamlDoc:
    """Parse ``path``. Raises ConfigError (with file and line) if it cannot be read or
    is not YAML. Duplicate keys are returned in ``problems``, not raised."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{line}: YAML syntax error: {problem}") from None
    except RecursionError:
        # PyYAML composes recursively: thousands of nested brackets exhaust the stack.
        raise ConfigError(
            f"{path}:{deep_line(text)}: YAML nested too deeply (a config needs no more "
            f"than a few levels)"
        ) from None
    doc = YamlDoc(path=path, data=None)
    if node is None:
        doc.data = None
        return doc
    try:
        doc.data = _convert(node, (), doc)
    except RecursionError:
        raise ConfigError(
            f"{path}:{deep_line(text)}: YAML nested too deeply (a config needs no more "
            f"than a few levels)"
        ) from None
    return doc


def deep_line(text: str, limit: int = 50) -> int:
    """The line where YAML ``text`` first nests deeper than ``limit``: flow collections
    (``[``/``{``), else block indentation; 1 when neither shows. For the message when
    PyYAML's recursive composer gives up (quotes are not tracked). Used for config and
    mapping files."""
    depth = 0
    line = 1
    for ch in text:
        if ch == "\n":
            line += 1
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return line
        elif ch in "]}":
            depth -= 1
    # Block style: nesting shows as indentation.
    for number, row in enumerate(text.splitlines(), 1):
        if len(row) - len(row.lstrip(" ")) > 2 * limit:
            return number
    return 1


def _convert(node: yaml.Node, loc: Loc, doc: YamlDoc) -> Any:
    doc.values += 1
    if doc.values > MAX_VALUES:
        raise ConfigError(
            f"{doc.path}:{node.start_mark.line + 1}: more than {MAX_VALUES} values once "
            "aliases are expanded; refusing to load it (nested YAML aliases?)"
        )
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                doc.problems.append(f"{doc.path}:{line}: a key must be a plain value")
                continue
            key = _scalar(key_node)
            if key == "<<":
                doc.problems.append(f"{doc.path}:{line}: merge keys (<<) are not supported")
                continue
            if key in out:
                doc.problems.append(f"{doc.path}:{line}: duplicate key {key!r}")
            doc.lines[(*loc, key)] = line
            out[key] = _convert(value_node, (*loc, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*loc, i), doc) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
