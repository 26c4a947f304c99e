"""Active Directory change tracking: DirSync and uSNChanged (``changes: dirsync | usn``).

Both methods find *which* objects changed since the cursor, then read those objects
again with an ordinary search of the job's base, scope, filter and attributes, so an
upsert always carries the complete current entry (DirSync alone returns only the
attributes that changed, and leaves out cn, backlinks and constructed attributes).

* Changed objects are looked for in the whole naming context, not only under the base:
  an object that moved out of the base, or no longer matches the filter, comes back as
  a DELETE ("left the scope"). With ``usn`` so do changed objects elsewhere in the
  domain that never were in scope (DirSync knows which objects moved and skips those);
  the engine ignores deletes of ids it never synced.
* A container (OU, container) renamed or moved changes the DN of everything below it
  without changing those objects: their subtree is listed again, objects now in scope
  come as upserts with their new DN, the others as deletes.
* Deleted objects (tombstones, ``isDeleted=TRUE``) come back as DELETEs by objectGUID.
* Renames and moves are upserts of the same objectGUID with the new DN.
* A group whose members changed is an upsert with its whole member list (huge groups
  that AD sends in ranges, ``member;range=0-1499``, are fetched to the end).

Cursors (a JSON object) tie the position to the domain controller: its dsServiceName and
invocationId. Another DC, a restored DC (new invocationId), a cursor older than the
tombstone lifetime, a changed base/filter/attribute list, or a cookie the server refuses
all lead to a full resync (``complete=True``) with a note that says why.

DirSync needs the "Replicating Directory Changes" right on the naming context (Domain
Admins have it); ``usn`` needs only read access. Both read from one DC: point the
connection at one DC, not at a load-balanced name, or every DC switch is a full resync.
Known limits (a periodic full read, ``full_every``, repairs both):

* deleting a user does not change the groups it was in (AD updates neither their
  uSNChanged nor their DirSync state), so a group's member list in the target keeps
  the deleted member until the group changes again;
* backlinks (``memberOf``) never count as a change of the object that has them: a
  mapping that reads ``memberOf`` on users sees membership changes only when the user
  changes for another reason. Map ``member`` on groups instead.

Memory: an incremental read holds the GUID and DN of each changed object (not the
entries) while it works; upserts are streamed page by page.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ldap3

from syncd.connectors.ldap import wire
from syncd.connectors.ldap.ad_common import (
    DOMAIN_SCOPE,
    GUID_BATCH,
    SHOW_DELETED,
    ServerIdentity,
    check_id_attribute,
    delete,
    deleted_objects_visible,
    detect_ad,
    entry_guid,
    guid_filter,
    in_scope,
    is_container,
    moved_since,
    naming_context,
    new_cursor,
    page_size,
    requested_attributes,
    server_identity,
    subtree_changes,
    tombstone_days,
    trusted_cursor,
    upserts,
)
from syncd.connectors.ldap.values import decode_attributes
from syncd.contracts import Change, CheckResult, Read, ReadOutcome, batched
from syncd.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

__all__ = ["check", "detect_ad", "read_dirsync", "read_usn"]

OID_DIRSYNC = "1.2.840.113556.1.4.841"
DIRSYNC_MAX_BYTES = 1 << 20
"""Size hint per DirSync answer (AD pages by it and says 'more'; Samba ignores it)."""
DIRSYNC_MAX_ROUNDS = 100000
NO_MATCH = "(objectGUID=" + "\\00" * 16 + ")"
"""A filter nothing matches (indexed): DirSync with it yields a cookie for 'now'."""


# --- uSNChanged ----------------------------------------------------------------------


def read_usn(conn: ldap3.Connection, options: Any, cursor: dict | None, *, full: bool) -> Read:
    """Changes since ``cursor`` by uSNChanged (or everything when ``full`` or when the
    cursor cannot be trusted).

    The watermark is the DC's highestCommittedUSN read *before* anything else, so a
    change made during the read is read again next time, never missed. The new cursor
    (in ``read.outcome.cursor``) is a JSON object string.

    Raises SourceError (not an AD DC, failed search) and ConfigError (base outside the
    DC's naming contexts, id_attribute other than objectGUID), here or while iterating.
    """
    check_id_attribute(options, "usn")
    ident = server_identity(conn)
    nc = naming_context(options.base, ident)
    notes: list[str] = []
    state = None
    if not full:
        state = trusted_cursor(cursor, "usn", ("usn",), options, ident, conn, notes)
    if state is not None:
        try:
            since = int(state["usn"])
        except (TypeError, ValueError):
            notes.append("the stored usn cursor is not valid: full resync")
            state = None
        else:
            if since > ident.highest_usn:
                notes.append(
                    f"the cursor's USN {since} is above the DC's highest USN "
                    f"{ident.highest_usn}: full resync"
                )
                state = None
    read = Read(iter(()))
    if state is None:
        read.changes = _usn_full(read, conn, options, ident, notes)
    else:
        read.changes = _usn_since(read, conn, options, ident, nc, int(state["usn"]), notes)
    return read


def _usn_full(
    read: Read, conn: ldap3.Connection, options: Any, ident: ServerIdentity, notes: list[str]
) -> Iterator[Change]:
    count = 0
    for _, change in upserts(conn, options, options.filter, what="full read"):
        count += 1
        yield change
    notes.append(f"usn: full read of {count} entries (watermark USN {ident.highest_usn})")
    cursor = new_cursor("usn", ident, options, usn=ident.highest_usn)
    read.outcome = ReadOutcome(cursor, complete=True, method="usn", notes=notes)


def _usn_since(
    read: Read,
    conn: ldap3.Connection,
    options: Any,
    ident: ServerIdentity,
    nc: str,
    since: int,
    notes: list[str],
) -> Iterator[Change]:
    changed_filter = f"(uSNChanged>={since + 1})"
    # 1. Every object changed anywhere in the naming context (GUID and DN only). Read
    #    first, so an object that leaves the scope during step 2 is still reported.
    changed: dict[bytes, str] = {}
    containers: list[tuple[bytes, str]] = []
    for entry in wire.paged_search(
        conn,
        nc,
        changed_filter,
        "sub",
        ["objectGUID", "objectClass", "uSNCreated"],
        page_size=page_size(options),
        extra_controls=[DOMAIN_SCOPE],
        what="usn: changed objects",
    ):
        guid = entry_guid(entry)
        if guid is None:
            continue
        dn = entry.dn.decode("utf-8", "replace")
        changed[guid] = dn
        attrs = decode_attributes(entry.attributes)
        created = (attrs.get("usncreated") or ["0"])[0]
        if is_container(attrs.get("objectclass", [])) and not (
            isinstance(created, str) and created.isdigit() and int(created) > since
        ):
            containers.append((guid, dn))
    # 2. The changed objects in scope, complete.
    emitted: set[bytes] = set()
    upserted = 0
    for guid, change in upserts(
        conn, options, f"(&{options.filter}{changed_filter})", what="usn: changed entries"
    ):
        changed.pop(guid, None)
        emitted.add(guid)
        upserted += 1
        yield change
    # 3. Changed but not (any more) in scope or filter.
    left = len(changed)
    for guid, dn in changed.items():
        emitted.add(guid)
        yield delete(guid, dn)
    changed.clear()
    # 3b. Containers renamed or moved: everything below them has a new DN.
    moved = [(g, dn) for g, dn in containers if moved_since(conn, dn, since)]
    below = 0
    for change in subtree_changes(conn, options, moved, emitted):
        below += 1
        yield change
    # 4. Tombstones (if the bind DN may see them at all: say so loudly if not).
    deleted = 0
    if not deleted_objects_visible(conn, nc):
        notes.append(
            f"deleted objects in {nc} are not visible to the bind DN: deletes are found "
            "only by full reads (set full_every, or let the account list the Deleted "
            "Objects container, or use changes: dirsync with the replication right)"
        )
        log.warning("%s", notes[-1])
    for entry in wire.paged_search(
        conn,
        nc,
        f"(&(isDeleted=TRUE){changed_filter})",
        "sub",
        ["objectGUID"],
        page_size=page_size(options),
        extra_controls=[SHOW_DELETED, DOMAIN_SCOPE],
        what="usn: deleted objects",
    ):
        guid = entry_guid(entry)
        if guid is not None:
            deleted += 1
            yield delete(guid, entry.dn.decode("utf-8", "replace"))
    notes.append(
        f"usn: changes since USN {since} (now {ident.highest_usn}): {upserted} changed, "
        f"{deleted} deleted, {left} changed outside the scope (sent as deletes in case "
        f"they left it), {below} below {len(moved)} moved or renamed containers"
    )
    cursor = new_cursor("usn", ident, options, usn=ident.highest_usn)
    read.outcome = ReadOutcome(cursor, complete=False, method="usn", notes=notes)


# --- DirSync -------------------------------------------------------------------------


class _CookieRefused(Exception):
    def __init__(self, done: wire.Done):
        super().__init__(f"{done.name} ({done.code}) {done.message}".strip())


def _dirsync_control(cookie: bytes) -> wire.Control:
    # realReplControlValue ::= SEQUENCE { Flags INTEGER, MaxBytes INTEGER, Cookie OCTET STRING }
    value = wire.enc(
        0x30,
        wire.enc_int(0x02, 0) + wire.enc_int(0x02, DIRSYNC_MAX_BYTES) + wire.enc(0x04, cookie),
    )
    return (OID_DIRSYNC, True, value)


def _dirsync_response(done: wire.Done) -> tuple[bool, bytes]:
    """(more results?, cookie) from the DirSync response control."""
    value = done.control(OID_DIRSYNC)
    if not value:
        raise SourceError("the server answered a DirSync search without a DirSync cookie")
    _, n, i = wire.read_tl(value, 0)
    parts = wire.elements(value, i, i + n)
    if len(parts) < 3:
        raise SourceError("the server's DirSync response control is malformed")
    return wire.decode_int(parts[0][1]) != 0, parts[2][1]


@dataclass(slots=True)
class _Seen:
    """A live object DirSync reported: where it is now and what changed."""

    dn: str
    renamed: bool
    """'name' changed: created, renamed or moved since the cookie."""
    created: bool
    """objectClass changed: (practically) created since the cookie."""


def _dirsync(
    conn: ldap3.Connection,
    nc: str,
    filter: str,
    attributes: list[str],
    cookie: bytes,
) -> tuple[dict[bytes, _Seen], dict[bytes, str], bytes]:
    """Run DirSync rounds until the server has no more: (live changed objects, deleted
    objects as GUID -> DN, final cookie). Raises _CookieRefused when the server rejects
    a non-empty starting cookie, SourceError for other failures."""
    live: dict[bytes, _Seen] = {}
    deleted: dict[bytes, str] = {}
    first = True
    for _ in range(DIRSYNC_MAX_ROUNDS):
        done: wire.Done | None = None
        for msg in wire.search(conn, nc, filter, "sub", attributes, [_dirsync_control(cookie)]):
            if isinstance(msg, wire.Entry):
                guid = entry_guid(msg)
                if guid is None:
                    continue
                dn = msg.dn.decode("utf-8", "replace")
                names = {n.lower() for n, _ in msg.attributes}
                is_deleted = any(
                    n.lower() == b"isdeleted" and any(v.upper() == b"TRUE" for v in vals)
                    for n, vals in msg.attributes
                )
                if is_deleted:
                    live.pop(guid, None)
                    deleted[guid] = dn
                else:
                    deleted.pop(guid, None)
                    before = live.get(guid)
                    live[guid] = _Seen(
                        dn,
                        b"name" in names or bool(before and before.renamed),
                        b"objectclass" in names or bool(before and before.created),
                    )
            elif isinstance(msg, wire.Done):
                done = msg
        assert done is not None
        if done.code != wire.SUCCESS:
            if first and cookie:
                raise _CookieRefused(done)
            if done.code == wire.INSUFFICIENT_ACCESS:
                raise SourceError(
                    f"DirSync on {nc} refused: insufficient access (the bind DN needs the "
                    "'Replicating Directory Changes' right), or use changes: usn"
                )
            raise wire.result_error(done, nc, len(live) + len(deleted), what="DirSync")
        first = False
        more, cookie = _dirsync_response(done)
        if not more:
            return live, deleted, cookie
    raise SourceError(f"DirSync on {nc} did not finish after {DIRSYNC_MAX_ROUNDS} rounds")


def _dirsync_attributes(options: Any) -> list[str]:
    # objectGUID to identify, name so that new and moved objects show up (a move
    # changes only 'name' metadata), isDeleted to tell deletes apart, objectClass to
    # tell new objects from moved ones (it comes only when it changed).
    attrs = requested_attributes(options)
    lowered = {a.lower() for a in attrs}
    for extra in ("name", "isDeleted", "objectClass"):
        if extra.lower() not in lowered:
            attrs.append(extra)
    return attrs


def read_dirsync(conn: ldap3.Connection, options: Any, cursor: dict | None, *, full: bool) -> Read:
    """Changes since ``cursor`` by the AD DirSync control (or everything when ``full``,
    when there is no trustworthy cursor, or when the server refuses the cookie).

    DirSync runs on the naming context holding ``options.base`` with the filter
    ``(objectClass=*)`` (so deleted objects and objects leaving the filter are seen);
    the objects it reports are then re-read under the job's base/scope/filter. A full
    read first takes a DirSync cookie for 'now' and then lists the scope page by page,
    so a change made during the listing is reported again by the next read.

    Raises SourceError (not AD, DirSync refused for lack of rights, failed search) and
    ConfigError (base outside the DC's naming contexts, id_attribute not objectGUID).
    """
    check_id_attribute(options, "dirsync")
    ident = server_identity(conn)
    nc = naming_context(options.base, ident)
    notes: list[str] = []
    state = None
    cookie = b""
    if not full:
        state = trusted_cursor(cursor, "dirsync", ("cookie", "nc"), options, ident, conn, notes)
    if state is not None:
        try:
            cookie = base64.b64decode(str(state["cookie"]), validate=True)
        except (binascii.Error, ValueError):
            cookie = b""
        if not cookie:
            notes.append("the stored DirSync cookie is not readable: full resync")
            state = None
        elif str(state["nc"]).lower() != nc.lower():
            notes.append("the DirSync cookie is for another naming context: full resync")
            state = None
    read = Read(iter(()))
    read.changes = _dirsync_read(read, conn, options, ident, nc, cookie if state else b"", notes)
    return read


def _dirsync_read(
    read: Read,
    conn: ldap3.Connection,
    options: Any,
    ident: ServerIdentity,
    nc: str,
    cookie: bytes,
    notes: list[str],
) -> Iterator[Change]:
    if cookie:
        try:
            live, deleted, new_cookie = _dirsync(
                conn, nc, "(objectClass=*)", _dirsync_attributes(options), cookie
            )
        except _CookieRefused as err:
            notes.append(f"the server refused the DirSync cookie ({err}): full resync")
        else:
            yield from _dirsync_changes(conn, options, nc, live, deleted, notes)
            cursor = new_cursor("dirsync", ident, options, cookie=_b64(new_cookie), nc=nc)
            read.outcome = ReadOutcome(cursor, complete=False, method="dirsync", notes=notes)
            return
    # Full: the cookie first, then the listing (changes in between are seen twice).
    _, _, new_cookie = _dirsync(conn, nc, NO_MATCH, ["objectGUID"], b"")
    count = 0
    for _, change in upserts(conn, options, options.filter, what="full read"):
        count += 1
        yield change
    notes.append(f"dirsync: full read of {count} entries")
    cursor = new_cursor("dirsync", ident, options, cookie=_b64(new_cookie), nc=nc)
    read.outcome = ReadOutcome(cursor, complete=True, method="dirsync", notes=notes)


def _dirsync_changes(
    conn: ldap3.Connection,
    options: Any,
    nc: str,
    live: dict[bytes, _Seen],
    deleted: dict[bytes, str],
    notes: list[str],
) -> Iterator[Change]:
    emitted: set[bytes] = set()
    for guid, dn in deleted.items():
        emitted.add(guid)
        yield delete(guid, dn)
    # An object outside the scope that was not renamed or moved was outside before
    # too: nothing to say. One that moved may have left the scope: a delete. The
    # others are re-read in batches; those the search does not return no longer match
    # the filter.
    candidates: list[bytes] = []
    left = 0
    for guid, seen in live.items():
        placed = in_scope(seen.dn, options.base, options.scope)
        if placed is False:
            if seen.renamed:
                left += 1
                emitted.add(guid)
                yield delete(guid, seen.dn)
        else:
            candidates.append(guid)
    upserted = 0
    for batch in batched(candidates, GUID_BATCH):
        found: set[bytes] = set()
        filt = f"(&{options.filter}{guid_filter(batch)})"
        for guid, change in upserts(conn, options, filt, what="dirsync: changed entries"):
            found.add(guid)
            emitted.add(guid)
            upserted += 1
            yield change
        for guid in batch:
            if guid not in found:
                left += 1
                emitted.add(guid)
                yield delete(guid, live[guid].dn)
    # Containers renamed or moved: everything below them has a new DN.
    maybe = [g for g, seen in live.items() if seen.renamed and not seen.created]
    moved: list[tuple[bytes, str]] = []
    for batch in batched(maybe, GUID_BATCH):
        for entry in wire.paged_search(
            conn,
            nc,
            guid_filter(batch),
            "sub",
            ["objectGUID", "objectClass"],
            page_size=page_size(options),
            extra_controls=[DOMAIN_SCOPE],
            what="dirsync: moved objects",
        ):
            guid = entry_guid(entry)
            classes = decode_attributes(entry.attributes).get("objectclass", [])
            if guid is not None and is_container(classes):
                moved.append((guid, entry.dn.decode("utf-8", "replace")))
    below = 0
    for change in subtree_changes(conn, options, moved, emitted):
        below += 1
        yield change
    notes.append(
        f"dirsync: {upserted} changed, {len(deleted)} deleted, {left} changed outside the "
        f"scope (sent as deletes in case they left it), {below} below {len(moved)} moved "
        "or renamed containers"
    )


# --- doctor --------------------------------------------------------------------------


def check(conn: ldap3.Connection, options: Any, method: str) -> list[CheckResult]:
    """`syncd doctor` checks for ``changes: dirsync | usn`` on a bound connection:
    the DC's identity, the base's naming context, the DirSync right (dirsync), whether
    deleted objects are visible (usn), and the tombstone lifetime. Never raises for a
    failed check; a lost connection still raises SourceError."""
    results: list[CheckResult] = []
    try:
        ident = server_identity(conn)
    except SourceError as err:
        return [CheckResult("Active Directory DC", False, str(err), "use changes: auto")]
    results.append(
        CheckResult(
            "Active Directory DC",
            True,
            f"{ident.describe()}, highest USN {ident.highest_usn}",
        )
    )
    try:
        nc = naming_context(options.base, ident)
    except ConfigError as err:
        results.append(CheckResult("naming context", False, str(err), "check base"))
        return results
    results.append(CheckResult("naming context", True, nc))
    if method == "dirsync":
        try:
            _dirsync(conn, nc, NO_MATCH, ["objectGUID"], b"")
            results.append(CheckResult("DirSync", True, f"allowed on {nc}"))
        except SourceError as err:
            results.append(
                CheckResult(
                    "DirSync",
                    False,
                    str(err),
                    "grant the bind DN 'Replicating Directory Changes' on the naming "
                    "context, or use changes: usn",
                )
            )
    else:
        if deleted_objects_visible(conn, nc):
            results.append(CheckResult("deleted objects visible", True, "tombstones can be read"))
        else:
            results.append(
                CheckResult(
                    "deleted objects visible",
                    False,
                    "the Deleted Objects container is hidden from the bind DN: "
                    "incremental reads cannot see deletes",
                    "let the account list Deleted Objects (dsacls /takeownership), "
                    "use changes: dirsync, or set full_every",
                )
            )
    results.append(
        CheckResult(
            "tombstone lifetime",
            True,
            f"{tombstone_days(conn, ident)} days (a cursor older than that means a full resync)",
        )
    )
    return results


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
