"""RFC 4533 (LDAP Content Synchronization) refreshOnly reads, streamed entry by entry.

One refreshOnly search with the Sync Request control returns:

* entries with a Sync State control: ``add``/``modify`` (attributes follow: an upsert),
  ``present`` (unchanged, no attributes) or ``delete`` (gone);
* Sync Info intermediate messages: ``syncIdSet`` lists UUIDs that are deleted
  (``refreshDeletes=TRUE``) or present (``FALSE``), and new cookies;
* a searchResultDone with the Sync Done control (final cookie, ``refreshDeletes``).

A refresh with a cookie is complete (anything not listed is gone) when the server
*showed* a present phase: an entry or syncIdSet in state present, or a refreshPresent
message. By RFC 4533 a Sync Done with ``refreshDeletes`` FALSE also means a present
phase (e.g. slapd after a stale cookie, when every entry changed, lists them all as
adds and nothing as present); that is trusted only from a server known to keep to it
(``implicit_present``: OpenLDAP). 389-ds ends *every* incremental refresh that way
without a present phase: taking that as a complete listing would plan the deletion of
everything unchanged. Without a cookie the server sends every entry, so a first read and
a fallback refresh are complete.

The Sync State control names an entry by a 16-byte UUID: its entryUUID on OpenLDAP,
its nsUniqueId on 389-ds (see ``RootDse.syncrepl_id_attribute``). 389-ds also returns
the changed entries of an incremental refresh with all user attributes and none of the
operational ones, whatever was requested: an entry without the id attribute that was
asked for is read again, after the refresh, by a search on that attribute.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import ldap3

from syncd.connectors.ldap import wire
from syncd.connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    digest_key,
    entry_change,
    type_matcher,
    uuid_to_nsuniqueid,
    uuid_to_str,
)
from syncd.contracts import Change, Op
from syncd.errors import SourceError

log = logging.getLogger(__name__)

OID_SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
OID_SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
OID_SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
OID_SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"

MODE_REFRESH_ONLY = 1
STATE_PRESENT, STATE_ADD, STATE_MODIFY, STATE_DELETE = 0, 1, 2, 3
REREAD_CHUNK = 100
"""Changed entries re-read per search (an OR of that many equality filters)."""


def uuid_filter(id_attribute: str, raw: bytes) -> str:
    """An equality filter for the entry a Sync State UUID names (``id_attribute`` is
    entryuuid or nsuniqueid)."""
    if id_attribute == "nsuniqueid":
        return f"(nsUniqueId={uuid_to_nsuniqueid(raw)})"
    return f"(entryUUID={uuid_to_str(raw)})"


def sync_request_control(cookie: bytes | None, *, reload_hint: bool = False) -> wire.Control:
    """The Sync Request control (critical) for a refreshOnly search."""
    value = wire.enc(0x0A, bytes([MODE_REFRESH_ONLY]))
    if cookie:
        value += wire.enc(0x04, cookie)
    if reload_hint:
        value += wire.enc(0x01, b"\xff")
    return (OID_SYNC_REQUEST, True, wire.enc(0x30, value))


def parse_state(value: bytes) -> tuple[int, bytes, bytes | None]:
    """Sync State control value -> (state, entryUUID bytes, cookie or None)."""
    # Fast path for the usual shape: 30 LL 0A 01 state 04 10 <16-byte UUID> [cookie].
    if (
        len(value) >= 23
        and value[1] < 0x80
        and value[2:4] == b"\x0a\x01"
        and (value[5:7] == b"\x04\x10")
    ):
        cookie = None
        if len(value) > 23:
            _, n, i = wire.read_tl(value, 23)
            cookie = value[i : i + n]
        return value[4], value[7:23], cookie
    _, n, i = wire.read_tl(value, 0)
    parts = wire.elements(value, i, i + n)
    state = wire.decode_int(parts[0][1])
    uuid = parts[1][1]
    cookie = parts[2][1] if len(parts) > 2 else None
    return state, uuid, cookie


def parse_done(value: bytes) -> tuple[bytes | None, bool]:
    """Sync Done control value -> (cookie or None, refreshDeletes)."""
    cookie, deletes = None, False
    if not value:
        return cookie, deletes
    _, n, i = wire.read_tl(value, 0)
    for tag, val in wire.elements(value, i, i + n):
        if tag == 0x04:
            cookie = val
        elif tag == 0x01:
            deletes = val != b"\x00"
    return cookie, deletes


@dataclass
class SyncInfo:
    kind: str  # newcookie | refreshDelete | refreshPresent | syncIdSet
    cookie: bytes | None = None
    done: bool = True
    deletes: bool = False
    uuids: list[bytes] = field(default_factory=list)


def parse_info(value: bytes) -> SyncInfo:
    """Sync Info message value (a CHOICE) -> SyncInfo."""
    tag, n, i = wire.read_tl(value, 0)
    if tag == 0x80:
        return SyncInfo("newcookie", cookie=value[i : i + n])
    kind = {0xA1: "refreshDelete", 0xA2: "refreshPresent", 0xA3: "syncIdSet"}.get(tag)
    if kind is None:
        raise SourceError(f"unknown Sync Info message (tag {tag:#x})")
    info = SyncInfo(kind)
    for t, val in wire.elements(value, i, i + n):
        if t == 0x04:
            info.cookie = val
        elif t == 0x01:
            if kind == "syncIdSet":
                info.deletes = val != b"\x00"
            else:
                info.done = val != b"\x00"
        elif t == 0x31:
            info.uuids = [v for _, v in wire.elements(val, 0, len(val))]
    return info


class SyncreplRefresh:
    """One refreshOnly search; iterate for Changes, then read the attributes:

    ``cookie`` (the newest the server gave; the old one if it gave none),
    ``complete`` (every live entry was listed: initial content or present phase),
    ``refresh_required`` (the server answered e-syncRefreshRequired: redo without
    cookie), ``cookie_ignored`` (the server could not use the cookie and sent the whole
    content instead),
    ``counts`` per state.
    """

    def __init__(
        self,
        conn: ldap3.Connection,
        *,
        base: str,
        filter: str,
        scope: str,
        attributes: Sequence[str] | None,
        cookie: bytes | None,
        id_attribute: str = "entryuuid",
        binary: frozenset[str] = BINARY_ATTRIBUTES,
        drop: frozenset[str] = frozenset(),
        page_size: int = 500,
        paged: bool = True,
        implicit_present: bool = False,
    ):
        self.conn = conn
        self.base = base
        self.filter = filter
        self.scope = scope
        self.attributes = attributes
        self.sent_cookie = cookie
        self.cookie = cookie
        self.binary = binary
        self.drop = drop
        self.id_attribute = id_attribute
        self.digest_key = digest_key(id_attribute, binary, drop)
        self.page_size = page_size
        self.paged = paged
        self.implicit_present = implicit_present
        self.complete = False
        self.refresh_required = False
        self.cookie_ignored = False
        self.counts = {"upsert": 0, "present": 0, "delete": 0}
        self.reread = 0
        self.reread_missing = 0

    def __iter__(self) -> Iterator[Change]:
        controls = [sync_request_control(self.cookie)]
        done = None
        present_seen = False
        stale: list[bytes] = []
        read = 0
        stream = wire.search(
            self.conn, self.base, self.filter, self.scope, self.attributes, controls
        )
        for msg in stream:
            if isinstance(msg, wire.Entry):
                read += 1
                state_value = next((v for o, _, v in msg.controls if o == OID_SYNC_STATE), None)
                if state_value is None:
                    raise SourceError("syncrepl entry without a Sync State control")
                state, uuid, cookie = parse_state(state_value)
                if cookie:
                    self.cookie = cookie
                sid = uuid_to_str(uuid)
                if state == STATE_DELETE:
                    self.counts["delete"] += 1
                    yield Change(Op.DELETE, sid, msg.dn.decode("utf-8", "replace"))
                elif state == STATE_PRESENT:
                    present_seen = True
                    self.counts["present"] += 1
                    yield Change(Op.PRESENT, sid, msg.dn.decode("utf-8", "replace"))
                elif self._lacks_id(msg):
                    # Not the attributes that were asked for (389-ds, incremental).
                    stale.append(uuid)
                else:
                    change = entry_change(
                        msg,
                        self.id_attribute,
                        binary=self.binary,
                        drop=self.drop,
                        sid=sid,
                        digest_key=self.digest_key,
                    )
                    self.counts["upsert"] += 1
                    yield change
            elif isinstance(msg, wire.Intermediate):
                if msg.name != OID_SYNC_INFO or msg.value is None:
                    log.debug("ignoring intermediate response %s", msg.name)
                    continue
                info = parse_info(msg.value)
                if info.cookie:
                    self.cookie = info.cookie
                if info.kind == "syncIdSet":
                    op = Op.DELETE if info.deletes else Op.PRESENT
                    if op is Op.PRESENT:
                        present_seen = True
                    self.counts[op.value] += len(info.uuids)
                    for uuid in info.uuids:
                        yield Change(op, uuid_to_str(uuid))
                elif info.kind == "refreshPresent":
                    present_seen = True
            elif isinstance(msg, wire.Done):
                done = msg
        assert done is not None
        if done.code == wire.SYNC_REFRESH_REQUIRED:
            self.refresh_required = True
            return
        if done.code != wire.SUCCESS:
            if done.code == wire.SIZE_LIMIT:
                raise wire.SizeLimitExceeded(
                    f"syncrepl refresh hit the server's size limit after {read} entries: "
                    "the read is incomplete. syncrepl reads unpaged, so the bind DN needs an "
                    "unlimited size limit (slapd 'limits dn.exact=<bind DN> size=unlimited', "
                    "389-ds nsSizeLimit: -1), or use changes: auto (falls back to a paged "
                    "method) or changes: timestamp",
                    read,
                )
            raise wire.result_error(done, self.base, read, what="syncrepl refresh")
        value = done.control(OID_SYNC_DONE)
        refresh_deletes = False
        done_cookie = None
        if value is not None:
            done_cookie, refresh_deletes = parse_done(value)
            if done_cookie:
                self.cookie = done_cookie
        if self.sent_cookie and done_cookie == b"":
            # slapd answers a cookie it cannot parse with a full initial-content refresh
            # and an empty cookie: everything was sent, and the old cookie is worthless.
            self.cookie_ignored = True
            self.cookie = None
        # Without a cookie the refresh is the initial content: every live entry. With
        # one, only a present phase the server showed lists every live entry; a bare
        # refreshDeletes FALSE is no proof (389-ds sends it after every incremental
        # refresh), and absence must never be read as deletion without proof.
        self.complete = not self.sent_cookie or self.cookie_ignored or present_seen
        if self.sent_cookie and not self.complete and not refresh_deletes:
            # An implicit present phase that listed nothing at all would mean "everything
            # is gone": never trusted.
            self.complete = self.implicit_present and self.counts["upsert"] > 0
            log.debug(
                "syncrepl refresh ended with refreshDeletes FALSE and no present message: %s",
                "taken as a present phase" if self.complete else "not a complete listing",
            )
        if stale:
            yield from self._reread(stale)

    def _lacks_id(self, entry: wire.Entry) -> bool:
        wanted = self.id_attribute
        if self.attributes and not any(a.lower() in (wanted, "+") for a in self.attributes):
            return False  # not asked for: its absence says nothing
        # A scan for the one type: the entry's other values stay unparsed.
        return entry.values_of(*type_matcher(wanted)) is None

    def _reread(self, uuids: list[bytes]) -> Iterator[Change]:
        """Read changed entries again, with the requested attributes, by their id."""
        self.reread += len(uuids)
        for start in range(0, len(uuids), REREAD_CHUNK):
            chunk = uuids[start : start + REREAD_CHUNK]
            ids = "".join(uuid_filter(self.id_attribute, u) for u in chunk)
            found = 0
            for entry in wire.paged_search(
                self.conn,
                self.base,
                f"(&{self.filter}(|{ids}))",
                self.scope,
                self.attributes,
                page_size=self.page_size,
                paged=self.paged,
                what="re-read of changed entries",
            ):
                change = entry_change(
                    entry,
                    self.id_attribute,
                    binary=self.binary,
                    drop=self.drop,
                    digest_key=self.digest_key,
                )
                if change is None:
                    raise SourceError(
                        f"re-read entry {entry.dn.decode('utf-8', 'replace')} has no "
                        f"{self.id_attribute} (hidden by an ACL?)"
                    )
                found += 1
                self.counts["upsert"] += 1
                yield change
            # Gone (or out of the filter) since the refresh: a later change, which the
            # next refresh reports.
            self.reread_missing += len(chunk) - found
