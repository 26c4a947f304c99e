"""The LDAP source: paged full reads and incremental reads from the directory's own
change tracking (syncrepl, DirSync, uSNChanged, modifyTimestamp).

Job config (``jobs.NAME.source``)::

    source:
      connection: corp-ldap
      base: ou=devices,dc=example,dc=com
      scope: sub                    # sub | one | base
      filter: (objectClass=device)
      attributes: [cn, serialNumber] # default: all user attributes (or the mapping's)
      id_attribute: auto            # entryUUID (objectGUID on AD, nsUniqueId on 389-ds)
      changes: auto                 # auto | syncrepl | dirsync | usn | timestamp | full
      full_every: 24h               # periodic full reconciliation (timestamp: 24h default)
      timestamp_overlap: 60s
      read_deadline: 1h             # a whole read fails past this (trickling server)

The cursor is a JSON object: ``{"v": 1, "method": ..., "server": "host:port",
"last_full": epoch seconds, ...method fields}``. A cursor of another method or (for
timestamps) another server is not trusted: the read becomes a full one and says so.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import ldap3
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.config import parse_duration
from syncd.connectors.ldap import wire
from syncd.connectors.ldap.connection import (
    LdapConnection,
    bind_connection,
    connect,
    server_identity,
)
from syncd.connectors.ldap.rootdse import RootDse, pick_method, read_rootdse
from syncd.connectors.ldap.syncrepl import SyncreplRefresh
from syncd.connectors.ldap.timestamp import (
    Watermark,
    format_generalized_time,
    parse_generalized_time,
    since_filter,
)
from syncd.connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    GUID_ATTRIBUTES,
    digest_key,
    entry_change,
    uuid_to_nsuniqueid,
)
from syncd.contracts import Change, CheckResult, Read, ReadOutcome, Source
from syncd.errors import ConnectionFailed, SourceError, UserError

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
DEFAULT_TIMESTAMP_FULL_EVERY = 86400
DEFAULT_READ_DEADLINE = 3600
METHODS = ("auto", "syncrepl", "dirsync", "usn", "timestamp", "full")
_ID_NAMES = {"entryuuid": "entryUUID", "nsuniqueid": "nsUniqueId"}
"""The attributes a syncrepl Sync State control can name entries by, as users spell them."""


class LdapSourceOptions(BaseModel):
    """What to read from an LDAP connection (a job's ``source`` block)."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(description="search base DN, e.g. ou=people,dc=example,dc=com")
    scope: Literal["sub", "one", "base"] = Field("sub", description="search scope")
    filter: str = Field("(objectClass=*)", description="LDAP filter (RFC 4515)")
    attributes: list[str] | None = Field(
        None,
        description="attributes to read; default all user attributes (or the "
        "attributes the mapping uses)",
    )
    id_attribute: str = Field(
        "auto",
        description="stable id: auto (entryUUID; objectGUID on AD; nsUniqueId on 389-ds, "
        "the id its syncrepl uses) or an attribute",
    )
    changes: Literal["auto", "syncrepl", "dirsync", "usn", "timestamp", "full"] = Field(
        "auto", description="change tracking method"
    )
    full_every: int | None = Field(
        None,
        description="full reconciliation interval (e.g. 24h); default: never, "
        "except 24h for changes: timestamp (the only way it finds deletes)",
    )
    page_size: int | None = Field(None, ge=1, le=100000, description="overrides the connection's")
    timestamp_overlap: int = Field(
        60, ge=0, description="timestamp method: re-read this far back (seconds or 5m)"
    )
    binary_attributes: list[str] = Field(
        default_factory=list, description="more attributes whose values stay bytes"
    )
    read_deadline: int = Field(
        DEFAULT_READ_DEADLINE,
        ge=1,
        description="the longest one read may take, start to end, including the mapping "
        "and planning of the entries as they stream in (seconds or 30m, 2h); past it the "
        "read fails, even from a server that keeps sending bytes slowly (the "
        "connection's timeout only bounds each wait for data)",
    )

    @field_validator("full_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("read_deadline", mode="before")
    @classmethod
    def _deadline(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("timestamp_overlap", mode="before")
    @classmethod
    def _overlap(cls, value: Any) -> Any:
        if value in (0, "0"):
            return 0
        return parse_duration(value)

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("("):
            value = f"({value})"
        try:
            from ldap3.operation.search import parse_filter

            parse_filter(value, None, True, True, None, False)
        except Exception as err:
            raise ValueError(f"invalid LDAP filter {value!r}: {err}") from None
        return value

    @model_validator(mode="after")
    def _ad_needs_guid(self) -> LdapSourceOptions:
        # AD reports deleted objects by objectGUID only: say so at validate time.
        if self.changes in ("dirsync", "usn") and self.id_attribute.lower() not in (
            "auto",
            "objectguid",
        ):
            raise ValueError(
                f"changes: {self.changes} reports deleted objects by objectGUID only: set "
                f"id_attribute: auto (or objectGUID), not {self.id_attribute}"
            )
        return self

    @field_validator("base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        from ldap3.utils.dn import parse_dn

        if value:
            try:
                parse_dn(value)
            except Exception:
                raise ValueError(f"invalid base DN {value!r}") from None
        return value

    @model_validator(mode="after")
    def _check_id(self) -> LdapSourceOptions:
        if self.changes == "syncrepl" and self.id_attribute.lower() not in (
            "auto",
            *_ID_NAMES,
        ):
            raise ValueError(
                "changes: syncrepl reports deletes by entryUUID (nsUniqueId on 389-ds): "
                "id_attribute must be auto, entryUUID or nsUniqueId"
            )
        return self


def _looks_like_dn(text: str) -> bool:
    """True for a DN whose attribute types are all names or OIDs (``cn=x,ou=y``);
    anything else given to --only is an id (and goes into a filter escaped)."""
    from syncd.connectors.ldap.target import _ATTRIBUTE, parse_dn

    try:
        rdns = parse_dn(text)
    except ValueError:
        return False
    return bool(rdns) and all(_ATTRIBUTE.fullmatch(t) for rdn in rdns for t, _ in rdn)


def _tracked(inner: Iterator[Change], delivered: set[str]) -> Iterator[Change]:
    """Pass ``inner`` through (returning its result), noting each source id in
    ``delivered``."""
    it = iter(inner)
    add = delivered.add
    while True:
        try:
            change = next(it)
        except StopIteration as stop:
            return stop.value
        add(change.source_id)
        yield change


def _skipping(inner: Iterator[Change], delivered: set[str]) -> Iterator[Change]:
    """Pass ``inner`` through (returning its result) without the ids in ``delivered``:
    the engine saw those already in this read."""
    it = iter(inner)
    while True:
        try:
            change = next(it)
        except StopIteration as stop:
            return stop.value
        if change.source_id not in delivered:
            yield change


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode("ascii") if raw else None


def _unb64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None


class LdapSource(Source):
    """Reads an LDAP subtree as a stream of Changes (see the module docstring)."""

    incremental = True

    connection: LdapConnection
    options: LdapSourceOptions

    def __init__(self, connection: LdapConnection, options: LdapSourceOptions, *, job: str):
        super().__init__(connection, options, job=job)
        self._conn: ldap3.Connection | None = None
        self._paging = True
        self.binary = BINARY_ATTRIBUTES | {a.lower() for a in options.binary_attributes}

    # ----------------------------------------------------------------- helpers
    def describe(self) -> str:
        return f"LDAP {self.connection.describe()} base {self.options.base!r}"

    def scope(self) -> dict[str, Any]:
        """Base, scope, filter, attributes, id attribute and the bind account (what it
        may read): a change of any of these changes the set of entries listed."""
        o = self.options
        return {
            "base": o.base.lower(),
            "scope": o.scope,
            "filter": o.filter,
            "attributes": sorted(a.lower() for a in o.attributes) if o.attributes else None,
            "id_attribute": o.id_attribute.lower(),
            "bind_dn": (self.connection.bind_dn or "").lower(),
        }

    def close(self) -> None:
        if self._conn is not None:
            wire.close_connection(self._conn)
            self._conn = None

    def _open(self) -> ldap3.Connection:
        self.close()
        self._conn = connect(self.connection)
        return self._conn

    @property
    def page_size(self) -> int:
        return self.options.page_size or self.connection.page_size

    def resolve_method(self, conn: ldap3.Connection, root: RootDse) -> tuple[str, str]:
        """The change method to use and why. Raises SourceError when a forced method is
        not offered by the server."""
        wanted = self.options.changes
        if wanted == "auto":
            method, why = pick_method(root)
            if method == "syncrepl" and self.id_attribute(root) != root.syncrepl_id_attribute:
                # syncrepl names deleted entries by one attribute only.
                method = "timestamp"
                why = (
                    f"syncrepl needs id_attribute {_ID_NAMES[root.syncrepl_id_attribute]}: "
                    "modifyTimestamp watermark"
                )
            if method == "timestamp" and not self._timestamps_usable(conn):
                return "full", "no change tracking and no readable modifyTimestamp"
            return method, why
        if wanted == "syncrepl" and not root.supports_syncrepl:
            raise SourceError("changes: syncrepl, but the server does not offer the sync control")
        if wanted == "dirsync" and not root.supports_dirsync:
            raise SourceError("changes: dirsync, but the server does not offer DirSync")
        if wanted == "usn" and not root.is_ad:
            raise SourceError("changes: usn works with Active Directory only")
        return wanted, "configured"

    def _timestamps_usable(self, conn: ldap3.Connection) -> bool:
        usable = False
        # Read the stream to its end: stopping early would leave the connection dirty.
        for msg in wire.search(
            conn, self.options.base, "(objectClass=*)", "base", ["modifyTimestamp"]
        ):
            if isinstance(msg, wire.Entry):
                usable = any(n.lower() == b"modifytimestamp" for n, _ in msg.attributes)
        return usable

    def id_attribute(self, root: RootDse) -> str:
        wanted = self.options.id_attribute.lower()
        if wanted != "auto":
            return wanted
        if root.is_ad:
            return "objectguid"
        # 389-ds: nsUniqueId, the id its syncrepl uses, so that every method (and a
        # switch between methods) names an entry the same way.
        return root.syncrepl_id_attribute

    def _attributes(self, id_attr: str, extra: tuple[str, ...] = ()) -> tuple[list[str], frozenset]:
        """Attributes to request, and the bookkeeping ones to drop from the Changes."""
        user = self.options.attributes
        requested = list(user) if user else ["*"]
        lowered = {a.lower() for a in requested}
        if id_attr not in lowered:
            requested.append(id_attr)
        drop = set()
        for name in extra:
            if name.lower() not in lowered:
                requested.append(name)
                drop.add(name.lower())
        return requested, frozenset(drop)

    # -------------------------------------------------------------------- read
    def read(self, cursor: str | None, *, full: bool = False) -> Read:
        """Connect, pick the method and start streaming (see :class:`Source`).

        Raises ConnectionFailed (server unusable) or SourceError (rootDSE unreadable,
        forced method not offered) before any change is produced.
        """
        notes: list[str] = []
        state = self._parse_cursor(cursor, notes)
        conn = self._open()
        # One deadline for everything this read sends and receives, rootDSE included.
        wire.set_deadline(conn, self.options.read_deadline)
        try:
            root = read_rootdse(conn)
            method, why = self.resolve_method(conn, root)
        except BaseException:
            self.close()
            raise
        server = server_identity(conn)
        id_attr = self.id_attribute(root)
        self._paging = root.supports_paging
        if not self._paging:
            notes.append("the server does not offer paged results: one plain search")
        if method == "syncrepl" and id_attr != root.syncrepl_id_attribute:
            self.close()
            name = _ID_NAMES[root.syncrepl_id_attribute]
            raise SourceError(
                f"syncrepl on this server ({root.vendor()}) reports entries by {name}: "
                f"set id_attribute: auto (or {name})"
            )
        avoid = None
        if method == "syncrepl" and self.options.changes == "auto" and state:
            # An earlier run found syncrepl refused by a size limit: use the paged
            # method straight away, and try syncrepl again with the next full read.
            avoid = state.get("avoid_syncrepl") if state.get("server") == server else None
            if avoid:
                fallback = self._fallback_method(conn)
                if self._full_due(state, fallback, full)[0]:
                    avoid = None
                else:
                    method = fallback
                    why = f"{avoid} at an earlier run; syncrepl is tried again at a full read"
        notes.append(f"using {method} ({why})")
        if state and state.get("method") != method:
            notes.append(f"stored cursor is for {state.get('method')}, not {method}: full read")
            state = None
        due_full, reason = self._full_due(state, method, full)
        if due_full and reason:
            notes.append(reason)
        read = Read(iter(()))
        read.changes = self._run(
            read, conn, method, state, due_full, id_attr, server, notes, root, avoid=avoid
        )
        return read

    def _fallback_method(self, conn: ldap3.Connection) -> str:
        """The paged method ``auto`` uses when syncrepl cannot be."""
        return "timestamp" if self._timestamps_usable(conn) else "full"

    def read_entries(self, wanted: Sequence[str]) -> Read:
        """Only the entries in ``wanted``: a DN is read with a base-scope search (it
        must be under the job's base and match its filter), anything else is taken as
        the id (entryUUID, objectGUID...) and searched for under the base with
        ``(&<filter>(<id attribute>=<escaped id>))``. Never complete, no cursor.

        Raises UserError for a DN outside the base or an id that is not one,
        ConnectionFailed/SourceError like :meth:`read`."""
        from ldap3.utils.conv import escape_filter_chars

        from syncd.connectors.ldap.target import dn_within

        searches: list[tuple[str, str, str]] = []
        conn = self._open()
        wire.set_deadline(conn, self.options.read_deadline)
        try:
            id_attr = self.id_attribute(read_rootdse(conn))
        except BaseException:
            self.close()
            raise
        flt = (
            self.options.filter
            if self.options.filter.startswith("(")
            else (f"({self.options.filter})")
        )
        for item in wanted:
            if _looks_like_dn(item):
                if not dn_within(item, self.options.base):
                    self.close()
                    raise UserError(
                        f"{item!r} is not a DN under the job's base {self.options.base}"
                    )
                searches.append((item, item, "base"))
                continue
            if id_attr in GUID_ATTRIBUTES:
                try:
                    raw = uuid.UUID(item).bytes_le
                except ValueError:
                    self.close()
                    raise UserError(f"{item!r} is neither a DN nor an {id_attr}") from None
                value = "".join(f"\\{b:02x}" for b in raw)
            elif id_attr == "nsuniqueid":
                # The source id is the UUID form; 389-ds matches its own 8-8-8-8 form.
                try:
                    value = uuid_to_nsuniqueid(uuid.UUID(hex=item.replace("-", "")).bytes)
                except ValueError:
                    self.close()
                    raise UserError(f"{item!r} is neither a DN nor an nsUniqueId") from None
            else:
                value = escape_filter_chars(item)
            searches.append((item, self.options.base, f"(&{flt}({id_attr}={value}))"))
        read = Read(iter(()))
        read.changes = self._read_entries(read, conn, searches, id_attr, flt)
        return read

    def _read_entries(
        self,
        read: Read,
        conn: ldap3.Connection,
        searches: list[tuple[str, str, str]],
        id_attr: str,
        flt: str,
    ) -> Iterator[Change]:
        requested, drop = self._attributes(id_attr)
        notes: list[str] = []
        missing = [0]
        try:
            for item, base, what in searches:
                if what == "base":
                    entries = wire.paged_search(
                        conn,
                        base,
                        flt,
                        "base",
                        requested,
                        page_size=self.page_size,
                        paged=False,
                    )
                else:
                    entries = self._entries(conn, what, requested)
                found = 0
                try:
                    for change in self._changes(entries, id_attr, drop, missing):
                        found += 1
                        yield change
                except SourceError as err:
                    if "does not exist" not in str(err):
                        raise
                if not found:
                    notes.append(f"not found in the source: {item}")
            read.outcome = ReadOutcome(None, complete=False, method="entries", notes=notes)
        finally:
            self.close()

    def _parse_cursor(self, cursor: str | None, notes: list[str]) -> dict | None:
        if not cursor:
            return None
        try:
            state = json.loads(cursor)
            if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
                raise ValueError("unknown cursor version")
            return state
        except ValueError:
            notes.append("stored cursor is unreadable: full read")
            return None

    def _full_due(self, state: dict | None, method: str, full: bool) -> tuple[bool, str]:
        if full:
            return True, "full read requested"
        if method == "full":
            return True, ""
        if state is None:
            return True, "no cursor yet: full read"
        every = self.options.full_every
        if every is None and method == "timestamp":
            every = DEFAULT_TIMESTAMP_FULL_EVERY
        last = state.get("last_full")
        if every is not None and (last is None or time.time() - float(last) >= every):
            return True, f"periodic full reconciliation (full_every {every}s)"
        return False, ""

    def _run(
        self,
        read: Read,
        conn: ldap3.Connection,
        method: str,
        state: dict | None,
        due_full: bool,
        id_attr: str,
        server: str,
        notes: list[str],
        root: RootDse,
        *,
        avoid: str | None = None,
    ) -> Iterator[Change]:
        started = time.time()
        try:
            if method == "syncrepl" and self.options.changes == "auto":
                delivered: set[str] = set()
                try:
                    outcome = yield from _tracked(
                        self._read_syncrepl(conn, state, due_full, id_attr, notes, root),
                        delivered,
                    )
                except wire.SizeLimitExceeded as err:
                    # syncrepl reads unpaged (slapd ends a paged sync search after its
                    # first page): an ordinary account's size limit stops it. A paged
                    # method reads the same entries under the same ids.
                    method = self._fallback_method(conn)
                    avoid = "syncrepl refused by size limit"
                    notes.append(
                        f"{avoid}: falling back to {method} (paged results); the refused "
                        f"read stopped after {err.read} entries, which are not repeated"
                    )
                    state = None
                    outcome = yield from _skipping(
                        self._read_timestamp(conn, None, True, id_attr, server, notes)
                        if method == "timestamp"
                        else self._read_full(conn, id_attr, {}),
                        delivered,
                    )
                    if method == "timestamp":
                        # An entry changed between the two reads was delivered in its
                        # older form: forget the overlap window, so the next run
                        # delivers everything inside it again.
                        inner = json.loads(outcome.cursor)
                        inner["seen"] = {}
                        outcome.cursor = json.dumps(inner)
                del delivered
            elif method == "syncrepl":
                outcome = yield from self._read_syncrepl(
                    conn, state, due_full, id_attr, notes, root
                )
            elif method == "timestamp":
                outcome = yield from self._read_timestamp(
                    conn, state, due_full, id_attr, server, notes
                )
            elif method in ("dirsync", "usn"):
                outcome = yield from self._read_ad(conn, method, state, due_full, id_attr)
            else:
                outcome = yield from self._read_full(conn, id_attr, {})
            outcome.method = method
            outcome.notes = notes + outcome.notes
            cursor = json.loads(outcome.cursor) if outcome.cursor else {}
            cursor.update(v=CURSOR_VERSION, method=method, server=server)
            if avoid and method != "syncrepl":
                cursor["avoid_syncrepl"] = avoid
            last_full = started if outcome.complete else (state or {}).get("last_full")
            if last_full is not None:
                cursor["last_full"] = last_full
            outcome.cursor = json.dumps(cursor, sort_keys=True)
            for note in outcome.notes:
                log.info("%s: %s", self.job, note)
            read.outcome = outcome
        finally:
            self.close()

    # ----------------------------------------------------------------- methods
    def _entries(
        self, conn: ldap3.Connection, filter: str, requested: list[str]
    ) -> Iterator[wire.Entry]:
        return wire.paged_search(
            conn,
            self.options.base,
            filter,
            self.options.scope,
            requested,
            page_size=self.page_size,
            paged=self._paging,
        )

    def _changes(
        self,
        entries: Iterator[wire.Entry],
        id_attr: str,
        drop: frozenset,
        missing: list[int],
        dropped_later: frozenset = frozenset(),
    ) -> Iterator[Change]:
        auto = self.options.id_attribute.lower() == "auto"
        binary = self.binary
        key = digest_key(id_attr, binary, drop | dropped_later)
        for entry in entries:
            change = entry_change(entry, id_attr, binary=binary, drop=drop, digest_key=key)
            if change is None:
                dn = entry.dn.decode("utf-8", "replace")
                if auto:
                    raise SourceError(
                        f"entry {dn} has no {id_attr} (hidden by an ACL?): cannot track it"
                    )
                missing[0] += 1
                if missing[0] <= 10:
                    log.warning("%s: entry %s has no %s; skipped", self.job, dn, id_attr)
                continue
            yield change

    def _read_full(self, conn: ldap3.Connection, id_attr: str, cursor: dict) -> Iterator[Change]:
        requested, drop = self._attributes(id_attr)
        missing = [0]
        yield from self._changes(
            self._entries(conn, self.options.filter, requested), id_attr, drop, missing
        )
        notes = [f"{missing[0]} entries without {id_attr} skipped"] if missing[0] else []
        return ReadOutcome(json.dumps(cursor), complete=True, notes=notes)

    def _read_syncrepl(
        self,
        conn: ldap3.Connection,
        state: dict | None,
        due_full: bool,
        id_attr: str,
        notes: list[str],
        root: RootDse,
    ) -> Iterator[Change]:
        cookie = None if due_full or state is None else _unb64(state.get("cookie"))
        requested, drop = self._attributes(id_attr)
        refresh = SyncreplRefresh(
            conn,
            base=self.options.base,
            filter=self.options.filter,
            scope=self.options.scope,
            attributes=requested,
            cookie=cookie,
            id_attribute=id_attr,
            binary=self.binary,
            drop=drop,
            page_size=self.page_size,
            paged=self._paging,
            implicit_present=root.is_openldap,
        )
        yield from refresh
        if refresh.refresh_required:
            notes.append(
                "sync cookie refused by the server (e-syncRefreshRequired): fell back to "
                "a full refresh with deletion detection"
            )
            refresh = SyncreplRefresh(
                conn,
                base=self.options.base,
                filter=self.options.filter,
                scope=self.options.scope,
                attributes=requested,
                cookie=None,
                id_attribute=id_attr,
                binary=self.binary,
                drop=drop,
                page_size=self.page_size,
                paged=self._paging,
                implicit_present=root.is_openldap,
            )
            yield from refresh
            if refresh.refresh_required:
                raise SourceError("the server asked for a full refresh twice in a row")
        elif refresh.cookie_ignored:
            notes.append(
                "sync cookie not accepted by the server: it sent the whole content "
                "instead (full refresh with deletion detection)"
            )
        elif cookie is not None and refresh.complete:
            notes.append(
                "the server could not replay changes since the cookie and listed every "
                "entry (present phase): full refresh with deletion detection"
            )
        if refresh.reread:
            notes.append(
                f"syncrepl: {refresh.reread} changed entries came without the requested "
                f"attributes and were read again ({refresh.reread_missing} gone since)"
            )
        c = refresh.counts
        notes.append(
            f"syncrepl: {c['upsert']} changed, {c['delete']} deleted, "
            f"{c['present']} unchanged listed"
        )
        return ReadOutcome(json.dumps({"cookie": _b64(refresh.cookie)}), complete=refresh.complete)

    def _read_timestamp(
        self,
        conn: ldap3.Connection,
        state: dict | None,
        due_full: bool,
        id_attr: str,
        server: str,
        notes: list[str],
    ) -> Iterator[Change]:
        overlap = timedelta(seconds=self.options.timestamp_overlap)
        if not due_full and state is not None and state.get("server") != server:
            notes.append(
                f"cursor is from server {state.get('server')}, now {server}: full read "
                "(timestamps of another server may lag)"
            )
            due_full = True
        watermark = None
        if not due_full and state is not None:
            watermark = parse_generalized_time(state.get("watermark") or "")
            if watermark is None:
                notes.append("cursor has no watermark: full read")
                due_full = True
        requested, drop = self._attributes(id_attr, ("modifyTimestamp",))
        # modifyTimestamp is dropped only after the watermark saw it.
        keep_ts = frozenset(drop - {"modifytimestamp"})
        mark = Watermark(
            overlap,
            newest=watermark,
            old_seen={} if due_full else dict((state or {}).get("seen") or {}),
        )
        if due_full:
            filt = self.options.filter
        else:
            assert watermark is not None
            filt = since_filter(self.options.filter, watermark - overlap)
        missing = [0]
        entries = self._entries(conn, filt, requested)
        changes = self._changes(entries, id_attr, keep_ts, missing, drop - keep_ts)
        for change in mark.filter(changes):
            if "modifytimestamp" in drop:
                change.attributes.pop("modifytimestamp", None)
            yield change
        if mark.undated:
            notes.append(f"{mark.undated} entries without a readable modifyTimestamp")
        if missing[0]:
            notes.append(f"{missing[0]} entries without {id_attr} skipped")
        if not due_full:
            notes.append(
                f"timestamp: changes since {format_generalized_time(watermark)} "
                f"(minus {self.options.timestamp_overlap}s overlap), "
                f"{mark.skipped} already seen"
            )
        cursor = {
            "watermark": format_generalized_time(mark.newest) if mark.newest else None,
            "seen": mark.seen(),
        }
        if cursor["watermark"] is None:
            # An empty directory: start from now next time, minus the overlap.
            cursor["watermark"] = format_generalized_time(datetime.now(UTC))
        return ReadOutcome(json.dumps(cursor), complete=due_full)

    def _read_ad(
        self, conn: ldap3.Connection, method: str, state: dict | None, due_full: bool, id_attr: str
    ) -> Iterator[Change]:
        from syncd.connectors.ldap import ad  # owned by the AD connector; imported only here

        requested, _ = self._attributes(id_attr)
        options = self.options.model_copy(
            update={"id_attribute": id_attr, "attributes": requested, "page_size": self.page_size}
        )
        fn = ad.read_dirsync if method == "dirsync" else ad.read_usn
        inner_cursor = (state or {}).get("ad")
        inner = fn(conn, options, None if due_full else inner_cursor, full=due_full)
        yield from inner.changes
        if inner.outcome is None:
            raise SourceError(f"{method} read ended without an outcome")
        out = inner.outcome
        inner_state = out.cursor
        if isinstance(inner_state, str):
            try:
                inner_state = json.loads(inner_state)
            except ValueError:
                inner_state = {"raw": inner_state}
        return ReadOutcome(
            json.dumps({"ad": inner_state}), complete=out.complete, notes=list(out.notes)
        )

    # ------------------------------------------------------------------- check
    def check(self) -> list[CheckResult]:
        """`syncd doctor` checks: bind, rootDSE, vendor, base, paging, change tracking."""
        results: list[CheckResult] = []
        self.close()
        try:
            conn = connect(self.connection, bind=False)
        except UserError as err:
            hint = "check url, the port and the firewall"
            if "certificate" in str(err):
                hint = "set ca_file to the CA that signed the server certificate"
            elif "without TLS" in str(err):
                hint = "use ldaps:// or start_tls: true"
            return [CheckResult("reach and TLS", False, str(err), hint)]
        self._conn = conn
        try:
            if conn.server.ssl or conn.tls_started:
                how = "LDAPS" if conn.server.ssl else "StartTLS"
                how += ", certificate verified" if self.connection.verify else ", NOT verified"
            else:
                how = "no TLS"
            results.append(CheckResult("reach and TLS", True, f"{server_identity(conn)} ({how})"))
            try:
                bind_connection(conn, self.connection)
            except ConnectionFailed as err:
                results.append(
                    CheckResult("bind", False, str(err), "check bind_dn and the password secret")
                )
                return results
            results.append(
                CheckResult("bind", True, f"as {self.connection.bind_dn or 'anonymous'}")
            )
            try:
                root = read_rootdse(conn)
            except SourceError as err:
                results.append(
                    CheckResult("rootDSE", False, str(err), "the bind DN may not read the rootDSE")
                )
                return results
            results.append(CheckResult("rootDSE", True, f"vendor: {root.vendor()}"))
            base = self._check_base(conn)
            results.append(base)
            if base.ok:
                results.append(self._check_scope(conn, root.supports_paging))
            results.append(
                CheckResult(
                    "paged results control",
                    root.supports_paging,
                    "supported" if root.supports_paging else "not offered",
                    "" if root.supports_paging else "large reads will hit the size limit",
                )
            )
            try:
                method, why = self.resolve_method(conn, root)
                results.append(CheckResult("change tracking", True, f"using {method} ({why})"))
                if method in ("dirsync", "usn"):
                    from syncd.connectors.ldap import ad

                    results.extend(ad.check(conn, self.options, method))
            except SourceError as err:
                results.append(CheckResult("change tracking", False, str(err), "use changes: auto"))
        finally:
            self.close()
        return results

    def _check_scope(self, conn: ldap3.Connection, paging: bool) -> CheckResult:
        """Read the job's whole scope (ids only) as a run would: a size limit of the bind
        DN smaller than the scope fails here, not in the first run. Stops after the
        connection's timeout (then the scope was not read to its end: said so)."""
        who = self.connection.bind_dn or "anonymous"
        deadline = time.monotonic() + self.connection.timeout
        read = 0
        try:
            for _ in wire.paged_search(
                conn,
                self.options.base,
                self.options.filter,
                self.options.scope,
                ["1.1"],
                page_size=self.page_size,
                paged=paging,
                what="reading the job's scope",
            ):
                read += 1
                if time.monotonic() > deadline:
                    return CheckResult(
                        "size limit",
                        True,
                        f"{read} entries read as {who} within {self.connection.timeout}s, "
                        "not counted to the end",
                    )
        except SourceError as err:
            limited = "limit" in str(err)
            return CheckResult(
                "size limit",
                False,
                f"as {who}: {err}" if limited else str(err),
                "the bind DN may read fewer entries than the job's scope holds: raise its "
                "limits on the server (slapd: limits dn.exact=<bind DN> size=unlimited "
                "size.prtotal=unlimited; AD: MaxPageSize / MaxResultSetSize)"
                if limited
                else "check base, filter and the bind DN's ACLs",
            )
        return CheckResult(
            "size limit",
            True,
            f"{read} entries in the job's scope, all readable as {who}",
        )

    def _check_base(self, conn: ldap3.Connection) -> CheckResult:
        done = None
        found = False
        for msg in wire.search(conn, self.options.base, "(objectClass=*)", "base", ["1.1"]):
            if isinstance(msg, wire.Entry):
                found = True
            elif isinstance(msg, wire.Done):
                done = msg
        if done is not None and done.code == wire.SUCCESS and found:
            return CheckResult("base DN", True, self.options.base)
        detail = str(wire.result_error(done, self.options.base, 0)) if done else "no answer"
        return CheckResult("base DN", False, detail, "check base and the bind DN's ACLs")
