"""GraphTarget: records -> contacts in a named contact folder of one or many mailboxes.

Ownership: every contact syncd creates carries single-value extended properties in
syncd's own property set: the record key (``syncd-key``), a digest of the properties
syncd wrote (``syncd-digest``) and the photo's hash. Only contacts carrying the key
property are ever changed or deleted, so a person's own contacts (even in the same
folder) are never touched.

Per mailbox the target knows, once listed, its owned contacts by key (one listing of
the folder, ``$top`` up to 1000 per page). Writes go out as JSON ``$batch`` calls of at
most 20 requests and 4 MB (client.py), creates, updates and deletes mixed; photos
follow in a second round (they need the new contact's id). An item whose stored digest
already equals the record's is not written (a repeated batch, a repair of one mailbox
of many).

Hand edits (:meth:`GraphTarget.drift`): per mailbox one delta query from the delta
link of the last clean run. Nothing changed: that one request is all. Something
changed or was removed: the folder is listed and each owned contact's properties are
hashed; contacts whose hash differs from the stored digest, and keys the engine knows
but the mailbox lacks, are handed to the engine, which plans them again with every
field. A delta link Graph no longer accepts (410) means a complete listing. The new
delta links are values the engine commits after a clean run; the target never writes
the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

from syncd.connectors.graph import fields as F
from syncd.connectors.graph.auth import token_roles
from syncd.connectors.graph.client import GraphClient, SubRequest, SubResponse
from syncd.connectors.graph.config import GraphConnection, GraphTargetOptions
from syncd.contracts import Action, ActionKind, ActionResult, CheckResult, Target, TargetDrift
from syncd.errors import ConnectionFailed, SecretError, TargetError

log = logging.getLogger(__name__)

PROPERTY_SET = "5f0c6f55-8f8e-4c1e-9a0e-73796e63642d"
"""syncd's MAPI property set (the same as the Exchange target's: one contact, one tag)."""
DIGEST_NAME = "syncd-digest"
PHOTO_NAME = "syncd-photo-sha256"
REQUIRED_ROLE = "Contacts.ReadWrite"


def prop_id(name: str) -> str:
    """The Graph id of a named string property in syncd's property set."""
    return f"String {{{PROPERTY_SET}}} Name {name}"


@dataclass
class _Item:
    """An owned contact as listed."""

    id: str
    key: str
    digest: str | None
    photo: str | None
    edited: bool


@dataclass
class _Box:
    """One mailbox's folder and what syncd knows of it in this run."""

    address: str
    folder_id: str | None = None
    index: dict[str, _Item] | None = None
    """Owned contacts by key; None until listed."""
    extra: list[_Item] = field(default_factory=list)
    """Second and later contacts carrying one key (duplicates to remove)."""

    def path(self) -> str:
        return f"users/{quote(self.address)}/contactFolders/{self.folder_id}"


@dataclass
class _Outcome:
    ok: bool = True
    error: str | None = None
    target_id: str | None = None
    detail: str | None = None

    def fail(self, box: _Box, why: str) -> None:
        if self.ok:
            self.ok, self.error = False, f"{box.address}: {why}"[:300]


class GraphTarget(Target):
    """Writes contacts into a contact folder of one or many mailboxes (module doc)."""

    supports_delete: ClassVar[bool] = True
    batch_size: ClassVar[int] = 200  # records per apply(); requests go 20 per $batch

    connection: GraphConnection
    options: GraphTargetOptions

    def __init__(self, connection: GraphConnection, options: GraphTargetOptions, *, job: str):
        super().__init__(connection, options, job=job)
        self.client: GraphClient | None = None
        self.boxes: dict[str, _Box] = {}
        self.sleep: Callable[[float], None] | None = None  # tests record back-offs
        self.tag = prop_id(options.tag_property)
        self.digest_id = prop_id(DIGEST_NAME)
        self.photo_id = prop_id(PHOTO_NAME)
        self.fanout = options.mailbox is None

    # ---------------------------------------------------------------- lifecycle
    def describe(self) -> str:
        o = self.options
        scope = o.mailbox or (
            f"group {o.group}" if o.group else f"{len(o.mailboxes or [])} mailboxes"
        )
        return f"Graph contacts in {o.folder!r} of {scope} (tenant {self.connection.tenant_id})"

    def open(self) -> None:
        """Sign in (a refused credential raises ConnectionFailed here) and resolve the
        mailboxes (group members). Folders are found when first needed."""
        self.close()
        self.client = GraphClient(self.connection, sleep=self.sleep)
        try:
            self.client.token()
            self.boxes = {m.lower(): _Box(m) for m in self._mailboxes()}
        except SecretError as err:
            self.close()
            raise ConnectionFailed(str(err)) from None
        except BaseException:
            self.close()
            raise
        log.info("graph target open: %s (%d mailbox(es))", self.describe(), len(self.boxes))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        self.boxes = {}

    def _c(self) -> GraphClient:
        if self.client is None:
            raise TargetError("GraphTarget used before open()")
        return self.client

    def _mailboxes(self) -> list[str]:
        o = self.options
        if o.mailbox:
            return [o.mailbox]
        if o.mailboxes:
            return list(dict.fromkeys(o.mailboxes))
        c = self._c()
        group = str(o.group)
        if "@" in group:
            found = c.get_json(f"groups?$filter=mail eq '{_odata(group)}'&$select=id")
            ids = [g["id"] for g in found.get("value", [])]
            if not ids:
                raise TargetError(f"Graph group {group!r} not found")
            group = ids[0]
        out: list[str] = []
        for page in c.pages(
            f"groups/{quote(group)}/members/microsoft.graph.user?$select=id,mail,userPrincipalName&$top=999"
        ):
            for user in page.get("value", []):
                if user.get("mail"):  # users without a mailbox have no contacts
                    out.append(user["mail"])
        if not out:
            raise TargetError(f"Graph group {o.group!r} has no member with a mailbox")
        return list(dict.fromkeys(out))

    # ------------------------------------------------------------------ folders
    def _folder(self, box: _Box, *, create: bool) -> str:
        """The folder id in this mailbox. With ``create``, the folder is created first
        and looked up only if it exists already (409): one request on a first run."""
        if box.folder_id:
            return box.folder_id
        c = self._c()
        name = self.options.folder
        if create:
            resp = c.send(
                "POST",
                f"users/{quote(box.address)}/contactFolders",
                json_body={"displayName": name},
                mailbox=box.address,
            )
            if resp.status_code < 300:
                box.folder_id = resp.json()["id"]
                box.index, box.extra = {}, []  # a new folder holds nothing
                log.info("created Graph contact folder %r in %s", name, box.address)
                return box.folder_id
            if resp.status_code != 409:
                raise TargetError(
                    f"cannot create Graph contact folder {name!r} in {box.address}: "
                    f"{SubResponse(resp.status_code, _json(resp)).error()}"
                )
        found = c.get_json(
            f"users/{quote(box.address)}/contactFolders?$filter=displayName eq '{_odata(name)}'"
            "&$select=id,displayName",
            mailbox=box.address,
        )
        hits = [f for f in found.get("value", []) if f.get("displayName") == name]
        if not hits:
            raise TargetError(f"Graph contact folder {name!r} does not exist in {box.address}")
        box.folder_id = hits[0]["id"]
        return box.folder_id

    def _expand(self) -> str:
        ids = " or ".join(f"id eq '{p}'" for p in (self.tag, self.digest_id, self.photo_id))
        return f"$expand=singleValueExtendedProperties($filter={ids})"

    def _list(self, box: _Box) -> None:
        """List the folder: owned contacts by key (the oldest of a key wins)."""
        had = box.folder_id is not None
        self._folder(box, create=self.options.create_folder)
        if not had and box.index is not None:
            return  # just created: empty
        index: dict[str, _Item] = {}
        extra: list[_Item] = []
        select = ",".join(("id", *F.PROPERTIES))
        url = (
            f"{box.path()}/contacts?$select={select}&{self._expand()}&$top={self.options.page_size}"
        )
        for page in self._c().pages(url, mailbox=box.address):
            for contact in page.get("value", []):
                item = self._item(contact)
                if item is None:
                    continue
                if item.key in index:
                    extra.append(item)
                else:
                    index[item.key] = item
        box.index, box.extra = index, extra

    def _item(self, contact: dict[str, Any]) -> _Item | None:
        props = {
            p.get("id", "").lower(): p.get("value")
            for p in contact.get("singleValueExtendedProperties") or []
        }
        key = props.get(self.tag.lower())
        if not key:
            return None  # not syncd's
        stored = props.get(self.digest_id.lower())
        return _Item(
            id=contact["id"],
            key=key,
            digest=stored,
            photo=props.get(self.photo_id.lower()),
            edited=F.edited_by_hand(contact, stored),
        )

    # -------------------------------------------------------------------- drift
    def drift(
        self, saved: dict[str, str], known_keys: Callable[[], Iterator[str]]
    ) -> TargetDrift | None:
        """One delta query per mailbox (module doc). Returns the keys to write again
        and the new delta links / folder ids for the engine to keep."""
        if not self.options.track_changes:
            return None
        c = self._c()
        for box in self.boxes.values():
            box.folder_id = box.folder_id or saved.get(f"folder:{box.address.lower()}")
        known: list[set[str]] = []

        def keys() -> set[str]:
            if not known:
                known.append(set(known_keys()))
            return known[0]

        out = TargetDrift()
        with ThreadPoolExecutor(max_workers=self.connection.workers) as pool:
            found = list(
                pool.map(
                    lambda b: self._box_drift(b, saved.get(f"delta:{b.address.lower()}")),
                    self.boxes.values(),
                )
            )
        for box, (link, needs_keys, edited, note) in zip(self.boxes.values(), found, strict=True):
            addr = box.address.lower()
            out.values[f"delta:{addr}"] = link
            out.values[f"folder:{addr}"] = box.folder_id
            if note:
                out.notes.append(note)
            out.keys |= edited
            if needs_keys and box.index is not None:
                missing = keys() - set(box.index)
                if missing:
                    log.warning(
                        "%d synced contact(s) are missing from %s: writing them again",
                        len(missing),
                        box.address,
                    )
                out.keys |= missing
        del c
        return out

    def _box_drift(self, box: _Box, link: str | None) -> tuple[str | None, bool, set[str], str]:
        """(new delta link, whether missing keys must be checked, edited keys, note)."""
        note = ""
        changed = removed = 0
        if link:
            try:
                changed, removed, new = self._delta(box, link)
            except TargetError as err:
                if getattr(err, "status", None) not in (410, 404):
                    raise
                if err.status == 404:  # type: ignore[attr-defined]
                    box.folder_id = None  # the folder itself is gone: find or create it
                note = f"{box.address}: delta link expired (HTTP {err.status}): complete listing"  # type: ignore[attr-defined]
                link = None
        if not link:
            try:
                self._folder(box, create=self.options.create_folder)
            except TargetError:
                return None, False, set(), f"{box.address}: folder not found"
            if box.index is not None:
                # Just created: empty. Its first delta query waits for the next run
                # (which would list this run's own writes from any link anyway).
                return None, True, set(), note
            select = ",".join(("id", *F.PROPERTIES))
            changed, removed, new = self._delta(
                box, f"{box.path()}/contacts/delta?$select={select}"
            )
            if changed == 0 and removed == 0:
                box.index, box.extra = {}, []  # an empty folder: nothing to list
                return new, True, set(), note
            self._list(box)
            return new, True, {k for k, i in box.index.items() if i.edited}, note  # type: ignore[union-attr]
        if changed == 0 and removed == 0:
            return new, False, set(), note
        self._list(box)
        edited = {k for k, i in box.index.items() if i.edited}  # type: ignore[union-attr]
        if edited:
            log.warning(
                "%d contact(s) edited by hand in %s: writing them again", len(edited), box.address
            )
        return new, removed > 0, edited, note

    def _delta(self, box: _Box, url: str) -> tuple[int, int, str | None]:
        changed = removed = 0
        link: str | None = None
        hdrs = {"Prefer": f"odata.maxpagesize={self.options.page_size}"}
        for page in self._c().pages(url, mailbox=box.address, headers=hdrs):
            for item in page.get("value", []):
                if "@removed" in item:
                    removed += 1
                else:
                    changed += 1
            link = page.get("@odata.deltaLink") or link
        return changed, removed, link

    # -------------------------------------------------------------------- apply
    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """Apply a batch in every mailbox; an action is ok when it is done in all of
        them. One result per action, in order."""
        self._c()
        if not actions:
            return []
        prepared: list[tuple[dict[str, Any], list[str], bytes | None] | str | None] = []
        seen: set[str] = set()
        for a in actions:
            if a.key in seen:
                prepared.append("key appears twice in one batch")
                continue
            seen.add(a.key)
            if a.kind is ActionKind.DELETE:
                prepared.append(None)
                continue
            try:
                body = F.payload(a.fields)
                photo = F.photo_of(a.fields)
            except F.FieldProblem as err:
                prepared.append(str(err))
                continue
            prepared.append((body, F.managed(a.fields), photo))
        outcomes = [[_Outcome() for _ in actions] for _ in self.boxes]
        with ThreadPoolExecutor(max_workers=min(self.connection.workers, len(self.boxes))) as pool:
            done = list(
                pool.map(
                    lambda pair: self._apply_box(pair[1], actions, prepared, pair[0]),
                    zip(outcomes, self.boxes.values(), strict=True),
                )
            )
        del done
        results = []
        for i, a in enumerate(actions):
            p = prepared[i]
            if isinstance(p, str):
                results.append(ActionResult(a, False, error=p))
                continue
            per = [o[i] for o in outcomes]
            bad = next((o for o in per if not o.ok), None)
            if bad is not None:
                results.append(ActionResult(a, False, error=bad.error))
                continue
            tid = None
            if a.kind is not ActionKind.DELETE:
                tid = per[0].target_id if not self.fanout else a.key
            detail = next((o.detail for o in per if o.detail), None)
            results.append(ActionResult(a, True, target_id=tid, detail=detail))
        return results

    def _apply_box(
        self, box: _Box, actions: Sequence[Action], prepared: list[Any], outs: list[_Outcome]
    ) -> None:
        try:
            if box.index is None:
                self._list(box)
            else:
                self._folder(box, create=self.options.create_folder)
            self._write_box(box, actions, prepared, outs)
        except (TargetError, ConnectionFailed) as err:
            if not self.fanout:
                raise
            # One mailbox out of many failing must not stop the others.
            for o in outs:
                o.fail(box, str(err))

    def _write_box(
        self, box: _Box, actions: Sequence[Action], prepared: list[Any], outs: list[_Outcome]
    ) -> None:
        index = box.index
        assert index is not None
        reqs: list[SubRequest] = []
        what: list[tuple[int, str, _Item | None]] = []  # action index, verb, item
        photos: dict[int, bytes | None] = {}
        sent: dict[int, tuple[str, str | None]] = {}  # digest and photo hash written
        base = f"{box.path()}/contacts"
        for dup in box.extra:  # leftovers of a lost answer or a copy: keep the first
            reqs.append(SubRequest("DELETE", f"{base}/{dup.id}"))
            what.append((-1, "dup", dup))
        box.extra = []
        for i, a in enumerate(actions):
            p = prepared[i]
            if isinstance(p, str):
                continue
            item = index.get(a.key)
            if a.kind is ActionKind.DELETE:
                if item is None:
                    outs[i].detail = "already gone"
                    continue
                reqs.append(SubRequest("DELETE", f"{base}/{item.id}"))
                what.append((i, "delete", item))
                continue
            body, props, photo = p
            digest = F.digest_value(body, props)
            want_photo = F.photo_hash(photo)
            ext = [
                {"id": self.tag, "value": a.key},
                {"id": self.digest_id, "value": digest},
            ]
            photo_changed = item is None or (item.photo or "none") != want_photo
            if photo_changed:
                ext.append({"id": self.photo_id, "value": want_photo})
                if photo is not None or (item is not None and item.photo not in (None, "none")):
                    photos[i] = photo  # upload, or remove the photo syncd put there
            sent[i] = (digest, want_photo if photo_changed else (item.photo if item else None))
            if item is None:
                reqs.append(
                    SubRequest("POST", base, {**_clean(body), "singleValueExtendedProperties": ext})
                )
                what.append((i, "create", None))
                continue
            if item.digest == digest and not item.edited and not photo_changed:
                outs[i].target_id = item.id
                continue
            if a.kind is ActionKind.UPDATE and not item.edited:
                names = set(F.managed(a.changed))
                patch = {k: v for k, v in body.items() if k in names}
                # A field the mapping no longer produces: clear its property.
                for prop in names - set(patch):
                    patch[prop] = [] if prop in _LISTS else None
            else:
                patch = dict(body)  # edited by hand, or a create that found its item
            patch["singleValueExtendedProperties"] = ext
            reqs.append(SubRequest("PATCH", f"{base}/{item.id}", patch))
            what.append((i, "update", item))
        answers = self._c().batch(reqs, mailbox=box.address) if reqs else []
        for (i, verb, item), r in zip(what, answers, strict=True):
            self._answer(box, actions, outs, i, verb, item, r, photos, sent.get(i))
        self._photos(box, actions, outs, photos)

    def _answer(
        self,
        box: _Box,
        actions: Sequence[Action],
        outs: list[_Outcome],
        i: int,
        verb: str,
        item: _Item | None,
        r: SubResponse,
        photos: dict[int, bytes | None],
        sent: tuple[str, str | None] | None = None,
    ) -> None:
        index = box.index
        assert index is not None
        if verb == "dup":
            if r.ok or r.status == 404:
                log.warning(
                    "removed a second contact carrying key %s from %s", item.key, box.address
                )  # type: ignore[union-attr]
            else:
                log.warning(
                    "could not remove a duplicate contact in %s: %s", box.address, r.error()
                )
            return
        a = actions[i]
        if verb == "delete":
            if r.ok or r.status == 404:
                index.pop(a.key, None)
            else:
                outs[i].fail(box, r.error())
            return
        if not r.ok:
            photos.pop(i, None)
            if verb == "update" and r.status == 404:
                index.pop(a.key, None)  # deleted meanwhile: the next run creates it
                outs[i].fail(box, "contact vanished; written again next run")
            else:
                outs[i].fail(box, r.error())
            return
        body = r.body if isinstance(r.body, dict) else {}
        cid = body.get("id") or (item.id if item else None)
        if not cid:
            outs[i].fail(box, "Graph answered without a contact id")
            return
        digest, photo = sent or (None, None)
        index[a.key] = _Item(cid, a.key, digest, photo, False)
        outs[i].target_id = cid
        if verb == "update" and a.kind is ActionKind.CREATE:
            outs[i].detail = "existing contact found by key and updated"

    def _photos(
        self,
        box: _Box,
        actions: Sequence[Action],
        outs: list[_Outcome],
        photos: dict[int, bytes | None],
    ) -> None:
        reqs: list[SubRequest] = []
        order: list[int] = []
        for i, photo in photos.items():
            if not outs[i].ok or outs[i].target_id is None:
                continue
            url = f"{box.path()}/contacts/{outs[i].target_id}/photo/$value"
            if photo is None:
                reqs.append(SubRequest("DELETE", url))
            else:
                reqs.append(SubRequest("PUT", url, photo, content_type="image/jpeg"))
            order.append(i)
        if not reqs:
            return
        answers = self._c().batch(reqs, mailbox=box.address)
        undo: list[SubRequest] = []
        for i, r in zip(order, answers, strict=True):
            if r.ok or (r.status == 404 and reqs[order.index(i)].method == "DELETE"):
                continue
            outs[i].fail(box, f"photo: {r.error()}")
            # The photo hash went out with the contact: take it back, so the next run
            # uploads the photo again.
            undo.append(
                SubRequest(
                    "PATCH",
                    f"{box.path()}/contacts/{outs[i].target_id}",
                    {"singleValueExtendedProperties": [{"id": self.photo_id, "value": "failed"}]},
                )
            )
        if undo:
            self._c().batch(undo, mailbox=box.address)

    # -------------------------------------------------------------------- check
    def check(self) -> list[CheckResult]:
        """For `syncd doctor`: "graph token" (sign-in works), "graph permission" (the
        token carries the application permission Contacts.ReadWrite), then per mailbox
        (at most 5 of a fan-out) "graph mailbox" and "graph folder" (exists; not
        created here)."""
        results: list[CheckResult] = []
        try:
            self.open()
        except (ConnectionFailed, TargetError) as err:
            return [CheckResult("graph token", False, str(err), hint=_hint(str(err)))]
        try:
            c = self._c()
            results.append(CheckResult("graph token", True, self.connection.describe()))
            roles = token_roles(c._token or "")
            if roles is None:
                results.append(
                    CheckResult("graph permission", True, "token not readable; not checked")
                )
            elif REQUIRED_ROLE in roles:
                results.append(
                    CheckResult("graph permission", True, f"application permission {REQUIRED_ROLE}")
                )
            else:
                results.append(
                    CheckResult(
                        "graph permission",
                        False,
                        f"the token carries {', '.join(roles) or 'no application permission'}",
                        hint=f"grant the application permission {REQUIRED_ROLE} (admin consent)",
                    )
                )
            for box in list(self.boxes.values())[:5]:
                try:
                    c.get_json(
                        f"users/{quote(box.address)}/contactFolders?$top=1&$select=id",
                        mailbox=box.address,
                    )
                    results.append(CheckResult("graph mailbox", True, box.address))
                except (TargetError, ConnectionFailed) as err:
                    results.append(
                        CheckResult("graph mailbox", False, str(err), hint=_hint(str(err)))
                    )
                    continue
                try:
                    self._folder(box, create=False)
                    results.append(
                        CheckResult(
                            "graph folder", True, f"{self.options.folder!r} in {box.address}"
                        )
                    )
                except (TargetError, ConnectionFailed) as err:
                    results.append(
                        CheckResult("graph folder", False, str(err), hint=_hint(str(err)))
                    )
        finally:
            self.close()
        return results


_LISTS = frozenset({"emailAddresses", "imAddresses", "businessPhones", "homePhones", "categories"})


def _clean(body: dict[str, Any]) -> dict[str, Any]:
    """A create needs no empty properties."""
    return {k: v for k, v in body.items() if v not in (None, [], {})}


def _odata(text: str) -> str:
    """A string literal for an OData $filter (quotes doubled, URL-escaped)."""
    return quote(text.replace("'", "''"), safe="@.")


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _hint(text: str) -> str:
    if "invalid_client" in text or "unauthorized_client" in text:
        return (
            "check tenant_id, client_id and the client secret / certificate registered on the app"
        )
    if "TLS" in text:
        return "set ca_file to the PEM of the CA that signed the server certificate"
    if "403" in text or "AccessDenied" in text:
        return (
            f"grant the application permission {REQUIRED_ROLE}; an application access "
            "policy may exclude the mailbox"
        )
    if "404" in text or "does not exist" in text:
        return "check the mailbox address; let syncd create the folder (create_folder: true)"
    return ""
