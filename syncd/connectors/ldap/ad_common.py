"""Building blocks of the Active Directory change methods (see :mod:`syncd.connectors.ldap.ad`).

Server identity (dsServiceName, invocationId, highestCommittedUSN), naming contexts,
DN scope tests, the AD cursor, and the re-read of changed objects as complete entries
(with ranged retrieval of huge multi-valued attributes such as ``member``).

Every search here goes through :mod:`syncd.connectors.ldap.wire` and is read to its end
before the next one starts (one connection, one search in flight).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.utils.dn import parse_dn

from syncd.connectors.ldap import wire
from syncd.connectors.ldap.values import (
    BINARY_ATTRIBUTES,
    decode_attributes,
    guid_to_str,
    to_change,
)
from syncd.contracts import Change, Op
from syncd.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

OID_AD_CAPABILITY = "1.2.840.113556.1.4.800"
OID_SHOW_DELETED = "1.2.840.113556.1.4.417"
SHOW_DELETED: wire.Control = (OID_SHOW_DELETED, True, None)
OID_DOMAIN_SCOPE = "1.2.840.113556.1.4.1339"
DOMAIN_SCOPE: wire.Control = (OID_DOMAIN_SCOPE, False, None)
"""No continuation references to other naming contexts / domains (AD and Samba)."""

CURSOR_VERSION = 1
DEFAULT_PAGE_SIZE = 500
GUID_BATCH = 100
"""Changed objects re-read per search (one OR filter of objectGUIDs)."""
MIN_TOMBSTONE_DAYS = 60
"""The smallest tombstoneLifetime AD ever shipped with; a cursor older than the real
lifetime may have missed deletes whose tombstones were purged."""
DEFAULT_TOMBSTONE_DAYS = 60
"""Assumed when tombstoneLifetime is not set (AD documents 60 for that case)."""

_RANGE = re.compile(
    rb"^(?P<name>[^;]+(?:;(?!range=)[^;]+)*);range=(?P<lo>\d+)-(?P<hi>\d+|\*)$", re.I
)

ROOTDSE_ATTRIBUTES = [
    "dsServiceName",
    "highestCommittedUSN",
    "namingContexts",
    "defaultNamingContext",
    "configurationNamingContext",
    "supportedCapabilities",
    "supportedControl",
]


# --- rootDSE and server identity -----------------------------------------------------


def detect_ad(root_dse: dict) -> bool:
    """True when a rootDSE (attribute name -> values, any case, str or bytes values) says
    Active Directory (or Samba AD): the LDAP_CAP_ACTIVE_DIRECTORY capability."""
    for name, values in root_dse.items():
        if name.lower() == "supportedcapabilities":
            if isinstance(values, str | bytes):
                values = [values]
            return any(
                (v.decode("ascii", "replace") if isinstance(v, bytes) else str(v))
                == OID_AD_CAPABILITY
                for v in values
            )
    return False


def search_all(
    conn: ldap3.Connection,
    base: str,
    filter: str,
    scope: str,
    attributes: Sequence[str],
    controls: Sequence[wire.Control] = (),
) -> tuple[list[wire.Entry], wire.Done]:
    """A small search read to its end: (entries, done). For base-scope look-ups only."""
    entries: list[wire.Entry] = []
    done: wire.Done | None = None
    for msg in wire.search(conn, base, filter, scope, attributes, controls):
        if isinstance(msg, wire.Entry):
            entries.append(msg)
        elif isinstance(msg, wire.Done):
            done = msg
    if done is None:  # pragma: no cover - wire always ends with Done or raises
        raise SourceError(f"no answer to a search under {base!r}")
    return entries, done


def read_base(conn: ldap3.Connection, dn: str, attributes: Sequence[str]) -> dict | None:
    """One entry's decoded attributes, or None if it does not exist / is not visible."""
    entries, done = search_all(conn, dn, "(objectClass=*)", "base", attributes)
    if done.code == wire.NO_SUCH_OBJECT or not entries:
        return None
    if done.code != wire.SUCCESS:
        raise wire.result_error(done, dn, 0, what=f"reading {dn}")
    return decode_attributes(entries[0].attributes)


@dataclass(frozen=True)
class ServerIdentity:
    """Who answered and how far its changes go, read at the start of a read."""

    service: str
    """dsServiceName: the DN of the DC's NTDS Settings object."""
    invocation_id: str
    """The DC's invocationId: changes when the DC's database is restored."""
    highest_usn: int
    naming_contexts: tuple[str, ...]
    config_nc: str | None

    def describe(self) -> str:
        return f"{dc_name(self.service)} (invocationId {self.invocation_id})"


def dc_name(service: str) -> str:
    """``CN=NTDS Settings,CN=DC1,CN=Servers,...`` -> ``DC1`` (for messages)."""
    parts = [p.split("=", 1)[-1] for p in service.split(",")]
    return parts[1] if len(parts) > 1 else service


def server_identity(conn: ldap3.Connection) -> ServerIdentity:
    """Read the rootDSE and the DC's NTDS Settings. Raises SourceError when the server is
    not an AD DC (no dsServiceName / highestCommittedUSN / invocationId)."""
    # Read with explicit names on the raw wire: ldap3's schema checks would refuse
    # highestCommittedUSN (see FACTS.md), and '*' would not include it everywhere.
    entries, done = search_all(conn, "", "(objectClass=*)", "base", ROOTDSE_ATTRIBUTES)
    if done.code != wire.SUCCESS or not entries:
        raise SourceError(f"cannot read the server's rootDSE ({done.name})")
    root = decode_attributes(entries[0].attributes)

    def first(name: str) -> str | None:
        values = root.get(name.lower()) or []
        return values[0] if values and isinstance(values[0], str) else None

    service = first("dsServiceName")
    usn = first("highestCommittedUSN")
    if not service or not usn or not usn.isdigit():
        raise SourceError(
            "the server is not an Active Directory domain controller (no dsServiceName "
            "or highestCommittedUSN in its rootDSE): use changes: auto, timestamp or full"
        )
    ntds = read_base(conn, service, ["invocationId"])
    raw_id = (ntds or {}).get("invocationid") or []
    if not raw_id or not isinstance(raw_id[0], bytes) or len(raw_id[0]) != 16:
        raise SourceError(f"cannot read the invocationId of {service} (needed to trust a USN)")
    ncs = tuple(v for v in root.get("namingcontexts", []) if isinstance(v, str))
    config_nc = first("configurationNamingContext")
    if config_nc is None:
        config_nc = next((nc for nc in ncs if nc.lower().startswith("cn=configuration,")), None)
    return ServerIdentity(service, guid_to_str(raw_id[0]), int(usn), ncs, config_nc)


def tombstone_days(conn: ldap3.Connection, ident: ServerIdentity) -> int:
    """The forest's tombstoneLifetime in days (60 when unset or unreadable)."""
    if not ident.config_nc:
        return DEFAULT_TOMBSTONE_DAYS
    dn = f"CN=Directory Service,CN=Windows NT,CN=Services,{ident.config_nc}"
    try:
        attrs = read_base(conn, dn, ["tombstoneLifetime"]) or {}
    except SourceError:
        return DEFAULT_TOMBSTONE_DAYS
    values = attrs.get("tombstonelifetime") or []
    try:
        return int(values[0]) if values else DEFAULT_TOMBSTONE_DAYS
    except (TypeError, ValueError):
        return DEFAULT_TOMBSTONE_DAYS


DELETED_OBJECTS_WKGUID = "18e2ea80684f11d2b9aa00c04f79f805"


def deleted_objects_visible(conn: ldap3.Connection, nc: str) -> bool:
    """Whether the bind DN can see the naming context's Deleted Objects container (with
    the Show Deleted control). Windows AD shows it only to administrators by default;
    without it, tombstone searches silently return nothing."""
    dn = f"<WKGUID={DELETED_OBJECTS_WKGUID},{nc}>"
    entries, done = search_all(conn, dn, "(objectClass=*)", "base", ["objectGUID"], [SHOW_DELETED])
    return done.code == wire.SUCCESS and bool(entries)


# --- DNs and scope -------------------------------------------------------------------


def dn_key(dn: str) -> tuple[str, ...] | None:
    """A DN as a tuple of lower-cased ``attr=value`` RDNs (AD compares DNs without case);
    None when it cannot be parsed."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except Exception:
        return None
    rdns: list[str] = []
    current = ""
    for attr, value, sep in parts:
        current += f"{attr.lower()}={value.lower()}"
        if sep == "+":
            current += "+"
            continue
        rdns.append(current)
        current = ""
    if current:
        rdns.append(current)
    return tuple(rdns)


def naming_context(base: str, ident: ServerIdentity) -> str:
    """The naming context that holds ``base`` (DirSync and USN searches start there).
    Raises ConfigError when ``base`` is in none of the DC's naming contexts."""
    key = dn_key(base)
    best: tuple[int, str] | None = None
    for nc in ident.naming_contexts:
        nc_key = dn_key(nc)
        if key is None or nc_key is None or len(nc_key) > len(key):
            continue
        if key[len(key) - len(nc_key) :] == nc_key and (best is None or len(nc_key) > best[0]):
            best = (len(nc_key), nc)
    if best is None:
        raise ConfigError(
            f"base {base!r} is not inside any naming context of this domain controller "
            f"({', '.join(ident.naming_contexts) or 'none listed'})"
        )
    return best[1]


def in_scope(dn: str, base: str, scope: str) -> bool | None:
    """Whether ``dn`` lies in (base, scope); None when a DN cannot be parsed."""
    key, base_key = dn_key(dn), dn_key(base)
    if key is None or base_key is None:
        return None
    depth = len(key) - len(base_key)
    if depth < 0 or key[depth:] != base_key:
        return False
    if scope == "base":
        return depth == 0
    if scope == "one":
        return depth == 1
    return True


# --- options -------------------------------------------------------------------------


def check_id_attribute(options: Any, method: str) -> None:
    """AD reports deleted objects by objectGUID only: the id must be objectGUID."""
    wanted = str(getattr(options, "id_attribute", "objectguid") or "objectguid").lower()
    if wanted not in ("objectguid", "auto"):
        raise ConfigError(
            f"changes: {method} reports deleted objects by objectGUID only: set "
            f"id_attribute: auto (or objectGUID), not {options.id_attribute}"
        )


def requested_attributes(options: Any) -> list[str]:
    """The attributes to read for complete entries (objectGUID always included)."""
    attrs = list(getattr(options, "attributes", None) or ["*"])
    if "objectguid" not in {a.lower() for a in attrs}:
        attrs.append("objectGUID")
    return attrs


def page_size(options: Any) -> int:
    return int(getattr(options, "page_size", None) or DEFAULT_PAGE_SIZE)


def binary_attributes(options: Any) -> frozenset[str]:
    extra = getattr(options, "binary_attributes", None) or []
    return BINARY_ATTRIBUTES | {a.lower() for a in extra}


def scope_key(options: Any) -> str:
    """A digest of what the read covers: a cursor made for another base, filter or
    attribute list would miss entries that are new to the scope."""
    attrs = sorted({a.lower() for a in requested_attributes(options)})
    base = dn_key(options.base) or (options.base.lower(),)
    text = json.dumps([list(base), options.scope, options.filter, attrs])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- cursor --------------------------------------------------------------------------


def new_cursor(method: str, ident: ServerIdentity, options: Any, **fields: Any) -> str:
    return json.dumps(
        {
            "v": CURSOR_VERSION,
            "method": method,
            "server": ident.service,
            "invocation_id": ident.invocation_id,
            "scope": scope_key(options),
            "time": int(time.time()),
            **fields,
        },
        sort_keys=True,
    )


def trusted_cursor(
    cursor: Any,
    method: str,
    required: Iterable[str],
    options: Any,
    ident: ServerIdentity,
    conn: ldap3.Connection,
    notes: list[str],
) -> dict | None:
    """The stored cursor if an incremental read may build on it; otherwise None with a
    note saying why the read is a full resync instead."""
    if cursor is None:
        return None
    if isinstance(cursor, str):
        try:
            cursor = json.loads(cursor)
        except ValueError:
            cursor = None
    fields = ("v", "method", "server", "invocation_id", "scope", "time", *required)
    if (
        not isinstance(cursor, dict)
        or cursor.get("v") != CURSOR_VERSION
        or cursor.get("method") != method
        or any(f not in cursor for f in fields)
    ):
        notes.append(f"the stored {method} cursor is not valid: full resync")
        return None
    if str(cursor["server"]).lower() != ident.service.lower():
        notes.append(
            f"a different domain controller answered ({dc_name(ident.service)}, the cursor "
            f"is from {dc_name(str(cursor['server']))}): its USNs are not comparable, "
            "full resync"
        )
        return None
    if str(cursor["invocation_id"]).lower() != ident.invocation_id.lower():
        notes.append(
            f"the invocationId of {dc_name(ident.service)} changed (was "
            f"{cursor['invocation_id']}, now {ident.invocation_id}: restored from a "
            "backup?): changes since the cursor cannot be trusted, full resync"
        )
        return None
    if cursor["scope"] != scope_key(options):
        notes.append(
            "base, scope, filter or attributes changed since the cursor was made: full resync"
        )
        return None
    try:
        age_days = (time.time() - float(cursor["time"])) / 86400
    except (TypeError, ValueError):
        notes.append(f"the stored {method} cursor is not valid: full resync")
        return None
    if age_days > MIN_TOMBSTONE_DAYS - 1:
        lifetime = tombstone_days(conn, ident)
        if age_days > lifetime - 1:
            notes.append(
                f"the cursor is {age_days:.0f} days old, near or past the tombstone "
                f"lifetime ({lifetime} days): deletes may be lost, full resync"
            )
            return None
    return cursor


# --- complete entries ----------------------------------------------------------------


def guid_filter(guids: Iterable[bytes]) -> str:
    """``(|(objectGUID=\\xx..)...)`` for raw GUIDs (every byte escaped)."""
    terms = "".join("(objectGUID=" + "".join(f"\\{b:02x}" for b in g) + ")" for g in guids)
    return f"(|{terms})"


def entry_guid(entry: wire.Entry) -> bytes | None:
    for name, values in entry.attributes:
        if name.lower() == b"objectguid" and values and len(values[0]) == 16:
            return bytes(values[0])
    return None


def _ranged(entry: wire.Entry) -> bool:
    return any(b";range=" in name.lower() for name, _ in entry.attributes)


def complete_ranges(conn: ldap3.Connection, entry: wire.Entry) -> wire.Entry:
    """Fetch the rest of every attribute AD sent in ranges (``member;range=0-1499``):
    ask ``member;range=1500-*`` and so on until the server answers with ``-*``.
    Returns the entry with plain, complete attributes."""
    dn = entry.dn.decode("utf-8", "replace")
    merged: dict[bytes, list[bytes]] = {}
    order: list[bytes] = []
    pending: dict[bytes, int] = {}
    for name, values in entry.attributes:
        match = _RANGE.match(name)
        key = match.group("name") if match else name
        if key.lower() not in {k.lower() for k in merged}:
            merged[key] = []
            order.append(key)
        target = next(k for k in merged if k.lower() == key.lower())
        merged[target].extend(values)
        if match and match.group("hi") != b"*":
            pending[target] = int(match.group("hi")) + 1
    rounds = 0
    while pending:
        rounds += 1
        if rounds > 100000:
            raise SourceError(f"ranged retrieval of {dn} does not end")
        ask = [f"{k.decode()};range={lo}-*" for k, lo in pending.items()]
        entries, done = search_all(conn, dn, "(objectClass=*)", "base", ask)
        if done.code != wire.SUCCESS or not entries:
            raise SourceError(
                f"ranged retrieval of {', '.join(k.decode() for k in pending)} from {dn} "
                f"failed ({done.name}): the entry would be incomplete"
            )
        progressed: dict[bytes, int] = {}
        for name, values in entries[0].attributes:
            match = _RANGE.match(name)
            if not match:
                continue
            target = next((k for k in merged if k.lower() == match.group("name").lower()), None)
            if target is None or target not in pending:
                continue
            merged[target].extend(values)
            if match.group("hi") != b"*":
                progressed[target] = int(match.group("hi")) + 1
        # An attribute the server did not answer for is complete (nothing left).
        pending = {k: lo for k, lo in progressed.items() if lo > pending.get(k, 0)}
    return wire.Entry(entry.dn, [(k, merged[k]) for k in order], entry.controls)


def upserts(
    conn: ldap3.Connection,
    options: Any,
    filter: str,
    *,
    what: str,
    base: str | None = None,
    scope: str | None = None,
) -> Iterator[tuple[bytes, Change]]:
    """Complete current entries in (options.base, options.scope) -- or (base, scope)
    when given -- matching ``filter``, paged and streamed, as (raw objectGUID, upsert
    Change). Entries with ranged attributes (AD's huge groups) are completed after the
    paged search has ended (one search in flight per connection)."""
    attrs = requested_attributes(options)
    binary = binary_attributes(options)
    deferred: list[wire.Entry] = []
    entries = wire.paged_search(
        conn,
        base or options.base,
        filter,
        scope or options.scope,
        attrs,
        page_size=page_size(options),
        extra_controls=[DOMAIN_SCOPE],
        what=what,
    )
    for entry in entries:
        if _ranged(entry):
            deferred.append(entry)
            continue
        item = _as_upsert(entry, binary)
        if item is not None:
            yield item
    for entry in deferred:
        item = _as_upsert(complete_ranges(conn, entry), binary)
        if item is not None:
            yield item


def _as_upsert(entry: wire.Entry, binary: frozenset[str]) -> tuple[bytes, Change] | None:
    guid = entry_guid(entry)
    if guid is None:
        # Only objects the bind DN may not fully read lack objectGUID: skipping them
        # silently would turn them into deletes after a full read.
        raise SourceError(
            f"entry {entry.dn.decode('utf-8', 'replace')} has no objectGUID "
            "(hidden by an ACL?): cannot track it"
        )
    change = to_change(entry.dn, entry.attributes, "objectguid", binary=binary)
    if change is None:  # pragma: no cover - guid checked above
        return None
    return guid, change


def delete(guid: bytes, dn: str | None) -> Change:
    return Change(Op.DELETE, guid_to_str(guid), dn)


# --- moved containers ----------------------------------------------------------------

NAME_ATTID = 0x00090001
"""attributeID of 'name': its metadata changes when an object is renamed or moved."""
CONTAINER_CLASSES = frozenset({"organizationalunit", "container", "builtindomain", "lostandfound"})
"""Classes whose moves carry other objects along (their children's DNs change without
any change to the children themselves, so no change method reports them)."""


def is_container(classes: Iterable[str | bytes]) -> bool:
    for value in classes:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if text.lower() in CONTAINER_CLASSES:
            return True
    return False


def name_changed_since(meta: bytes, usn: int) -> bool | None:
    """From a replPropertyMetaData blob (NDR, version 1): whether 'name' changed on this
    DC after ``usn`` (a rename or move). None when the blob cannot be read."""
    try:
        version, _, count, _ = struct.unpack_from("<IIII", meta, 0)
        if version != 1 or len(meta) < 16 + 48 * count:
            return None
        for i in range(count):
            attid, _, _, _, _, local_usn = struct.unpack_from("<IIQ16sQQ", meta, 16 + 48 * i)
            if attid == NAME_ATTID:
                return local_usn > usn
    except struct.error:
        return None
    return None


def moved_since(conn: ldap3.Connection, dn: str, usn: int) -> bool:
    """Whether the object at ``dn`` was renamed or moved after ``usn`` (True when its
    replication metadata cannot be read: the cautious answer)."""
    attrs = read_base(conn, dn, ["replPropertyMetaData"]) or {}
    values = attrs.get("replpropertymetadata") or []
    if not values or not isinstance(values[0], bytes):
        return True
    changed = name_changed_since(values[0], usn)
    return True if changed is None else changed


def subtree_changes(
    conn: ldap3.Connection,
    options: Any,
    moved: Iterable[tuple[bytes, str]],
    emitted: set[bytes],
) -> Iterator[Change]:
    """For containers renamed or moved since the cursor: every object below them has a
    new DN. Those now in scope and matching the filter come as upserts, the others as
    deletes (they may have been in scope before). ``emitted`` holds the GUIDs this read
    already reported; it is updated."""
    for guid, dn in moved:
        # By GUID: the container may have moved again since its DN was read.
        base = f"<GUID={guid_to_str(guid)}>"
        found = read_base(conn, base, ["objectGUID"])
        if found is None:
            continue  # deleted meanwhile: its tombstone (and its children's) report it
        below: dict[bytes, str] = {}
        for entry in wire.paged_search(
            conn,
            base,
            "(objectClass=*)",
            "sub",
            ["objectGUID"],
            page_size=page_size(options),
            extra_controls=[DOMAIN_SCOPE],
            what=f"objects below the moved {dn}",
        ):
            child = entry_guid(entry)
            if child is not None and child != guid:
                below[child] = entry.dn.decode("utf-8", "replace")
        if not below:
            continue
        if in_scope(dn, options.base, "sub") is not False:
            for child, change in upserts(
                conn, options, options.filter, base=base, scope="sub", what="moved subtree"
            ):
                below.pop(child, None)
                if child in emitted:
                    continue
                emitted.add(child)
                if in_scope(change.dn or "", options.base, options.scope) is False:
                    yield delete(child, change.dn)
                else:
                    yield change
        for child, child_dn in below.items():
            if child not in emitted:
                emitted.add(child)
                yield delete(child, child_dn)
