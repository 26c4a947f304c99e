"""Record fields -> Exchange contact / distribution list properties.

A mapping's output field names are the names below; the Exchange target turns a record
into an exchangelib item and, for an update, into the list of item properties to change.

Contacts (``kind: contact``)
============================

=====================  ==============================================================
record field           Exchange contact property (EWS FieldURI)
=====================  ==============================================================
display_name           contacts:DisplayName (required by Exchange)
given_name             contacts:GivenName
surname                contacts:Surname
middle_name            contacts:MiddleName
initials               contacts:Initials
nickname               contacts:Nickname
file_as                contacts:FileAs
generation             contacts:Generation
company_name           contacts:CompanyName
department             contacts:Department
job_title              contacts:JobTitle
office                 contacts:OfficeLocation
manager                contacts:Manager (free text)
assistant_name         contacts:AssistantName
profession             contacts:Profession
business_homepage      contacts:BusinessHomePage
email_addresses        contacts:EmailAddress EmailAddress1..3 (a list, or one string;
                       values after the third are dropped with a warning)
<phone>                contacts:PhoneNumber, one per key of :data:`PHONE_FIELDS`
                       (business_phone, mobile_phone, home_phone, ...); a list keeps
                       its first value
<kind>_<part>          contacts:PhysicalAddress, kind business/home/other, part
                       street/city/state/postal_code/country
notes                  item:Body (plain text)
photo                  the contact photo: a FileAttachment with IsContactPhoto=true
                       (bytes, JPEG as found in jpegPhoto/thumbnailPhoto)
=====================  ==============================================================

Distribution lists (``kind: distribution_list``)
================================================

=====================  ==============================================================
display_name           distributionlist:DisplayName (required)
members                distributionlist:Members: a list; a value with ``@`` is an
                       SMTP address (MailboxType OneOff), any other value is the EWS
                       item id of a contact synced by another job (MailboxType
                       Contact), as ``lookup(job)`` in a mapping returns it
notes                  item:Body (plain text)
=====================  ==============================================================

A record field that is not listed here is an error for that record (a typo in a mapping
must not be silently dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from exchangelib.attachments import FileAttachment
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.items import Contact, DistributionList
from exchangelib.properties import ItemId, Mailbox, Member

log = logging.getLogger(__name__)

CONTACT_TEXT_FIELDS: dict[str, str] = {
    "display_name": "display_name",
    "given_name": "given_name",
    "surname": "surname",
    "middle_name": "middle_name",
    "initials": "initials",
    "nickname": "nickname",
    "file_as": "file_as",
    "generation": "generation",
    "company_name": "company_name",
    "department": "department",
    "job_title": "job_title",
    "office": "office",
    "manager": "manager",
    "assistant_name": "assistant_name",
    "profession": "profession",
    "business_homepage": "business_homepage",
}
"""Record field -> exchangelib Contact attribute, for plain text properties."""

PHONE_FIELDS: dict[str, str] = {
    "business_phone": "BusinessPhone",
    "business_phone_2": "BusinessPhone2",
    "mobile_phone": "MobilePhone",
    "home_phone": "HomePhone",
    "home_phone_2": "HomePhone2",
    "business_fax": "BusinessFax",
    "home_fax": "HomeFax",
    "other_fax": "OtherFax",
    "pager": "Pager",
    "other_phone": "OtherTelephone",
    "company_main_phone": "CompanyMainPhone",
    "assistant_phone": "AssistantPhone",
    "car_phone": "CarPhone",
    "primary_phone": "PrimaryPhone",
}
"""Record field -> EWS PhoneNumber key."""

ADDRESS_KINDS = {"business": "Business", "home": "Home", "other": "Other"}
ADDRESS_PARTS = {
    "street": "street",
    "city": "city",
    "state": "state",
    "postal_code": "zipcode",
    "country": "country",
}
ADDRESS_FIELDS: dict[str, tuple[str, str]] = {
    f"{k}_{p}": (label, attr)
    for k, label in ADDRESS_KINDS.items()
    for p, attr in ADDRESS_PARTS.items()
}
"""Record field -> (PhysicalAddress key, exchangelib sub-field)."""

CONTACT_FIELDS = frozenset(
    [*CONTACT_TEXT_FIELDS, *PHONE_FIELDS, *ADDRESS_FIELDS, "email_addresses", "notes", "photo"]
)
DL_FIELDS = frozenset(["display_name", "members", "notes"])

PHOTO_NAME = "ContactPicture.jpg"


class FieldProblem(ValueError):
    """A record cannot be turned into an Exchange item (one clear line)."""


def _text(value: Any) -> str | None:
    """A single text value: first of a list, bytes decoded, empty -> None."""
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
    out = []
    for v in value:
        t = _text(v)
        if t is not None and t not in out:
            out.append(t)
    return out


def check_fields(fields: Iterable[str], kind: str) -> None:
    """Raise FieldProblem naming every record field the target does not know."""
    known = CONTACT_FIELDS if kind == "contact" else DL_FIELDS
    unknown = sorted(set(fields) - known)
    if unknown:
        raise FieldProblem(
            f"unknown Exchange {kind} field(s) {', '.join(unknown)} "
            "(see syncd/connectors/exchange/fields.py for the names)"
        )


def item_attributes(fields: dict[str, Any], kind: str) -> dict[str, Any]:
    """exchangelib attribute -> value for every property this target manages.

    Properties the record leaves empty are present with None (or an empty list), so an
    update of them deletes the value on the server. ``photo`` is not included (it is an
    attachment; see :func:`photo_of`).
    """
    check_fields(fields, kind)
    if kind == "distribution_list":
        return {
            "display_name": _require_name(fields),
            "members": [_member(v) for v in _values(fields.get("members"))] or None,
            "body": _text(fields.get("notes")),
        }
    attrs: dict[str, Any] = {a: _text(fields.get(f)) for f, a in CONTACT_TEXT_FIELDS.items()}
    attrs["display_name"] = _require_name(fields)
    emails = _values(fields.get("email_addresses"))
    if len(emails) > 3:
        log.warning(
            "Exchange contacts hold 3 e-mail addresses; dropping %d more of %s",
            len(emails) - 3,
            attrs["display_name"],
        )
    attrs["email_addresses"] = [
        EmailAddress(email=e, label=f"EmailAddress{n}") for n, e in enumerate(emails[:3], 1)
    ] or None
    phones = []
    for f, label in PHONE_FIELDS.items():
        number = _text(fields.get(f))
        if number is not None:
            phones.append(PhoneNumber(label=label, phone_number=number))
    attrs["phone_numbers"] = phones or None
    addresses: dict[str, dict[str, str]] = {}
    for f, (label, part) in ADDRESS_FIELDS.items():
        value = _text(fields.get(f))
        if value is not None:
            addresses.setdefault(label, {})[part] = value
    attrs["physical_addresses"] = [
        PhysicalAddress(label=label, **parts) for label, parts in addresses.items()
    ] or None
    attrs["body"] = _text(fields.get("notes"))
    return attrs


def changed_attributes(changed: Iterable[str], kind: str) -> list[str]:
    """The exchangelib attributes an update of these record fields must write
    (``photo`` excluded: attachments are handled apart)."""
    out: list[str] = []
    for f in changed:
        if f == "photo":
            continue
        if f in CONTACT_TEXT_FIELDS and kind == "contact":
            attr = CONTACT_TEXT_FIELDS[f]
        elif f == "email_addresses":
            attr = "email_addresses"
        elif f in PHONE_FIELDS:
            attr = "phone_numbers"
        elif f in ADDRESS_FIELDS:
            attr = "physical_addresses"
        elif f == "notes":
            attr = "body"
        elif f in ("display_name", "members"):
            attr = f
        else:
            check_fields([f], kind)
            continue
        if attr not in out:
            out.append(attr)
    return out


def managed_paths(field_names: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
    """For the indexed properties (phone numbers, addresses, e-mail addresses): the
    (label, sub-field) pairs these record fields stand for, by exchangelib attribute.
    An update writes or deletes those entries only, so a car phone or home address a
    person added by hand survives a change of the business phone."""
    out: dict[str, set[tuple[str, str]]] = {}
    for f in field_names:
        if f in PHONE_FIELDS:
            out.setdefault("phone_numbers", set()).add((PHONE_FIELDS[f], "phone_number"))
        elif f in ADDRESS_FIELDS:
            out.setdefault("physical_addresses", set()).add(ADDRESS_FIELDS[f])
        elif f == "email_addresses":  # the list is syncd's: EmailAddress1..3
            out["email_addresses"] = {(f"EmailAddress{n}", "email") for n in (1, 2, 3)}
    return out


def photo_of(fields: dict[str, Any]) -> bytes | None:
    value = fields.get("photo")
    if isinstance(value, list | tuple):
        value = next((v for v in value if v), None)
    if value is None or value == b"" or value == "":
        return None
    if isinstance(value, str):
        # A photo must arrive as bytes; text here means the mapping converted it.
        raise FieldProblem("field photo must be bytes (jpegPhoto/thumbnailPhoto), got text")
    return bytes(value)


def photo_attachment(data: bytes) -> FileAttachment:
    return FileAttachment(
        name=PHOTO_NAME, content=data, content_type="image/jpeg", is_contact_photo=True
    )


def new_item(kind: str, attrs: dict[str, Any], photo: bytes | None, **kwargs: Any) -> Any:
    """An unsaved exchangelib Contact/DistributionList with these attributes."""
    cls = Contact if kind == "contact" else DistributionList
    values = {k: v for k, v in attrs.items() if v is not None}
    item = cls(**kwargs, **values)
    if photo is not None:
        item.attachments = [photo_attachment(photo)]
    return item


def _require_name(fields: dict[str, Any]) -> str:
    name = _text(fields.get("display_name"))
    if name is None:
        raise FieldProblem("display_name is empty (Exchange requires one)")
    return name


def _member(value: str) -> Member:
    if "@" in value:
        return Member(mailbox=Mailbox(email_address=value, mailbox_type="OneOff"))
    return Member(mailbox=Mailbox(item_id=ItemId(id=value), mailbox_type="Contact"))


__all__ = [
    "CONTACT_FIELDS",
    "DL_FIELDS",
    "FieldProblem",
    "changed_attributes",
    "check_fields",
    "item_attributes",
    "managed_paths",
    "new_item",
    "photo_attachment",
    "photo_of",
]
