"""Records -> vCards (4.0 or 3.0), built with vobject, and what syncd reads back.

Record fields understood (all optional; a value may be ``None``/""/[] for "absent"):

=================  ==========================================================================
field              vCard
=================  ==========================================================================
fn                 FN, the display name. Default: "given family", else org, else the first
                   e-mail, else the key.
family, given,     N components (str or list). ``n`` may instead be a list
additional,        ``[family, given, additional, prefix, suffix]`` or a dict with those keys.
prefix, suffix
nickname           NICKNAME (str or list)
email              EMAIL, one per value (str or list; the first is marked preferred).
                   A value may be a dict ``{value, type}``.
tel                TEL, one per value (str, list of str, or dicts ``{value, type}``)
tel_work,          TEL with TYPE work/home/cell/fax/pager (str or list)
tel_home,
tel_mobile,
tel_fax, tel_pager
org, department    ORG (``org`` may be a list: organisation then units; ``department`` is
                   appended as a unit)
title, role        TITLE, ROLE
note               NOTE (newlines kept)
url                URL (str or list)
adr                ADR;TYPE=work: a str (the street part; ``$`` as in LDAP postalAddress
                   becomes a newline) or a dict with po_box, extended, street, locality,
                   region, code, country
street, locality,  ADR;TYPE=work components, when ``adr`` is not given
region,
postal_code,
country, po_box
categories         CATEGORIES (str or list)
photo              PHOTO: bytes (JPEG, PNG or GIF) -> ``data:`` URI in 4.0, ``ENCODING=b`` in
                   3.0; or an http(s) URL
kind               individual (default), group, org, location: KIND in 4.0,
                   X-ADDRESSBOOKSERVER-KIND in 3.0
members            group members: record keys of the member cards (or their syncd target ids):
                   MEMBER:urn:uuid:KEY in 4.0, X-ADDRESSBOOKSERVER-MEMBER in 3.0
x_*                any extra property: ``x_employee_id`` -> X-EMPLOYEE-ID (str or list)
=================  ==========================================================================

Any other field name is an error of that record (it catches typos in mappings).

Every card syncd writes carries ``UID`` = the record key, ``X-SYNCD-KEY`` = the key and
``X-SYNCD-DIGEST`` = a digest of the card's content. A card whose content no longer
matches its digest was edited by someone else (see :func:`edited_elsewhere`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import vobject
from vobject.vcard import Address, Name

PRODID = "-//syncd//syncd CardDAV target//EN"
KEY_PROPERTY = "X-SYNCD-KEY"
DIGEST_PROPERTY = "X-SYNCD-DIGEST"
NAME_PREFIX = "syncd-"

_DIRECT_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_N_PARTS = ("family", "given", "additional", "prefix", "suffix")
_ADR_FLAT = {
    "po_box": "box",
    "extended": "extended",
    "street": "street",
    "locality": "city",
    "region": "region",
    "postal_code": "code",
    "code": "code",
    "country": "country",
}
_TEL_FLAT = {
    "tel_work": "work",
    "tel_home": "home",
    "tel_mobile": "cell",
    "tel_fax": "fax",
    "tel_pager": "pager",
}
_SIMPLE = {"title": "title", "role": "role", "note": "note"}
_KINDS = ("individual", "group", "org", "location")
KNOWN_FIELDS = frozenset(
    {
        "fn",
        "n",
        *_N_PARTS,
        "nickname",
        "email",
        "tel",
        *_TEL_FLAT,
        "org",
        "department",
        *_SIMPLE,
        "url",
        "adr",
        *(k for k in _ADR_FLAT if k not in ("extended", "code")),
        "categories",
        "photo",
        "kind",
        "members",
    }
)


class VCardError(ValueError):
    """A record cannot be turned into a vCard (the message names the field)."""


def resource_name(key: str) -> str:
    """The file name of the card for ``key`` in the address book, always
    ``syncd-...vcf`` and URL-safe: the key itself when it is lower-case letters, digits
    and dashes (a UUID), else a SHA-256 of it (so hostile keys cannot make paths, and
    keys differing only in case do not collide on case-insensitive storage)."""
    if _DIRECT_KEY.fullmatch(key):
        return f"{NAME_PREFIX}{key}.vcf"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"{NAME_PREFIX}h-{digest}.vcf"


def key_from_name(name: str) -> str | None:
    """The key of a direct resource name (see :func:`resource_name`), else None."""
    if not (name.startswith(NAME_PREFIX) and name.endswith(".vcf")):
        return None
    inner = name[len(NAME_PREFIX) : -4]
    if inner.startswith("h-") and len(inner) == 42:
        return None
    return inner if _DIRECT_KEY.fullmatch(inner) else None


def is_syncd_name(name: str) -> bool:
    return name.startswith(NAME_PREFIX) and name.endswith(".vcf")


# ------------------------------------------------------------------ values


def _clean(value: Any, field: str) -> str:
    """A text value: str (ints and floats accepted), CR/LF normalised to \\n, other
    control characters removed (vCard text cannot carry them)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise VCardError(f"field {field!r}: expected text, got {type(value).__name__}")
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text)


def _values(value: Any) -> list[Any]:
    if value is None or value == "" or value == b"":
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v is not None and v != "" and v != b""]
    return [value]


def _texts(value: Any, field: str) -> list[str]:
    return [t for t in (_clean(v, field) for v in _values(value)) if t.strip()]


def _one(value: Any, field: str) -> str | None:
    texts = _texts(value, field)
    if len(texts) > 1:
        raise VCardError(f"field {field!r}: expected one value, got {len(texts)}")
    return texts[0] if texts else None


def _typed(value: Any, field: str, default_type: str | None) -> list[tuple[str, str | None]]:
    out = []
    for v in _values(value):
        if isinstance(v, dict):
            text = _one(v.get("value"), f"{field}.value")
            kind = v.get("type")
            if kind is not None:
                kind = _clean(kind, f"{field}.type").strip()
                if not re.fullmatch(r"[A-Za-z0-9-]+(,[A-Za-z0-9-]+)*", kind):
                    raise VCardError(f"field {field!r}: bad type {kind!r}")
            if text:
                out.append((text, kind or default_type))
        else:
            text = _clean(v, field)
            if text.strip():
                out.append((text, default_type))
    return out


def _image_type(data: bytes) -> str:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    raise VCardError("field 'photo': not a JPEG, PNG or GIF image")


# ------------------------------------------------------------------ building


def build_vcard(
    key: str,
    fields: dict[str, Any],
    *,
    version: str = "4.0",
    member_uid: Callable[[Any], str | None] | None = None,
) -> str:
    """The vCard text (CRLF line ends) for record ``key`` with ``fields``.

    ``member_uid`` turns one ``members`` value into the member's UID (default: the value
    itself). Raises :class:`VCardError` for a field that cannot be written.
    """
    if version not in ("4.0", "3.0"):
        raise VCardError(f"unknown vCard version {version!r}")
    unknown = sorted(f for f in fields if f not in KNOWN_FIELDS and not f.startswith("x_"))
    if unknown:
        raise VCardError(f"unknown field(s) {', '.join(map(repr, unknown))} for a vCard")
    v4 = version == "4.0"
    card = vobject.vCard()
    card.add("version").value = version
    card.add("prodid").value = PRODID
    card.add("uid").value = _clean(key, "key")

    kind = (_one(fields.get("kind"), "kind") or "individual").lower()
    if kind not in _KINDS:
        raise VCardError(f"field 'kind': {kind!r} is not one of {', '.join(_KINDS)}")

    name = _name(fields)
    org = _texts(fields.get("org"), "org") + _texts(fields.get("department"), "department")
    emails = list(dict.fromkeys(_typed(fields.get("email"), "email", None)))  # no duplicates

    fn = _one(fields.get("fn"), "fn")
    if not fn:
        given_family = " ".join(p for p in (name["given"], name["family"]) if p)
        fn = given_family or (org[0] if org else "") or (emails[0][0] if emails else "") or key
    card.add("fn").value = _clean(fn, "fn")
    if any(name.values()) or not v4:
        n = card.add("n")
        if not any(name.values()) and kind == "group":
            name["family"] = fn  # 3.0 needs N; Apple puts a group's name there
        n.value = Name(**name)

    for nick in _texts(fields.get("nickname"), "nickname"):
        card.add("nickname").value = nick
    for i, (addr, kind_param) in enumerate(emails):
        line = card.add("email")
        line.value = addr
        types = [t for t in (kind_param,) if t]
        if not v4:
            types.insert(0, "INTERNET")
        if i == 0 and len(emails) > 1:
            if v4:
                line.pref_param = "1"
            else:
                types.append("PREF")
        if types:
            line.type_paramlist = types  # TYPE=a,b (a joined string would be quoted)
    tels = _typed(fields.get("tel"), "tel", None)
    for field, tel_type in _TEL_FLAT.items():
        tels += _typed(fields.get(field), field, tel_type)
    for number, tel_type in tels:
        line = card.add("tel")
        line.value = number
        if tel_type:
            line.type_paramlist = [t if v4 else t.upper() for t in tel_type.split(",")]
    if org:
        card.add("org").value = org
    for field, prop in _SIMPLE.items():
        text = _one(fields.get(field), field)
        if text:
            card.add(prop).value = text
    for url in _texts(fields.get("url"), "url"):
        line = card.add("url")
        line.value = url
    adr = _address(fields)
    if adr is not None:
        line = card.add("adr")
        line.value = adr
        line.type_param = "work" if v4 else "WORK"
    cats = _texts(fields.get("categories"), "categories")
    if cats:
        card.add("categories").value = cats
    _photo(card, fields.get("photo"), v4)

    members = [] if fields.get("members") is None else _values(fields.get("members"))
    if kind != "individual":
        if v4:
            card.add("kind").value = kind
        else:
            card.add("x-addressbookserver-kind").value = kind
    if members and kind != "group":
        raise VCardError("field 'members' is only allowed with kind: group")
    uids = []
    for m in members:
        uid = member_uid(m) if member_uid else _clean(m, "members")
        if uid:
            uids.append(uid)
    for uid in dict.fromkeys(uids):
        line = card.add("member" if v4 else "x-addressbookserver-member")
        line.value = "urn:uuid:" + quote(uid, safe="-._~@:+")
        line.encoded = True  # a URI: no text escaping (quote() removed , ; \)

    for field in sorted(f for f in fields if f.startswith("x_")):
        prop = "x-" + field[2:].replace("_", "-")
        if not re.fullmatch(r"x-[a-z0-9-]+", prop) or prop in ("x-syncd-key", "x-syncd-digest"):
            raise VCardError(f"field {field!r}: not usable as a vCard property name")
        for text in _texts(fields[field], field):
            card.add(prop).value = text

    card.add(KEY_PROPERTY.lower()).value = _clean(key, "key")
    try:
        text = card.serialize()
    except Exception as err:  # vobject raises assorted errors on odd values
        raise VCardError(f"vobject could not serialise the card: {err}") from None
    return _with_digest(text)


def _name(fields: dict[str, Any]) -> dict[str, str]:
    parts = {p: "" for p in _N_PARTS}
    raw = fields.get("n")
    if isinstance(raw, dict):
        for p in _N_PARTS:
            parts[p] = " ".join(_texts(raw.get(p), f"n.{p}"))
    elif raw is not None and raw != "":
        seq = raw if isinstance(raw, list | tuple) else [raw]
        for p, v in zip(_N_PARTS, seq, strict=False):
            parts[p] = " ".join(_texts(v, "n"))
    for p in _N_PARTS:
        if fields.get(p) not in (None, "", []):
            parts[p] = " ".join(_texts(fields[p], p))
    return parts


def _address(fields: dict[str, Any]) -> Address | None:
    raw = fields.get("adr")
    parts = {v: "" for v in set(_ADR_FLAT.values())}
    if isinstance(raw, dict):
        for k, v in raw.items():
            if k not in _ADR_FLAT:
                raise VCardError(f"field 'adr': unknown part {k!r}")
            parts[_ADR_FLAT[k]] = "\n".join(_texts(v, f"adr.{k}"))
    elif raw not in (None, "", []):
        parts["street"] = "\n".join(t.replace("$", "\n") for t in _texts(raw, "adr"))
    else:
        for k, part in _ADR_FLAT.items():
            if k in fields:
                parts[part] = "\n".join(_texts(fields[k], k))
    if not any(parts.values()):
        return None
    return Address(**parts)


def _photo(card: Any, value: Any, v4: bool) -> None:
    values = _values(value)
    if not values:
        return
    if len(values) > 1:
        raise VCardError("field 'photo': expected one image")
    photo = values[0]
    line = card.add("photo")
    if isinstance(photo, str):
        if not re.match(r"https?://[^\s]+$", photo):
            raise VCardError("field 'photo': text must be an http(s) URL (or give bytes)")
        line.value = photo
        line.encoded = True
        if not v4:
            line.value_param = "uri"
        return
    if not isinstance(photo, bytes | bytearray):
        raise VCardError(f"field 'photo': expected bytes, got {type(photo).__name__}")
    image = _image_type(bytes(photo))
    if v4:
        line.value = f"data:image/{image};base64," + base64.b64encode(photo).decode("ascii")
        line.encoded = True  # a data URI: its ; and , must not be escaped
    else:
        line.value = bytes(photo)
        line.encoding_param = "b"
        line.type_param = image.upper()


# ------------------------------------------------------------------ reading back


def _unfold(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [ln for ln in re.sub(r"\n[ \t]", "", text).split("\n") if ln]


def _split_line(line: str) -> tuple[str, list[str], str]:
    """(NAME, [PARAM=..., ...], raw value) of an unfolded content line."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1 :]
            break
    else:
        return line.upper(), [], ""
    pieces, cur, quoted = [], "", False
    for ch in head:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            pieces.append(cur)
            cur = ""
        else:
            cur += ch
    pieces.append(cur)
    name = pieces[0].split(".")[-1].upper()  # drop a property group prefix
    return name, pieces[1:], value


def _canonical_params(params: list[str]) -> list[list[Any]]:
    """Parameters in one form whatever the writer chose: names and values upper case,
    quotes dropped, ``TYPE=A,B`` = ``TYPE=A;TYPE=B``, order ignored."""
    merged: dict[str, set[str]] = {}
    for piece in params:
        pname, _, pvalue = piece.partition("=")
        values = merged.setdefault(pname.strip().upper(), set())
        for v in re.findall(r'"[^"]*"|[^,]+', pvalue):
            values.add(v.strip('"').strip().upper())
    return [[k, sorted(v)] for k, v in sorted(merged.items())]


_IGNORED = {"BEGIN", "END", "PRODID", "REV", DIGEST_PROPERTY}


def content_digest(text: str) -> str:
    """Digest of a card's content that survives a server re-serialising it (folding,
    line ends, property order, parameter order and case, property groups, PRODID/REV)."""
    lines = []
    for line in _unfold(text):
        name, params, value = _split_line(line)
        if name in _IGNORED:
            continue
        lines.append((name, _canonical_params(params), value.replace("\\,", ",")))
    lines.sort(key=lambda item: item[0])  # stable: the order of equal names counts
    blob = json.dumps(lines, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()


def _with_digest(text: str) -> str:
    end = "END:VCARD\r\n"
    if not text.endswith(end):
        raise VCardError("vobject produced an unexpected card")
    return fold(text[: -len(end)] + f"{DIGEST_PROPERTY}:{content_digest(text)}\r\n" + end)


FOLD_OCTETS = 75


def fold(text: str) -> str:
    """The card with every content line folded at 75 octets (RFC 6350 3.2, RFC 2426 2.6).

    vobject folds text lines but writes a PHOTO's base64 as one line of many kilobytes,
    which strict servers and phones refuse. A fold never splits a UTF-8 sequence: a
    continuation starts with one space, so it carries at most 74 octets of the line.
    """
    out: list[str] = []
    for line in _unfold(text):
        raw = line.encode("utf-8")
        if len(raw) <= FOLD_OCTETS:
            out.append(line)
            continue
        start, limit = 0, FOLD_OCTETS
        while start < len(raw):
            end = min(start + limit, len(raw))
            while end < len(raw) and (raw[end] & 0xC0) == 0x80:
                end -= 1  # back off to the start of a UTF-8 sequence
            chunk = raw[start:end].decode("utf-8")
            out.append(chunk if start == 0 else " " + chunk)
            start, limit = end, FOLD_OCTETS - 1
    return "\r\n".join(out) + "\r\n"


def read_props(text: str, names: Iterable[str]) -> dict[str, str]:
    """First raw value of each of ``names`` (upper case) in a card, unescaped as text."""
    wanted = set(names)
    found: dict[str, str] = {}
    for line in _unfold(text):
        name, _params, value = _split_line(line)
        if name in wanted and name not in found:
            found[name] = _unescape(value)
    return found


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def owner_key(text: str) -> str | None:
    """The X-SYNCD-KEY of a card (None: not a card syncd wrote)."""
    return read_props(text, [KEY_PROPERTY]).get(KEY_PROPERTY)


def edited_elsewhere(text: str) -> bool:
    """True when a card no longer matches the digest syncd wrote into it (or has none)."""
    digest = read_props(text, [DIGEST_PROPERTY]).get(DIGEST_PROPERTY)
    return digest is None or digest != content_digest(text)


def same_content(a: str, b: str) -> bool:
    """Two cards hold the same content (ignoring serialisation details)."""
    return content_digest(a) == content_digest(b)
