"""ExchangeTarget: records -> contacts or distribution lists in one Exchange folder.

Ownership: every item syncd creates carries an extended property (a named string
property in syncd's own property set :data:`PROPERTY_SET`, name ``syncd-key`` by
default) whose value is the record key. Every action starts by finding the items of its
keys **by that property** (one FindItem with a restriction per batch); only items found
that way are ever updated or deleted, so contacts a person added by hand in the same
folder are never touched, even if the state store points at them.

Idempotency: a create whose key already has an item updates that item (a crash between
apply and the state commit repeats the create: no duplicate); an update whose item was
deleted by hand re-creates it; a delete of a key without item succeeds. Duplicates of one
key (a create retried after a lost answer, a person's copy of a synced contact) are
soft-deleted (recoverable), keeping the item the state points at.

Requests per batch of N actions (N <= batch_size <= 100 in one request): one FindItem
(more pages only when a key has many items), one CreateItem for the creates (photos go
inline), one UpdateItem for the updates, one DeleteItem for the deletes; a changed photo
costs a GetItem for the batch plus one DeleteAttachment and one CreateAttachment per
contact.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from exchangelib import Q
from exchangelib import errors as ewserr
from exchangelib.extended_properties import ExtendedProperty
from exchangelib.fields import FieldPath, IndexedField
from exchangelib.folders import Contacts, Folder, FolderCollection
from exchangelib.items import Contact, DistributionList
from exchangelib.restriction import Restriction
from exchangelib.services import (
    CreateAttachment,
    CreateFolder,
    CreateItem,
    DeleteAttachment,
    DeleteItem,
    FindItem,
    GetItem,
    UpdateItem,
)

from syncd.connectors.exchange import fields as F
from syncd.connectors.exchange.client import make_account, translate, with_backoff
from syncd.connectors.exchange.models import (
    ExchangeConnection,
    ExchangeTargetOptions,
    split_folder_path,
)
from syncd.contracts import (
    Action,
    ActionKind,
    ActionResult,
    CheckResult,
    ReadBack,
    Target,
    batched,
)
from syncd.errors import ConnectionFailed, SecretError, TargetError

log = logging.getLogger(__name__)

PROPERTY_SET = "5f0c6f55-8f8e-4c1e-9a0e-73796e63642d"
"""syncd's own MAPI property set GUID (fixed forever: changing it orphans every item)."""

_MAX_REQUEST_PHOTO_BYTES = 8 * 1024 * 1024  # payload per request: photos, list members
_MEMBER_BYTES = 250  # a distribution list member in the request XML, with its item id
_EWS_CHUNK = 100  # page size of FindItem; creates/updates/deletes follow batch_size


class _PerItemBackOff:
    """exchangelib reads BackOffMilliseconds only from a SOAP fault; a per-item
    ErrorServerBusy carries it in the response message's MessageXml too."""

    @staticmethod
    def _get_exception(code: Any, text: Any, msg_xml: Any = None, rule_errors: Any = None) -> Any:
        if code == "ErrorServerBusy" and msg_xml is not None:
            for value in msg_xml.iter("{*}Value"):
                if value.get("Name") == "BackOffMilliseconds" and (value.text or "").isdigit():
                    return ewserr.ErrorServerBusy(text, back_off=int(value.text) / 1000.0)
        return CreateItem._get_exception(code, text, msg_xml, rule_errors)


# Per-item errors come back as values, not exceptions, so one bad item does not abort
# the whole batch (exchangelib raises most of them by default).
class _CreateItem(_PerItemBackOff, CreateItem):
    ERRORS_TO_CATCH_IN_RESPONSE = ewserr.ResponseMessageError


class _UpdateItem(_PerItemBackOff, UpdateItem):
    """UpdateItem that writes, of an indexed property (phones, addresses, e-mails), only
    the entries the record manages (``managed``: id(item) -> attribute -> {(label,
    sub-field)}). exchangelib alone deletes every label it is not given a value for:
    a car phone a person added would vanish when the business phone changes."""

    ERRORS_TO_CATCH_IN_RESPONSE = ewserr.ResponseMessageError

    def __init__(self, *args: Any, managed: dict[int, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.managed = managed or {}
        self._target: Any = None

    def _update_elems(self, target: Any, fieldnames: Any) -> Any:
        self._target = target
        yield from super()._update_elems(target=target, fieldnames=fieldnames)

    def _paths(self, field: Any) -> set[tuple[str, str]] | None:
        if not isinstance(field, IndexedField):
            return None
        per_item = self.managed.get(id(self._target))
        return None if per_item is None else per_item.get(field.name, set())

    def _set_field_elems(self, target_model: Any, field: Any, value: Any) -> Any:
        paths = self._paths(field)
        if paths is None:
            yield from super()._set_field_elems(target_model, field, value)
        else:
            yield from self._entries(target_model, field, value, paths)

    def _delete_field_elems(self, field: Any) -> Any:
        paths = self._paths(field)
        if paths is None:
            yield from super()._delete_field_elems(field)
        else:
            yield from self._entries(None, field, [], paths)

    def _entries(self, target_model: Any, field: Any, values: Any, paths: Any) -> Any:
        by_label = {v.label: v for v in values or []}
        subfields = {
            f.name: f for f in field.value_cls.supported_fields(version=self.account.version)
        }
        for label, sub in sorted(paths):
            value = getattr(by_label[label], sub, None) if label in by_label else None
            path = FieldPath(field=field, label=label, subfield=subfields[sub])
            if value:
                yield self._set_field_elem(
                    target_model=target_model,
                    field_path=path,
                    value=field.value_cls(**{"label": label, sub: value}),
                )
            else:
                yield self._delete_field_elem(field_path=path)


class _DeleteItem(_PerItemBackOff, DeleteItem):
    ERRORS_TO_CATCH_IN_RESPONSE = ewserr.ResponseMessageError


class _GetItem(GetItem):
    ERRORS_TO_CATCH_IN_RESPONSE = ewserr.ResponseMessageError


_registered: dict[str, str] = {}
_lock = threading.Lock()
_protocol_users: dict[int, int] = {}


def _hold_protocol(protocol: Any) -> None:
    with _lock:
        _protocol_users[id(protocol)] = _protocol_users.get(id(protocol), 0) + 1


def _release_protocol(protocol: Any) -> bool:
    """True when the caller was the last open target using ``protocol``."""
    with _lock:
        left = _protocol_users.get(id(protocol), 1) - 1
        if left <= 0:
            _protocol_users.pop(id(protocol), None)
            return True
        _protocol_users[id(protocol)] = left
        return False


PHOTO_PROPERTY = "syncd-photo-sha256"
"""Extended property (same property set) holding the SHA-256 of the photo syncd attached,
so a repeated create or update does not upload an unchanged photo again."""


def _photo_hash(photo: bytes | None) -> str | None:
    return hashlib.sha256(photo).hexdigest() if photo is not None else None


def _tag_attribute(name: str) -> str:
    """Register the tag property on Contact and DistributionList (once per name) and
    return the exchangelib attribute name it is reachable under."""
    with _lock:
        return _register(name)


def _register(name: str) -> str:
    if name in _registered:
        return _registered[name]
    attr = "syncd_tag_" + re.sub(r"\W", "_", name).lower()
    while attr in _registered.values():
        attr += "_"
    prop = type(
        f"SyncdTag_{attr}",
        (ExtendedProperty,),
        {"property_set_id": PROPERTY_SET, "property_name": name, "property_type": "String"},
    )
    for cls in (Contact, DistributionList):
        cls.register(attr, prop)
    _registered[name] = attr
    return attr


@dataclass
class _Found:
    """An owned item found by its tag."""

    id: str
    changekey: str
    key: str
    kind: str  # "contact" | "distribution_list"
    photo_hash: str | None = None


class ExchangeTarget(Target):
    """Writes contacts or distribution lists into one Exchange folder (see module doc)."""

    supports_delete: ClassVar[bool] = True

    connection: ExchangeConnection
    options: ExchangeTargetOptions

    def __init__(self, connection: ExchangeConnection, options: ExchangeTargetOptions, *, job: str):
        super().__init__(connection, options, job=job)
        self.batch_size = options.batch_size  # type: ignore[misc]
        self.kind = options.kind
        self.item_cls = Contact if self.kind == "contact" else DistributionList
        self.tag = _tag_attribute(options.tag_property)
        self.photo_tag = _tag_attribute(PHOTO_PROPERTY)
        self.inline_photos = options.inline_photos
        self.account: Any = None
        self.folder: Any = None
        self.sleep: Callable[[float], None] | None = None  # tests may shorten back-offs

    # ------------------------------------------------------------------ lifecycle
    def describe(self) -> str:
        return (
            f"Exchange {self.kind}s in {self.options.folder!r} of {self.connection.mailbox} "
            f"at {self.connection.endpoint}"
        )

    def open(self) -> None:
        """Connect, authenticate (the first request does) and find or create the folder.

        Raises ConnectionFailed (401, unreachable, TLS) or TargetError (missing folder
        with create_folder: false, unusable server).
        """
        if self.account is not None:
            self.close()
        self.account = make_account(self.connection)
        _hold_protocol(self.account.protocol)
        self.folder = self._resolve_folder(create=self.options.create_folder)
        log.info("exchange target open: %s", self.describe())

    def close(self) -> None:
        """Drop the account; close the HTTP sessions when no other open target uses them
        (exchangelib shares one protocol per endpoint and credentials in a process)."""
        if self.account is not None and _release_protocol(self.account.protocol):
            try:
                self.account.protocol.close()
            except Exception:  # closing is best effort
                log.debug("closing the exchangelib protocol failed", exc_info=True)
        self.account = None
        self.folder = None

    def check(self) -> list[CheckResult]:
        """For `syncd doctor`: "exchange login" (the server answers over verified TLS and
        accepts the credentials for the mailbox), then "exchange folder" (the folder
        exists; it is not created here)."""
        try:
            self.account = make_account(self.connection)
            _hold_protocol(self.account.protocol)
            acc = self.account
            self._call("GetFolder root", lambda: acc.root)
        except (ConnectionFailed, TargetError, SecretError) as err:
            self.close()
            return [CheckResult("exchange login", False, str(err), hint=_hint(err))]
        results = [CheckResult("exchange login", True, self.connection.describe())]
        try:
            self.folder = self._resolve_folder(create=False)
            results.append(CheckResult("exchange folder", True, self.describe()))
        except (ConnectionFailed, TargetError) as err:
            results.append(CheckResult("exchange folder", False, str(err), hint=_hint(err)))
        finally:
            self.close()
        return results

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        kwargs = {"sleep": self.sleep} if self.sleep is not None else {}
        return with_backoff(self.connection, what, fn, **kwargs)

    def _per_item_busy(
        self, what: str, items: list[Any], send: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """``send(items)`` (one request), then send again, after the back-off, the items
        the server answered one by one with ErrorServerBusy: a throttled mailbox leaves
        those unprocessed, so they are retried (at most ``max_retries`` times), not
        reported as failed changes. Items still busy after that keep the error."""
        res = list(send(items))
        conn = self.connection
        for attempt in range(1, conn.max_retries + 1):
            busy = [k for k, r in enumerate(res) if isinstance(r, ewserr.ErrorServerBusy)]
            if not busy:
                break
            asked = max((res[k].back_off or 0 for k in busy), default=0)
            wait = asked or min(2.0**attempt, conn.max_backoff)
            if wait > conn.max_backoff:
                break  # those changes fail now; the next run repeats them
            log.warning(
                "Exchange is busy for %d item(s) of %s: backing off %.2fs before retry %d/%d",
                len(busy),
                what,
                wait,
                attempt,
                conn.max_retries,
            )
            (self.sleep or time.sleep)(wait)
            again = send([items[k] for k in busy])
            for k, r in zip(busy, again, strict=True):
                res[k] = r
        return res

    # ------------------------------------------------------------------ folders
    def _resolve_folder(self, *, create: bool) -> Any:
        path = self.options.folder
        acc = self.account
        if path.startswith("public:"):
            parts = split_folder_path(path[len("public:") :])
            cur = self._call("GetFolder publicfoldersroot", lambda: acc.public_folders_root)
            shown = "public:"
        else:
            parts = split_folder_path(path)
            if parts and parts[0].lower() == "contacts":
                cur = self._call("GetFolder contacts", lambda: acc.contacts)
                parts = parts[1:]
                shown = "Contacts"
            else:
                cur = self._call("GetFolder msgfolderroot", lambda: acc.msg_folder_root)
                shown = ""
        for part in parts:
            shown = f"{shown}/{part}" if shown else part
            found = self._call(
                f"FindFolder {shown}",
                lambda cur=cur, part=part: list(
                    FolderCollection(account=acc, folders=[cur]).find_folders(
                        q=Q(name=part), depth="Shallow"
                    )
                ),
            )
            found = [f for f in found if not isinstance(f, Exception)]
            if found:
                cur = found[0]
                fclass = getattr(cur, "folder_class", None) or ""
                if not fclass.startswith("IPF.Contact"):
                    log.warning(
                        "Exchange folder %r is a %s folder, not a contacts folder: Outlook "
                        "will not show its contacts as an address book",
                        shown,
                        fclass or "generic",
                    )
                continue
            if not create:
                raise TargetError(
                    f"Exchange folder {shown!r} does not exist in {self.connection.mailbox}"
                )
            new = Folder(parent=cur, name=part, folder_class="IPF.Contact")
            made = self._call(
                f"CreateFolder {shown}",
                lambda cur=cur, new=new: list(
                    CreateFolder(account=acc).call(parent_folder=cur, folders=[new])
                ),
            )
            if isinstance(made[0], Exception):
                raise TargetError(f"cannot create Exchange folder {shown!r}: {made[0]}")
            log.info("created Exchange folder %r", shown)
            cur = made[0]
        if not any(m in cur.supported_item_models for m in (Contact, DistributionList)):
            # exchangelib builds restrictions and parses answers per folder class; a
            # folder of another class (a mail folder holding contacts) is addressed
            # through a contacts folder object with the same id.
            cur = Contacts(
                root=cur.root, id=cur.id, changekey=cur.changekey, name=cur.name, parent=cur.parent
            )
        return cur

    # ------------------------------------------------------------------ lookup
    def _find_owned(self, keys: Sequence[str]) -> dict[str, list[_Found]]:
        """Owned items of these keys in the folder: key -> items (oldest first)."""
        if not keys:
            return {}
        return self._find_tagged(Q(**{f"{self.tag}__in": list(dict.fromkeys(keys))}))

    def _find_tagged(self, q: Any) -> dict[str, list[_Found]]:
        """Owned items matching ``q`` in the folder (paged by FindItem): key -> items."""
        out: dict[str, list[_Found]] = {}
        acc = self.account
        wanted = {FieldPath(field=self.item_cls.get_field_by_fieldname(self.tag))}
        if self.kind == "contact":
            wanted.add(FieldPath(field=Contact.get_field_by_fieldname(self.photo_tag)))
        restriction = Restriction(q, folders=[self.folder], applies_to=Restriction.ITEMS)

        def run() -> list[Any]:
            # FindItem returns short string extended properties directly; exchangelib's
            # QuerySet would add a GetItem round trip for them.
            svc = FindItem(account=acc, page_size=_EWS_CHUNK)
            return list(
                svc.call(
                    folders=[self.folder],
                    additional_fields=wanted,
                    restriction=restriction,
                    order_fields=None,
                    shape="IdOnly",
                    query_string=None,
                    depth="Shallow",
                    calendar_view=None,
                    max_items=None,
                    offset=0,
                )
            )

        for item in self._call("FindItem by tag", run):
            if isinstance(item, Exception):
                raise TargetError(f"Exchange lookup by tag failed: {item}")
            key = getattr(item, self.tag, None)
            if key is None:
                continue
            kind = "contact" if isinstance(item, Contact) else "distribution_list"
            ph = getattr(item, self.photo_tag, None) if kind == "contact" else None
            out.setdefault(key, []).append(_Found(item.id, item.changekey, key, kind, ph))
        return out

    def read_back(self) -> ReadBack:
        """Every owned item of the folder (one paged FindItem on the tag): a complete run
        re-creates what was deleted by hand. Hand edits of synced fields are not seen
        (the item's change key moves with syncd's own writes too)."""
        return _ExchangeReadBack(self)

    # ------------------------------------------------------------------ apply
    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """Apply a batch (see module doc). One result per action, in order."""
        if self.account is None:
            raise TargetError("ExchangeTarget.apply() before open()")
        results: list[ActionResult | None] = [None] * len(actions)
        size = self.batch_size
        for start in range(0, len(actions), size):
            chunk = list(range(start, min(start + size, len(actions))))
            self._apply_chunk(actions, chunk, results)
        return [r for r in results if r is not None]

    def _apply_chunk(
        self, actions: Sequence[Action], idx: list[int], results: list[ActionResult | None]
    ) -> None:
        found = self._find_owned([actions[i].key for i in idx])
        creates: list[tuple[int, Any, bytes | None]] = []
        updates: list[tuple[int, _Found, list[str], bytes | None, bool]] = []
        deletes: list[tuple[int | None, _Found]] = []
        pending_attrs: dict[int, dict[str, Any]] = {}  # action index -> item attributes
        seen: set[str] = set()
        for i in idx:
            a = actions[i]
            mine = [f for f in found.get(a.key, []) if f.kind == self.kind]
            # The item the state points at (and lists' member ids with it) is the one
            # kept; the server's order of the others means nothing.
            mine.sort(key=lambda f, tid=a.target_id: f.id != tid)
            if a.key in seen:
                results[i] = ActionResult(a, False, error="key appears twice in one batch")
                continue
            seen.add(a.key)
            # Extra items of one key are leftovers of a lost answer: keep the first only.
            for dup in mine[1:]:
                deletes.append((None, dup))
            if a.kind is ActionKind.DELETE:
                if mine:
                    deletes.append((i, mine[0]))
                else:
                    results[i] = ActionResult(a, True, detail="already gone")
                continue
            try:
                attrs = F.item_attributes(a.fields, self.kind)
                photo = F.photo_of(a.fields) if self.kind == "contact" else None
            except F.FieldProblem as err:
                results[i] = ActionResult(a, False, error=str(err))
                continue
            if not mine:
                creates.append((i, F.new_item(self.kind, attrs, photo, folder=self.folder), photo))
                continue
            if a.kind is ActionKind.UPDATE:
                try:
                    names = F.changed_attributes(a.changed, self.kind)
                except F.FieldProblem as err:
                    results[i] = ActionResult(a, False, error=str(err))
                    continue
                photo_changed = "photo" in a.changed
            else:
                # A create that found its item (crash before the state commit): write all.
                names = list(attrs)
                photo_changed = self.kind == "contact"
            # The photo hash on the item says whether the photo there is already this one.
            if photo_changed and mine[0].photo_hash == _photo_hash(photo):
                photo_changed = False
            updates.append((i, mine[0], names, photo, photo_changed))
            pending_attrs[i] = attrs
        self._do_creates(actions, creates, results)
        self._do_updates(actions, updates, pending_attrs, results)
        self._do_deletes(actions, deletes, results)
        for i in idx:
            if results[i] is None:  # pragma: no cover - a bug, not a server problem
                results[i] = ActionResult(actions[i], False, error="not applied (internal)")

    def _do_creates(
        self,
        actions: Sequence[Action],
        creates: list[tuple[int, Any, bytes | None]],
        results: list[ActionResult | None],
    ) -> None:
        if not creates:
            return
        for item_idx, item, photo in creates:
            setattr(item, self.tag, actions[item_idx].key)
            if photo is not None and self.inline_photos:
                setattr(item, self.photo_tag, _photo_hash(photo))
        later: list[tuple[int, _Found, bytes | None]] = []  # photos to attach afterwards
        if not self.inline_photos:
            for _i, item, _photo in creates:
                item.attachments = []
        # Inline photos and list members: keep each request's payload bounded, as
        # Exchange refuses requests above its EWS request size limit (64 MiB default).
        for part in _by_payload(
            creates, self.batch_size, _MAX_REQUEST_PHOTO_BYTES, photos=self.inline_photos
        ):
            try:
                res = self._create_items([c[1] for c in part])
            except TargetError as err:
                if not (self.inline_photos and any(c[2] for c in part)):
                    raise
                if "ErrorSchemaValidation" not in str(err):
                    raise
                log.warning(
                    "Exchange refused photos inside CreateItem (%s); attaching them one by "
                    "one for the rest of this run (inline_photos: false avoids the try)",
                    err,
                )
                self.inline_photos = False
                for _i, item, _photo in part:
                    item.attachments = []
                    setattr(item, self.photo_tag, None)
                res = self._create_items([c[1] for c in part])
            res = self._retry_without_inline_photos(part, res)
            for (i, item, photo), r in zip(part, res, strict=True):
                if not isinstance(r, Exception) and photo is not None and not item.attachments:
                    later.append((i, _Found(r.id, r.changekey, actions[i].key, self.kind), photo))
                if isinstance(r, Exception):
                    results[i] = ActionResult(actions[i], False, error=_err(r))
                else:
                    detail = (
                        "re-created: the item had been deleted in Exchange"
                        if actions[i].kind is ActionKind.UPDATE
                        else None
                    )
                    results[i] = ActionResult(actions[i], True, target_id=r.id, detail=detail)
        if later:
            self._sync_photos(actions, later, results, new=True)

    def _retry_without_inline_photos(
        self, part: list[tuple[int, Any, bytes | None]], res: list[Any]
    ) -> list[Any]:
        """Items with an inline photo the server refused one by one: create them again
        without it (the photo follows by CreateAttachment). If that works, the server
        dislikes inline photos: stop sending them for this run."""
        failed = [
            k
            for k, (c, r) in enumerate(zip(part, res, strict=True))
            if isinstance(r, Exception) and c[1].attachments
        ]
        if not failed:
            return res
        for k in failed:
            part[k][1].attachments = []
            setattr(part[k][1], self.photo_tag, None)
        again = self._create_items([part[k][1] for k in failed])
        res = list(res)
        for k, r in zip(failed, again, strict=True):
            res[k] = r
        if any(not isinstance(r, Exception) for r in again) and self.inline_photos:
            log.warning(
                "Exchange refused contacts with an inline photo but took them without; "
                "attaching photos one by one for the rest of this run"
            )
            self.inline_photos = False
        return res

    def _create_items(self, items: list[Any]) -> list[Any]:
        acc = self.account

        def send(part: list[Any]) -> list[Any]:
            return self._call(
                f"CreateItem x{len(part)}",
                lambda: list(
                    _CreateItem(account=acc, chunk_size=len(part)).call(
                        items=part,
                        folder=self.folder,
                        message_disposition="SaveOnly",
                        send_meeting_invitations="SendToNone",
                    )
                ),
            )

        return self._per_item_busy("CreateItem", items, send)

    def _do_updates(
        self,
        actions: Sequence[Action],
        updates: list[tuple[int, _Found, list[str], bytes | None, bool]],
        pending_attrs: dict[int, dict[str, Any]],
        results: list[ActionResult | None],
    ) -> None:
        """Write the changed properties of found items (one UpdateItem per batch), retry
        change-key conflicts once, then replace photos where they changed."""
        if not updates:
            return
        acc = self.account
        pending = [u for u in updates if u[2]]
        conflicts: list[tuple[int, _Found, list[str], bytes | None, bool]] = []
        for attempt in range(2):
            if not pending:
                break
            batch = []
            managed: dict[int, Any] = {}
            for i, found, names, _photo, _pc in pending:
                attrs = pending_attrs[i]
                item = self.item_cls(
                    account=acc, folder=self.folder, id=found.id, changekey=found.changekey
                )
                a = actions[i]
                # Which phone/address/e-mail entries are syncd's to write: those of the
                # changed fields (a create that found its item: every mapped field).
                managed[id(item)] = F.managed_paths(
                    a.changed if a.kind is ActionKind.UPDATE else a.fields
                )
                for n in names:
                    setattr(item, n, attrs.get(n))
                # Re-assert ownership and key on every write (cheap, and heals a tag that
                # an Outlook add-in might have stripped).
                setattr(item, self.tag, found.key)
                batch.append((item, [*names, self.tag]))

            def send(part: list[Any], managed: dict[int, Any] = managed) -> list[Any]:
                return self._call(
                    f"UpdateItem x{len(part)}",
                    lambda: list(
                        _UpdateItem(account=acc, chunk_size=self.batch_size, managed=managed).call(
                            items=part,
                            conflict_resolution="AutoResolve",
                            message_disposition="SaveOnly",
                            send_meeting_invitations_or_cancellations="SendToNone",
                            suppress_read_receipts=True,
                        )
                    ),
                )

            res = []
            for part in _split_by_payload(
                batch, self.batch_size, _MAX_REQUEST_PHOTO_BYTES, lambda b: _payload(b[0])
            ):
                res.extend(self._per_item_busy("UpdateItem", part, send))
            conflicts = []
            for u, r in zip(pending, res, strict=True):
                i = u[0]
                if isinstance(r, ewserr.ErrorIrresolvableConflict | ewserr.ErrorInvalidChangeKey):
                    conflicts.append(u)
                elif isinstance(r, ewserr.ErrorItemNotFound):
                    # Deleted between the lookup and now: the next run re-creates it.
                    results[i] = ActionResult(actions[i], False, error="item vanished; retried")
                elif isinstance(r, Exception):
                    results[i] = ActionResult(actions[i], False, error=_err(r))
                else:
                    u[1].changekey = r[1]
                    detail = (
                        "existing item found by key and updated"
                        if actions[i].kind is ActionKind.CREATE
                        else None
                    )
                    results[i] = ActionResult(actions[i], True, target_id=r[0], detail=detail)
            if not conflicts or attempt == 1:
                break
            # Someone else changed the item since our lookup: fetch fresh change keys, retry
            # once. Our fields win (the directory is the source of truth).
            fresh = self._find_owned([actions[u[0]].key for u in conflicts])
            pending = []
            for u in conflicts:
                now = [f for f in fresh.get(actions[u[0]].key, []) if f.id == u[1].id]
                if now:
                    pending.append((u[0], now[0], u[2], u[3], u[4]))
                else:
                    results[u[0]] = ActionResult(actions[u[0]], False, error="item vanished")
            log.info("retrying %d update(s) after a change key conflict", len(pending))
        for u in conflicts:
            if results[u[0]] is None:
                results[u[0]] = ActionResult(
                    actions[u[0]], False, error="write conflict (ErrorIrresolvableConflict)"
                )
        for i, found, names, _photo, _pc in updates:
            if not names:
                results[i] = ActionResult(actions[i], True, target_id=found.id)
        photo_jobs = [
            (i, found, photo)
            for i, found, _n, photo, changed in updates
            if changed and results[i] is not None and results[i].ok  # type: ignore[union-attr]
        ]
        if photo_jobs:
            self._sync_photos(actions, photo_jobs, results)

    def _sync_photos(
        self,
        actions: Sequence[Action],
        jobs: list[tuple[int, _Found, bytes | None]],
        results: list[ActionResult | None],
        *,
        new: bool = False,
    ) -> None:
        """Replace the contact photo of these items: delete the old photo attachment(s),
        attach the new one (if any). ``new``: items just created, without photo yet."""
        acc = self.account
        ids = [(found.id, found.changekey) for _i, found, _p in jobs]
        got = (
            [None] * len(jobs)
            if new
            else self._call(
                f"GetItem attachments x{len(ids)}",
                lambda: list(
                    _GetItem(account=acc, chunk_size=self.batch_size).call(
                        items=ids,
                        additional_fields={
                            FieldPath(field=Contact.get_field_by_fieldname("attachments"))
                        },
                        shape="IdOnly",
                    )
                ),
            )
        )
        old = []
        for (i, _found, _photo), item in zip(jobs, got, strict=True):
            if item is None:
                continue
            if isinstance(item, Exception):
                results[i] = ActionResult(actions[i], False, error=f"photo: {_err(item)}")
                continue
            old.extend(a.attachment_id for a in (item.attachments or []) if a.is_contact_photo)
        if old:
            res = self._call(
                f"DeleteAttachment x{len(old)}",
                lambda: list(DeleteAttachment(account=acc).call(items=old)),
            )
            for r in res:
                if isinstance(r, Exception):
                    log.warning("could not delete an old contact photo: %s", r)
        for i, found, photo in jobs:
            if photo is None or not results[i] or not results[i].ok:  # type: ignore[union-attr]
                continue
            parent = Contact(account=acc, id=found.id, changekey=found.changekey)
            att = F.photo_attachment(photo)
            res = self._call(
                "CreateAttachment photo",
                lambda parent=parent, att=att: list(
                    CreateAttachment(account=acc).call(parent_item=parent, items=[att])
                ),
            )
            if res and isinstance(res[0], Exception):
                results[i] = ActionResult(actions[i], False, error=f"photo: {_err(res[0])}")
            elif res and res[0].attachment_id is not None and res[0].attachment_id.root_changekey:
                found.changekey = res[0].attachment_id.root_changekey
        # Record which photo is there now, only after it got there (else a retry would
        # believe the new photo is in place).
        done = [(i, f, p) for i, f, p in jobs if results[i] is not None and results[i].ok]  # type: ignore[union-attr]
        if not done:
            return
        batch = []
        for _i, found, photo in done:
            item = Contact(account=acc, id=found.id, changekey=found.changekey)
            setattr(item, self.photo_tag, _photo_hash(photo))
            batch.append((item, [self.photo_tag]))
        res = self._call(
            f"UpdateItem photo hash x{len(batch)}",
            lambda: list(
                _UpdateItem(account=acc, chunk_size=self.batch_size).call(
                    items=batch,
                    conflict_resolution="AutoResolve",
                    message_disposition="SaveOnly",
                    send_meeting_invitations_or_cancellations="SendToNone",
                    suppress_read_receipts=True,
                )
            ),
        )
        for (i, _f, _p), r in zip(done, res, strict=True):
            if isinstance(r, Exception):
                results[i] = ActionResult(actions[i], False, error=f"photo hash: {_err(r)}")

    def _do_deletes(
        self,
        actions: Sequence[Action],
        deletes: list[tuple[int | None, _Found]],
        results: list[ActionResult | None],
    ) -> None:
        if not deletes:
            return
        # Deletes of records gone from the directory are final (HardDelete). Extra items
        # of one key may be a copy a person made of a synced contact: those go to the
        # recoverable items (SoftDelete), from where the person can get them back.
        groups = [[d for d in deletes if d[0] is not None], [d for d in deletes if d[0] is None]]
        for group, how in zip(groups, ("HardDelete", "SoftDelete"), strict=True):
            for part in batched(group, self.batch_size):
                self._delete_part(actions, part, how, results)

    def _delete_part(
        self,
        actions: Sequence[Action],
        part: Sequence[tuple[int | None, _Found]],
        how: str,
        results: list[ActionResult | None],
    ) -> None:
        acc = self.account
        ids = [(f.id, f.changekey) for _i, f in part]

        def send(some: list[Any]) -> list[Any]:
            return self._call(
                f"DeleteItem x{len(some)}",
                lambda: list(
                    _DeleteItem(account=acc, chunk_size=self.batch_size).call(
                        items=some,
                        delete_type=how,
                        send_meeting_cancellations="SendToNone",
                        affected_task_occurrences="AllOccurrences",
                        suppress_read_receipts=True,
                    )
                ),
            )

        res = self._per_item_busy("DeleteItem", ids, send)
        for (i, found), r in zip(part, res, strict=True):
            if i is None:
                if isinstance(r, Exception):
                    log.warning("could not remove duplicate item of key %s: %s", found.key, r)
                else:
                    log.warning(
                        "moved a second item carrying key %s to the recoverable items "
                        "(a copy of a synced contact?): %s",
                        found.key,
                        found.id,
                    )
                continue
            if r is True or isinstance(r, ewserr.ErrorItemNotFound):
                results[i] = ActionResult(actions[i], True)
            else:
                results[i] = ActionResult(actions[i], False, error=_err(r))


def _payload(item: Any, photo: bytes | None = None) -> int:
    """About how many bytes an item adds to a request beyond its plain fields: its inline
    photo and its distribution list members."""
    return len(photo or b"") + _MEMBER_BYTES * len(getattr(item, "members", None) or [])


def _split_by_payload(entries: list[Any], count: int, max_bytes: int, size: Any) -> list[Any]:
    """Consecutive parts of at most ``count`` entries and about ``max_bytes`` by
    ``size(entry)`` (a single bigger entry still goes, alone)."""
    parts: list[list[Any]] = []
    cur: list[Any] = []
    total = 0
    for e in entries:
        n = size(e)
        if cur and (len(cur) >= count or total + n > max_bytes):
            parts.append(cur)
            cur, total = [], 0
        cur.append(e)
        total += n
    if cur:
        parts.append(cur)
    return parts


def _by_payload(
    creates: list[tuple[int, Any, bytes | None]],
    count: int,
    max_bytes: int,
    *,
    photos: bool = True,
) -> list[list[tuple[int, Any, bytes | None]]]:
    """Split creates into requests of at most ``count`` items and about ``max_bytes`` of
    payload: inline photos (when ``photos``) and list members."""
    return _split_by_payload(
        creates, count, max_bytes, lambda c: _payload(c[1], c[2] if photos else None)
    )


def _err(exc: Any) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _hint(err: Exception) -> str:
    text = str(err)
    if "ca_file" in text:
        return "ca_file must name a readable PEM file of your CA's certificate(s)"
    if "401" in text:
        return "check username/password and auth (ntlm needs DOMAIN\\user)"
    if "TLS" in text:
        return "set ca_file to the PEM of the CA that signed the server certificate"
    if "does not exist" in text:
        return "create the folder, or let syncd create it (create_folder: true)"
    return ""


__all__ = ["PROPERTY_SET", "ExchangeTarget", "translate"]


class _ExchangeReadBack(ReadBack):
    """The keys of the owned items of this job's kind in the folder, listed once."""

    def __init__(self, target: ExchangeTarget):
        self.target = target
        self._keys: set[str] | None = None

    def _owned(self) -> set[str]:
        if self._keys is None:
            t = self.target
            found = t._find_tagged(Q(**{f"{t.tag}__exists": True}))
            self._keys = {k for k, items in found.items() if any(f.kind == t.kind for f in items)}
        return self._keys

    def differs(self, state: Any, fields: dict[str, Any]) -> str | None:
        return None if state.key in self._owned() else "missing"

    def orphans(self, known_keys: Any) -> Iterator[tuple[str, str | None]]:
        for key in sorted(self._owned()):
            if key not in known_keys:
                yield key, None
