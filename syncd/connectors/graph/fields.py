"""Record fields -> Microsoft Graph ``contact`` properties, and the digest that tells a
contact syncd wrote from one edited by hand.

=======================  ================================================================
record field             Graph contact property
=======================  ================================================================
display_name             displayName (required)
given_name               givenName
surname                  surname
middle_name              middleName
initials                 initials
nickname                 nickName
title                    title (Mr, Dr ...)
file_as                  fileAs
generation               generation
company_name             companyName
department               department
job_title                jobTitle
office                   officeLocation
manager                  manager (free text)
assistant_name           assistantName
profession               profession
business_homepage        businessHomePage
email_addresses          emailAddresses (a list or one string; Graph keeps 3, more are
                         dropped with a warning)
im_addresses             imAddresses (list)
business_phones          businessPhones (list; ``business_phone`` is one value of it)
home_phones              homePhones (list; ``home_phone`` is one value of it)
mobile_phone             mobilePhone
<kind>_<part>            businessAddress / homeAddress / otherAddress, kind business,
                         home, other; part street, city, state, postal_code, country
categories               categories (list): Graph has no personal contact groups, so
                         group membership is best carried as categories
notes                    personalNotes
photo                    the contact photo (bytes, JPEG), ``PUT .../photo/$value``
=======================  ================================================================

Graph has **no personal contact groups** (Outlook's contact lists are not in Graph):
a ``kind: distribution_list`` job has no Graph equivalent; map group names into
``categories`` of the people instead.

A record field not listed here is an error for that record (a typo in a mapping must
not be dropped silently).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

TEXT_FIELDS: dict[str, str] = {
    "display_name": "displayName",
    "given_name": "givenName",
    "surname": "surname",
    "middle_name": "middleName",
    "initials": "initials",
    "nickname": "nickName",
    "title": "title",
    "file_as": "fileAs",
    "generation": "generation",
    "company_name": "companyName",
    "department": "department",
    "job_title": "jobTitle",
    "office": "officeLocation",
    "manager": "manager",
    "assistant_name": "assistantName",
    "profession": "profession",
    "business_homepage": "businessHomePage",
    "mobile_phone": "mobilePhone",
    "notes": "personalNotes",
}
LIST_FIELDS: dict[str, str] = {
    "email_addresses": "emailAddresses",
    "im_addresses": "imAddresses",
    "business_phones": "businessPhones",
    "business_phone": "businessPhones",
    "home_phones": "homePhones",
    "home_phone": "homePhones",
    "categories": "categories",
}
ADDRESS_KINDS = {"business": "businessAddress", "home": "homeAddress", "other": "otherAddress"}
ADDRESS_PARTS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "postalCode",
    "country": "countryOrRegion",
}
ADDRESS_FIELDS: dict[str, tuple[str, str]] = {
    f"{k}_{p}": (prop, sub) for k, prop in ADDRESS_KINDS.items() for p, sub in ADDRESS_PARTS.items()
}
KNOWN = frozenset([*TEXT_FIELDS, *LIST_FIELDS, *ADDRESS_FIELDS, "photo"])
PROPERTIES: tuple[str, ...] = tuple(
    sorted({*TEXT_FIELDS.values(), *LIST_FIELDS.values(), *ADDRESS_KINDS.values()})
)
"""Every Graph property this target may write (the ``$select`` of listings)."""


class FieldProblem(ValueError):
    """A record cannot become a Graph contact (one clear line)."""


def _text(value: Any) -> str | None:
    if isinstance(value, list | tuple):
        value = next((v for v in value if v not in (None, "")), None)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value)
    return text if text.strip() else None


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        value = [value]
    out: list[str] = []
    for v in value:
        t = _text(v)
        if t is not None and t not in out:
            out.append(t)
    return out


def check_fields(names: Iterable[str]) -> None:
    """Raise FieldProblem naming every unknown record field."""
    unknown = sorted(set(names) - KNOWN)
    if unknown:
        raise FieldProblem(
            f"unknown Graph contact field(s) {', '.join(unknown)} "
            "(see syncd/connectors/graph/fields.py for the names)"
        )


def managed(names: Iterable[str]) -> list[str]:
    """The Graph properties these record fields stand for (sorted, no photo)."""
    out = set()
    for n in names:
        if n in TEXT_FIELDS:
            out.add(TEXT_FIELDS[n])
        elif n in LIST_FIELDS:
            out.add(LIST_FIELDS[n])
        elif n in ADDRESS_FIELDS:
            out.add(ADDRESS_FIELDS[n][0])
    return sorted(out)


def payload(fields: dict[str, Any]) -> dict[str, Any]:
    """The Graph properties of a record, every managed one present (None / [] / {}
    when empty, so a PATCH of it clears the value). Raises FieldProblem."""
    check_fields(fields)
    out: dict[str, Any] = {}
    for name, prop in TEXT_FIELDS.items():
        if name in fields:
            out[prop] = _text(fields[name])
    if not out.get("displayName"):
        raise FieldProblem("display_name is empty (Graph contacts need one)")
    for name, prop in LIST_FIELDS.items():
        if name in fields:
            out[prop] = [*out.get(prop, []), *_values(fields[name])]
    for prop in ("businessPhones", "homePhones", "categories", "imAddresses"):
        if prop in out:
            out[prop] = list(dict.fromkeys(out[prop]))
    if "emailAddresses" in out:
        emails = list(dict.fromkeys(out["emailAddresses"]))
        if len(emails) > 3:
            log.warning(
                "Graph contacts hold 3 e-mail addresses; dropping %d more of %s",
                len(emails) - 3,
                out["displayName"],
            )
        out["emailAddresses"] = [{"address": e, "name": e} for e in emails[:3]]
    for name, (prop, sub) in ADDRESS_FIELDS.items():
        if name in fields:
            part = out.setdefault(prop, {})
            value = _text(fields[name])
            if value is not None:
                part[sub] = value
    return out


def photo_of(fields: dict[str, Any]) -> bytes | None:
    """The photo bytes of a record (None: no photo). Raises FieldProblem for text."""
    value = fields.get("photo")
    if isinstance(value, list | tuple):
        value = next((v for v in value if v), None)
    if value in (None, b"", ""):
        return None
    if isinstance(value, str):
        raise FieldProblem("field photo must be bytes (jpegPhoto/thumbnailPhoto), got text")
    return bytes(value)


def photo_hash(photo: bytes | None) -> str:
    return hashlib.sha256(photo).hexdigest()[:32] if photo is not None else "none"


def _canonical(prop: str, value: Any) -> Any:
    if value in (None, "", [], {}):
        return None
    if prop == "emailAddresses":
        got = [str(e.get("address") or "") for e in value if isinstance(e, dict)]
        return [g.lower() for g in got if g] or None
    if isinstance(value, dict):
        kept = {k: v for k, v in sorted(value.items()) if v not in (None, "")}
        return kept or None
    return value


def digest(contact: dict[str, Any], props: Iterable[str]) -> str:
    """A short hash of these properties of a contact (as sent or as Graph returns it):
    equal for a contact exactly as syncd wrote it, different after a hand edit."""
    canon = {p: _canonical(p, contact.get(p)) for p in sorted(props)}
    text = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def digest_value(contact: dict[str, Any], props: list[str]) -> str:
    """What the digest extended property holds: ``v1 <digest> <prop,prop...>``."""
    return f"v1 {digest(contact, props)} {','.join(props)}"


def edited_by_hand(contact: dict[str, Any], stored: str | None) -> bool:
    """True when the contact's managed properties no longer hash to what syncd stored
    with its last write (a contact without a readable digest counts as edited)."""
    parts = (stored or "").split(" ")
    if len(parts) != 3 or parts[0] != "v1":
        return True
    props = [p for p in parts[2].split(",") if p]
    return digest(contact, props) != parts[1]
