"""What the LDAP target would do with an action, worked out without writing anything.

``syncd plan`` asks :meth:`LdapTarget.current`, which lands here: the entry is looked up
the way :meth:`LdapTarget.apply` looks it up (by entryUUID/objectGUID, then by the key
attribute), and the same helpers that apply uses compute the DN it would get and the
modifications it would send. So a plan names the DN an entry is renamed or moved from,
every attribute old -> new, and the LDIF change records (add, modrdn, modify, delete)
that ``ldapmodify`` would accept to make the same change.

Secret attributes (``secret(name)`` true: userPassword, unicodePwd...) are left out of
the LDIF with a comment and never shown.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ldap3

from syncd.connectors.ldap.target import (
    LdapTarget,
    _ActionFailed,
    _as_values,
    _enabled,
    _Entry,
    _first_text,
    build_dn,
    dn_within,
    norm_dn,
    parse_dn,
    same_dn,
)
from syncd.contracts import Action, ActionKind, Current, FieldChange

Mods = dict[str, list[tuple[Any, list]]]
"""attribute -> [(ldap3.MODIFY_ADD|DELETE|REPLACE, values)], as ldap3 takes them"""


def preview(
    target: LdapTarget, actions: Sequence[Action], secret: Callable[[str], bool]
) -> list[Current | None]:
    """One :class:`Current` per action (see the module doc). Reads only.

    An action the target would refuse gets a Current whose notes say why."""
    target._c()
    target._ref_cache.clear()
    out: list[Current | None] = []
    planned_ous: set[tuple] = set()
    # The entries are read the way apply reads them: at once per batch.
    target._prefetch(actions)
    try:
        for action in actions:
            view = _View(secret, target, planned_ous)
            try:
                if action.kind is ActionKind.DELETE:
                    _delete(target, action, view)
                else:
                    _upsert(target, action, view)
            except _ActionFailed as err:
                view.current.notes.append(f"would fail: {err}")
            out.append(view.finish())
    finally:
        target._batch = None
    return out


class _View:
    """Collects one action's effect: field changes, notes and LDIF records."""

    def __init__(self, secret: Callable[[str], bool], target: LdapTarget, ous: set[tuple]):
        self.current = Current()
        self.secret = secret
        self.records: list[str] = []
        self.target = target
        self.ous = ous
        """organizational units an earlier record of this preview creates"""

    def parents(self, dn: str) -> None:
        """Add records for the missing organizationalUnit parents of ``dn`` that apply
        would create (create_missing_ous, inside the scopes), topmost first."""
        t = self.target
        o = t.options
        if not o.create_missing_ous:
            return
        rdns = parse_dn(dn)[1:]
        scope = next((sc for sc in o.scopes if dn_within(build_dn(rdns), sc)), None)
        if scope is None:
            return
        depth = len(parse_dn(scope)) - (0 if same_dn(scope, o.base) else 1)
        for cut in range(len(rdns) - depth - 1, -1, -1):
            parent = rdns[cut:]
            key = norm_dn(build_dn(parent))
            if key in self.ous or key in t._ou_known:
                continue
            pdn = build_dn(parent)
            if t._search(pdn, "(objectClass=*)", ["1.1"], scope=ldap3.BASE):
                t._ou_known.add(key)
                continue
            first = parent[0]
            if len(first) != 1 or first[0][0].lower() != "ou":
                return
            self.ous.add(key)
            self.current.notes.append(f"creates organizational unit {pdn}")
            self.records.append(
                "\n".join(
                    [
                        _line("dn", pdn),
                        "changetype: add",
                        "objectClass: top",
                        "objectClass: organizationalUnit",
                        _line("ou", first[0][1]),
                    ]
                )
            )

    def add(self, dn: str, attributes: dict[str, Any]) -> None:
        self.parents(dn)
        lines = [_line("dn", dn), "changetype: add"]
        for name, values in attributes.items():
            lines += self._values(name, _as_values(values))
            if name.lower() != "objectclass":
                self.current.changes.append(FieldChange(name, [], list(_as_values(values))))
        self.records.append("\n".join(lines))

    def modrdn(self, old_dn: str, new_dn: str) -> None:
        new_rdns, old_rdns = parse_dn(new_dn), parse_dn(old_dn)
        if norm_dn(build_dn(old_rdns[1:])) != norm_dn(build_dn(new_rdns[1:])):
            self.parents(new_dn)
        lines = [
            _line("dn", old_dn),
            "changetype: modrdn",
            _line("newrdn", build_dn(new_rdns[:1])),
            "deleteoldrdn: 1",
        ]
        if norm_dn(build_dn(old_rdns[1:])) != norm_dn(build_dn(new_rdns[1:])):
            lines.append(_line("newsuperior", build_dn(new_rdns[1:])))
        self.records.append("\n".join(lines))
        self.current.new_dn = new_dn

    def modify(self, dn: str, mods: Mods, entry: _Entry | None, *, show: bool = True) -> None:
        if not mods:
            return
        lines = [_line("dn", dn), "changetype: modify"]
        for name, ops in mods.items():
            old = list(entry.values(name)) if entry is not None else []
            new = list(old)
            for op, values in ops:
                verb = {
                    ldap3.MODIFY_ADD: "add",
                    ldap3.MODIFY_DELETE: "delete",
                    ldap3.MODIFY_REPLACE: "replace",
                }[op]
                lines.append(f"{verb}: {name}")
                lines += self._values(name, list(values))
                lines.append("-")
                if op == ldap3.MODIFY_REPLACE:
                    new = list(values)
                elif op == ldap3.MODIFY_ADD:
                    new += [v for v in values if v not in new]
                else:
                    drop = {str(v).lower() for v in values}
                    new = [v for v in new if str(v).lower() not in drop] if values else []
            if show:
                self.current.changes.append(FieldChange(name, old, new))
        self.records.append("\n".join(lines))

    def delete(self, dn: str) -> None:
        self.records.append("\n".join([_line("dn", dn), "changetype: delete"]))

    def _values(self, name: str, values: Iterable[Any]) -> list[str]:
        if self.secret(name):
            return [f"# {name}: <secret> left out; set it separately"]
        return [_line(name, v) for v in values]

    def finish(self) -> Current:
        if self.records:
            self.current.ldif = "\n\n".join(self.records) + "\n"
        return self.current


_SAFE_INIT = frozenset(" :<")


def _line(name: str, value: Any) -> str:
    """One LDIF ``name: value`` line; base64 (``name:: ...``) for anything that is not a
    SAFE-STRING of RFC 2849 (non-ASCII, control characters, leading space/colon/'<',
    trailing space) or that is bytes."""
    if isinstance(value, bytes):
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return f"{name}:: {base64.b64encode(value).decode()}"
    else:
        text = str(value)
    unsafe = (text != "" and (text[0] in _SAFE_INIT or text[-1] == " ")) or any(
        ord(c) < 32 or ord(c) > 126 for c in text
    )
    if unsafe:
        return f"{name}:: {base64.b64encode(text.encode('utf-8')).decode()}"
    return f"{name}: {text}"


def _find(target: LdapTarget, action: Action, attrs: list[str]) -> _Entry | None:
    entry = target._find_by_id(action.target_id, attrs) if action.target_id else None
    if entry is None:
        entry = target._find_by_key(action.key, attrs)
    return entry


def _renamed(entry: _Entry, want_dn: str) -> _Entry:
    """A copy of the entry as it is after a modrdn to ``want_dn`` (the old RDN values
    leave the entry, the new ones arrive), like LdapTarget._move keeps its snapshot."""
    moved = copy.deepcopy(entry)
    for attr, value in parse_dn(entry.dn)[0]:
        vals = moved.attrs.get(attr.lower(), [])
        moved.attrs[attr.lower()] = [v for v in vals if str(v).lower() != value.lower()]
    for attr, value in parse_dn(want_dn)[0]:
        vals = moved.attrs.setdefault(attr.lower(), [])
        if value not in vals:
            vals.append(value)
    moved.dn = want_dn
    return moved


def _upsert(target: LdapTarget, action: Action, view: _View) -> None:
    o = target.options
    fields = action.fields
    enable = _enabled(fields)
    owned = target._owned(fields)
    attrs = target._fetch_attrs(owned)
    entry = _find(target, action, attrs)
    cur = view.current
    # A login another entry holds: the numbered one apply would assign, found the same
    # way (a search of the directory), shown in the plan.
    fields = target._assign_unique(fields, owned, entry, action.key, cur.notes)
    missing = target._resolve_refs(fields, owned)
    owned[o.key_attr] = [action.key]
    want_dn = target._dn_for(fields, disabled=not enable)
    if missing:
        cur.notes.append("reference(s) not found yet: " + ", ".join(sorted(missing)))
    if entry is None:
        if action.kind is ActionKind.UPDATE and action.target_id:
            cur.notes.append("the linked entry is gone: it would be created again")
        attributes, label = target._new_entry(want_dn, owned, enable)
        cur.new_dn = want_dn
        cur.notes.append(label)
        view.add(want_dn, attributes)
        _groups(target, fields, enable, want_dn, None, view, created=True)
        return
    cur.dn = entry.dn
    linked_to = _first_text(entry.values(o.key_attr))
    if linked_to and linked_to != action.key:
        raise _ActionFailed(
            f"{entry.dn} has {o.key_attr} {linked_to}, not {action.key}: it belongs to "
            "another record; left alone"
        )
    linking = action.changed == tuple(fields) and action.changed != ()
    if action.kind is ActionKind.CREATE or linked_to != action.key or linking:
        # (an update naming every field with a target id is a first link by correlation)
        cur.notes.append(f"link to existing entry {entry.dn}")
    was_disabled = target._is_disabled(entry)
    old_dn = entry.dn
    if not same_dn(entry.dn, want_dn):
        view.modrdn(entry.dn, want_dn)
        entry = _renamed(entry, want_dn)
    view.modify(entry.dn, target._modify_changes(entry, owned, enable), entry)
    if was_disabled and enable:
        cur.notes.append("re-enabled")
    elif not was_disabled and not enable:
        cur.notes.append("disabled")
    moved = not same_dn(old_dn, entry.dn)
    _groups(
        target,
        fields,
        enable,
        entry.dn,
        old_dn if moved else None,
        view,
        created=moved
        or action.kind is ActionKind.CREATE
        or "groups" in {c.lower() for c in action.changed}
        or was_disabled != (not enable),
    )


def _delete(target: LdapTarget, action: Action, view: _View) -> None:
    o = target.options
    entry = _find(target, action, target._fetch_attrs([]))
    cur = view.current
    if entry is None:
        cur.notes.append("already gone")
        return
    cur.dn = entry.dn
    if o.on_delete == "delete":
        cur.notes.append(f"delete {entry.dn}")
        for gdn in target._groups_with(entry.dn).values() if target._groups_managed() else ():
            view.modify(gdn, {o.member_attribute: [(ldap3.MODIFY_DELETE, [entry.dn])]}, None)
        view.delete(entry.dn)
        return
    old_dn = entry.dn
    if o.disabled_ou and not dn_within(entry.dn, o.disabled_ou):
        want = build_dn(parse_dn(entry.dn)[:1]) + "," + o.disabled_ou
        cur.notes.append(f"move to {o.disabled_ou}")
        view.modrdn(entry.dn, want)
        entry = _renamed(entry, want)
    if o.on_delete == "disable":
        view.modify(entry.dn, target._state_changes(entry, False, {}), entry)
        cur.notes.insert(0, "disabled")
    remove = o.disabled_groups == "remove" and target._groups_managed()
    if remove or not same_dn(old_dn, entry.dn):
        wanted = [] if remove else None
        _membership(target, entry.dn, old_dn, wanted, view)


def _groups(
    target: LdapTarget,
    fields: dict[str, Any],
    enable: bool,
    dn: str,
    old_dn: str | None,
    view: _View,
    *,
    created: bool,
) -> None:
    """The managed-group memberships apply would change, as apply decides (see
    LdapTarget._upsert): only when groups are managed and something that affects
    them changed."""
    o = target.options
    if not target._groups_managed():
        return
    groups_field = next((k for k in fields if k.lower() == "groups"), None)
    remove_all = o.disabled_groups == "remove" and not enable
    stale = old_dn if old_dn and o.directory != "ad" else None
    if (groups_field is not None or remove_all) and created:
        wanted = [] if remove_all else _as_values(fields[groups_field])  # type: ignore[index]
        _membership(target, dn, stale, wanted, view)
    elif stale:
        _membership(target, dn, stale, None, view)


def _membership(
    target: LdapTarget,
    dn: str,
    old_dn: str | None,
    wanted: list[Any] | None,
    view: _View,
) -> None:
    """Group modifications making ``dn`` a member of exactly the managed groups in
    ``wanted`` (None: keep the memberships, only carry ``old_dn``'s over to ``dn``)."""
    o = target.options
    attr = o.member_attribute
    desired: dict[tuple, str] | None = None
    if wanted is not None:
        desired = {}
        for value in wanted:
            gdn = target._group_dn(value)
            if target._is_managed_group(gdn):
                desired[norm_dn(gdn)] = gdn
    current = target._groups_with(dn) if not (old_dn and same_dn(old_dn, dn)) else {}
    before = dict(current)
    old_groups = target._groups_with(old_dn) if old_dn and not same_dn(old_dn, dn) else {}
    before.update(old_groups)
    after: dict[tuple, str] = dict(current)
    mods: dict[str, Mods] = {}
    for key, gdn in old_groups.items():
        ops = [(ldap3.MODIFY_DELETE, [old_dn])]
        if (desired is None or key in desired) and key not in current:
            ops.append((ldap3.MODIFY_ADD, [dn]))
            after[key] = gdn
        mods[gdn] = {attr: ops}
    if desired is not None:
        for key, gdn in desired.items():
            if key not in after:
                if not _group_exists(target, key, gdn):
                    # As apply reports it: the person is written, this group is not.
                    view.current.notes.append(f"warning: group {gdn} does not exist")
                    continue
                mods.setdefault(gdn, {attr: []})[attr].append((ldap3.MODIFY_ADD, [dn]))
                after[key] = gdn
        for key, gdn in list(after.items()):
            if key not in desired:
                mods.setdefault(gdn, {attr: []})[attr].append((ldap3.MODIFY_DELETE, [dn]))
                del after[key]
    for gdn, m in mods.items():
        view.modify(gdn, m, None, show=False)
    if sorted(before) != sorted(after):
        view.current.changes.append(
            FieldChange("groups", sorted(before.values()), sorted(after.values()))
        )


def _group_exists(target: LdapTarget, key: tuple, gdn: str) -> bool:
    """Whether the group entry ``gdn`` exists (one base search per group and preview
    target, remembered: a plan adding many people to one group asks once)."""
    known = target._group_seen
    if key not in known:
        known[key] = bool(target._search(gdn, "(objectClass=*)", ["1.1"], scope=ldap3.BASE))
    return known[key]
