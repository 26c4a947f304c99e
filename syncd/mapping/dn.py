"""Distinguished names (RFC 4514): the one DN module of syncd.

Parsing (:func:`parse_dn`, :func:`split_first`), comparison (:func:`normalize_dn`,
:func:`dn_key`, :func:`same_dn`, :func:`dn_within`) and building (:func:`escape_value`,
:func:`build_dn`) live here; the mapping filters, the engine's look-up by DN (through
the state store's normalised DN column) and the LDAP target all use them, so a DN
written ``uid=Alice, ou=People`` and ``uid=alice,ou=people`` is one DN everywhere.

Directory data is hostile input here: a DN comes from the server and may hold escaped
commas (``cn=Smith\\, John``), multi-valued RDNs (``cn=x+uid=y``), hex-escaped UTF-8
(``cn=J\\C3\\BCrgen``), BER hex values (``#04024869``) or old RFC 2253 quoting. The
parser never evaluates anything; it only splits and unescapes, and raises
:class:`DNError` (a ``ValueError``) for text that is not a DN.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DNError",
    "ParsedDN",
    "build_dn",
    "dn_key",
    "dn_within",
    "escape_value",
    "norm_rdns",
    "normalize_dn",
    "parse_dn",
    "same_dn",
    "split_first",
]

_ATTR_TYPE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)\Z")


class DNError(ValueError):
    """Text that is not a valid distinguished name."""


@dataclass(frozen=True, slots=True)
class ParsedDN:
    """A DN split into RDNs. ``rdns[0]`` is the leftmost (most specific) RDN; each RDN
    is a tuple of ``(attribute type, unescaped value)`` pairs (several when the RDN is
    multi-valued). ``raw`` keeps each RDN's original text (escapes intact) so a parent
    DN can be returned exactly as the server wrote it."""

    rdns: tuple[tuple[tuple[str, str], ...], ...]
    raw: tuple[str, ...]


# One attribute-value assertion and the separator after it. The value alternatives:
# BER hex (#...), a quoted string (RFC 2253 legacy), or a string with escapes.
# Possessive quantifiers (*+) never backtrack: a hostile value full of spaces must
# not make a failed match quadratic.
_AVA = re.compile(
    r"""[ ]*+(?P<type>[^=,;+ ]*+)[ ]*+=[ ]*+
    (?P<value>\#[0-9A-Fa-f]*+|"(?:[^"\\]|\\.)*+"|(?:[^,;+\\"]|\\.)*+)
    (?P<sep>[ ]*+[,;+]|[ ]*+\Z)""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\(?:([0-9A-Fa-f]{2})|(.))", re.DOTALL)


@functools.lru_cache(maxsize=4096)
def parse_dn(dn: str) -> ParsedDN:
    """Parse ``dn``. The empty string is the (valid) root DN with no RDNs.

    Results are cached (owner and member DNs repeat across entries); ParsedDN is
    immutable. Raises :class:`DNError` describing the first problem.
    """
    if not isinstance(dn, str):
        raise DNError(f"a DN must be text, not {type(dn).__name__}")
    n = len(dn)
    if not dn.strip(" "):
        return ParsedDN((), ())
    if not _NOT_SIMPLE.search(dn):
        simple = _parse_simple(dn)
        if simple is not None:
            return simple
    rdns: list[tuple[tuple[str, str], ...]] = []
    raws: list[str] = []
    rdn: list[tuple[str, str]] = []
    pos = 0
    rdn_start = 0
    match = _AVA.match
    while True:
        m = match(dn, pos)
        if m is None:
            raise DNError(f"invalid DN {_short(dn)}: cannot parse at position {pos}")
        attr = m.group("type")
        if not _ATTR_TYPE.match(attr):
            raise DNError(f"invalid DN {_short(dn)}: bad attribute type {attr[:40]!r}")
        rdn.append((attr, _value(m.group("value"), dn)))
        sep = m.group("sep").strip(" ")
        pos = m.end()
        if sep == "+":
            continue
        rdns.append(tuple(rdn))
        raws.append(_rstrip_unescaped(dn[rdn_start : m.end("value")]).lstrip(" "))
        rdn = []
        if not sep:
            break
        rdn_start = pos
        if pos >= n or not dn[pos:].strip(" "):
            raise DNError(f"invalid DN {_short(dn)}: ends with a separator")
    return ParsedDN(tuple(rdns), tuple(raws))


def split_first(dn: str) -> tuple[str, str]:
    """``(leftmost RDN, parent DN)`` as written; the parent is "" for a one-RDN DN.
    Raises :class:`DNError` for a DN that does not parse."""
    if not _NOT_SIMPLE_SPLIT.search(dn):
        # Fast path (no escapes, quotes or multi-valued RDNs): a well-formed first RDN
        # and a parent that is empty or holds an '=' (the full parser checks the rest
        # of the parent when someone asks for its parts).
        head, comma, rest = dn.partition(",")
        typ, eq, _ = head.partition("=")
        simple_parent = not comma or "=" in rest
        if eq and simple_parent and _ATTR_TYPE.match(typ.strip(" ")):
            if " ," in rest or ", " in rest:  # same spacing as the full parser's result
                rest = ",".join(part.strip(" ") for part in rest.split(","))
            return head.strip(" "), rest.strip(" ")
    parsed = parse_dn(dn)
    if not parsed.raw:
        raise DNError("the root DN has no RDN")
    return parsed.raw[0], ",".join(parsed.raw[1:])


_NOT_SIMPLE = re.compile(r'[\\"#;]')
_NOT_SIMPLE_SPLIT = re.compile(r'[\\"#;+]')


_TYPE = r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)"
_PLAIN_VALUE = r'[^,+\\"#;]*'
_PLAIN_DN = re.compile(rf"[ ]*({_TYPE})[ ]*=({_PLAIN_VALUE})(?:,[ ]*{_TYPE}[ ]*={_PLAIN_VALUE})*")
"""A DN :func:`_parse_simple` parses (no escapes, quotes, '#', ';' or multi-valued
RDNs), checked in one match; groups: the leftmost RDN's type and value."""


def first_ava(dn: str) -> tuple[str, str] | None:
    """``(type, value)`` of the leftmost RDN, the same as ``parse_dn(dn).rdns[0][0]``,
    for a plain DN (the common case, a single regex match instead of a parse of every
    RDN); None when the DN is not plain: parse it with :func:`parse_dn` then."""
    m = _PLAIN_DN.fullmatch(dn)
    return (m.group(1), m.group(2).strip(" ")) if m else None


def _parse_simple(dn: str) -> ParsedDN | None:
    """The common case, no escapes or quotes: plain splitting, about 5x faster than the
    full parser. None when the DN is not well-formed (the full parser then says why)."""
    rdns = []
    raws = []
    for raw in dn.split(","):
        raw = raw.strip(" ")
        avas = []
        for ava in raw.split("+"):
            typ, eq, value = ava.partition("=")
            typ = typ.strip(" ")
            if not eq or not _ATTR_TYPE.match(typ):
                return None
            avas.append((typ, value.strip(" ")))
        rdns.append(tuple(avas))
        raws.append(raw)
    return ParsedDN(tuple(rdns), tuple(raws))


def _rstrip_unescaped(text: str) -> str:
    """Strip trailing spaces that are not escaped (an odd run of backslashes before a
    space escapes it)."""
    stripped = text.rstrip(" ")
    if stripped == text:
        return text
    backslashes = len(stripped) - len(stripped.rstrip("\\"))
    return stripped + " " if backslashes % 2 else stripped


def _short(dn: str) -> str:
    return repr(dn if len(dn) <= 80 else dn[:77] + "...")


def _value(raw: str, dn: str) -> str:
    """Unescape one attribute value as matched by _AVA."""
    if raw.startswith("#"):
        # BER-encoded value: kept as its '#hex' text, we do not decode ASN.1.
        if len(raw) < 3 or len(raw) % 2 == 0:
            raise DNError(f"invalid DN {_short(dn)}: bad hex value {raw[:40]!r}")
        return raw
    if raw.startswith('"'):
        return _ESCAPE.sub(lambda m: m.group(0)[1:], raw[1:-1])
    if "\\" not in raw:
        return raw.rstrip(" ")
    return _unescape(raw, dn)


def _unescape(raw: str, dn: str) -> str:
    out: list[str] = []
    pending = bytearray()  # consecutive hex escapes are UTF-8 bytes of one character
    pos = 0
    for m in _ESCAPE.finditer(raw):
        if m.start() > pos:
            _flush(pending, out, dn)
            out.append(raw[pos : m.start()])
        hexpair, char = m.groups()
        if hexpair is not None:
            pending.append(int(hexpair, 16))
        else:
            # RFC 4514 lists which characters need a backslash; a server or an
            # admin escaping one more is harmless, so any escaped character counts.
            _flush(pending, out, dn)
            out.append(char)
        pos = m.end()
    _flush(pending, out, dn)
    # Spaces after the last escape are unescaped, so trailing ones are not part of
    # the value (RFC 4514 section 2.4); escaped ones before it stay.
    out.append(raw[pos:].rstrip(" "))
    return "".join(out)


def _flush(pending: bytearray, out: list[str], dn: str) -> None:
    if not pending:
        return
    try:
        out.append(pending.decode("utf-8"))
    except UnicodeDecodeError:
        raise DNError(f"invalid DN {dn!r}: hex escapes are not UTF-8") from None
    pending.clear()


def escape_value(value: str) -> str:
    """Escape ``value`` for use as an RDN value (RFC 4514 section 2.4): ``"+,;<>\\``
    and ``=`` get a backslash, as do a leading ``#`` or space and a trailing space;
    control characters (NUL included) become ``\\XX`` hex escapes of their UTF-8.

    Raises :class:`DNError` for an empty value (a DN cannot hold one)."""
    if value == "":
        raise DNError("an RDN value cannot be empty")
    out = []
    for c in value:
        if c in _SPECIAL:
            out.append("\\" + c)
        elif c < " " or c == "\x7f":
            out.append("".join(f"\\{b:02x}" for b in c.encode("utf-8")))
        else:
            out.append(c)
    if value[0] in " #":
        out[0] = "\\" + out[0]
    if value[-1] == " " and (len(value) > 1 or value[0] != " "):
        out[-1] = "\\ "
    return "".join(out)


_SPECIAL = frozenset(',+"\\<>;=')

Rdn = tuple[tuple[str, str], ...]


def build_dn(rdns: Iterable[Rdn]) -> str:
    """The string form of parsed RDNs (as in ``ParsedDN.rdns``), every value escaped."""
    return ",".join("+".join(f"{t}={escape_value(v)}" for t, v in rdn) for rdn in rdns)


_SPACES = re.compile(" {2,}")


def _fold(value: str) -> str:
    """A value as DN matching sees it: Unicode NFC, case folded, inner runs of spaces
    as one (RFC 4518 insignificant space handling, which OpenLDAP and AD both apply)."""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    value = value.lower()
    return _SPACES.sub(" ", value) if "  " in value else value


def norm_rdns(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """``dn`` in comparable form: per RDN its (type, value) pairs lower-cased and
    folded (see :func:`normalize_dn`), sorted. Raises :class:`DNError`."""
    return tuple(tuple(sorted((t.lower(), _fold(v)) for t, v in rdn)) for rdn in parse_dn(dn).rdns)


# A DN of plain single-valued RDNs: letter types, values of printable ASCII with no
# character escape_value would escape, no leading, trailing or doubled spaces, no spaces
# around separators. Its canonical text is the DN lower-cased; most DNs a directory
# hands out look like this, and a first sync normalises one per entry (the state
# store's DN column), so it skips the parser. Anything else takes the full path.
_CANON_WORD = r"!$%&'()*\-./0-9:?@A-Z\[\]^_`a-z{|}~"  # no '#' first: escape_value escapes it
_CANON_VALUE = rf"[{_CANON_WORD}]+(?: [#{_CANON_WORD}]+)*"
_CANONICAL_DN = re.compile(
    rf"[A-Za-z][A-Za-z0-9-]*={_CANON_VALUE}(?:,[A-Za-z][A-Za-z0-9-]*={_CANON_VALUE})*"
)


def normalize_dn(dn: str) -> str:
    """The canonical text of ``dn`` for comparing and indexing: attribute types and
    values lower-cased, values unescaped, Unicode NFC, then escaped again the one way
    :func:`escape_value` does; no spaces around separators; the parts of a
    multi-valued RDN sorted. Two DNs naming the same entry (``uid=Alice, ou=People``,
    ``UID=alice,ou=people``, ``cn=Smith\\2C John`` and ``cn=Smith\\, John``) give the
    same text. Raises :class:`DNError` for text that is not a DN."""
    if type(dn) is str and _CANONICAL_DN.fullmatch(dn):
        return dn.lower()
    return _normalize_parsed(dn)


@functools.lru_cache(maxsize=8192)
def _normalize_parsed(dn: str) -> str:
    """:func:`normalize_dn` through the parser (any DN)."""
    return ",".join(
        "+".join(f"{t}={escape_value(v) if v else ''}" for t, v in rdn) for rdn in norm_rdns(dn)
    )


def dn_key(dn: str) -> str:
    """:func:`normalize_dn`, or the lower-cased stripped text when ``dn`` is not a
    valid DN (a source may hand out odd DNs; they still match themselves)."""
    try:
        return normalize_dn(dn)
    except DNError:
        return dn.strip().lower()


def same_dn(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same entry. Raises :class:`DNError`."""
    return a == b or norm_rdns(a) == norm_rdns(b)


def dn_within(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or below it. Raises :class:`DNError`."""
    nd, nb = norm_rdns(dn), norm_rdns(base)
    return len(nd) >= len(nb) and (not nb or nd[len(nd) - len(nb) :] == nb)
