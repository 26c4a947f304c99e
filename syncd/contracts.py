"""The connector contract: what every source and target promises.

A *source* streams :class:`Change` objects and, when the stream ends, a
:class:`ReadOutcome` with the new cursor. A *target* applies :class:`Action` objects in
batches and answers one :class:`ActionResult` per action. Connectors never touch the
state store: the engine plans against it and commits it.

Value conventions (shared by every connector, so mappings are portable):

* ``Change.attributes`` maps **lower-cased** attribute names to a list of values. A value
  is ``str`` when it is valid UTF-8 text, ``bytes`` otherwise (objectGUID, jpegPhoto,
  objectSid keep their exact bytes). Order of values is the server's order.
* A record's ``fields`` values are ``str | int | float | bool | bytes | None`` or a list
  of those (multi-valued). ``None`` means "empty / absent".
* A ``cursor`` is an opaque string the source produces and later gets back; the engine
  stores it only after everything read before it is safely applied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel

FieldValue = Any  # str | int | float | bool | bytes | None | list[...]: see module doc
Attributes = dict[str, list[str | bytes]]


class Op(StrEnum):
    UPSERT = "upsert"
    """The object exists with these attributes (new or changed)."""
    DELETE = "delete"
    """The object is gone from the source (or left its scope)."""
    PRESENT = "present"
    """The object still exists and is unchanged (syncrepl present phase): no attributes;
    it only counts as seen for deletion detection in a complete read."""


@dataclass(slots=True)
class Change:
    """One object as the source sees it now (upsert) or the news that it is gone."""

    op: Op
    source_id: str
    """Stable id of the object in the source (entryUUID, objectGUID, employee id...).
    Never the DN: a rename keeps the id."""
    dn: str | None = None
    attributes: Attributes = field(default_factory=dict)
    raw_digest: bytes | None = None
    """Optional: a digest of the entry exactly as the source read it (e.g. its bytes on
    the wire), keyed with every source setting that changes how those bytes become
    ``dn`` and ``attributes``. Equal digests must mean an equal ``dn`` and equal
    ``attributes``; the engine then skips an unchanged entry without hashing its
    decoded values. None (the default): the engine hashes the decoded entry. A source
    that adds to ``attributes`` what those bytes do not hold (ranged values fetched
    later, ...) leaves it None."""


@dataclass(slots=True)
class ReadOutcome:
    """What the engine learns when a read's change stream is exhausted."""

    cursor: str | None
    """New cursor to store, or None when the source keeps no cursor."""
    complete: bool
    """True when the read listed *every* live object in scope (a full scan or a
    syncrepl present phase): objects known to the state but not listed are gone."""
    method: str = "full"
    """How changes were found: full, syncrepl, dirsync, usn, timestamp, csv, sql..."""
    notes: list[str] = field(default_factory=list)
    """Human-readable remarks for the log and the run record, e.g.
    'sync cookie refused by the server: fell back to a full refresh'."""


class Read:
    """One read in progress: iterate :attr:`changes`, then look at :attr:`outcome`.

    The source sets ``outcome`` when (and only when) the change stream ended normally.
    If iteration raises, the read failed and nothing about deletions may be concluded.
    """

    def __init__(self, changes: Iterator[Change]):
        self.changes = changes
        self.outcome: ReadOutcome | None = None


@dataclass(slots=True)
class CheckResult:
    """One line of `syncd doctor`: what was checked, whether it passed, a hint if not."""

    name: str
    ok: bool
    detail: str = ""
    hint: str = ""


class Source(ABC):
    """A place changes are read from (LDAP, AD, CSV, SQL...)."""

    incremental: ClassVar[bool] = False
    """True when the source can read only what changed since a cursor."""

    def __init__(self, connection: BaseModel, options: BaseModel, *, job: str):
        self.connection = connection
        self.options = options
        self.job = job

    @abstractmethod
    def read(self, cursor: str | None, *, full: bool = False) -> Read:
        """Start a read. ``cursor`` is what the last successful run stored (None on the
        first run); ``full=True`` asks for a complete listing whatever the cursor.

        Raises :class:`syncd.errors.ConnectionFailed` when the server cannot be used and
        :class:`syncd.errors.SourceError` for a failed read (also from inside the
        iteration: a size/time limit or a lost connection mid-read is a failure, never
        a short read).
        """

    def read_entries(self, wanted: Sequence[str]) -> Read:
        """Read only the objects named in ``wanted`` (each a source id or a DN), for
        ``--only`` and ``syncd explain``. The outcome is never complete (nothing may be
        concluded from an absence) and has no cursor (an --only run does not move it);
        its notes name what was not found.

        Default: a complete read filtered to those objects (sources that can look one
        entry up, like LDAP, override it). Raises like :meth:`read`."""
        inner = self.read(None, full=True)
        ids = set(wanted)
        dns = {w.lower() for w in wanted}
        read = Read(iter(()))

        def changes() -> Iterator[Change]:
            found: set[str] = set()
            for change in inner.changes:
                if change.op is not Op.UPSERT:
                    continue
                hit = change.source_id in ids or (change.dn or "").lower() in dns
                if hit:
                    found.update((change.source_id, (change.dn or "").lower()))
                    yield change
            method = inner.outcome.method if inner.outcome else "full"
            missing = [w for w in wanted if w not in found and w.lower() not in found]
            read.outcome = ReadOutcome(
                None,
                complete=False,
                method=method,
                notes=[f"not found in the source: {w}" for w in missing],
            )

        read.changes = changes()
        return read

    def check(self) -> list[CheckResult]:
        """Checks for `syncd doctor`. Default: none."""
        return []

    def scope(self) -> dict[str, Any]:
        """The options that decide which objects and attributes a read lists (JSON-able,
        no secret). The engine stores a digest of it with every run and reads completely
        when it changed, as an incremental read from the old cursor would miss what the
        new scope covers and what left it. Default: every source option."""
        return self.options.model_dump(mode="json")

    def describe(self) -> str:
        """One line for logs and plans; never contains a secret."""
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""


class ActionKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(slots=True)
class Action:
    """One change a target is asked to make."""

    kind: ActionKind
    source_id: str
    key: str
    """The record key (stable id chosen by the mapping). Targets store it with the item
    (SQL key column, vCard UID, Exchange extended property) so a repeated create finds
    the item instead of duplicating it."""
    fields: dict[str, FieldValue] = field(default_factory=dict)
    """The complete desired record (empty for delete)."""
    changed: tuple[str, ...] = ()
    """For update: the names of the fields whose values differ from what was pushed."""
    target_id: str | None = None
    """What the target answered when it created the item (from the state), if any."""
    dn: str | None = None
    """Source DN, for messages only."""


@dataclass(slots=True)
class ActionResult:
    action: Action
    ok: bool
    target_id: str | None = None
    """Target-side id after the action (for create/update); None for delete."""
    error: str | None = None
    """Why it failed (no secrets). A failed action is retried on the next run."""
    detail: str | None = None
    """What the target actually did when that is more than the action says, for the
    run report: 'moved to ou=sales', 'disabled', 'soft-deleted'."""
    field_errors: dict[str, str] = field(default_factory=dict)
    """Fields the target refused for good (field -> why, e.g. a value its schema
    rejects) while it wrote the rest: ``ok`` stays True. The engine quarantines those
    fields and sends them again only when their value changes."""


@dataclass(slots=True)
class FieldChange:
    """One field (or attribute) as a plan shows it: what the target holds, what it gets."""

    name: str
    old: list[FieldValue]
    """Values the target holds now ([] = absent)."""
    new: list[FieldValue]
    """Values the action writes ([] = cleared)."""


@dataclass(slots=True)
class Current:
    """What a target holds now for the item of one planned action (for ``syncd plan``).

    Asked for only for the actions a plan shows, never while planning or applying."""

    dn: str | None = None
    """The item's current name (an LDAP DN, a row key); None when it does not exist."""
    new_dn: str | None = None
    """The name the action gives it, when that differs from ``dn`` (rename/move)."""
    changes: list[FieldChange] = field(default_factory=list)
    """Every field the action would really change, old -> new, as the target sees it."""
    notes: list[str] = field(default_factory=list)
    """What else the action would do ('linked to existing entry', 'disabled'...)."""
    ldif: str | None = None
    """The action as LDIF change records (LDAP targets), secrets left out."""


@dataclass(slots=True)
class TargetDrift:
    """What :meth:`Target.drift` found: items changed outside syncd, and the values the
    target wants kept for its next run (the engine commits them, never the target)."""

    keys: set[str] = field(default_factory=set)
    """Record keys whose items were edited or removed by hand: the engine plans them
    again with every field (and reads the source completely to get their records)."""
    values: dict[str, str | None] = field(default_factory=dict)
    """Per-job target values to store once this run finished cleanly (None removes a
    key): delta links, folder ids. Not stored after a failed run, so the changes they
    stand for are reported again."""
    notes: list[str] = field(default_factory=list)


class Target(ABC):
    """A place records are written to (SQL table, address book, directory...)."""

    supports_delete: ClassVar[bool] = True
    supports_soft_delete: ClassVar[bool] = False
    batch_size: ClassVar[int] = 500

    def __init__(self, connection: BaseModel, options: BaseModel, *, job: str):
        self.connection = connection
        self.options = options
        self.job = job

    def open(self) -> None:  # noqa: B027 - optional hook
        """Connect, authenticate and prepare (create the table/folder if configured).

        Raises :class:`syncd.errors.ConnectionFailed` or :class:`syncd.errors.TargetError`.
        """

    @abstractmethod
    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """Apply a batch; return exactly one result per action, in the same order.

        Must be idempotent: a create for a key that already exists updates it, a delete
        of an item that is already gone succeeds. A problem with one action is reported
        in its result; raise :class:`syncd.errors.TargetError` only when the target
        became unusable (then nothing of this batch is taken as done).
        """

    def drift(
        self, saved: dict[str, str], known_keys: Callable[[], Iterator[str]]
    ) -> TargetDrift | None:
        """After :meth:`open`, before the read: find items changed in the target outside
        syncd. ``saved`` holds the values the last clean run committed for this job;
        ``known_keys()`` streams the keys of every synced record (call it only when
        needed). Default: None (the target does not track its own changes).
        Raises ConnectionFailed/TargetError like :meth:`apply`."""
        return None

    def correlate(self, fields: dict[str, FieldValue]) -> list[str]:
        """Target ids of existing items that match a not-yet-linked record (used by
        reconciliation jobs on their first run). Default: no correlation."""
        return []

    def current(
        self, actions: Sequence[Action], secret: Callable[[str], bool] | None = None
    ) -> list[Current | None]:
        """What the target holds now for each action's item, in the same order, read
        without writing anything (``syncd plan`` shows old -> new from it). None for an
        item the target cannot tell about. ``secret(field)`` is true for fields whose
        values must not appear (in LDIF, say). Default: nothing known."""
        return [None] * len(actions)

    def read_back(self) -> ReadBack | None:
        """What the target holds now, for drift repair on a complete run (``--full``):
        items edited or deleted by hand, orphans. Called after :meth:`open`; reads only.
        Default None: this target cannot list what it holds, and a complete run compares
        the source with syncd's state only."""
        return None

    def check(self) -> list[CheckResult]:
        """Checks for `syncd doctor`. Default: none."""
        return []

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Safe to call twice."""


class ReadBack(ABC):
    """A target's own items, as read back for one complete run.

    The engine asks :meth:`differs` for every synced object the source still has, and
    :meth:`orphans` once at the end. Both only read.
    """

    @abstractmethod
    def differs(self, state: Any, fields: dict[str, FieldValue]) -> str | None:
        """Why the target's item for this synced object (``state``: its ObjectState) is
        not what syncd would write for ``fields`` now: ``"missing"`` (deleted outside
        syncd), ``"edited"`` (changed outside syncd); None when it matches."""

    def orphans(self, known_keys: Container[str]) -> Iterator[tuple[str, str | None]]:
        """(key, target id) of items the target holds as syncd's own (tagged with a key
        of this job) whose key is not in ``known_keys``: left by a crash or by a state
        reset. Default: none (the target cannot tell its own items from others')."""
        return iter(())


@dataclass(frozen=True)
class ConnectorSpec:
    """What a connector package exports as ``CONNECTOR`` and registers in the
    ``syncd.connectors`` entry-point group.

    ``connection_model`` validates the connection block of the config (minus ``type``);
    ``source_model``/``target_model`` validate a job's ``source``/``target`` block
    (minus ``connection``). A connector offers a source, a target or both.
    """

    name: str
    connection_model: type[BaseModel]
    source_class: type[Source] | None = None
    source_model: type[BaseModel] | None = None
    target_class: type[Target] | None = None
    target_model: type[BaseModel] | None = None
    description: str = ""


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
