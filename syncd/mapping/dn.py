"""Distinguished names (RFC 4514) split into their parts, escapes resolved.

Directory data is hostile input here: a DN comes from the server and may hold escaped
commas (``cn=Smith\\, John``), multi-valued RDNs (``cn=x+uid=y``), hex-escaped UTF-8
(``cn=J\\C3\\BCrgen``), BER hex values (``#04024869``) or old RFC 2253 quoting. The
parser never evaluates anything; it only splits and unescapes, and raises
:class:`DNError` (a ``ValueError``) for text that is not a DN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DNError", "ParsedDN", "escape_value", "parse_dn"]

_ATTR_TYPE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)\Z")
_HEX = "0123456789abcdefABCDEF"
# Characters that may follow a backslash as themselves (RFC 4514 section 3 "special",
# plus space, '#' and '=' which RFC 4514 allows escaped).
_ESCAPABLE = ' "#+,;<>\\='


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


def parse_dn(dn: str) -> ParsedDN:
    """Parse ``dn``. The empty string is the (valid) root DN with no RDNs.

    Raises :class:`DNError` naming the position of the first problem.
    """
    if not isinstance(dn, str):
        raise DNError(f"a DN must be text, not {type(dn).__name__}")
    rdns: list[tuple[tuple[str, str], ...]] = []
    raws: list[str] = []
    n = len(dn)
    i = _skip_spaces(dn, 0)
    if i == n:
        return ParsedDN((), ())
    rdn: list[tuple[str, str]] = []
    rdn_start = i
    while True:
        eq = dn.find("=", i)
        if eq < 0:
            raise DNError(f"invalid DN {dn!r}: no '=' after position {i}")
        attr = dn[i:eq].strip()
        if not _ATTR_TYPE.match(attr):
            raise DNError(f"invalid DN {dn!r}: bad attribute type {attr!r}")
        value, i = _parse_value(dn, _skip_spaces(dn, eq + 1))
        rdn.append((attr, value))
        i = _skip_spaces(dn, i)
        if i >= n:
            rdns.append(tuple(rdn))
            raws.append(dn[rdn_start:].strip())
            break
        sep = dn[i]
        if sep == "+":
            i = _skip_spaces(dn, i + 1)
            continue
        if sep in ",;":
            rdns.append(tuple(rdn))
            raws.append(dn[rdn_start:i].strip())
            rdn = []
            i = _skip_spaces(dn, i + 1)
            rdn_start = i
            if i >= n:
                raise DNError(f"invalid DN {dn!r}: ends with a separator")
            continue
        raise DNError(f"invalid DN {dn!r}: unexpected {sep!r} at position {i}")
    return ParsedDN(tuple(rdns), tuple(raws))


def _skip_spaces(dn: str, i: int) -> int:
    n = len(dn)
    while i < n and dn[i] == " ":
        i += 1
    return i


def _parse_value(dn: str, i: int) -> tuple[str, int]:
    """Read one attribute value starting at ``i``; return it unescaped and the index of
    the character after it (a separator or the end)."""
    n = len(dn)
    if i < n and dn[i] == "#":
        # BER-encoded value: kept as its '#hex' text, we do not decode ASN.1.
        j = i + 1
        while j < n and dn[j] in _HEX:
            j += 1
        if j == i + 1 or (j - i - 1) % 2:
            raise DNError(f"invalid DN {dn!r}: bad hex value at position {i}")
        return dn[i:j], j
    if i < n and dn[i] == '"':
        return _parse_quoted(dn, i + 1)
    out: list[str] = []
    pending = bytearray()  # hex escapes are UTF-8 bytes, possibly several in a row
    last_kept = 0  # length of `out` up to the last escaped char: escaped spaces stay
    j = i
    while j < n:
        c = dn[j]
        if c == "\\":
            if _is_hexpair(dn[j + 1 : j + 3]):
                pending.append(int(dn[j + 1 : j + 3], 16))
                j += 3
                continue
            if j + 1 < n and dn[j + 1] in _ESCAPABLE:
                _flush(pending, out, dn)
                out.append(dn[j + 1])
                last_kept = len(out)
                j += 2
                continue
            raise DNError(f"invalid DN {dn!r}: bad escape at position {j}")
        if c in ",;+":
            break
        _flush(pending, out, dn)
        out.append(c)
        j += 1
    if pending:
        _flush(pending, out, dn)
        last_kept = len(out)
    # Unescaped trailing spaces are not part of the value (RFC 4514 section 2.4).
    end = len(out)
    while end > last_kept and out[end - 1] == " ":
        end -= 1
    return "".join(out[:end]), j


def _parse_quoted(dn: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    n = len(dn)
    j = i
    while j < n:
        c = dn[j]
        if c == "\\" and j + 1 < n:
            out.append(dn[j + 1])
            j += 2
            continue
        if c == '"':
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise DNError(f"invalid DN {dn!r}: unterminated quoted value")


def _is_hexpair(s: str) -> bool:
    return len(s) == 2 and s[0] in _HEX and s[1] in _HEX


def _flush(pending: bytearray, out: list[str], dn: str) -> None:
    if not pending:
        return
    try:
        out.append(pending.decode("utf-8"))
    except UnicodeDecodeError:
        raise DNError(f"invalid DN {dn!r}: hex escapes are not UTF-8") from None
    pending.clear()


def escape_value(value: str) -> str:
    """Escape ``value`` for use as an RDN value (RFC 4514 section 2.4)."""
    out = []
    for k, c in enumerate(value):
        if c in '"+,;<>\\' or (c == "#" and k == 0) or c == "\0":
            out.append("\\00" if c == "\0" else "\\" + c)
        elif c == " " and (k == 0 or k == len(value) - 1):
            out.append("\\ ")
        else:
            out.append(c)
    return "".join(out)
