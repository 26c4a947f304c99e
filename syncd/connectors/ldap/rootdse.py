"""The rootDSE: what the server says it can do, and which change method fits it."""

from __future__ import annotations

from dataclasses import dataclass, field

import ldap3

from syncd.connectors.ldap import wire
from syncd.connectors.ldap.values import decode_attributes
from syncd.errors import SourceError

OID_SYNC = "1.3.6.1.4.1.4203.1.9.1.1"
OID_DIRSYNC = "1.2.840.113556.1.4.841"
OID_AD_CAPABILITY = "1.2.840.113556.1.4.800"
OID_SHOW_DELETED = "1.2.840.113556.1.4.417"

ATTRIBUTES = [
    "supportedControl",
    "supportedCapabilities",
    "supportedExtension",
    "supportedFeatures",
    "vendorName",
    "vendorVersion",
    "namingContexts",
    "defaultNamingContext",
    "dsServiceName",
    "highestCommittedUSN",
    "serverName",
    "dnsHostName",
    "contextCSN",
    "objectClass",
]


@dataclass
class RootDse:
    """The parts of the rootDSE syncd uses; ``raw`` has every attribute read."""

    raw: dict[str, list[str | bytes]] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        return [v for v in self.raw.get(name.lower(), []) if isinstance(v, str)]

    def first(self, name: str) -> str | None:
        vals = self.values(name)
        return vals[0] if vals else None

    @property
    def controls(self) -> set[str]:
        return set(self.values("supportedControl"))

    @property
    def is_ad(self) -> bool:
        return OID_AD_CAPABILITY in self.values("supportedCapabilities")

    @property
    def supports_paging(self) -> bool:
        return wire.OID_PAGED in self.controls

    @property
    def supports_syncrepl(self) -> bool:
        return OID_SYNC in self.controls

    @property
    def supports_dirsync(self) -> bool:
        return OID_DIRSYNC in self.controls

    @property
    def is_389ds(self) -> bool:
        """389 Directory Server (or its Red Hat / Fedora builds), by vendorName/Version."""
        name = (self.first("vendorName") or "").lower()
        version = (self.first("vendorVersion") or "").lower()
        return name.startswith("389") or "-directory/" in version

    @property
    def is_openldap(self) -> bool:
        """OpenLDAP slapd: its rootDSE has the OpenLDAProotDSE object class."""
        return "openldaprootdse" in {v.lower() for v in self.values("objectClass")}

    @property
    def syncrepl_id_attribute(self) -> str:
        """The attribute whose value the Sync State control carries as the entry's UUID:
        entryUUID on OpenLDAP; nsUniqueId on 389-ds (its entryUUID is another value)."""
        return "nsuniqueid" if self.is_389ds else "entryuuid"

    def vendor(self) -> str:
        """A short description of the server product."""
        name = self.first("vendorName")
        version = self.first("vendorVersion")
        if self.is_ad:
            return "Active Directory" + (f" ({name})" if name else "")
        if name:
            return f"{name} {version or ''}".strip()
        if self.supports_syncrepl:
            return "OpenLDAP (by its controls)"
        return "unknown (no vendorName)"


def read_rootdse(conn: ldap3.Connection) -> RootDse:
    """Read the rootDSE. Raises SourceError if the server does not answer it."""
    entries = []
    done = None
    for msg in wire.search(conn, "", "(objectClass=*)", "base", [*ATTRIBUTES, "+"]):
        if isinstance(msg, wire.Entry):
            entries.append(msg)
        elif isinstance(msg, wire.Done):
            done = msg
    if done is None or done.code != wire.SUCCESS or not entries:
        detail = done.name if done is not None else "no answer"
        raise SourceError(f"cannot read the server's rootDSE ({detail})")
    return RootDse(decode_attributes(entries[0].attributes))


def pick_method(root: RootDse) -> tuple[str, str]:
    """``changes: auto``: the best change-tracking method and why."""
    if root.supports_syncrepl:
        return "syncrepl", "the server offers the LDAP Content Synchronization control"
    if root.is_ad and root.supports_dirsync:
        return "dirsync", "Active Directory with the DirSync control"
    if root.is_ad:
        return "usn", "Active Directory without DirSync: uSNChanged watermark"
    return "timestamp", "no change-tracking control: modifyTimestamp watermark"
