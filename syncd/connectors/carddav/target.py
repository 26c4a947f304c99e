"""CardDAV target: records -> vCards in one address book.

How it stays safe and cheap:

* Each record is one card named ``syncd-<key>.vcf`` (or ``syncd-h-<sha256>.vcf`` for keys
  that are not plain lower-case UUID-like text), with ``UID`` and ``X-SYNCD-KEY`` = the
  key. Only such cards are ever written or deleted, and before touching a card whose
  state is not exactly what syncd last wrote, its ``X-SYNCD-KEY`` is checked: cards
  people add by hand are never touched.
* ``open()`` discovers the address book (creating it if configured) and lists it once
  with ``sync-collection`` (RFC 6578): name -> ETag.
* create = ``PUT If-None-Match: *``; update = ``PUT If-Match: <etag syncd wrote>``;
  delete = ``DELETE If-Match``. The ETag travels in the target id (``"<href> <etag>"``),
  so in the normal case every action is exactly one request.
* When the server's ETag is not the one syncd wrote (listing or 412), the card is
  fetched (``addressbook-multiget``, batched) and its content compared with the digest
  syncd embedded (``X-SYNCD-DIGEST``): an edit made outside syncd is reported (log
  warning and ``ActionResult.detail``) and overwritten or kept per ``on_external_edit``;
  a card that is merely newer than the state (a replayed batch) is simply rewritten.
* Requests run ``concurrency`` at a time on one keep-alive connection pool.

An external edit is noticed when syncd next writes that card (its source changed); a
card whose source does not change keeps the edit until then.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from syncd.connectors.carddav import vcard
from syncd.connectors.carddav.config import CardDavConnection, CardDavTargetOptions
from syncd.connectors.carddav.dav import DavClient, short_status, strong_etag
from syncd.contracts import Action, ActionKind, ActionResult, CheckResult, ReadBack, Target
from syncd.errors import ConnectionFailed, SecretError, TargetError

log = logging.getLogger(__name__)

_MISSING = object()
_TARGET_ID = re.compile(r"(/\S*/)(syncd-[A-Za-z0-9._-]+\.vcf) (\S+)")
_ATTEMPTS = 3


@dataclass
class _Work:
    action: Action
    name: str
    url: str
    path: str
    body: str | None = None
    stored: str | None = None
    """The ETag syncd wrote last (from the target id), None if unknown."""
    fetched: Any = None
    """(text, etag) once the current card has been read; None: not read."""


def _etag(resp: Any) -> str | None:
    return strong_etag(resp.headers.get("etag"))


class CardDavTarget(Target):
    """Writes vCards into one CardDAV address book (see the module doc)."""

    supports_delete = True
    batch_size = 200

    connection: CardDavConnection
    options: CardDavTargetOptions

    def __init__(
        self,
        connection: CardDavConnection,
        options: CardDavTargetOptions,
        *,
        job: str,
        event_hooks: dict[str, list[Any]] | None = None,
    ):
        super().__init__(connection, options, job=job)
        self._event_hooks = event_hooks
        self.client: DavClient | None = None
        self.book: str | None = None
        self.book_path = ""
        self.etags: dict[str, str | None] = {}
        self.sync_token: str | None = None
        self.listing_method: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._uid_cache: dict[str, str | None] = {}

    # ------------------------------------------------------------------ lifecycle

    def _client(self) -> DavClient:
        return DavClient(
            self.connection,
            max_connections=self.options.concurrency + 2,
            event_hooks=self._event_hooks,
        )

    def open(self) -> None:
        """Discover (and create) the address book and list it. Raises ConnectionFailed
        (unreachable, TLS, credentials) or TargetError (no address book, no rights)."""
        if self.client is not None:
            return
        client = self._client()
        try:
            book = client.discover(
                self.options.addressbook,
                create=self.options.create,
                display_name=self.options.display_name,
            )
            if book is None:
                raise TargetError(
                    f"address book {self.options.addressbook!r} does not exist and "
                    "create: false; create it or set create: true"
                )
            etags, token, method = client.list_etags(book)
        except BaseException:
            client.close()
            raise
        self.client, self.book = client, book
        self.book_path = urlsplit(book).path
        self.etags, self.sync_token, self.listing_method = etags, token, method
        owned = sum(1 for n in etags if vcard.is_syncd_name(n))
        log.info(
            "CardDAV address book %s: %d cards (%d written by syncd), listed by %s",
            unquote(self.book_path),
            len(etags),
            owned,
            method,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix="carddav"
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.client is not None:
            self.client.close()
            self.client = None

    def describe(self) -> str:
        book = self.options.addressbook or "(the URL)"
        return f"CardDAV {self.connection.describe()}, address book {book}"

    @property
    def stats(self) -> dict[str, int]:
        """Requests sent so far, by HTTP method."""
        return dict(self.client.stats) if self.client else {}

    # ------------------------------------------------------------------ apply

    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """One result per action, in order. Raises TargetError when the server became
        unusable (unreachable, credentials refused) in the middle of the batch."""
        if self.client is None:
            self.open()
        assert self._pool is not None
        try:
            work = [self._prepare(a) for a in actions]
            self._prefetch(work)
            futures = [self._pool.submit(self._run, w) for w in work]
            return [f.result() for f in futures]
        except ConnectionFailed as err:
            raise TargetError(str(err)) from None

    def _prepare(self, action: Action) -> _Work:
        stored_path, stored = self._parse_target_id(action.target_id)
        name = vcard.resource_name(action.key)
        if action.kind is ActionKind.DELETE and stored_path is not None:
            name = stored_path.rpartition("/")[2]  # where syncd actually wrote it
        path = self.book_path + name
        if stored_path is not None and stored_path != path:
            stored = None  # written under another name/book: its ETag says nothing here
        return _Work(action, name, urljoin(self.book or "", name), path, stored=stored)

    def _parse_target_id(self, target_id: str | None) -> tuple[str | None, str | None]:
        if not target_id:
            return None, None
        m = _TARGET_ID.fullmatch(target_id)
        if not m or not m.group(1).startswith(self.book_path):
            return None, None
        etag = m.group(3)
        return m.group(1) + m.group(2), None if etag == "-" else etag

    def _needs_content(self, w: _Work) -> bool:
        current = self.etags.get(w.name, _MISSING)
        return current is not _MISSING and (w.stored is None or w.stored != current)

    def _prefetch(self, work: list[_Work]) -> None:
        """Read, in one multiget per 100, every card whose state is not what syncd wrote."""
        names = sorted({w.name for w in work if self._needs_content(w)})
        if not names:
            return
        assert self.client is not None and self.book is not None
        try:
            found = self.client.multiget(self.book, names)
        except TargetError as err:
            log.warning("addressbook-multiget failed (%s): reading cards one by one", err)
            return
        gone = found.pop(None, None) or {}  # names the server answered 404 for
        for w in work:
            if w.name in names:
                got = found.get(w.name)
                if got is not None:
                    w.fetched = got
                    self.etags[w.name] = got[1]
                elif w.name in gone:
                    self.etags.pop(w.name, None)
                # Any other per-card answer (500, 403, nothing) says nothing about the
                # card: it stays listed and is read on its own (GET) before any write.

    def _refresh(self, w: _Work) -> None:
        assert self.client is not None
        got = self.client.get(w.url)
        if got is None:
            self.etags.pop(w.name, None)
            w.fetched = None
        else:
            w.fetched = got
            self.etags[w.name] = got[1]

    def _run(self, w: _Work) -> ActionResult:
        # A server error on one card (a GET answering 500...) fails that action only;
        # ConnectionFailed (unreachable, 401) goes up: the target is unusable.
        try:
            if w.action.kind is ActionKind.DELETE:
                return self._delete(w)
            # Built here, in the pool: vobject's CPU time overlaps other cards' requests.
            w.body = vcard.build_vcard(
                w.action.key,
                w.action.fields,
                version=self.options.vcard_version,
                member_uid=self._member_uid,
            )
            return self._upsert(w)
        except vcard.VCardError as err:
            return ActionResult(w.action, ok=False, error=str(err))
        except TargetError as err:
            return ActionResult(w.action, ok=False, error=str(err))

    def _written(self, w: _Work, resp: Any, detail: str | None = None) -> ActionResult:
        """A successful PUT. A server that changed the card while storing it (sabre/dav:
        Nextcloud, Baikal; iCloud) answers without an ETag; read it back at once, else
        every later write of this card would look like an edit made outside syncd."""
        etag = _etag(resp)
        if etag is None:
            try:
                got = self.client.get(w.url) if self.client is not None else None
            except TargetError as err:
                log.debug("reading back %s for its ETag failed: %s", w.name, err)
                got = None
            etag = got[1] if got else None
        return self._ok(w, etag, detail)

    def _ok(self, w: _Work, etag: str | None, detail: str | None = None) -> ActionResult:
        self.etags[w.name] = etag
        return ActionResult(w.action, ok=True, target_id=f"{w.path} {etag or '-'}", detail=detail)

    def _fail(self, w: _Work, resp: Any, what: str) -> ActionResult:
        return ActionResult(w.action, ok=False, error=f"{what} {w.name}: {short_status(resp)}")

    def _edited(self, w: _Work) -> None:
        log.warning(
            "card %s (key %s) in %s was changed outside syncd; on_external_edit: %s",
            w.name,
            w.action.key,
            unquote(self.book_path),
            self.options.on_external_edit,
        )

    def _owned(self, w: _Work, text: str) -> bool:
        """Is this card syncd's for the action's key? Its X-SYNCD-KEY says so; on a
        server that keeps no unknown X- properties, a card without one counts when its
        UID is the key (syncd writes UID = key) AND the state says syncd wrote this very
        resource. A card someone put at syncd's name by hand has neither."""
        owner = vcard.owner_key(text)
        if owner is not None:
            return owner == w.action.key
        wrote_here = self._parse_target_id(w.action.target_id)[0] == w.path
        return wrote_here and vcard.read_props(text, ["UID"]).get("UID") == w.action.key

    def _upsert(self, w: _Work) -> ActionResult:
        assert self.client is not None and w.body is not None
        detail: str | None = None
        for _ in range(_ATTEMPTS):
            current = self.etags.get(w.name, _MISSING)
            if current is _MISSING:
                resp = self.client.put(w.url, w.body, create_only=True)
                if resp.is_success:
                    if w.action.kind is ActionKind.UPDATE and w.action.target_id:
                        detail = "re-created: the card had been deleted outside syncd"
                    return self._written(w, resp, detail)
                if resp.status_code != 412:
                    return self._fail(w, resp, "PUT")
                self._refresh(w)
                continue
            if w.fetched is None and w.stored is not None and w.stored == current:
                resp = self.client.put(w.url, w.body, if_match=current)
                if resp.is_success:
                    return self._written(w, resp, detail)
                if resp.status_code != 412:
                    return self._fail(w, resp, "PUT")
                self._refresh(w)
                continue
            if w.fetched is None:
                self._refresh(w)
                continue
            text, etag = w.fetched
            if not self._owned(w, text):
                return ActionResult(
                    w.action,
                    ok=False,
                    error=f"{w.name} holds a card syncd did not write for this key "
                    "(another UID/X-SYNCD-KEY); it is left alone",
                )
            edited = vcard.edited_elsewhere(text)
            if not edited and vcard.same_content(text, w.body):
                return self._ok(w, etag, "already up to date")
            if edited:
                self._edited(w)
                if self.options.on_external_edit == "keep":
                    # Keep reporting the old ETag: the next update notices the edit again.
                    self.etags[w.name] = etag
                    return ActionResult(
                        w.action,
                        ok=True,
                        target_id=f"{w.path} {w.stored or '-'}",
                        detail="kept a change made outside syncd (on_external_edit: keep)",
                    )
                detail = "overwrote a change made outside syncd"
            resp = self.client.put(w.url, w.body, if_match=etag) if etag else None
            if resp is None:  # the server gave no ETag: rewrite unconditionally
                resp = self.client.put(w.url, w.body)
            if resp.is_success:
                return self._written(w, resp, detail)
            if resp.status_code != 412:
                return self._fail(w, resp, "PUT")
            w.fetched = None
            self._refresh(w)
        return ActionResult(
            w.action, ok=False, error=f"{w.name} kept changing while being written; retried later"
        )

    def _delete(self, w: _Work) -> ActionResult:
        assert self.client is not None
        detail: str | None = None
        checked = False
        for _ in range(_ATTEMPTS):
            current = self.etags.get(w.name, _MISSING)
            if current is _MISSING and not checked and w.fetched is None:
                # Not in the listing: make sure before saying so. A listing can miss a
                # card (hrefs spelled otherwise than the book URL, a card written since
                # open()), and a wrong "already gone" leaves the card forever while the
                # state forgets it. One GET, only for deletes of unlisted cards.
                checked = True
                self._refresh(w)
                continue
            if current is _MISSING:
                return ActionResult(w.action, ok=True, detail=detail or "already gone")
            if w.fetched is None and w.stored is not None and w.stored == current:
                etag = current
            elif w.fetched is None:
                self._refresh(w)
                continue
            else:
                text, etag = w.fetched
                if not self._owned(w, text):
                    return ActionResult(
                        w.action,
                        ok=True,
                        detail=f"not deleted: {w.name} is not a card syncd wrote for this key",
                    )
                if vcard.edited_elsewhere(text):
                    self._edited(w)
                    if self.options.on_external_edit == "keep":
                        return ActionResult(
                            w.action,
                            ok=True,
                            detail="not deleted: changed outside syncd (on_external_edit: keep)",
                        )
                    detail = "deleted although it was changed outside syncd"
            resp = self.client.delete(w.url, if_match=etag)
            if resp.is_success or resp.status_code == 404:
                self.etags.pop(w.name, None)
                return ActionResult(w.action, ok=True, detail=detail)
            if resp.status_code != 412:
                return self._fail(w, resp, "DELETE")
            w.fetched = None
            self._refresh(w)
        return ActionResult(
            w.action, ok=False, error=f"{w.name} kept changing while being deleted; retried later"
        )

    def read_back(self) -> ReadBack:
        """The address book's cards as listed at :meth:`open` (names and ETags): a
        complete run repairs cards deleted or edited outside syncd with no extra request."""
        return _CardReadBack(self)

    def changed_outside(self, target_ids: Iterable[str]) -> dict[str, str]:
        """Which of these cards (target ids as the state holds them) changed on the
        server since syncd wrote them, by the ETags of the listing made at open():
        ``{target_id: "changed" | "deleted"}``. No requests. A hook for an engine that
        wants to report (or re-push) edits made outside syncd without waiting for the
        source to change; a card kept by ``on_external_edit: keep`` stays listed."""
        out: dict[str, str] = {}
        for tid in target_ids:
            path, stored = self._parse_target_id(tid)
            if path is None:
                continue
            current = self.etags.get(path.rpartition("/")[2], _MISSING)
            if current is _MISSING:
                out[tid] = "deleted"
            elif stored is None or current != stored:
                out[tid] = "changed"
        return out

    # ------------------------------------------------------------------ groups

    def _member_uid(self, value: Any) -> str | None:
        """A ``members`` value -> the member's UID. Accepts record keys and syncd target
        ids (``"<href> <etag>"``, what ``lookup(job)`` in a mapping answers)."""
        if not isinstance(value, str):
            raise vcard.VCardError(f"field 'members': expected text, got {type(value).__name__}")
        m = _TARGET_ID.fullmatch(value)
        if not m:
            return value
        name = m.group(2)
        key = vcard.key_from_name(name)
        if key is not None:
            return key
        href = m.group(1) + name
        if href not in self._uid_cache:
            assert self.client is not None and self.book is not None
            try:
                got = self.client.get(urljoin(self.book, href))
            except TargetError as err:
                raise vcard.VCardError(f"field 'members': cannot read {href}: {err}") from None
            uid = vcard.read_props(got[0], ["UID"]).get("UID") if got else None
            if uid is None:
                log.warning("group member %s not found on the server: left out", href)
            self._uid_cache[href] = uid
        return self._uid_cache[href]

    # ------------------------------------------------------------------ doctor

    def check(self) -> list[CheckResult]:
        """Reach, credentials, discovery and the address book, without creating it."""
        try:
            client = self._client()
        except SecretError as err:
            return [CheckResult("carddav credentials", False, str(err))]
        except ConnectionFailed as err:  # an unusable ca_file
            return [CheckResult("carddav server", False, str(err), "check ca_file")]
        try:
            book = client.discover(
                self.options.addressbook, create=False, display_name=self.options.display_name
            )
            who = self.connection.username or "anonymous access"
            out = [
                CheckResult(
                    "carddav server", True, f"{self.connection.url} answers; {who} accepted"
                )
            ]
            if book is None:
                ok = self.options.create
                out.append(
                    CheckResult(
                        "carddav address book",
                        ok,
                        f"{self.options.addressbook!r} does not exist"
                        + ("; it is created on the first run" if ok else ""),
                        "" if ok else "create it, or set create: true",
                    )
                )
                return out
            etags, _token, method = client.list_etags(book)
            owned = sum(1 for n in etags if vcard.is_syncd_name(n))
            out.append(
                CheckResult(
                    "carddav address book",
                    True,
                    f"{unquote(urlsplit(book).path)}: {len(etags)} cards, {owned} written by "
                    f"syncd; listing by {method}",
                )
            )
            return out
        except ConnectionFailed as err:
            return [CheckResult("carddav server", False, str(err), "check url and credentials")]
        except TargetError as err:
            return [CheckResult("carddav address book", False, str(err))]
        finally:
            client.close()


class _CardReadBack(ReadBack):
    """Drift from the listing :meth:`CardDavTarget.open` made: a synced card that is no
    longer listed was deleted outside syncd; one whose ETag is not the one syncd stored
    was edited outside syncd (``on_external_edit`` then decides whether the repair
    overwrites it)."""

    def __init__(self, target: CardDavTarget):
        self.target = target

    def _name(self, state: Any) -> tuple[str, str | None]:
        t = self.target
        stored_path, etag = t._parse_target_id(state.target_id)
        if stored_path is not None and stored_path.startswith(t.book_path):
            return stored_path[len(t.book_path) :], etag
        return vcard.resource_name(state.key), None

    def differs(self, state: Any, fields: dict[str, Any]) -> str | None:
        name, etag = self._name(state)
        current = self.target.etags.get(name, _MISSING)
        if current is _MISSING:
            return "missing"
        if etag is not None and current is not None and current != etag:
            return "edited"
        return None

    def orphans(self, known_keys: Any) -> Iterator[tuple[str, str | None]]:
        t = self.target
        known = {vcard.resource_name(k) for k in known_keys}
        for name, etag in t.etags.items():
            if vcard.is_syncd_name(name) and name not in known:
                yield vcard.key_from_name(name) or name, f"{t.book_path}{name} {etag or '-'}"
