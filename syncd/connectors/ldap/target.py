"""LDAP target: reconcile records (an HR export) into OpenLDAP or Active Directory.

What it promises (issue 6):

* An entry's DN comes from ``dn_template`` with every field value escaped as an RFC 4514
  RDN value (commas, plus, quotes, a leading ``#`` or space, a trailing space...), so a
  hostile name can never change the DN's structure. Multi-valued RDNs (``cn={cn}+uid={uid}``)
  work.
* Only ``owned_attributes`` are ever written; every other attribute of an entry is left
  as it is. Values are compared with the entry's current values first, so an unchanged
  entry costs one search and no write.
* The link to an entry is its ``entryUUID`` (OpenLDAP) or ``objectGUID`` (AD), so renames
  keep it; the current DN is looked up from that id at apply time. The record key is also
  written to ``key_attribute`` (employeeNumber / employeeID) so a repeated create finds
  the entry instead of duplicating it.
* A computed DN different from the current one is a modrdn (with newSuperior): "moved
  from X to Y".
* Leavers (delete actions) are disabled by default: AD ``userAccountControl`` gets
  ACCOUNTDISABLE; OpenLDAP gets ``disabled_attributes`` and/or a move into
  ``disabled_ou``. A record with ``enabled: false`` is disabled the same way; a record that
  comes back enabled is re-enabled ("re-enabled").
* ``groups`` (DNs or names) sets membership in *managed* groups only (under
  ``group_base`` or listed in ``managed_groups``); other groups are never touched.
* Nothing outside ``base`` (and ``disabled_ou``) is ever read for linking or written.
* :meth:`LdapTarget.correlate` links unlinked records by ordered rules (employeeNumber,
  then mail...): one match links, none tries the next rule, several are all returned so
  the engine reports the ambiguity.
* Look-ups cost a bounded number of searches (issue 12): after INDEX_AFTER look-up
  searches the scopes are read once, paged, into an :class:`_Index` that answers
  correlation and references (and unique_base's for ``unique``), kept right by the
  target's own writes; apply and preview read their batch's entries with one search
  per scope (:meth:`LdapTarget._prefetch`). A refused paged read leaves the per-entry
  searches.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import string
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import ldap3
from ldap3.core import exceptions as lexc
from ldap3.utils.conv import escape_filter_chars
from pydantic import BaseModel, ConfigDict, Field, model_validator

from syncd.contracts import (
    Action,
    ActionKind,
    ActionResult,
    CheckResult,
    Current,
    FieldValue,
    Target,
)
from syncd.errors import SourceError, TargetError
from syncd.mapping import dn as _dn

log = logging.getLogger(__name__)

ACCOUNTDISABLE = 0x2
PASSWD_NOTREQD = 0x20
NORMAL_ACCOUNT = 0x200

BULK_GROUP_BATCH = 50
"""A batch this big reads the managed groups' members once instead of one search per
entry (OpenLDAP; kept up to date with the target's own writes for the rest of the run)."""

RESERVED_FIELDS = frozenset({"enabled", "groups"})
"""Record fields with a meaning of their own: never written as attributes."""

# LDAP result codes the target reacts to.
_NO_SUCH_OBJECT = 32
_NO_SUCH_ATTRIBUTE = 16
_VALUE_EXISTS = 20
_ALREADY_EXISTS = 68
_CONSTRAINT_VIOLATION = 19
_INVALID_SYNTAX = 21
# "invalidAttributeSyntax (21): mail: value #0 invalid per syntax": the attribute a
# server refused a value of (OpenLDAP, 389-ds and AD name it first in the message).
_REFUSED_ATTRIBUTE = re.compile(r"\((?:19|21)\): ([A-Za-z][\w-]*)(?:;[\w;-]*)?: ")
_MAX_REFUSED_FIELDS = 5


# --------------------------------------------------------------------------------------
# DNs (RFC 4514): syncd.mapping.dn is the one DN module (ldap3's escape_rdn fails on an
# empty value and double-escapes a lone space, and its safe_dn re-escapes DNs).

Rdn = tuple[tuple[str, str], ...]


def escape_rdn_value(value: str) -> str:
    """Escape one attribute value for use in a DN. Raises ValueError for an empty one."""
    return _dn.escape_value(value)


def parse_dn(dn: str) -> list[Rdn]:
    """Split a DN into RDNs of (type, unescaped value) pairs. Raises ValueError."""
    return list(_dn.parse_dn(dn).rdns)


build_dn = _dn.build_dn
norm_dn = _dn.norm_rdns
same_dn = _dn.same_dn
dn_within = _dn.dn_within


def _nfc(value: str) -> str:
    return value if value.isascii() else unicodedata.normalize("NFC", value)


def _comparable(values: Sequence[str | bytes]) -> list[str]:
    """Values in a form where the same text in NFC and NFD compares equal, and bytes
    equal text when they are its UTF-8 (entries are read back decoded that way)."""
    out = []
    for v in values:
        if isinstance(v, bytes):
            v = _decode(v)
        out.append(repr(_nfc(v) if isinstance(v, str) else v))
    return sorted(out)


# --------------------------------------------------------------------------------------
# Options


class CorrelationRule(BaseModel):
    """Link an unlinked record to an entry whose ``attribute`` equals the record's ``field``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="record field, e.g. employee_number")
    attribute: str = Field(description="directory attribute, e.g. employeeNumber")


class LdapTargetOptions(BaseModel):
    """A job's ``target:`` block for an LDAP connection (directory as a target)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(
        description="the job's scope: entries outside it are never read for linking nor "
        "written. Example: ou=people,dc=example,dc=com"
    )
    dn_template: str = Field(
        description="DN of an entry; {field} is replaced by the record's field, escaped. "
        "Example: uid={uid},ou={department},ou=people,dc=example,dc=com"
    )
    directory: Literal["openldap", "ad"] = Field(
        "openldap", description="openldap (and other RFC servers) or ad (Active Directory/Samba)"
    )
    object_classes: list[str] | None = Field(
        None,
        description="objectClass values of created entries; default inetOrgPerson chain "
        "(openldap) or user chain (ad)",
    )
    owned_attributes: list[str] | None = Field(
        None,
        description="the only attributes ever written; default: every record field except "
        "enabled, groups and fields whose name starts with '_' (template-only helpers)",
    )
    key_attribute: str | None = Field(
        None,
        description="attribute holding the record key (the link of last resort); default "
        "employeeNumber (openldap) / employeeID (ad)",
    )
    entry_filter: str | None = Field(
        None,
        description="filter the managed entries match (correlation, key look-up); default "
        "(objectClass=<last object class>) / AD people",
    )
    on_delete: Literal["disable", "delete", "move"] = Field(
        "disable",
        description="what a leaver becomes: disable (default), delete, or move (only into "
        "disabled_ou)",
    )
    disabled_ou: str | None = Field(
        None, description="container disabled entries are moved to (optional for disable)"
    )
    disabled_attributes: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="attributes set on disable and removed on re-enable (OpenLDAP), e.g. "
        '{pwdAccountLockedTime: "000001010000Z"} or {employeeType: disabled}',
    )
    references: dict[str, str] = Field(
        default_factory=dict,
        description="fields holding another record's key, written as that entry's DN: "
        "{field: attribute to look the value up by}, e.g. {manager: employeeNumber}",
    )
    group_base: str | None = Field(
        None, description="every group under this DN is managed (members added/removed)"
    )
    managed_groups: list[str] = Field(
        default_factory=list, description="DNs of further managed groups"
    )
    group_dn_template: str | None = Field(
        None,
        description="DN of a group given by name in the `groups` field; default "
        "cn={name},<group_base>",
    )
    member_attribute: str = Field("member", description="group attribute holding member DNs")
    disabled_groups: Literal["keep", "remove"] = Field(
        "keep",
        description="managed-group memberships of a disabled entry: keep them, or remove "
        "them (a returner gets the record's groups back)",
    )
    unique: dict[str, str] = Field(
        default_factory=dict,
        description="record fields whose value must be unique in the directory: {field: "
        "attribute}, e.g. {uid: uid} or {sAMAccountName: sAMAccountName}. A value another "
        "entry already has gets a number (jdoe, jdoe2, jdoe3, ...; sAMAccountName stays "
        "within 20 characters), checked under unique_base when an entry is created or the "
        "value changes (a search each; a large run reads unique_base once, paged); once "
        "assigned, an entry keeps its value",
    )
    unique_base: str | None = Field(
        None,
        description="where `unique` values are looked for (read only); default: base. "
        "For AD sAMAccountName use the domain root: it is unique domain-wide",
    )
    create_missing_ous: bool = Field(
        True, description="create missing organizationalUnit parents (inside base) on demand"
    )
    correlate: list[CorrelationRule] = Field(
        default_factory=list,
        description="ordered rules linking existing entries on the first run, e.g. "
        "[{field: employeeNumber, attribute: employeeNumber}, {field: mail, attribute: mail}]",
    )
    ad_initial_password: Literal["random", "none"] = Field(
        "random",
        description="AD only: an enabled account needs a password; random = a random one "
        "nobody knows (the helpdesk resets it; needs an encrypted connection), none = "
        "accounts are created disabled",
    )

    @model_validator(mode="after")
    def _check(self) -> LdapTargetOptions:
        try:
            parse_dn(self.base)
            if self.disabled_ou:
                parse_dn(self.disabled_ou)
            if self.group_base:
                parse_dn(self.group_base)
            for g in self.managed_groups:
                parse_dn(g)
            if self.unique_base:
                parse_dn(self.unique_base)
        except ValueError as err:
            raise ValueError(str(err)) from None
        sample = _PLACEHOLDER.sub("x", self.dn_template)
        try:
            parsed = parse_dn(sample)
        except ValueError:
            raise ValueError(f"dn_template {self.dn_template!r} is not a DN") from None
        if not parsed or not dn_within(sample, self.base):
            raise ValueError(f"dn_template must produce DNs under base {self.base!r}")
        if not _PLACEHOLDER.search(self.dn_template.split(",")[0]):
            raise ValueError("dn_template's first RDN must contain a {field}")
        if self.entry_filter is not None and not _valid_filter(self.filter):
            raise ValueError(f"entry_filter {self.entry_filter!r} is not an LDAP filter")
        names = [
            ("key_attribute", self.key_attribute),
            ("member_attribute", self.member_attribute),
            *(("correlate attribute", r.attribute) for r in self.correlate),
            *(("references attribute", a) for a in self.references.values()),
            *(("unique attribute", a) for a in self.unique.values()),
        ]
        for what, name in names:
            if name is not None and not _ATTRIBUTE.fullmatch(name):
                # It goes into filters: (name=value); only the value is escaped.
                raise ValueError(f"{what} {name!r} is not an attribute name")
        if self.on_delete == "move" and not self.disabled_ou:
            raise ValueError("on_delete: move needs disabled_ou")
        if (
            self.directory == "openldap"
            and self.on_delete == "disable"
            and not (self.disabled_ou or self.disabled_attributes)
        ):
            raise ValueError(
                "on_delete: disable on openldap needs disabled_ou and/or disabled_attributes "
                "(e.g. {employeeType: disabled})"
            )
        return self

    # Resolved defaults -----------------------------------------------------------------

    @property
    def classes(self) -> list[str]:
        if self.object_classes:
            return list(self.object_classes)
        if self.directory == "ad":
            return ["top", "person", "organizationalPerson", "user"]
        return ["top", "person", "organizationalPerson", "inetOrgPerson"]

    @property
    def key_attr(self) -> str:
        return self.key_attribute or ("employeeID" if self.directory == "ad" else "employeeNumber")

    @property
    def id_attr(self) -> str:
        return "objectGUID" if self.directory == "ad" else "entryUUID"

    @property
    def filter(self) -> str:
        if self.entry_filter:
            f = self.entry_filter.strip()
            return f if f.startswith("(") else f"({f})"
        if self.directory == "ad":
            return "(&(objectCategory=person)(objectClass=user))"
        return f"(objectClass={self.classes[-1]})"

    @property
    def scopes(self) -> list[str]:
        """Where managed entries may live: base, and disabled_ou when outside base."""
        out = [self.base]
        if self.disabled_ou and not dn_within(self.disabled_ou, self.base):
            out.append(self.disabled_ou)
        return out


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")
_ATTRIBUTE = re.compile(r"([A-Za-z][A-Za-z0-9-]*|\d+(\.\d+)+)(;[A-Za-z0-9-]+)*")
"""An attribute name or OID (RFC 4512 descr / numericoid)."""


def _valid_filter(text: str) -> bool:
    from ldap3.core.exceptions import LDAPInvalidFilterError
    from ldap3.operation.search import parse_filter

    try:
        parse_filter(
            text, None, auto_escape=False, auto_encode=False, validator=None, check_names=False
        )
    except LDAPInvalidFilterError:
        return False
    return True


# --------------------------------------------------------------------------------------
# The target


class _ActionFailed(Exception):
    """One action cannot be done; reported in its ActionResult. ``code`` is the LDAP
    result code when a server refused an operation."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Entry:
    dn: str
    attrs: dict[str, list[str | bytes]]  # lower-cased names
    target_id: str

    def values(self, name: str) -> list[str | bytes]:
        return self.attrs.get(name.lower(), [])


@dataclass
class _Pending:
    """A reference (manager...) that could not be resolved yet: retried at batch end."""

    index: int
    target_id: str
    refs: dict[str, str]
    details: list[str] = field(default_factory=list)


_PLAIN_DN = re.compile(r"[A-Za-z0-9][A-Za-z0-9=,._@-]*")
"""A DN with nothing to unescape, fold or sort (no spaces, escapes, quotes, '+', '#'):
its comparable form is its lower-case text (what parsing would give, much faster)."""


def _member_key(dn: str | bytes) -> str:
    """A compact comparable form of a member DN (for the membership cache)."""
    text = dn.decode("utf-8", "replace") if isinstance(dn, bytes) else dn
    if _PLAIN_DN.fullmatch(text):
        return text.lower()
    try:
        return ",".join("+".join(f"{t}={v}" for t, v in rdn) for rdn in norm_dn(text))
    except ValueError:
        return text.lower()


# --------------------------------------------------------------------------------------
# The scope index (issue 12): one paged read answers the run's look-ups.

INDEX_AFTER = 50
"""Searches for look-ups (correlation, key, id, reference) a target sends one by one
before it reads its scopes once, paged, and answers the rest from memory. A run touching
a few entries (a nightly delta, ``--only``) never pays for reading the whole scope; a
first night of N unlinked records pays about INDEX_AFTER searches plus N / INDEX_PAGE
pages instead of about 3 N searches. The same number of ``unique`` checks builds the
unique index (a read of unique_base)."""

INDEX_PAGE = 1000
"""Entries per page of the index read (AD's default MaxPageSize)."""

SMALL_PAGE = 100
"""The page size asked for again when a server refuses INDEX_PAGE (slapd size.pr)."""

PREFETCH_CHUNK = 200
"""Ids (or keys) per search when a batch's entries are read at once (a batch is 200)."""

_CASE_IGNORE = frozenset(
    {
        "uid",
        "cn",
        "sn",
        "givenname",
        "displayname",
        "mail",
        "employeenumber",
        "employeeid",
        "employeetype",
        "departmentnumber",
        "title",
        "o",
        "ou",
        "l",
        "st",
        "c",
        "initials",
        "userid",
        "rfc822mailbox",
        "surname",
        "commonname",
        "street",
        "postalcode",
        "samaccountname",
        "userprincipalname",
    }
)
"""Attributes whose equality matching ignores case and insignificant spaces
(caseIgnoreMatch / caseIgnoreIA5Match in OpenLDAP's schema; every AD string): the index
answers for them outright. For any other attribute an index hit that differs from the
wanted value in more than Unicode form is checked by a search (the server's rule
decides: it may be caseExactMatch)."""

_NOT_INDEXED = frozenset(
    {
        "uidnumber",
        "gidnumber",
        "telephonenumber",
        "mobile",
        "homephone",
        "pager",
        "facsimiletelephonenumber",
        "internationalisdnnumber",
        "objectsid",
        "objectguid",
        "entryuuid",
    }
)
"""Attributes matched by integer, telephone-number or octet rules, which case folding
does not model: looked up by search, never from the index."""


def _norm_value(value: str | bytes) -> str:
    """An equality key close to LDAP string preparation (RFC 4518): compatibility
    normalised, case folded, insignificant spaces removed."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = value if value.isascii() else unicodedata.normalize("NFKC", value)
    return " ".join(text.casefold().split())


class _Index:
    """Entries of a set of scopes read once, with equality look-ups on ``keyed``
    attributes. The target keeps it right with its own writes (:meth:`written`);
    changes made by others after the read are not seen (like the membership cache)."""

    def __init__(
        self,
        bases: Sequence[str],
        attrs: Iterable[str],
        keyed: Iterable[str],
        *,
        case_ignore_all: bool,
    ):
        self.bases = list(bases)
        self.attrs = {a.lower() for a in attrs}
        """attributes held per entry: look-ups needing others are searched"""
        self.keyed = {a.lower() for a in keyed} - _NOT_INDEXED
        self.case_ignore_all = case_ignore_all
        self.order = sorted(self.attrs)
        # id -> (DN, one slot per attribute of ``order``: None, a value or a tuple of
        # values): a third of the memory of _Entry objects with dicts of lists.
        self.rows: dict[str, tuple] = {}
        self.by_dn: dict[str, str] = {}  # _member_key(DN) -> id (compact, unlike norm_dn)
        # normalized value -> ids (a list: mostly one id, and a set costs 3 times more)
        self.values: dict[str, dict[str, list[str]]] = {a: {} for a in self.keyed}

    def __len__(self) -> int:
        return len(self.rows)

    def covers(self, attrs: Iterable[str]) -> bool:
        return all(a.lower() in self.attrs or a == "1.1" for a in attrs)

    def within(self, dn: str) -> bool:
        try:
            return any(dn_within(dn, b) for b in self.bases)
        except ValueError:
            return False

    def add(self, entry: _Entry) -> None:
        tid = entry.target_id or entry.dn.lower()
        if tid in self.rows:
            self.remove(tid)
        slots: list[Any] = [entry.dn]
        for name in self.order:
            vals = entry.attrs.get(name)
            slots.append(None if not vals else vals[0] if len(vals) == 1 else tuple(vals))
        self.rows[tid] = tuple(slots)
        self.by_dn[_member_key(entry.dn)] = tid
        for attr in self.keyed:
            table = self.values[attr]
            for v in entry.attrs.get(attr, ()):
                tids = table.setdefault(_norm_value(v), [])
                if tid not in tids:
                    tids.append(tid)

    def remove(self, tid: str) -> None:
        entry = self.get(tid)
        if entry is None:
            return
        del self.rows[tid]
        self.by_dn.pop(_member_key(entry.dn), None)
        for attr in self.keyed:
            table = self.values[attr]
            for v in entry.attrs.get(attr, ()):
                tids = table.get(_norm_value(v))
                if tids is not None and tid in tids:
                    tids.remove(tid)
                    if not tids:
                        del table[_norm_value(v)]

    def get(self, tid: str) -> _Entry | None:
        """A fresh entry (the caller may change it: moves edit their snapshot)."""
        row = self.rows.get(tid)
        if row is None:
            return None
        attrs: dict[str, list[str | bytes]] = {}
        for name, vals in zip(self.order, row[1:], strict=True):
            if vals is not None:
                attrs[name] = list(vals) if isinstance(vals, tuple) else [vals]
        return _Entry(row[0], attrs, tid)

    def lookup(self, attr: str, value: str) -> list[_Entry] | None:
        """Entries whose ``attr`` equals ``value``; None when the index cannot say (the
        attribute is not indexed, or the match is only modulo case and spaces on an
        attribute whose matching rule is unknown)."""
        a = attr.lower()
        table = self.values.get(a)
        if table is None:
            return None
        found = [self.get(t) for t in sorted(table.get(_norm_value(value), ()))]
        if found and not (self.case_ignore_all or a in _CASE_IGNORE):
            want = _nfc(value)
            for e in found:
                if all(_nfc(v) != want for v in e.attrs.get(a, ()) if isinstance(v, str)):
                    return None
        return found

    def written(self, op: str, dn: str, args: tuple, kw: dict) -> None:
        """Follow a successful modify, modify_dn or delete of ``dn`` by the target."""
        tid = self.by_dn.get(_member_key(dn))
        if tid is None:
            return
        old = self.get(tid)
        assert old is not None
        if op == "delete":
            self.remove(tid)
            return
        attrs = {k: list(v) for k, v in old.attrs.items()}
        new_dn = old.dn
        if op == "modify":
            for name, mods in args[0].items():
                a = name.lower()
                if a not in self.attrs:
                    continue
                for mod, values in mods:
                    values = [_decode(v) if isinstance(v, bytes) else v for v in values]
                    have = attrs.get(a, [])
                    if mod == ldap3.MODIFY_REPLACE:
                        have = list(values)
                    elif mod == ldap3.MODIFY_ADD:
                        have = have + [v for v in values if v not in have]
                    elif values:
                        drop = {_norm_value(v) for v in values}
                        have = [v for v in have if _norm_value(v) not in drop]
                    else:
                        have = []
                    attrs[a] = have
        elif op == "modify_dn":
            rdn = parse_dn(args[0])[0]
            old_rdns = parse_dn(old.dn)
            parent = kw.get("new_superior") or build_dn(old_rdns[1:])
            new_dn = args[0] + "," + parent
            if kw.get("delete_old_dn", True):
                for a, v in old_rdns[0]:
                    if a.lower() in attrs:
                        attrs[a.lower()] = [
                            x for x in attrs[a.lower()] if _norm_value(x) != _norm_value(v)
                        ]
            for a, v in rdn:
                if a.lower() in self.attrs:
                    have = attrs.setdefault(a.lower(), [])
                    if _norm_value(v) not in {_norm_value(x) for x in have}:
                        have.append(v)
        else:
            return
        self.remove(tid)
        if self.within(new_dn):
            self.add(_Entry(new_dn, {k: v for k, v in attrs.items() if v}, old.target_id))


@dataclass
class _Batch:
    """The entries of one apply()/preview() batch, read at once (see _prefetch)."""

    by_id: _Index
    by_key: _Index
    ids_asked: set[str]
    keys_asked: set[str]


def _decode(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _as_values(value: FieldValue) -> list[str | bytes]:
    """Record value -> LDAP values (empty list = attribute absent)."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str | bytes] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, bool):
            out.append("TRUE" if item else "FALSE")
        elif isinstance(item, bytes):
            out.append(item)
        else:
            text = str(item)
            if text != "":
                out.append(text)
    # LDAP refuses a value twice in one attribute; keep the first of exact duplicates.
    return list(dict.fromkeys(out)) if len(out) > 1 else out


def _first_text(value: FieldValue) -> str | None:
    vals = _as_values(value)
    if not vals:
        return None
    v = vals[0]
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _enabled(fields: dict[str, FieldValue]) -> bool:
    value = fields.get("enabled")
    if value is None:
        return True
    if isinstance(value, list):
        value = value[0] if value else None
        if value is None:
            return True
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "disabled", "")
    return bool(value)


AD_SAM_MAX = 20
"""Longest sAMAccountName Active Directory accepts."""


def _numbered(want: str, limit: int | None) -> list[str]:
    """``want``, then want2 ... want99, each cut to ``limit`` characters before its
    number (no dot or space left before the number)."""
    out = [want[:limit] if limit else want]
    for n in range(2, 100):
        suffix = str(n)
        stem = want[: limit - len(suffix)] if limit else want
        out.append(stem.rstrip(". ") + suffix)
    return out


def _random_password() -> str:
    """A password AD's complexity rules accept, that nobody knows."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(24))
    return core + secrets.choice("!#%+-=?@") + secrets.choice(string.digits) + "aA"


class LdapTarget(Target):
    """Create, update, move, disable and re-enable directory entries (see module doc)."""

    supports_delete = True
    supports_soft_delete = True
    batch_size = 200

    options: LdapTargetOptions

    def __init__(self, connection: BaseModel, options: BaseModel, *, job: str):
        super().__init__(connection, options, job=job)
        self.conn: ldap3.Connection | None = None
        self.ops: Counter[str] = Counter()
        """LDAP operations issued, by kind (search, add, modify, modify_dn, delete)."""
        self._dns: dict[str, str] = {}  # target_id -> last DN seen (for messages)
        self._ou_known: set[tuple] = set()
        self._group_seen: dict[tuple, bool] = {}
        """plan previews: whether a group entry exists (normalised DN -> bool)"""
        self._ref_cache: dict[tuple[str, str], str | None] = {}
        self._members: dict[str, set[tuple]] | None = None  # member -> managed groups
        self._group_names: dict[tuple, str] = {}
        self._reset_index()

    def _reset_index(self) -> None:
        """Forget the scope index and unique index (a new open is a new run)."""
        self._index: _Index | None = None
        self._uindex: _Index | None = None
        self._lookups = 0
        self._ulookups = 0
        self._index_failed = False
        self._uindex_failed = False
        self._batch: _Batch | None = None

    # -- life cycle ------------------------------------------------------------------

    def open(self) -> None:
        """Connect and bind (TLS verified per the connection), then check the base exists.

        Raises ConnectionFailed or TargetError."""
        if self.conn is not None:
            return
        from syncd.connectors.ldap.connection import connect

        conn = connect(self.connection)  # type: ignore[arg-type]
        self._reset_index()
        # ldap3's name checking re-escapes DNs that are already escaped.
        conn.check_names = False
        self.conn = conn
        if not self._search(self.options.base, "(objectClass=*)", ["1.1"], scope=ldap3.BASE):
            raise TargetError(f"ldap target: base {self.options.base} does not exist")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        self._reset_index()
        if conn is not None:
            try:
                conn.unbind()
            except Exception:
                pass

    def describe(self) -> str:
        describe = getattr(self.connection, "describe", None)
        where = describe() if callable(describe) else "ldap"
        return f"ldap target {where} base {self.options.base}"

    def check(self) -> list[CheckResult]:
        try:
            self.open()
        except Exception as err:
            return [CheckResult("ldap target", False, str(err), "check URL, bind DN and base")]
        return [CheckResult("ldap target", True, f"base {self.options.base} found")]

    # -- low-level operations ----------------------------------------------------------

    def _c(self) -> ldap3.Connection:
        if self.conn is None:
            self.open()
        assert self.conn is not None
        return self.conn

    def _result(self) -> tuple[int, str]:
        res = self._c().result or {}
        code = res.get("result", 0) or 0
        text = f"{res.get('description', '')} ({code})"
        if res.get("message"):
            text += f": {res['message']}"
        return code, text

    def _search(
        self,
        base: str,
        filt: str,
        attrs: Sequence[str],
        *,
        scope: Any = ldap3.SUBTREE,
    ) -> list[_Entry]:
        """Entries found; [] when ``base`` does not exist. Raises TargetError when the
        connection is lost and _ActionFailed for other refusals."""
        conn = self._c()
        self.ops["search"] += 1
        try:
            conn.search(
                base,
                filt,
                search_scope=scope,
                attributes=list(attrs) or ["1.1"],
                dereference_aliases=ldap3.DEREF_NEVER,
            )
        except lexc.LDAPCommunicationError as err:
            raise TargetError(f"ldap target: connection lost: {err}") from None
        code, text = self._result()
        if code == _NO_SUCH_OBJECT:
            return []
        if code not in (0,):
            raise _ActionFailed(f"search under {base} refused: {text}")
        out = []
        for item in conn.response or []:
            if item.get("type") != "searchResEntry":
                continue
            raw = {k.lower(): v for k, v in (item.get("raw_attributes") or {}).items()}
            out.append(self._entry(item["dn"], raw))
        return out

    def _entry(self, dn: str, raw: dict[str, list[bytes]]) -> _Entry:
        """An entry from raw values (lower-cased names), its id decoded."""
        id_attr = self.options.id_attr.lower()
        attrs_out: dict[str, list[str | bytes]] = {}
        for name, values in raw.items():
            if name == "objectguid":
                continue
            attrs_out[name] = [_decode(v) for v in values]
        tid = ""
        if raw.get(id_attr):
            rawid = raw[id_attr][0]
            tid = (
                str(uuid.UUID(bytes_le=rawid))
                if id_attr == "objectguid"
                else rawid.decode("ascii", "replace")
            )
        return _Entry(dn, attrs_out, tid)

    def _paged(self, base: str, filt: str, attrs: Sequence[str]) -> Iterable[_Entry]:
        """Every entry of a paged subtree search (one ``search`` op per page); nothing
        for a missing base. Raises SourceError when the read is not complete (a size
        or time limit, a refusal: never a short read) or the connection is lost."""
        from syncd.connectors.ldap import wire

        conn = self._c()
        cookie = b""
        read = 0
        page = INDEX_PAGE
        names: dict[bytes, str] = {}  # one str per attribute name, not one per entry
        while True:
            self.ops["search"] += 1
            done = None
            control = wire.paged_control(page, cookie)
            for msg in wire.search(conn, base, filt, "sub", list(attrs), [control]):
                if isinstance(msg, wire.Entry):
                    read += 1
                    raw: dict[str, list[bytes]] = {}
                    for name, values in msg.attributes:
                        text = names.get(name)
                        if text is None:
                            text = names[name] = name.decode("utf-8", "replace").lower()
                        raw.setdefault(text, []).extend(values)
                    yield self._entry(msg.dn.decode("utf-8", "replace"), raw)
                elif isinstance(msg, wire.Done):
                    done = msg
            assert done is not None
            if done.code == wire.NO_SUCH_OBJECT and read == 0:
                return
            if done.code == wire.ADMIN_LIMIT and read == 0 and page > SMALL_PAGE:
                page = SMALL_PAGE  # slapd's size.pr below our page size: ask for less
                continue
            if done.code != wire.SUCCESS:
                raise wire.result_error(done, base, read, what="index read")
            cookie = wire.paged_cookie(done) or b""
            if not cookie:
                return

    def _writes(self) -> int:
        ops = self.ops
        return ops["add"] + ops["modify"] + ops["modify_dn"] + ops["delete"]

    def _write(
        self, op: str, dn: str, *args: Any, ok_codes: tuple[int, ...] = (), **kw: Any
    ) -> int:
        """Run add/modify/modify_dn/delete; return the result code (0 or one of
        ``ok_codes``). Raises _ActionFailed for other codes, TargetError on a lost
        connection."""
        conn = self._c()
        self.ops[op] += 1
        try:
            getattr(conn, op)(dn, *args, **kw)
        except lexc.LDAPCommunicationError as err:
            raise TargetError(f"ldap target: connection lost: {err}") from None
        code, text = self._result()
        if code == 0:
            batch = self._batch
            extra = (batch.by_id, batch.by_key) if batch is not None else ()
            for index in (self._index, self._uindex, *extra):
                if index is not None:
                    index.written(op, dn, args, kw)
        if code == 0 or code in ok_codes:
            return code
        raise _ActionFailed(f"{op.replace('_', ' ')} {dn}: {text}", code)

    # -- entry look-up -----------------------------------------------------------------

    def _fetch_attrs(self, owned: Iterable[str]) -> list[str]:
        o = self.options
        names = {o.id_attr, o.key_attr, *owned, *o.disabled_attributes, *o.unique.values()}
        if o.directory == "ad":
            names.add("userAccountControl")
        return sorted(names)

    def _find_one(
        self, filt: str, attrs: Sequence[str], what: str, *, unique_id: bool = False
    ) -> _Entry | None:
        found: list[_Entry] = []
        for scope in self.options.scopes:
            found.extend(self._search(scope, filt, attrs))
            if unique_id and found:
                break  # an entryUUID/objectGUID exists once: no need to look further
        return self._only(found, what)

    def _only(self, found: list[_Entry], what: str) -> _Entry | None:
        # The same entry can be seen twice when disabled_ou overlaps base.
        unique = {e.target_id or e.dn.lower(): e for e in found}
        if len(unique) > 1:
            dns = ", ".join(sorted(e.dn for e in unique.values()))
            raise _ActionFailed(f"several entries match {what}: {dns}")
        entry = next(iter(unique.values()), None)
        if entry is not None:
            self._dns[entry.target_id] = entry.dn
        return entry

    def _id_filter(self, target_id: str) -> str:
        if self.options.directory == "ad":
            try:
                raw = uuid.UUID(target_id).bytes_le
            except ValueError:
                raise _ActionFailed(f"target id {target_id!r} is not an objectGUID") from None
            return "(objectGUID=" + "".join(f"\\{b:02x}" for b in raw) + ")"
        return f"(entryUUID={escape_filter_chars(target_id)})"

    def _find_by_id(self, target_id: str, attrs: Sequence[str]) -> _Entry | None:
        batch = self._batch
        if batch is not None and target_id in batch.ids_asked and batch.by_id.covers(attrs):
            # Read for this batch with the others (see _prefetch): absent means gone.
            entry = batch.by_id.get(target_id)
            if entry is not None:
                self._dns[target_id] = entry.dn
            return entry
        return self._find_one(self._id_filter(target_id), attrs, f"id {target_id}", unique_id=True)

    def _find_by_key(self, key: str, attrs: Sequence[str]) -> _Entry | None:
        attr = self.options.key_attr
        what = f"{attr}={key}"
        batch = self._batch
        if batch is not None and key in batch.keys_asked and batch.by_key.covers(attrs):
            found = batch.by_key.lookup(attr, key)
            if found is not None:
                return self._only(found, what)
        filt = f"(&{self.options.filter}({attr}={escape_filter_chars(key)}))"
        return self._find_one(filt, attrs, what)

    # -- one read per batch --------------------------------------------------------------

    def _prefetch(self, actions: Sequence[Action]) -> None:
        """Read the entries of a batch's actions in one search per scope (by id, and by
        key for those without one) instead of one search each: apply and preview then
        find them in ``self._batch``, kept right by the batch's own writes. Read fresh
        for every batch, like the per-entry searches: changes made by others since the
        batch started are not seen. A refused read leaves the per-entry searches."""
        self._batch = None
        o = self.options
        ids = list(dict.fromkeys(a.target_id for a in actions if a.target_id))
        keys = list(dict.fromkeys(a.key for a in actions if not a.target_id))
        if len(ids) + len(keys) < 2:
            return  # one look-up: one search either way
        names: set[str] = set(self._fetch_attrs([]))
        for a in actions:
            if a.kind is not ActionKind.DELETE:
                names.update(self._fetch_attrs(self._owned(a.fields)))
        attrs = sorted(names)
        low = {n.lower() for n in attrs}
        by_id = _Index(o.scopes, low, [], case_ignore_all=True)
        by_key = _Index(o.scopes, low, [o.key_attr], case_ignore_all=o.directory == "ad")
        try:
            missing = set(ids)
            for scope in o.scopes:
                # An id exists once: look for the rest only in the next scope.
                todo = [i for i in ids if i in missing]
                for start in range(0, len(todo), PREFETCH_CHUNK):
                    chunk = todo[start : start + PREFETCH_CHUNK]
                    part = "".join(self._id_filter(i) for i in chunk)
                    for entry in self._paged(scope, f"(|{part})", attrs):
                        by_id.add(entry)
                        missing.discard(entry.target_id)
            for start in range(0, len(keys), PREFETCH_CHUNK):
                chunk = keys[start : start + PREFETCH_CHUNK]
                part = "".join(f"({o.key_attr}={escape_filter_chars(k)})" for k in chunk)
                for scope in o.scopes:
                    for entry in self._paged(scope, f"(&{o.filter}(|{part}))", attrs):
                        by_key.add(entry)
        except (SourceError, _ActionFailed) as err:
            log.debug("ldap target: batch not read at once (%s): one search per entry", err)
            if self.conn is not None and self.conn.closed:
                self.conn = None
            return
        self._batch = _Batch(by_id, by_key, set(ids), set(keys))

    # -- the scope index ----------------------------------------------------------------

    # -- the scope index ----------------------------------------------------------------

    def _scope_index(self, searches: int) -> _Index | None:
        """The index of the scopes (correlation and reference attributes, the key, the
        DN) once this run has sent, or would send with this look-up of up to
        ``searches`` searches, INDEX_AFTER look-up searches; None before that, and for
        good when its read failed."""
        self._lookups += searches
        if self._index is None and not self._index_failed and self._lookups >= INDEX_AFTER:
            o = self.options
            keyed = [o.key_attr, *(r.attribute for r in o.correlate), *o.references.values()]
            attrs_read = {o.id_attr.lower(), *(a.lower() for a in keyed)}
            self._index = self._read_index(o.scopes, o.filter, attrs_read, keyed)
            self._index_failed = self._index is None
        return self._index

    def _unique_index(self) -> _Index | None:
        """The index of unique_base for the ``unique`` attributes, built like
        :meth:`_scope_index` after INDEX_AFTER checks."""
        self._ulookups += 1
        if self._uindex is None and not self._uindex_failed and self._ulookups >= INDEX_AFTER:
            o = self.options
            names = list(dict.fromkeys(o.unique.values()))
            filt = "(|" + "".join(f"({a}=*)" for a in names) + ")"
            attrs = {o.id_attr.lower(), o.key_attr.lower(), *(a.lower() for a in names)}
            self._uindex = self._read_index([o.unique_base or o.base], filt, attrs, names)
            self._uindex_failed = self._uindex is None
        return self._uindex

    def _read_index(
        self, bases: Sequence[str], filt: str, attrs: set[str], keyed: Iterable[str]
    ) -> _Index | None:
        """One paged read of ``bases``; None (with a log line) when the server does not
        hand out the whole result: the look-ups are then searched one by one."""
        index = _Index(bases, attrs, keyed, case_ignore_all=self.options.directory == "ad")
        try:
            for base in bases:
                for entry in self._paged(base, filt, sorted(attrs)):
                    index.add(entry)
        except SourceError as err:
            log.warning("ldap target: %s; looking entries up one by one instead", err)
            if self.conn is not None and self.conn.closed:
                self.conn = None  # the next operation connects again (or says why not)
            return None
        log.debug("ldap target: indexed %d entries under %s", len(index), ", ".join(bases))
        return index

    def dn_of(self, target_id: str) -> str | None:
        """The current DN of a linked entry (for messages, e.g. ambiguity reports)."""
        if target_id in self._dns:
            return self._dns[target_id]
        try:
            entry = self._find_by_id(target_id, ["1.1"])
        except _ActionFailed:
            return None
        return entry.dn if entry else None

    # -- correlation -------------------------------------------------------------------

    def correlate(self, fields: dict[str, FieldValue]) -> list[str]:
        """Target ids matching a not-yet-linked record, by the ordered ``correlate`` rules.

        The first rule with exactly one match links it ([id]); a rule with no match (or
        no value in the record) passes to the next; several matches are all returned
        (the engine reports them as ambiguous). An entry whose key attribute already
        holds a *different* key belongs to someone else and never matches."""
        low = {k.lower(): v for k, v in fields.items()}
        key_attr = self.options.key_attr
        own_key = _first_text(low.get(key_attr.lower()))
        o = self.options
        index = self._scope_index(len(o.scopes) * len(o.correlate))
        for rule in self.options.correlate:
            value = _first_text(low.get(rule.field.lower()))
            if not value:
                continue
            indexed = index.lookup(rule.attribute, value) if index is not None else None
            filt = f"(&{self.options.filter}({rule.attribute}={escape_filter_chars(value)}))"
            found: dict[str, _Entry] = {}
            for scope in self.options.scopes if indexed is None else [None]:
                try:
                    entries = (
                        indexed
                        if scope is None
                        else self._search(scope, filt, [self.options.id_attr, key_attr])
                    )
                except _ActionFailed as err:
                    # Not one record's problem (a size limit, a refused search): the
                    # run stops with one line, before anything is written.
                    raise TargetError(
                        f"ldap target: correlation by {rule.attribute}: {err}"
                    ) from None
                for entry in entries or ():
                    taken = _first_text(entry.values(key_attr))  # type: ignore[arg-type]
                    if taken and own_key and taken != own_key:
                        continue
                    found[entry.target_id] = entry
            if not found:
                continue
            for tid, entry in found.items():
                self._dns[tid] = entry.dn
            return sorted(found)
        return []

    # -- records -> desired state ------------------------------------------------------

    def _owned(self, fields: dict[str, FieldValue]) -> dict[str, list[str | bytes]]:
        """Owned attribute -> desired values (lower-cased names -> (name, values))."""
        o = self.options
        if o.owned_attributes is not None:
            low = {k.lower(): (k, v) for k, v in fields.items()}
            out = {}
            for name in o.owned_attributes:
                if name.lower() in low:
                    out[name] = _as_values(low[name.lower()][1])
            return out
        return {
            k: _as_values(v)
            for k, v in fields.items()
            if k.lower() not in RESERVED_FIELDS and not k.startswith("_")
        }

    def _dn_for(self, fields: dict[str, FieldValue], *, disabled: bool) -> str:
        low = {k.lower(): v for k, v in fields.items()}

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            text = _first_text(low.get(name.lower()))
            if text is None or not text.strip():
                raise _ActionFailed(f"dn_template needs field {name!r}, which is empty")
            return escape_rdn_value(text)

        dn = _PLACEHOLDER.sub(value, self.options.dn_template)
        try:
            rdns = parse_dn(dn)
        except ValueError:
            raise _ActionFailed(f"dn_template gave an invalid DN {dn!r}") from None
        if disabled and self.options.disabled_ou:
            dn = build_dn(rdns[:1]) + "," + self.options.disabled_ou
        elif not dn_within(dn, self.options.base):
            raise _ActionFailed(f"computed DN {dn} is outside base {self.options.base}")
        return dn

    def _resolve_refs(
        self, fields: dict[str, FieldValue], owned: dict[str, list[str | bytes]]
    ) -> dict[str, str]:
        """Replace reference fields (manager: employee id) by DNs in ``owned``; return
        the ones that could not be resolved (field -> value)."""
        missing: dict[str, str] = {}
        lowmap = {k.lower(): k for k in owned}
        for fname, attr in self.options.references.items():
            name = lowmap.get(fname.lower())
            if name is None or not owned[name]:
                continue
            value = owned[name][0]
            value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            dn = self._resolve_ref(attr, value)
            if dn is None:
                missing[name] = value
                del owned[name]  # leave the attribute as it is until resolved
            else:
                owned[name] = [dn]
        return missing

    def _resolve_ref(self, attr: str, value: str) -> str | None:
        """DN of the entry whose ``attr`` is ``value`` (cached for one apply() call:
        many people share a manager)."""
        cached = self._ref_cache.get((attr, value))
        if cached is None:
            cached = self._ref_cache[(attr, value)] = self._lookup_ref(attr, value)
        return cached

    def _lookup_ref(self, attr: str, value: str) -> str | None:
        if "=" in value:
            try:
                if any(dn_within(value, s) for s in self.options.scopes):
                    return value
            except ValueError:
                pass
        index = self._scope_index(len(self.options.scopes))
        indexed = index.lookup(attr, value) if index is not None else None
        if indexed is not None:
            found = {e.dn.lower(): e.dn for e in indexed}
        else:
            filt = f"(&{self.options.filter}({attr}={escape_filter_chars(value)}))"
            found = {}
            for scope in self.options.scopes:
                for e in self._search(scope, filt, ["1.1"]):
                    found[e.dn.lower()] = e.dn
        if len(found) > 1:
            raise _ActionFailed(f"several entries have {attr}={value}: {', '.join(found.values())}")
        return next(iter(found.values()), None)

    def _is_disabled(self, entry: _Entry) -> bool:
        o = self.options
        if o.directory == "ad":
            uac = _first_text(entry.values("userAccountControl"))
            if uac and uac.lstrip("-").isdigit() and int(uac) & ACCOUNTDISABLE:
                return True
        for attr, want in o.disabled_attributes.items():
            have = {str(v).lower() for v in entry.values(attr)}
            wanted = [want] if isinstance(want, str) else want
            if any(w.lower() in have for w in wanted):
                return True
        return bool(o.disabled_ou and dn_within(entry.dn, o.disabled_ou))

    def _state_changes(
        self, entry: _Entry | None, enable: bool, owned: dict[str, list[str | bytes]]
    ) -> dict[str, list[tuple[Any, list]]]:
        """Modifications that set the enabled/disabled markers (not the move)."""
        o = self.options
        changes: dict[str, list[tuple[Any, list]]] = {}
        if o.directory == "ad":
            current = _first_text(entry.values("userAccountControl")) if entry else None
            uac = int(current) if current and current.lstrip("-").isdigit() else NORMAL_ACCOUNT
            want = uac & ~ACCOUNTDISABLE if enable else uac | ACCOUNTDISABLE
            if want != uac or entry is None:
                changes["userAccountControl"] = [(ldap3.MODIFY_REPLACE, [str(want)])]
        owned_low = {k.lower() for k in owned}
        for attr, value in o.disabled_attributes.items():
            if attr.lower() in owned_low:
                continue  # the mapping writes it; its value wins
            wanted = [value] if isinstance(value, str) else list(value)
            have = [str(v) for v in entry.values(attr)] if entry else []
            if enable:
                drop = [v for v in have if v.lower() in {w.lower() for w in wanted}]
                if drop:
                    changes[attr] = [(ldap3.MODIFY_DELETE, drop)]
                continue
            have_low = {h.lower() for h in have}
            add = [w for w in wanted if w.lower() not in have_low]
            if not add:
                continue
            if have:
                # Other values (employeeType: contractor) are not ours: add the marker
                # next to them, so re-enabling (which removes only the marker) gives
                # them back unchanged. A single-valued attribute refuses the add: then
                # _modify_entry replaces.
                changes[attr] = [(ldap3.MODIFY_ADD, add)]
            else:
                changes[attr] = [(ldap3.MODIFY_REPLACE, wanted)]
        return changes

    def _modify_entry(self, dn: str, changes: dict[str, list[tuple[Any, list]]]) -> None:
        """Modify ``dn``; a marker value added next to others (see _state_changes) to a
        single-valued attribute (constraint violation) is retried as a replace."""
        try:
            self._write("modify", dn, changes)
        except _ActionFailed as err:
            markers = {a.lower(): v for a, v in self.options.disabled_attributes.items()}
            added = [
                a
                for a, mods in changes.items()
                if a.lower() in markers and any(op == ldap3.MODIFY_ADD for op, _ in mods)
            ]
            if err.code != _CONSTRAINT_VIOLATION or not added:
                raise
            retry = dict(changes)
            for a in added:
                want = markers[a.lower()]
                retry[a] = [(ldap3.MODIFY_REPLACE, [want] if isinstance(want, str) else want)]
            self._write("modify", dn, retry)

    # -- plans -------------------------------------------------------------------------

    def current(
        self, actions: Sequence[Action], secret: Callable[[str], bool] | None = None
    ) -> list[Current | None]:
        """What each action would do to the directory now, read without writing: the
        entry's current DN (and the DN it would be renamed/moved to), every attribute
        old -> new, and the LDIF change records (``secret(name)`` attributes left out).
        See :mod:`syncd.connectors.ldap.preview`."""
        from syncd.connectors.ldap.preview import preview

        return preview(self, actions, secret or (lambda name: False))

    # -- apply -------------------------------------------------------------------------

    def apply(self, actions: Sequence[Action]) -> list[ActionResult]:
        """One result per action (see the module doc for what each kind does).

        Raises TargetError only when the connection is lost."""
        self._c()
        self._ref_cache.clear()  # entries may have moved since the last batch
        if (
            self._members is None
            and len(actions) >= BULK_GROUP_BATCH
            and self.options.directory != "ad"
            and self._groups_managed()
        ):
            self._load_memberships()
        results: list[ActionResult] = []
        pending: list[_Pending] = []
        self._prefetch(actions)
        try:
            self._apply_all(actions, results, pending)
        finally:
            self._batch = None
        return results

    def _apply_all(
        self, actions: Sequence[Action], results: list[ActionResult], pending: list[_Pending]
    ) -> None:
        for index, action in enumerate(actions):
            try:
                if action.kind is ActionKind.DELETE:
                    results.append(self._delete(action))
                else:
                    result, missing = self._upsert_good_fields(action)
                    results.append(result)
                    if missing and result.target_id:
                        pending.append(
                            _Pending(index, result.target_id, missing, [result.detail or ""])
                        )
            except _ActionFailed as err:
                results.append(ActionResult(action, ok=False, error=str(err)))
        for p in pending:
            # A reference to someone created later in the same batch resolves now.
            results[p.index] = self._retry_refs(results[p.index], p)

    def _upsert_good_fields(self, action: Action) -> tuple[ActionResult, dict[str, str]]:
        """:meth:`_upsert`; when the server refuses one attribute's value for good
        (invalid syntax, constraint violation) the entry is written without that field
        and the result names it in ``field_errors``. Raises _ActionFailed otherwise."""
        refused: dict[str, str] = {}
        current = action
        for _ in range(_MAX_REFUSED_FIELDS):
            try:
                result, missing = self._upsert(current)
            except _ActionFailed as err:
                name = self._refused_field(err, current)
                if name is None:
                    raise
                refused[name] = str(err)
                current = dataclasses.replace(
                    current,
                    fields={k: v for k, v in current.fields.items() if k != name},
                    changed=tuple(c for c in current.changed if c != name),
                )
                continue
            if refused:
                result = dataclasses.replace(result, action=action, field_errors=refused)
            return result, missing
        raise _ActionFailed(f"the server refused {len(refused)} fields: {', '.join(refused)}")

    def _refused_field(self, err: _ActionFailed, action: Action) -> str | None:
        """The record field whose value the server refused in ``err``, when leaving it
        out can work: not the key, not a field the DN is built from."""
        if err.code not in (_INVALID_SYNTAX, _CONSTRAINT_VIOLATION):
            return None
        m = _REFUSED_ATTRIBUTE.search(str(err))
        if m is None:
            return None
        attr = m.group(1).lower()
        o = self.options
        in_dn = {n.lower() for n in re.findall(r"{(\w+)}", o.dn_template)}
        if attr in in_dn or attr in (o.key_attr.lower(), o.id_attr.lower()):
            return None
        return next((k for k in action.fields if k.lower() == attr), None)

    def _retry_refs(self, result: ActionResult, p: _Pending) -> ActionResult:
        changes = {}
        self._ref_cache = {k: v for k, v in self._ref_cache.items() if v is not None}
        try:
            for name, value in p.refs.items():
                attr = self.options.references[
                    next(k for k in self.options.references if k.lower() == name.lower())
                ]
                dn = self._resolve_ref(attr, value)
                if dn is None:
                    return ActionResult(
                        result.action,
                        ok=False,
                        target_id=result.target_id,
                        error=f"{name}: no entry with {attr}={value} (yet); retried next run",
                        detail=result.detail,
                    )
                changes[name] = [(ldap3.MODIFY_REPLACE, [dn])]
            entry = self._find_by_id(p.target_id, ["1.1"])
            if entry is None:
                raise _ActionFailed(f"entry {p.target_id} vanished")
            self._write("modify", entry.dn, changes)
        except _ActionFailed as err:
            return ActionResult(result.action, ok=False, target_id=result.target_id, error=str(err))
        return result

    def _upsert(self, action: Action) -> tuple[ActionResult, dict[str, str]]:
        o = self.options
        fields = action.fields
        enable = _enabled(fields)
        owned = self._owned(fields)
        attrs = self._fetch_attrs(owned)
        entry = self._find_by_id(action.target_id, attrs) if action.target_id else None
        if entry is None:
            entry = self._find_by_key(action.key, attrs)
        details: list[str] = []
        fields = self._assign_unique(fields, owned, entry, action.key, details)
        missing = self._resolve_refs(fields, owned)
        owned[o.key_attr] = [action.key]
        want_dn = self._dn_for(fields, disabled=not enable)
        old_dn: str | None = None
        writes_before = self._writes()
        if entry is None:
            if action.kind is ActionKind.UPDATE and action.target_id:
                details.append("recreated (the linked entry was gone)")
            entry = self._create(want_dn, owned, enable, details)
            moved_or_new = True
            was_disabled = not enable
        else:
            linked_to = _first_text(entry.values(o.key_attr))
            if linked_to and linked_to != action.key:
                # Someone else's entry (correlated by mail, say, by a mapping without a
                # key attribute field): never overwrite their key and attributes.
                raise _ActionFailed(
                    f"{entry.dn} has {o.key_attr} {linked_to}, not {action.key}: it belongs "
                    "to another record; left alone"
                )
            if action.kind is ActionKind.CREATE or linked_to != action.key:
                details.append(f"linked {entry.dn}")
            was_disabled = self._is_disabled(entry)
            old_dn = entry.dn
            moved_or_new = self._move(entry, want_dn, details)
            self._modify(entry, owned, enable)
            if was_disabled and enable:
                details.append("re-enabled")
            elif not was_disabled and not enable:
                details.append("disabled")
        groups_field = next((k for k in fields if k.lower() == "groups"), None)
        remove_all = o.disabled_groups == "remove" and not enable
        sync_groups = (
            (groups_field is not None or remove_all)
            and self._groups_managed()
            and (
                moved_or_new
                or action.kind is ActionKind.CREATE
                or "groups" in {c.lower() for c in action.changed}
                or was_disabled != (not enable)
            )
        )
        # OpenLDAP keeps a renamed member's old DN in groups (AD follows the rename).
        stale_dn = old_dn if moved_or_new and old_dn and o.directory != "ad" else None
        if sync_groups:
            wanted = [] if remove_all else _as_values(fields[groups_field])  # type: ignore[index]
            self._sync_groups(entry.dn, wanted, details, old_dn=stale_dn)
        elif stale_dn:
            self._rewrite_memberships(stale_dn, entry.dn)
        self._dns[entry.target_id] = entry.dn
        if missing:
            details.append("reference(s) pending: " + ", ".join(sorted(missing)))
        elif self._writes() == writes_before:
            details.append("already up to date")
        result = ActionResult(
            action, ok=True, target_id=entry.target_id, detail="; ".join(details) or None
        )
        return result, missing

    # -- unique values (logins) ---------------------------------------------------------

    def _assign_unique(
        self,
        fields: dict[str, FieldValue],
        owned: dict[str, list[str | bytes]],
        entry: _Entry | None,
        key: str,
        details: list[str],
    ) -> dict[str, FieldValue]:
        """``fields`` with each ``unique`` field's value made free in the directory:
        the entry's current value when it is the wanted one or a numbered form of it
        (stable across runs), else the first of want, want2, want3... no other entry
        has. Raises _ActionFailed when 99 numbers are taken."""
        o = self.options
        if not o.unique:
            return fields
        out = dict(fields)
        names = {k.lower(): k for k in fields}
        for fname, attr in o.unique.items():
            name = names.get(fname.lower())
            want = _first_text(fields.get(name)) if name else None
            if not want:
                continue
            limit = AD_SAM_MAX if attr.lower() == "samaccountname" else None
            have = _first_text(entry.values(attr)) if entry else None
            candidates = _numbered(want, limit)
            if have and have.lower() in {c.lower() for c in candidates}:
                value = have
            else:
                value = self._free_value(attr, candidates, key, entry)
                if value != want:
                    details.append(f"{attr} {want} is taken: {value}")
            if value == want:
                continue
            out[name] = value  # type: ignore[index]
            for k in owned:
                if k.lower() == attr.lower() or k.lower() == fname.lower():
                    owned[k] = [value]
        return out

    def _free_value(self, attr: str, candidates: list[str], key: str, entry: _Entry | None) -> str:
        o = self.options
        base = o.unique_base or o.base
        for value in candidates:
            index = self._unique_index()
            found = index.lookup(attr, value) if index is not None else None
            if found is None:
                filt = f"({attr}={escape_filter_chars(value)})"
                found = self._search(base, filt, [o.id_attr, o.key_attr])
            others = [
                e
                for e in found
                if not (entry is not None and e.target_id == entry.target_id)
                and _first_text(e.values(o.key_attr)) != key  # type: ignore[arg-type]
            ]
            if not others:
                return value
        raise _ActionFailed(
            f"no free {attr} for {candidates[0]}: {candidates[0]} to {candidates[-1]} are taken"
        )

    def _create(
        self, dn: str, owned: dict[str, list[str | bytes]], enable: bool, details: list[str]
    ) -> _Entry:
        o = self.options
        attributes, label = self._new_entry(dn, owned, enable)
        self._add(dn, attributes)
        details.append(f"{label} {dn}" if " (" not in label else label.replace(" (", f" {dn} (", 1))
        entry = self._search(dn, "(objectClass=*)", [o.id_attr], scope=ldap3.BASE)
        if not entry or not entry[0].target_id:
            raise _ActionFailed(f"created {dn} but cannot read its {o.id_attr}")
        created = entry[0]
        created.attrs.update({k.lower(): list(v) for k, v in attributes.items()})
        stored = _Entry(
            dn,
            {
                k: [_decode(x) if isinstance(x, bytes) else x for x in v]
                for k, v in created.attrs.items()
            },
            created.target_id,
        )
        batch = self._batch
        indexes = [self._index, self._uindex]
        if batch is not None:
            indexes += [batch.by_id, batch.by_key]
            batch.ids_asked.add(created.target_id)
        for index in indexes:
            # A login or key this run gave away is taken for the rest of the run.
            if index is not None and index.within(dn):
                index.add(stored)
        return created

    def _new_entry(
        self, dn: str, owned: dict[str, list[str | bytes]], enable: bool
    ) -> tuple[dict[str, Any], str]:
        """The attributes of a new entry at ``dn`` and how to describe its creation
        ('created', 'created disabled (...)'); nothing is written."""
        o = self.options
        attributes: dict[str, Any] = {"objectClass": o.classes}
        for name, values in owned.items():
            if values:
                attributes[name] = values
        low = {k.lower(): k for k in attributes}
        for attr, value in parse_dn(dn)[0]:
            # The naming attribute must hold the RDN value.
            name = low.get(attr.lower())
            if name is None:
                attributes[attr] = [value]
            elif value not in attributes[name]:
                attributes[name] = [*attributes[name], value]
        for name, mods in self._state_changes(None, enable, owned).items():
            op, values = mods[0]
            if op == ldap3.MODIFY_REPLACE:
                attributes[name] = values
        label = "created" if enable else "created disabled"
        if o.directory == "ad":
            enable_ad = enable
            if enable and o.ad_initial_password == "random":
                if not self._encrypted():
                    enable_ad = False
                    label = "created disabled (AD needs an encrypted connection to set the "
                    label += "initial password)"
                else:
                    pw = '"' + _random_password() + '"'
                    attributes["unicodePwd"] = [pw.encode("utf-16-le")]
                    attributes["pwdLastSet"] = ["0"]
            elif enable:
                enable_ad = False
                label = "created disabled (ad_initial_password: none)"
            attributes["userAccountControl"] = [
                str(NORMAL_ACCOUNT | (0 if enable_ad else ACCOUNTDISABLE))
            ]
        return attributes, label

    def _encrypted(self) -> bool:
        conn = self._c()
        return bool(conn.server.ssl or getattr(conn, "tls_started", False))

    def _add(self, dn: str, attributes: dict[str, Any]) -> None:
        code = self._write("add", dn, None, attributes, ok_codes=(_NO_SUCH_OBJECT, _ALREADY_EXISTS))
        if code == _NO_SUCH_OBJECT and self._make_parents(dn):
            code = self._write("add", dn, None, attributes, ok_codes=(_ALREADY_EXISTS,))
        if code == _NO_SUCH_OBJECT:
            raise _ActionFailed(f"add {dn}: parent does not exist (create_missing_ous is off)")
        if code == _ALREADY_EXISTS:
            raise _ActionFailed(
                f"{dn} exists but is not linked to this record (no {self.options.key_attr} "
                "match, not correlated): left alone"
            )

    def _make_parents(self, dn: str) -> bool:
        """Create missing organizationalUnit parents of ``dn`` inside the scopes."""
        o = self.options
        if not o.create_missing_ous:
            return False
        rdns = parse_dn(dn)[1:]
        scope = next((s for s in o.scopes if dn_within(build_dn(rdns), s)), None)
        if scope is None:
            return False
        # base itself must exist (checked at open); disabled_ou outside base may be made.
        depth = len(parse_dn(scope)) - (0 if same_dn(scope, o.base) else 1)
        made = False
        for cut in range(len(rdns) - depth - 1, -1, -1):
            parent = rdns[cut:]
            if norm_dn(build_dn(parent)) in self._ou_known:
                continue
            first = parent[0]
            if len(first) != 1 or first[0][0].lower() != "ou":
                return made
            pdn = build_dn(parent)
            code = self._write(
                "add",
                pdn,
                None,
                {"objectClass": ["top", "organizationalUnit"], "ou": [first[0][1]]},
                ok_codes=(_ALREADY_EXISTS,),
            )
            self._ou_known.add(norm_dn(pdn))
            made = made or code == 0
            if code == 0:
                log.info("created organizational unit %s", pdn)
        return True

    def _ensure_parent(self, dn: str) -> None:
        parent = build_dn(parse_dn(dn)[1:])
        key = norm_dn(parent)
        if key in self._ou_known:
            return
        if self._search(parent, "(objectClass=*)", ["1.1"], scope=ldap3.BASE):
            self._ou_known.add(key)
        else:
            self._make_parents(dn)

    def _move(self, entry: _Entry, want_dn: str, details: list[str]) -> bool:
        if same_dn(entry.dn, want_dn):
            return False
        old = entry.dn
        new_rdns = parse_dn(want_dn)
        old_rdns = parse_dn(old)
        rdn = build_dn(new_rdns[:1])
        new_parent = build_dn(new_rdns[1:])
        same_parent = norm_dn(build_dn(old_rdns[1:])) == norm_dn(new_parent)
        kwargs: dict[str, Any] = {"delete_old_dn": True}
        if not same_parent:
            kwargs["new_superior"] = new_parent
        if not same_parent:
            # Servers disagree on the error for a missing new parent (AD: "other"), so
            # look first; moves are rare and known parents are remembered.
            self._ensure_parent(want_dn)
        code = self._write(
            "modify_dn", old, rdn, ok_codes=(_NO_SUCH_OBJECT, _ALREADY_EXISTS), **kwargs
        )
        if code == _ALREADY_EXISTS:
            raise _ActionFailed(f"cannot move {old} to {want_dn}: that DN is taken")
        if code == _NO_SUCH_OBJECT:
            raise _ActionFailed(f"cannot move {old} to {want_dn}: no such parent")
        # Keep the snapshot right: the old RDN values left the entry, the new ones came.
        for attr, value in old_rdns[0]:
            vals = entry.attrs.get(attr.lower(), [])
            entry.attrs[attr.lower()] = [v for v in vals if str(v).lower() != value.lower()]
        for attr, value in new_rdns[0]:
            vals = entry.attrs.setdefault(attr.lower(), [])
            if value not in vals:
                vals.append(value)
        entry.dn = want_dn
        details.append(f"moved from {old} to {want_dn}")
        return True

    def _modify(self, entry: _Entry, owned: dict[str, list[str | bytes]], enable: bool) -> None:
        changes = self._modify_changes(entry, owned, enable)
        if changes:
            self._modify_entry(entry.dn, changes)

    def _modify_changes(
        self, entry: _Entry, owned: dict[str, list[str | bytes]], enable: bool
    ) -> dict[str, list[tuple[Any, list]]]:
        """The modifications that make ``entry`` hold ``owned`` and the enabled state
        (nothing is written: plans show them too)."""
        changes: dict[str, list[tuple[Any, list]]] = {}
        refs = {k.lower() for k in self.options.references}
        rdn_attrs = {a.lower() for a, _ in parse_dn(entry.dn)[0]}
        for name, want in owned.items():
            have = entry.values(name)
            if name.lower() in refs:
                equal = len(have) == len(want) and all(
                    same_dn(str(h), str(w)) for h, w in zip(have, want, strict=False)
                )
            else:
                # The same text in another Unicode normal form is the same value to the
                # server: rewriting it every run would be churn, not a change.
                equal = _comparable(have) == _comparable(want)
            if equal:
                continue
            if name.lower() in rdn_attrs:
                # The naming value must stay; the move already made it right.
                rdn_vals = [v for a, v in parse_dn(entry.dn)[0] if a.lower() == name.lower()]
                have_forms = {_nfc(w) for w in want if isinstance(w, str)}
                want = want + [v for v in rdn_vals if _nfc(v) not in have_forms]
                if _comparable(have) == _comparable(want):
                    continue
            changes[name] = [(ldap3.MODIFY_REPLACE, want)]
        changes.update(self._state_changes(entry, enable, owned))
        return changes

    def _delete(self, action: Action) -> ActionResult:
        o = self.options
        attrs = self._fetch_attrs([])
        entry = self._find_by_id(action.target_id, attrs) if action.target_id else None
        if entry is None:
            entry = self._find_by_key(action.key, attrs)
        if entry is None:
            return ActionResult(action, ok=True, detail="already gone")
        if o.on_delete == "delete":
            if o.directory != "ad":
                self._remove_memberships(entry.dn)
            self._write("delete", entry.dn, ok_codes=(_NO_SUCH_OBJECT,))
            return ActionResult(action, ok=True, detail=f"deleted {entry.dn}")
        details: list[str] = []
        move_needed = bool(o.disabled_ou) and not dn_within(entry.dn, o.disabled_ou or "")
        marks_needed = o.on_delete == "disable" and bool(self._state_changes(entry, False, {}))
        remove_groups = o.disabled_groups == "remove" and self._groups_managed()
        groups_left = remove_groups and bool(self._groups_with(entry.dn))
        if not move_needed and not marks_needed and not groups_left:
            return ActionResult(action, ok=True, detail="already disabled")
        old_dn = entry.dn
        moved = False
        if o.disabled_ou:
            want = build_dn(parse_dn(entry.dn)[:1]) + "," + o.disabled_ou
            moved = self._move(entry, want, details)
        stale = old_dn if moved and o.directory != "ad" else None
        if remove_groups:
            self._sync_groups(entry.dn, [], details, old_dn=stale)
        elif stale:
            self._rewrite_memberships(stale, entry.dn)
        if o.on_delete == "disable":
            changes = self._state_changes(entry, False, {})
            if changes:
                self._modify_entry(entry.dn, changes)
            details.insert(0, "disabled")
        return ActionResult(action, ok=True, detail="; ".join(details))

    # -- groups ------------------------------------------------------------------------

    def _groups_managed(self) -> bool:
        return bool(self.options.group_base or self.options.managed_groups)

    def _is_managed_group(self, dn: str) -> bool:
        o = self.options
        try:
            if o.group_base and dn_within(dn, o.group_base):
                return True
            return any(same_dn(dn, g) for g in o.managed_groups)
        except ValueError:
            return False

    def _group_dn(self, value: str | bytes) -> str:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        o = self.options
        if "=" in text:
            try:
                parse_dn(text)
                return text
            except ValueError:
                pass
        if o.group_dn_template:
            return o.group_dn_template.replace("{name}", escape_rdn_value(text))
        if o.group_base:
            return f"cn={escape_rdn_value(text)},{o.group_base}"
        raise _ActionFailed(f"group {text!r} is a name but no group_dn_template/group_base is set")

    def _load_memberships(self) -> None:
        """Read every managed group's members once (big batches: one search instead of
        one per entry). OpenLDAP only: AD hands out large member lists in ranges.
        On any refusal (size limit...) the per-entry searches are used instead."""
        o = self.options
        attr = o.member_attribute
        members: dict[str, set[tuple]] = {}
        names: dict[tuple, str] = {}
        try:
            found = self._search(o.group_base, "(objectClass=*)", [attr]) if o.group_base else []
            for g in o.managed_groups:
                if not (o.group_base and dn_within(g, o.group_base)):
                    found += self._search(g, "(objectClass=*)", [attr], scope=ldap3.BASE)
        except _ActionFailed as err:
            log.debug("group members not cached: %s", err)
            return
        for e in found:
            gkey = norm_dn(e.dn)
            names[gkey] = e.dn
            for value in e.values(attr):
                members.setdefault(_member_key(value), set()).add(gkey)
        self._members, self._group_names = members, names

    def _member_changed(self, gdn: str, dn: str, added: bool) -> None:
        if self._members is None:
            return
        gkey = norm_dn(gdn)
        self._group_names.setdefault(gkey, gdn)
        groups = self._members.setdefault(_member_key(dn), set())
        if added:
            groups.add(gkey)
        else:
            groups.discard(gkey)

    def _groups_with(self, member_dn: str) -> dict[tuple, str]:
        """Managed groups that list ``member_dn`` (normalized DN -> DN)."""
        if self._members is not None:
            keys = self._members.get(_member_key(member_dn), ())
            return {k: self._group_names[k] for k in keys}
        o = self.options
        filt = f"({o.member_attribute}={escape_filter_chars(member_dn)})"
        found: dict[tuple, str] = {}
        if o.group_base:
            for e in self._search(o.group_base, filt, ["1.1"]):
                found[norm_dn(e.dn)] = e.dn
        for g in o.managed_groups:
            if o.group_base and dn_within(g, o.group_base):
                continue
            for e in self._search(g, filt, ["1.1"], scope=ldap3.BASE):
                found[norm_dn(e.dn)] = e.dn
        return found

    def _sync_groups(
        self,
        dn: str,
        wanted: list[str | bytes],
        details: list[str],
        *,
        old_dn: str | None = None,
    ) -> None:
        """Make ``dn`` a member of exactly the managed groups in ``wanted``; with
        ``old_dn`` (OpenLDAP rename), memberships of the old DN are carried over in
        the same modify (or dropped when no longer wanted). Groups not managed are
        never touched."""
        desired: dict[tuple, str] = {}
        ignored = []
        for value in wanted:
            gdn = self._group_dn(value)
            if self._is_managed_group(gdn):
                desired[norm_dn(gdn)] = gdn
            else:
                ignored.append(gdn)
        if ignored:
            details.append("not managed, ignored: " + ", ".join(ignored))
        current = self._groups_with(dn)
        attr = self.options.member_attribute
        added, removed, problems, warnings = [], [], [], []
        if old_dn is not None and not same_dn(old_dn, dn):
            for key, gdn in self._groups_with(old_dn).items():
                mods = [(ldap3.MODIFY_DELETE, [old_dn])]
                carry = key in desired and key not in current
                if carry:
                    mods.append((ldap3.MODIFY_ADD, [dn]))
                    current[key] = gdn
                elif key not in desired:
                    removed.append(gdn)
                self._write("modify", gdn, {attr: mods}, ok_codes=(_NO_SUCH_ATTRIBUTE,))
                self._member_changed(gdn, old_dn, False)
                if carry:
                    self._member_changed(gdn, dn, True)
        for key, gdn in desired.items():
            if key in current:
                continue
            code = self._write(
                "modify",
                gdn,
                {attr: [(ldap3.MODIFY_ADD, [dn])]},
                ok_codes=(_VALUE_EXISTS, _NO_SUCH_OBJECT),
            )
            if code == _NO_SUCH_OBJECT:
                # The person is fine; the group is missing (a typo in the HR export,
                # a group not created yet): the report shows it on that person.
                warnings.append(f"warning: group {gdn} does not exist")
            else:
                added.append(gdn)
                self._member_changed(gdn, dn, True)
        for key, gdn in current.items():
            if key in desired:
                continue
            try:
                self._write(
                    "modify",
                    gdn,
                    {attr: [(ldap3.MODIFY_DELETE, [dn])]},
                    ok_codes=(_NO_SUCH_ATTRIBUTE, _NO_SUCH_OBJECT),
                )
                removed.append(gdn)
                self._member_changed(gdn, dn, False)
            except _ActionFailed as err:
                problems.append(str(err))
        if added:
            details.append("added to " + " and ".join(added))
        if removed:
            details.append("removed from " + " and ".join(removed))
        details.extend(warnings)
        if problems:
            raise _ActionFailed("; ".join([*details, *problems]))

    def _rewrite_memberships(self, old_dn: str, new_dn: str) -> None:
        """OpenLDAP keeps stale member DNs after a rename (no refint): fix them in
        managed groups (only those: other groups are not ours to touch)."""
        if not self._groups_managed() or same_dn(old_dn, new_dn):
            return
        attr = self.options.member_attribute
        for gdn in self._groups_with(old_dn).values():
            self._write(
                "modify",
                gdn,
                {attr: [(ldap3.MODIFY_DELETE, [old_dn]), (ldap3.MODIFY_ADD, [new_dn])]},
                ok_codes=(_VALUE_EXISTS, _NO_SUCH_ATTRIBUTE),
            )
            self._member_changed(gdn, old_dn, False)
            self._member_changed(gdn, new_dn, True)

    def _remove_memberships(self, dn: str) -> None:
        if not self._groups_managed():
            return
        attr = self.options.member_attribute
        for gdn in self._groups_with(dn).values():
            self._write(
                "modify",
                gdn,
                {attr: [(ldap3.MODIFY_DELETE, [dn])]},
                ok_codes=(_NO_SUCH_ATTRIBUTE,),
            )
            self._member_changed(gdn, dn, False)
