"""Filters and tests for directory data, used by mapping expressions.

Every attribute arrives as a *list* of values (``str``, or ``bytes`` when not UTF-8).
The filters here accept a list, a single value or ``None``:

* "element-wise" filters (``dn_value``, ``guid``, ``phone``, ``lower``...) map a list
  to a list of results and a single value to a single result; ``None`` stays ``None``.
* "single" filters (``first``, ``filetime``, ``uac``, ``disabled``...) take the first
  value of a list.

A filter that cannot make sense of a value raises ``ValueError``/``TypeError`` with a
short message; the mapping turns it into a :class:`~syncd.errors.MappingError` naming
the field. Filters never evaluate values: directory data stays data.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Undefined, pass_context
from jinja2.runtime import Context

from syncd.mapping.dn import first_ava, normalize_dn, parse_dn, split_first
from syncd.mapping.limits import bounded_join, lookup_time

__all__ = ["FILTERS", "LOOKUP_KEY", "TESTS", "UAC_FLAGS"]

LOOKUP_KEY = "syncd:lookup"
"""Context key of the engine's lookup callable. Not an identifier, so an expression
cannot name it; only the ``lookup`` filter reads it."""


def _empty(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def _each(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``fn(value, *args)`` apply to each element of a list (keeping ``None``
    results out of nothing: a list in gives a list of the same length out)."""

    @functools.wraps(fn)
    def wrapper(value: Any, *args: Any, **kwargs: Any) -> Any:
        if type(value) is str:  # the common case first: this runs for every entry
            return fn(value, *args, **kwargs)
        if _empty(value):
            return None
        if isinstance(value, list | tuple):
            return [None if _empty(v) else fn(v, *args, **kwargs) for v in value]
        return fn(value, *args, **kwargs)

    return wrapper


def _single(value: Any) -> Any:
    """The first value of a list, or the value itself; None for empty."""
    if _empty(value):
        return None
    if isinstance(value, list | tuple):
        return value[0] if value else None
    return value


def _text(value: Any, what: str) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: binary value is not text") from None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return str(value)
    raise TypeError(f"{what}: expected text, got {type(value).__name__}")


# ---------------------------------------------------------------- list helpers


def first(value: Any) -> Any:
    """First value of a multi-valued attribute; a single value as is; None if empty.
    (Jinja's own ``first`` would return the first *character* of a string.)"""
    return _single(value)


def values(value: Any) -> list[Any]:
    """Always a list: None -> [], a single value -> [value], a list -> a copy."""
    if _empty(value):
        return []
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return [value]


def join(value: Any, sep: str = "", attribute: Any = None) -> str:
    """Join all values with ``sep`` (default ""); None -> "". Binary values that are not
    UTF-8 are an error rather than a silent ``b'...'``."""
    del attribute  # accepted for compatibility with Jinja's join; not supported
    if type(value) is list:
        try:
            return bounded_join(value, sep)  # all text: the common case
        except TypeError:
            pass  # bytes or None among the values: the careful way below
    return bounded_join([_text(v, "join") for v in values(value) if not _empty(v)], sep)


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """``default_value`` when the value is missing: undefined, None, "" or an empty
    list (Jinja's own ``default`` ignores None, which ``first`` returns)."""
    del boolean  # accepted for compatibility; emptiness is always what counts here
    if _empty(value) or value == "" or (isinstance(value, list | tuple) and not value):
        return default_value
    return value


@_each
def lower(value: Any) -> Any:
    return _text(value, "lower").lower()


@_each
def upper(value: Any) -> Any:
    return _text(value, "upper").upper()


@_each
def strip(value: Any, chars: str | None = None) -> Any:
    return _text(value, "strip").strip(chars)


_NO_DEFAULT = object()


def to_int(value: Any, default: Any = _NO_DEFAULT, base: int = 10) -> Any:
    """A whole number from a (first) value. Unlike Jinja's ``int``, text that is not a
    number is an error unless a ``default`` is given: a silent 0 would hide bad data.
    No value gives None (or ``default``)."""
    value = _single(value)
    try:
        if value is None:
            return None if default is _NO_DEFAULT else default
        if isinstance(value, bool | int):
            return int(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"int: {value!r} is not a whole number")
            return int(value)
        text = _text(value, "int").strip()
        try:
            return int(text, base)
        except ValueError:
            raise ValueError(f"int: {text[:40]!r} is not a whole number") from None
    except ValueError:
        if default is _NO_DEFAULT:
            raise
        return default


def to_float(value: Any, default: Any = _NO_DEFAULT) -> Any:
    """A number from a (first) value; error on bad text unless ``default`` is given."""
    value = _single(value)
    try:
        if value is None:
            return None if default is _NO_DEFAULT else default
        if isinstance(value, int | float):
            return float(value)
        text = _text(value, "float").strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"float: {text[:40]!r} is not a number") from None
    except ValueError:
        if default is _NO_DEFAULT:
            raise
        return default


# ---------------------------------------------------------------- DNs


@_each
def dn_value(dn: Any, attr: str) -> str | None:
    """Value of the first RDN component of type ``attr`` (case-insensitive), searching
    from the leftmost RDN: ``uid=jd,ou=people,dc=x | dn_value('uid')`` -> ``jd``."""
    want = attr.lower()
    for rdn in parse_dn(_text(dn, "dn_value")).rdns:
        for typ, val in rdn:
            if typ.lower() == want:
                return val
    return None


def dn_values(dn: Any, attr: str) -> list[str]:
    """All values of type ``attr`` in one DN, left to right (e.g. every ``ou``)."""
    dn = _single(dn)
    if dn is None:
        return []
    want = attr.lower()
    return [v for rdn in parse_dn(_text(dn, "dn_values")).rdns for t, v in rdn if t.lower() == want]


@_each
def rdn(dn: Any) -> str | None:
    """The leftmost RDN as written, escapes intact: ``cn=Smith\\, John+uid=js``."""
    text = _text(dn, "rdn")
    return split_first(text)[0] if text.strip() else None


@_each
def rdn_value(dn: Any, attr: str | None = None) -> str | None:
    """Unescaped value of the leftmost RDN (of its ``attr`` component when the RDN is
    multi-valued and ``attr`` is given): ``cn=Smith\\, John,ou=x`` -> ``Smith, John``."""
    text = _text(dn, "rdn_value")
    ava = first_ava(text)
    if ava is not None:  # a plain DN: its leftmost RDN has one type and value
        return ava[1] if attr is None or ava[0].lower() == attr.lower() else None
    parsed = parse_dn(text)
    if not parsed.rdns:
        return None
    if attr is None:
        return parsed.rdns[0][0][1]
    want = attr.lower()
    for typ, val in parsed.rdns[0]:
        if typ.lower() == want:
            return val
    return None


@_each
def parent_dn(dn: Any) -> str | None:
    """The DN without its leftmost RDN, as written; None for a one-RDN or root DN."""
    text = _text(dn, "parent_dn")
    if not text.strip():
        return None
    return split_first(text)[1] or None


@_each
def dn_normalize(dn: Any) -> str:
    """The canonical text of a DN (see :func:`syncd.mapping.dn.normalize_dn`): two
    spellings of one DN (case, spaces after commas, escapes) give the same text."""
    return normalize_dn(_text(dn, "dn_normalize"))


def dn_parts(dn: Any) -> list[list[list[str]]]:
    """One DN as a list of RDNs, each a list of ``[type, value]`` pairs (unescaped)."""
    dn = _single(dn)
    if dn is None:
        return []
    return [[[t, v] for t, v in r] for r in parse_dn(_text(dn, "dn_parts")).rdns]


# ---------------------------------------------------------------- Active Directory


@_each
def guid(value: Any) -> str:
    """objectGUID (16 bytes, little-endian fields) -> ``xxxxxxxx-xxxx-...`` lower case.
    A GUID already in text form (with or without braces) is normalised."""
    if isinstance(value, bytes):
        if len(value) != 16:
            raise ValueError(f"guid: expected 16 bytes, got {len(value)}")
        # uuid.UUID(bytes_le=...) does the same, 3x slower: the first three fields are
        # little-endian, the last two big-endian.
        h = (value[3::-1] + value[5:3:-1] + value[7:5:-1] + value[8:]).hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError(f"guid: {value[:60]!r} is not a GUID") from None
    raise TypeError(f"guid: expected bytes, got {type(value).__name__}")


@_each
def sid(value: Any) -> str:
    """objectSid (binary) -> ``S-1-5-21-...``. Text already in S- form passes through."""
    if isinstance(value, str):
        if re.fullmatch(r"S-1-\d+(-\d+)*", value.strip()):
            return value.strip()
        raise ValueError(f"sid: {value[:60]!r} is not a SID")
    if not isinstance(value, bytes):
        raise TypeError(f"sid: expected bytes, got {type(value).__name__}")
    if len(value) < 8 or len(value) != 8 + 4 * value[1]:
        raise ValueError(f"sid: {len(value)} bytes is not a valid SID")
    authority = int.from_bytes(value[2:8], "big")
    subs = struct.unpack_from(f"<{value[1]}I", value, 8)
    return "-".join(["S", str(value[0]), str(authority), *map(str, subs)])


_FILETIME_UNIX_OFFSET = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01
_FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF


def _int_value(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected a number, got a boolean")
    if isinstance(value, int):
        return value
    text = _text(value, what).strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what}: {text[:40]!r} is not a number") from None


def filetime(value: Any) -> str | None:
    """AD FILETIME (100 ns ticks since 1601, as int or digits) -> ISO 8601 UTC text.
    0 and 0x7FFFFFFFFFFFFFFF mean "never" and give None."""
    value = _single(value)
    if value is None:
        return None
    ticks = _int_value(value, "filetime")
    if ticks in (0, _FILETIME_NEVER):
        return None
    if ticks < 0:
        raise ValueError(f"filetime: negative value {ticks}")
    seconds, rest = divmod(ticks, 10_000_000)
    try:
        when = datetime.fromtimestamp(seconds - _FILETIME_UNIX_OFFSET, UTC)
    except (OverflowError, ValueError, OSError):
        raise ValueError(f"filetime: {ticks} is out of range") from None
    if rest:
        when = when.replace(microsecond=rest // 10)
    return when.isoformat()


_GENTIME_FULL_Z = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)([0-5]\d)(?:[.,]0+)?Z\Z")
_GENTIME = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d\d)(?P<d>\d\d)(?P<h>\d\d)(?P<mi>\d\d)?(?P<s>\d\d)?"
    r"(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d\d(?:\d\d)?)\Z"
)


def generalized_time(value: Any) -> str | None:
    """LDAP GeneralizedTime (``20240102030405Z``, ``20240102030405.5+0100``...) -> ISO
    8601 UTC text. A time zone is required (RFC 4517)."""
    value = _single(value)
    if value is None:
        return None
    text = _text(value, "generalized_time").strip()
    m = _GENTIME_FULL_Z.match(text)
    if m:
        # The usual shape (whenChanged, modifyTimestamp): full seconds, UTC, no or a
        # zero fraction. datetime() validates; the text is built directly.
        try:
            datetime(*map(int, m.groups()))
        except ValueError as err:
            raise ValueError(f"generalized_time: {text[:40]!r}: {err}") from None
        return f"{text[:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}+00:00"
    m = _GENTIME.match(text)
    if not m:
        raise ValueError(f"generalized_time: {text[:40]!r} is not a GeneralizedTime")
    try:
        base = datetime(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), tzinfo=UTC)
    except ValueError as err:
        raise ValueError(f"generalized_time: {text[:40]!r}: {err}") from None
    minutes, seconds = int(m["mi"] or 0), int(m["s"] or 0)
    if minutes > 59 or seconds > 60:
        raise ValueError(f"generalized_time: {text[:40]!r} is out of range")
    when = base + timedelta(minutes=minutes, seconds=seconds)
    if m["frac"]:
        # The fraction belongs to the last unit given (RFC 4517 section 3.3.13).
        unit = 1 if m["s"] else 60 if m["mi"] else 3600
        when += timedelta(seconds=unit * float("0." + m["frac"]))
    tz = m["tz"]
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        when -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5] or 0))
    return when.isoformat()


UAC_FLAGS: dict[int, str] = {
    0x0001: "SCRIPT",
    0x0002: "ACCOUNTDISABLE",
    0x0008: "HOMEDIR_REQUIRED",
    0x0010: "LOCKOUT",
    0x0020: "PASSWD_NOTREQD",
    0x0040: "PASSWD_CANT_CHANGE",
    0x0080: "ENCRYPTED_TEXT_PWD_ALLOWED",
    0x0100: "TEMP_DUPLICATE_ACCOUNT",
    0x0200: "NORMAL_ACCOUNT",
    0x0800: "INTERDOMAIN_TRUST_ACCOUNT",
    0x1000: "WORKSTATION_TRUST_ACCOUNT",
    0x2000: "SERVER_TRUST_ACCOUNT",
    0x10000: "DONT_EXPIRE_PASSWORD",
    0x20000: "MNS_LOGON_ACCOUNT",
    0x40000: "SMARTCARD_REQUIRED",
    0x80000: "TRUSTED_FOR_DELEGATION",
    0x100000: "NOT_DELEGATED",
    0x200000: "USE_DES_KEY_ONLY",
    0x400000: "DONT_REQ_PREAUTH",
    0x800000: "PASSWORD_EXPIRED",
    0x1000000: "TRUSTED_TO_AUTH_FOR_DELEGATION",
    0x4000000: "PARTIAL_SECRETS_ACCOUNT",
}


def uac(value: Any) -> list[str]:
    """userAccountControl -> the names of the flags set, in bit order (unknown bits as
    ``0x...``). ``'ACCOUNTDISABLE' in (userAccountControl | uac)`` works."""
    value = _single(value)
    if value is None:
        return []
    bits = _int_value(value, "uac") & 0xFFFFFFFF  # AD may send it as a signed int32
    names = []
    bit = 1
    while bit <= bits:
        if bits & bit:
            names.append(UAC_FLAGS.get(bit, hex(bit)))
        bit <<= 1
    return names


def disabled(value: Any) -> bool:
    """True when userAccountControl has ACCOUNTDISABLE (0x2). Absent -> False."""
    value = _single(value)
    if value is None:
        return False
    return bool(_int_value(value, "disabled") & 0x2)


# ---------------------------------------------------------------- people data

_MAX_PHONE = 100
_EXTENSION = re.compile(r"(?i)\s*(?:ext\.?|extension|x|#)\s*\d+\s*$")


@_each
def phone(value: Any, country_code: str | int | None = None) -> str | None:
    """Normalise a phone number towards E.164: keep digits and a leading ``+``; ``00``
    becomes ``+``; with ``country_code`` (e.g. ``49`` or ``'+49'``) a national number
    with a leading 0 becomes ``+49...``. Extensions (``x12``, ``ext. 12``) are dropped.
    No digits at all gives None."""
    text = _text(value, "phone")
    if len(text) > _MAX_PHONE:
        # Also keeps the extension pattern below from working on hostile megabytes.
        raise ValueError(f"phone: {len(text)} characters is too long for a phone number")
    text = _EXTENSION.sub("", text).strip()
    digits = "".join(c for c in text if c.isdigit() and c.isascii())
    if not digits:
        return None
    if text.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if country_code is not None:
        cc = str(country_code).strip().lstrip("+")
        if not cc.isdigit():
            raise ValueError(f"phone: country code {country_code!r} is not a number")
        return "+" + cc + digits.removeprefix("0")
    return digits


@_each
def email(value: Any, idna: bool = False) -> str | None:
    """Strip spaces and lower-case the domain (the local part is case-sensitive by the
    RFC, so it is kept). Empty gives None.

    ``idna=true`` is for targets whose mail attribute is ASCII only (OpenLDAP ``mail``
    is IA5String, AD ``userPrincipalName``): a non-ASCII domain is written in its IDNA
    form (``bücher.example`` -> ``xn--bcher-kva.example``), and a non-ASCII local part
    is an error for that entry (there is no ASCII form of it)."""
    text = _text(value, "email").strip()
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    if not at:
        return text
    domain = domain.lower()
    if idna:
        if not local.isascii():
            raise ValueError(
                f"email: the local part {local[:40]!r} is not ASCII; the target's mail "
                "attribute holds ASCII only (fix the address in the source)"
            )
        domain = _idna_domain(domain)
    return f"{local}@{domain}"


def _idna_domain(domain: str) -> str:
    if domain.isascii() and ".." not in domain and " " not in domain:
        return domain
    import idna as idna_codec

    try:
        return idna_codec.encode(domain, uts46=True).decode("ascii")
    except idna_codec.IDNAError as err:
        raise ValueError(f"email: the domain {domain[:60]!r} is not valid: {err}") from None


# ---------------------------------------------------------------- names for accounts


@_each
def translit(value: Any) -> str:
    """Unicode text as ASCII (anyascii: ``Jürgen Łukasz Сергей`` -> ``Jurgen Lukasz
    Sergey``; CJK gives pinyin-like syllables)."""
    from anyascii import anyascii

    text = _text(value, "translit")
    return text if text.isascii() else anyascii(text)


_LOGIN_DROP = re.compile(r"[^a-z0-9._ -]+")
_LOGIN_SEPS = re.compile(r"[._ -]*[. ][._ -]*|-+")


def _sep_run(match: re.Match[str], sep: str) -> str:
    return "-" if set(match.group(0)) == {"-"} else sep


@_each
def login(value: Any, max_length: int = 32, sep: str = ".") -> str:
    """A login name from a person's name: transliterated to ASCII, lower case, letters
    and digits with ``sep`` between the words (``-`` inside a word is kept), at most
    ``max_length`` characters, no separator at either end: ``Jürgen Müller`` ->
    ``jurgen.muller``. Raises ValueError when nothing usable is left."""
    text = translit(_text(value, "login")).lower().replace("'", "")
    text = _LOGIN_DROP.sub("", text)
    text = _LOGIN_SEPS.sub(lambda m: _sep_run(m, sep), text.strip(" ._-"))
    text = text[: max(int(max_length), 1)].strip("._- " + sep)
    if not any(c.isalnum() for c in text):
        raise ValueError(f"login: no letters or digits in {str(value)[:40]!r}")
    return text


SAM_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>@')
"""Characters Active Directory refuses in sAMAccountName."""
SAM_MAX = 20


@_each
def samaccountname(value: Any) -> str:
    """A valid AD sAMAccountName from a login: transliterated to ASCII, without the
    characters AD refuses (``" / \\ [ ] : ; | = , + * ? < > @`` and control
    characters), at most 20 characters, no leading or trailing dots or spaces.
    Raises ValueError when nothing usable is left."""
    text = translit(_text(value, "samaccountname"))
    text = "".join(c for c in text if c not in SAM_FORBIDDEN and c >= " " and c != "\x7f")
    text = text.strip(". ")[:SAM_MAX].rstrip(". ")
    if not text:
        raise ValueError(f"sAMAccountName: nothing usable in {str(value)[:40]!r}")
    return text


# ---------------------------------------------------------------- bytes


@_each
def b64(value: Any) -> str:
    """Bytes (or text, as UTF-8) -> standard base64 text."""
    data = value if isinstance(value, bytes) else _text(value, "b64").encode("utf-8")
    return base64.b64encode(data).decode("ascii")


@_each
def b64decode(value: Any) -> bytes:
    """Base64 text -> bytes."""
    try:
        return base64.b64decode(_text(value, "b64decode"), validate=True)
    except binascii.Error:
        raise ValueError("b64decode: not valid base64") from None


@_each
def hex_(value: Any) -> str:
    """Bytes (or text, as UTF-8) -> lower-case hex."""
    data = value if isinstance(value, bytes) else _text(value, "hex").encode("utf-8")
    return data.hex()


# ---------------------------------------------------------------- lookups


@pass_context
def lookup(context: Context, value: Any, job: str, kind: str = "target_id") -> Any:
    """Resolve DN(s) to objects synced by ``job`` through the engine's lookup callable:
    ``lookup(job, dn)`` for ``kind='target_id'``, ``lookup(job, dn, kind=kind)`` for any
    other kind. A list maps element-wise, dropping DNs that resolve to nothing (a group
    member that is not synced is simply not a member in the target)."""
    fn = context.parent.get(LOOKUP_KEY)
    if fn is None:
        raise RuntimeError("lookup: no lookup function was given to this mapping")
    if not isinstance(job, str) or not job:
        raise ValueError("lookup: the job name must be non-empty text")

    def one(dn: Any) -> Any:
        dn = _text(dn, "lookup")
        with lookup_time():
            return fn(job, dn) if kind == "target_id" else fn(job, dn, kind=kind)

    if _empty(value):
        return None
    if isinstance(value, list | tuple):
        return [r for r in (one(v) for v in value if not _empty(v)) if r is not None]
    return one(value)


FILTERS: dict[str, Callable[..., Any]] = {
    "first": first,
    "values": values,
    "join": join,
    "default": default,
    "d": default,
    "int": to_int,
    "float": to_float,
    "lower": lower,
    "upper": upper,
    "strip": strip,
    "trim": strip,
    "dn_value": dn_value,
    "dn_values": dn_values,
    "rdn": rdn,
    "rdn_value": rdn_value,
    "parent_dn": parent_dn,
    "dn_parts": dn_parts,
    "dn_normalize": dn_normalize,
    "guid": guid,
    "sid": sid,
    "filetime": filetime,
    "generalized_time": generalized_time,
    "uac": uac,
    "disabled": disabled,
    "phone": phone,
    "email": email,
    "translit": translit,
    "login": login,
    "samaccountname": samaccountname,
    "b64": b64,
    "b64decode": b64decode,
    "hex": hex_,
    "lookup": lookup,
}

TESTS: dict[str, Callable[..., bool]] = {
    "disabled": disabled,
}
