"""How a plan is shown: every action with its effect, values redacted.

``syncd plan`` (text and ``--json``), ``--ldif`` and ``syncd explain`` render through
here. For each action the target is asked what it holds now (:meth:`Target.current`,
read only, in batches, only for the actions shown), so a plan names the item's current
DN, the DN a rename or move gives it, and every changed field old -> new. A target that
cannot tell leaves the old values unknown (``?``).

Values are redacted the same way everywhere:

* secret fields (``userPassword``, ``unicodePwd``, any name with *password*/*secret*,
  and the fields a mapping marks ``secret: true``) show as ``<secret>``, never in clear;
* binary values show as ``<jpeg 4.1 KiB sha256:ab12cd34…>``;
* long text is cut at :data:`MAX_TEXT` characters.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from syncd.contracts import Action, ActionKind, Current, FieldChange, Target

log = logging.getLogger(__name__)

MAX_TEXT = 120
"""Longer text values are cut to this many characters in plans."""
BATCH = 200
"""Actions whose current state is asked for in one call."""
SECRET = "<secret>"
_SECRET_NAME = re.compile(r"password|passwd|secret|unicodepwd|credential|token", re.IGNORECASE)
_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"%PDF", "pdf"),
    (b"PK\x03\x04", "zip"),
    (b"0\x82", "der"),
)


def secret_names(mapping: Any = None) -> Callable[[str], bool]:
    """The predicate "this field's values are secret": by name, plus the fields the
    ``mapping`` marks ``secret: true``."""
    marked = {n.lower() for n in getattr(mapping, "secret_fields", ()) or ()}

    def is_secret(name: str) -> bool:
        return name.lower() in marked or bool(_SECRET_NAME.search(name))

    return is_secret


def show_value(value: Any) -> str:
    """One value for people: text quoted and cut, bytes summarised, numbers as is."""
    if isinstance(value, bytes | bytearray):
        return _binary(bytes(value))
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            return repr(value[:MAX_TEXT]) + f"… ({len(value)} chars)"
        return repr(value)
    return repr(value)


def _binary(data: bytes) -> str:
    kind = next((name for magic, name in _MAGIC if data.startswith(magic)), "binary")
    size = len(data)
    if size >= 1024 * 1024:
        shown = f"{size / 1024 / 1024:.1f} MiB"
    elif size >= 1024:
        shown = f"{size / 1024:.1f} KiB"
    else:
        shown = f"{size} B"
    return f"<{kind} {shown} sha256:{hashlib.sha256(data).hexdigest()[:8]}…>"


def show_values(name: str, values: list[Any] | None, is_secret: Callable[[str], bool]) -> str:
    """A field's values: ``(none)`` when empty, ``?`` when unknown, ``<secret>``."""
    if values is None:
        return "?"
    if not values:
        return "(none)"
    if is_secret(name):
        return SECRET
    if len(values) == 1:
        return show_value(values[0])
    return "[" + ", ".join(show_value(v) for v in values) + "]"


def json_value(name: str, values: list[Any] | None, is_secret: Callable[[str], bool]) -> Any:
    """A field's values for ``--json``: redacted like text (secrets, binary), plain
    values kept as JSON scalars; a single value unwrapped."""
    if values is None:
        return None
    if is_secret(name) and values:
        return SECRET
    out = [v if isinstance(v, str | int | float | bool) else show_value(v) for v in values]
    for i, v in enumerate(out):
        if isinstance(v, str) and len(v) > MAX_TEXT:
            out[i] = v[:MAX_TEXT] + f"… ({len(v)} chars)"
    return out[0] if len(out) == 1 else out


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclass
class ActionView:
    """One action with its effect, ready to show."""

    action: Action
    current: Current | None
    changes: list[FieldChange] = field(default_factory=list)
    """old is None when the target could not tell"""

    @property
    def old_name(self) -> str | None:
        return self.current.dn if self.current else None

    @property
    def new_name(self) -> str | None:
        return self.current.new_dn if self.current else None

    @property
    def name(self) -> str:
        """How the item is called: the target's name for it when the target told
        (an LDAP DN), else the source DN, else the record key."""
        return self.old_name or self.new_name or self.action.dn or self.action.key

    @property
    def notes(self) -> list[str]:
        return list(self.current.notes) if self.current else []


def _fallback_changes(action: Action) -> list[FieldChange]:
    """Changes from the action alone (the target cannot tell what it holds): new
    values only, old ones unknown (None)."""
    if action.kind is ActionKind.DELETE:
        return []
    if action.kind is ActionKind.CREATE:
        return [FieldChange(n, [], as_list(v)) for n, v in action.fields.items()]
    return [
        FieldChange(n, None, as_list(action.fields.get(n)))  # type: ignore[arg-type]
        for n in action.changed
    ]


def views(
    actions: Iterable[Action],
    target: Target | None,
    is_secret: Callable[[str], bool],
    notes: list[str] | None = None,
) -> Iterator[ActionView]:
    """Each action with its effect. ``target`` (opened or not) is asked in batches
    what it holds now; when it cannot be read, old values stay unknown and one note
    (in ``notes``) says why."""
    batch: list[Action] = []
    usable = target is not None

    def flush() -> Iterator[ActionView]:
        nonlocal usable
        currents: list[Current | None] = [None] * len(batch)
        if usable:
            try:
                currents = target.current(batch, is_secret)  # type: ignore[union-attr]
            except Exception as err:  # a plan without old values beats no plan
                usable = False
                log.debug("current state unreadable", exc_info=True)
                if notes is not None:
                    notes.append(
                        f"the target could not be read ({type(err).__name__}: {err}): "
                        "old values are unknown (?)"
                    )
        for action, cur in zip(batch, currents, strict=True):
            changes = list(cur.changes) if cur is not None else _fallback_changes(action)
            yield ActionView(action, cur, changes)

    for action in actions:
        batch.append(action)
        if len(batch) >= BATCH:
            yield from flush()
            batch = []
    if batch:
        yield from flush()


_SIGNS = {"create": "+", "update": "~", "delete": "-"}


def text_lines(view: ActionView, is_secret: Callable[[str], bool]) -> list[str]:
    """The text of one action: a head line (sign, name, rename, key, notes), then one
    line per changed field."""
    a = view.action
    kind = a.kind.value
    head = f"    {_SIGNS[kind]} {view.name}"
    if view.old_name and view.new_name and view.new_name != view.old_name:
        head += f" -> {view.new_name}"
    extra = [f"key {a.key}", *view.notes]
    linking = a.kind is ActionKind.UPDATE and a.changed == tuple(a.fields) and a.target_id
    if view.current is None and linking:
        extra.append(f"link to existing {a.target_id}")
    head += "  (" + "; ".join(extra) + ")"
    lines = [head]
    for ch in view.changes:
        old = show_values(ch.name, ch.old, is_secret)
        new = show_values(ch.name, ch.new, is_secret)
        lines.append(f"        {ch.name}: {old} -> {new}")
    return lines


def json_item(view: ActionView, is_secret: Callable[[str], bool]) -> dict[str, Any]:
    """One action for ``--json``: what it is, where, and every change old -> new."""
    a = view.action
    item: dict[str, Any] = {
        "kind": a.kind.value,
        "source_id": a.source_id,
        "key": a.key,
        "dn": a.dn,
        "target_id": a.target_id,
        "target_dn": view.old_name,
        "new_dn": view.new_name,
        "notes": view.notes,
        "changes": [
            {
                "field": ch.name,
                "old": json_value(ch.name, ch.old, is_secret),
                "new": json_value(ch.name, ch.new, is_secret),
            }
            for ch in view.changes
        ],
    }
    if a.kind is ActionKind.UPDATE:
        item["changed"] = list(a.changed)
        item["fields"] = {k: json_value(k, as_list(a.fields.get(k)), is_secret) for k in a.changed}
    elif a.kind is ActionKind.CREATE:
        item["fields"] = {k: json_value(k, as_list(v), is_secret) for k, v in a.fields.items()}
    return item


def open_target(config: Any, job_name: str) -> Target | None:
    """The job's target, constructed for reading what it holds (not opened: its
    ``current`` connects as it needs). None when it cannot even be constructed."""
    job = config.job(job_name)
    end = job.target
    try:
        return end.connection.spec.target_class(end.connection.options, end.options, job=job.name)
    except Exception:
        log.debug("target not constructed for the plan view", exc_info=True)
        return None
