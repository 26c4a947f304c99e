"""Planning: decide what a target must do. Pure: no I/O beyond the state rows handed in.

The engine feeds the planner one batch at a time (records it mapped, plus the state rows
of those objects it fetched in one query), and at the end of a complete read the state
rows of objects the read did not see. The planner answers :class:`PlannedAction`s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass

from syncd.contracts import Action, ActionKind, FieldValue
from syncd.state.fingerprint import fingerprint


@dataclass(slots=True)
class PlannedAction:
    """An action plus what the state will hold once the target confirms it."""

    action: Action
    fingerprint: str = ""
    digests: dict[str, str] | None = None
    entry_digest: str | None = None
    """Digest of the source entry it was mapped from (see syncd.engine.entry_digest)."""


def plan_upsert(
    source_id: str,
    key: str,
    fields: dict[str, FieldValue],
    dn: str | None,
    state: object | None,
) -> list[PlannedAction]:
    """Plan for an object the source says exists.

    ``state`` is the object's :class:`syncd.state.ObjectState` or None if never synced.
    Returns [] when the target already holds exactly these fields; a create when it was
    never synced; an update naming only the changed fields otherwise. A changed record
    key (the mapping's identity changed) is a delete of the old item plus a create.
    """
    fp, digests = fingerprint(fields)
    if state is None:
        create = Action(ActionKind.CREATE, source_id, key, fields, dn=dn)
        return [PlannedAction(create, fp, digests)]
    if state.key != key:
        return [
            plan_delete(state),
            PlannedAction(Action(ActionKind.CREATE, source_id, key, fields, dn=dn), fp, digests),
        ]
    if state.fingerprint == fp:
        return []
    old = state.digests or {}
    changed = tuple(name for name in fields if old.get(name) != digests.get(name))
    # A field the mapping no longer produces was removed: the target must clear it.
    changed += tuple(name for name in old if name not in fields)
    action = Action(
        ActionKind.UPDATE, source_id, key, fields, changed=changed, target_id=state.target_id, dn=dn
    )
    return [PlannedAction(action, fp, digests)]


def distrust(state: object) -> object:
    """The state of an object whose target item drifted (edited or deleted outside
    syncd): same identity, no known values, so :func:`plan_upsert` writes every field."""
    return dataclasses.replace(state, fingerprint="", digests={})


def plan_reverify(
    source_id: str,
    key: str,
    fields: dict[str, FieldValue],
    dn: str | None,
    state: object | None,
    marks: Iterable[object],
) -> list[PlannedAction]:
    """Plan for an object the source says exists but whose state is not trusted: a run
    died after handing it to the target (``marks``: its :class:`syncd.state.InFlight`
    rows) and before committing the outcome, so the target may hold either version.

    The whole record is written again as a create (every target's create is an
    idempotent upsert by key, keeping ``state.target_id`` when the key is the same),
    and every other key the dead run may have written for it is deleted by key.
    """
    fp, digests = fingerprint(fields)
    out: list[PlannedAction] = []
    same = state is not None and state.key == key
    if state is not None and not same:
        out.append(plan_delete(state))
    out.extend(plan_orphans(marks, {key, state.key if state is not None else key}))
    create = Action(
        ActionKind.CREATE,
        source_id,
        key,
        fields,
        changed=tuple(fields),
        target_id=state.target_id if same else None,
        dn=dn,
    )
    out.append(PlannedAction(create, fp, digests))
    return out


def plan_orphans(marks: Iterable[object], keep: Container[str]) -> list[PlannedAction]:
    """Deletes by key (no target id) of what a dead run may have written under keys
    other than ``keep``: e.g. a create applied but never committed, whose object is
    gone from the source since."""
    out: list[PlannedAction] = []
    done: set[str] = set()
    for mark in marks:
        if mark.key in keep or mark.key in done:
            continue
        done.add(mark.key)
        delete = Action(
            ActionKind.DELETE, mark.source_id, mark.key, target_id=mark.target_id, dn=mark.dn
        )
        out.append(PlannedAction(delete))
    return out


def plan_delete(state: object) -> PlannedAction:
    """Plan the removal of a synced object (the target decides delete vs soft delete)."""
    return PlannedAction(
        Action(
            ActionKind.DELETE, state.source_id, state.key, target_id=state.target_id, dn=state.dn
        )
    )


def plan_unseen(objects: Iterable[object], seen: Container[str]) -> Iterator[PlannedAction]:
    """After a *complete* read: delete every synced object the read did not see."""
    for state in objects:
        if state.source_id not in seen:
            yield plan_delete(state)


def is_disable(action: Action) -> bool:
    """An update that switches an object off (``enabled`` becomes false): it counts
    against a job's deletion threshold like a delete, since it locks a person out."""
    return (
        action.kind is ActionKind.UPDATE
        and "enabled" in action.changed
        and action.fields.get("enabled") is False
    )
