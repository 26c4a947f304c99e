"""Streaming LDAP searches on an ldap3 connection, message by message.

ldap3's SYNC strategy collects a whole search result before returning it (100k entries:
about 1 GB) and decodes every value through ``to_unicode`` and case-insensitive dicts,
which makes it several times slower than the wire. Here ldap3 only *sends* the request
(so its BER encoder, filter parser, TLS and bind logic are reused); the answer is read
from the socket by :func:`search`, one LDAP message at a time, and decoded by a small
BER reader specialised for search results. Memory is bounded by one message plus the
socket buffers: TCP flow control makes the server wait while we process.

Values stay ``bytes`` here; :mod:`syncd.connectors.ldap.values` applies the value convention.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import ldap3
from ldap3.operation.search import search_operation

from syncd.errors import SourceError

log = logging.getLogger(__name__)

RECV_SIZE = 256 * 1024

SCOPES = {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}

OID_PAGED = "1.2.840.113556.1.4.319"

# Result codes a reader has to tell apart.
SUCCESS = 0
TIME_LIMIT = 3
SIZE_LIMIT = 4
UNAVAILABLE_CRITICAL_EXTENSION = 12
NO_SUCH_OBJECT = 32
ADMIN_LIMIT = 11
INSUFFICIENT_ACCESS = 50
SYNC_REFRESH_REQUIRED = 4096

RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    4: "sizeLimitExceeded",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    32: "noSuchObject",
    34: "invalidDNSyntax",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
    4096: "e-syncRefreshRequired",
}

Control = tuple[str, bool, bytes | None]
"""(oid, criticality, value) as ldap3's build_controls_list takes it."""


# --- BER helpers ------------------------------------------------------------------------


def read_tl(buf: bytes, i: int) -> tuple[int, int, int]:
    """Tag, length and value offset of the BER element at ``buf[i]`` (definite lengths)."""
    tag = buf[i]
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    return tag, n, i


def elements(buf: bytes, start: int, stop: int) -> list[tuple[int, bytes]]:
    """The (tag, value bytes) of the BER elements between ``start`` and ``stop``."""
    out = []
    while start < stop:
        tag, n, i = read_tl(buf, start)
        out.append((tag, buf[i : i + n]))
        start = i + n
    return out


def decode_int(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True) if value else 0


def enc_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def enc(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + enc_len(len(value)) + value


def enc_int(tag: int, n: int) -> bytes:
    return enc(tag, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


# --- Messages ---------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """A searchResultEntry: raw DN, raw (type, values) pairs, and its controls."""

    dn: bytes
    attributes: list[tuple[bytes, list[bytes]]]
    controls: list[Control] = field(default_factory=list)
    body: bytes | memoryview = b""
    """The entry's encoded DN and attributes as received (no message id, no controls):
    what a raw-entry digest covers (see values.to_change)."""

    def values_of(
        self, matches: Callable[[bytes], bool], sizes: frozenset[int] | None = None
    ) -> list[bytes] | None:
        """The values of the first attribute that has values and whose raw type
        ``matches``; None if there is none. ``sizes``, when given, holds every length a
        matching raw type can have: others are passed over untested."""
        for name, values in self.attributes:
            if values and (sizes is None or len(name) in sizes) and matches(name):
                return values
        return None


_ATTRIBUTES = Entry.attributes
"""The slot of ``Entry.attributes`` (a slotted dataclass's member descriptor)."""


class LazyEntry(Entry):
    """An Entry as received, whose attributes are parsed on first use: a read that
    skips an unchanged entry on its body's digest needs only its id
    (:meth:`values_of` scans for it without building the other values). It compares
    equal to, pickles as and copies as a plain Entry with the same fields."""

    __slots__ = ("_at", "_buf")

    def __init__(
        self, dn: bytes, buf: bytes, at: int, controls: list[Control], body: bytes | memoryview
    ) -> None:
        self.dn = dn
        self.controls = controls
        self.body = body
        self._buf: bytes | None = buf
        self._at = at

    @property  # type: ignore[override]
    def attributes(self) -> list[tuple[bytes, list[bytes]]]:
        buf = self._buf
        if buf is not None:
            try:
                attrs = _parse_attributes(buf, self._at)
            except IndexError:
                raise self._malformed() from None
            _ATTRIBUTES.__set__(self, attrs)
            self._buf = None
            return attrs
        return _ATTRIBUTES.__get__(self, Entry)

    @attributes.setter
    def attributes(self, value: list[tuple[bytes, list[bytes]]]) -> None:
        _ATTRIBUTES.__set__(self, value)
        self._buf = None

    def values_of(
        self, matches: Callable[[bytes], bool], sizes: frozenset[int] | None = None
    ) -> list[bytes] | None:
        buf = self._buf
        if buf is None:
            return Entry.values_of(self, matches, sizes)
        try:
            return _scan_values(buf, self._at, matches, sizes)
        except IndexError:
            raise self._malformed() from None

    def _malformed(self) -> SourceError:
        dn = self.dn.decode("utf-8", "replace")
        return SourceError(
            f"the LDAP server sent a malformed entry ({dn}): its attribute list ends early"
        )

    def _fields(self) -> tuple:
        return (self.dn, self.attributes, self.controls, self.body)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entry):
            return self._fields() == (other.dn, other.attributes, other.controls, other.body)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as the dataclass: mutable, unhashable

    def __reduce__(self) -> tuple:
        return (Entry, (self.dn, self.attributes, self.controls, bytes(self.body)))

    def __repr__(self) -> str:
        return repr(Entry(*self._fields()))


@dataclass(slots=True)
class Intermediate:
    """An intermediateResponse (e.g. an RFC 4533 Sync Info message)."""

    name: str | None
    value: bytes | None


@dataclass(slots=True)
class Reference:
    """A searchResultReference (continuation): part of the tree lives elsewhere."""

    urls: list[str]


@dataclass(slots=True)
class Done:
    """The searchResultDone."""

    code: int
    matched_dn: str
    message: str
    controls: list[Control] = field(default_factory=list)

    @property
    def name(self) -> str:
        return RESULT_NAMES.get(self.code, f"result {self.code}")

    def control(self, oid: str) -> bytes | None:
        for c_oid, _, value in self.controls:
            if c_oid == oid:
                return value or b""
        return None


Message = Entry | Intermediate | Reference | Done


def _parse_controls(buf: bytes, start: int, stop: int) -> list[Control]:
    # Per entry in syncrepl (Sync State control): no intermediate lists.
    out: list[Control] = []
    i = start
    while i < stop:
        _, n, j = read_tl(buf, i)  # Control SEQUENCE
        end = j + n
        _, n, k = read_tl(buf, j)  # controlType
        oid = buf[k : k + n].decode("ascii")
        k += n
        critical = False
        value = None
        while k < end:
            tag, n, v = read_tl(buf, k)
            if tag == 0x01:
                critical = buf[v : v + n] != b"\x00"
            elif tag == 0x04:
                value = buf[v : v + n]
            k = v + n
        out.append((oid, critical, value))
        i = end
    return out


def _entry_dn(buf: bytes, i: int) -> tuple[bytes, int]:
    """A searchResEntry's DN, and where its attribute list starts."""
    n = buf[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[i : i + k], "big")
        i += k
    return buf[i : i + n], i + n


def _parse_attributes(buf: bytes, i: int) -> list[tuple[bytes, list[bytes]]]:
    """The (type, values) pairs of the attribute list at ``i``."""
    # The hot path of every read that maps: inlined length decoding, no generic decoder.
    _, n, i = read_tl(buf, i)  # SEQUENCE OF PartialAttribute
    end = i + n
    attrs = []
    append = attrs.append
    while i < end:
        n = buf[i + 1]  # PartialAttribute SEQUENCE
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i : i + k], "big")
            i += k
        n = buf[i + 1]  # type
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i : i + k], "big")
            i += k
        name = buf[i : i + n]
        i += n
        n = buf[i + 1]  # SET OF value
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i : i + k], "big")
            i += k
        set_end = i + n
        values = []
        while i < set_end:
            n = buf[i + 1]
            i += 2
            if n & 0x80:
                k = n & 0x7F
                n = int.from_bytes(buf[i : i + k], "big")
                i += k
            values.append(buf[i : i + n])
            i += n
        append((name, values))
    return attrs


def _scan_values(
    buf: bytes, i: int, matches: Callable[[bytes], bool], sizes: frozenset[int] | None
) -> list[bytes] | None:
    """The values of the first attribute at ``i`` that has values and whose type
    ``matches`` (of a length in ``sizes``, if given); None if there is none. Skips the
    other attributes' values unread, and types of another length untested."""
    _, n, i = read_tl(buf, i)
    end = i + n
    while i < end:
        n = buf[i + 1]  # PartialAttribute SEQUENCE
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i : i + k], "big")
            i += k
        attr_end = i + n
        n = buf[i + 1]  # type
        i += 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(buf[i : i + k], "big")
            i += k
        if (sizes is None or n in sizes) and matches(buf[i : i + n]):
            # Once per entry: the generic decoder will do.
            _, n, i = read_tl(buf, i + n)  # SET OF value
            if n:
                return [value for _, value in elements(buf, i, i + n)]
        i = attr_end
    return None


def parse_message(buf: bytes) -> tuple[int, Message | None]:
    """Decode one complete LDAPMessage: (messageID, message). Unknown ops give None."""
    # Once per message: lengths decoded inline (read_tl costs a call per element).
    n = buf[1]  # LDAPMessage SEQUENCE
    i = 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(buf[2 : 2 + k], "big")
        i = 2 + k
    end = i + n
    _, n, i = read_tl(buf, i)  # messageID
    msgid = int.from_bytes(buf[i : i + n], "big", signed=True) if n else 0
    i += n
    op_tag = buf[i]
    op_len = buf[i + 1]
    op_start = i + 2
    if op_len & 0x80:
        k = op_len & 0x7F
        op_len = int.from_bytes(buf[op_start : op_start + k], "big")
        op_start += k
    op_end = op_start + op_len
    controls: list[Control] = []
    if op_end < end:
        tag, n, j = read_tl(buf, op_end)
        if tag == 0xA0:
            controls = _parse_controls(buf, j, j + n)
    if op_tag == 0x64:  # searchResEntry
        dn, at = _entry_dn(buf, op_start)
        return msgid, LazyEntry(dn, buf, at, controls, memoryview(buf)[op_start:op_end])
    if op_tag == 0x65 or op_tag == 0x78:  # searchResDone / extendedResp (notice of disconnection)
        parts = elements(buf, op_start, op_end)
        code = decode_int(parts[0][1])
        matched = parts[1][1].decode("utf-8", "replace")
        message = parts[2][1].decode("utf-8", "replace")
        if op_tag == 0x78:
            name = next((v.decode("ascii", "replace") for t, v in parts[3:] if t == 0x8A), "")
            return msgid, Done(code, matched, message or f"extended response {name}", controls)
        return msgid, Done(code, matched, message, controls)
    if op_tag == 0x73:  # searchResRef
        urls = [v.decode("utf-8", "replace") for _, v in elements(buf, op_start, op_end)]
        return msgid, Reference(urls)
    if op_tag == 0x79:  # intermediateResponse
        name = value = None
        for tag, val in elements(buf, op_start, op_end):
            if tag == 0x80:
                name = val.decode("ascii", "replace")
            elif tag == 0x81:
                value = val
        return msgid, Intermediate(name, value)
    return msgid, None


# --- Socket -----------------------------------------------------------------------------


class DeadlineExceeded(SourceError):
    """A read went on past its deadline (see :func:`set_deadline`)."""


_deadlines: weakref.WeakKeyDictionary[ldap3.Connection, tuple[float, float]] = (
    weakref.WeakKeyDictionary()
)


def set_deadline(conn: ldap3.Connection, seconds: float | None) -> None:
    """From now on, every search on ``conn`` fails with :class:`DeadlineExceeded` once
    ``seconds`` have passed (None: no deadline). The socket timeout still bounds each
    single wait; the deadline bounds them all together, so a server that trickles bytes
    cannot stretch a read forever."""
    if seconds is None:
        _deadlines.pop(conn, None)
    else:
        _deadlines[conn] = (time.monotonic() + seconds, seconds)


def _deadline_error(seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"the LDAP read did not finish within read_deadline ({seconds:g} s): stopped "
        "(the server answers too slowly, or trickles its answer); nothing from it counts "
        "as complete"
    )


def _frames(sock: socket.socket, deadline: tuple[float, float] | None = None) -> Iterator[bytes]:
    """Complete LDAPMessages from the socket, as soon as each one is complete; raises
    DeadlineExceeded when ``deadline`` (monotonic end, seconds) passes."""
    buf = bytearray()
    pos = 0
    timeout = sock.gettimeout() if deadline is not None else None
    while True:
        avail = len(buf) - pos
        if avail >= 2:
            n = buf[pos + 1]
            if n & 0x80:
                k = n & 0x7F
                if avail >= 2 + k:
                    total = 2 + k + int.from_bytes(buf[pos + 2 : pos + 2 + k], "big")
                else:
                    total = -1
            else:
                total = 2 + n
            if total != -1 and avail >= total:
                yield bytes(buf[pos : pos + total])
                pos += total
                continue
        if pos:
            del buf[:pos]
            pos = 0
        if deadline is not None:
            left = deadline[0] - time.monotonic()
            if left <= 0:
                raise _deadline_error(deadline[1])
            # Wait no longer than the deadline allows (nor than the socket timeout).
            sock.settimeout(left if timeout is None else min(timeout, left))
            try:
                data = sock.recv(RECV_SIZE)
            except TimeoutError:
                if time.monotonic() >= deadline[0]:
                    raise _deadline_error(deadline[1]) from None
                raise
            finally:
                sock.settimeout(timeout)
        else:
            data = sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        buf += data


# --- Search -----------------------------------------------------------------------------


class SearchStream:
    """One search in flight. Iterate for messages (the final one is :class:`Done`).

    If iteration stops before ``Done`` (error or the consumer gave up), the connection
    is left with unread data and is closed: use a fresh one.
    """

    def __init__(
        self,
        conn: ldap3.Connection,
        base: str,
        filter: str,
        scope: str = "sub",
        attributes: Sequence[str] | None = None,
        controls: Sequence[Control] = (),
        *,
        size_limit: int = 0,
        time_limit: int = 0,
    ):
        self.conn = conn
        self.finished = False
        attrs = list(attributes) if attributes else [ldap3.ALL_ATTRIBUTES]
        try:
            request = search_operation(
                base,
                filter,
                SCOPES[scope],
                ldap3.DEREF_NEVER,
                attrs,
                size_limit,
                time_limit,
                False,
                True,
                True,
                None,
                None,
                False,
            )
        except ldap3.core.exceptions.LDAPException as err:
            raise SourceError(f"bad search (base {base!r}, filter {filter!r}): {err}") from None
        try:
            self.msgid = conn.strategy.send("searchRequest", request, list(controls) or None)
        except (OSError, ldap3.core.exceptions.LDAPException) as err:
            close_connection(conn)
            raise SourceError(f"connection lost while sending a search: {err}") from None

    def __iter__(self) -> Iterator[Message]:
        sock = self.conn.socket
        deadline = _deadlines.get(self.conn)
        try:
            for frame in _frames(sock, deadline):
                msgid, msg = parse_message(frame)
                if msgid == 0 and isinstance(msg, Done):
                    raise SourceError(f"the server ended the session: {msg.message}")
                if msgid != self.msgid or msg is None:
                    log.debug("ignoring LDAP message %s for id %s", type(msg).__name__, msgid)
                    continue
                if isinstance(msg, Done):
                    # Nothing more will come for this search: the connection is clean
                    # even if the consumer stops right here.
                    self.finished = True
                    yield msg
                    return
                yield msg
        except TimeoutError:
            raise SourceError(
                "no answer from the LDAP server within the timeout (read stopped; "
                "nothing from it counts as complete)"
            ) from None
        except (OSError, ssl.SSLError) as err:
            raise SourceError(f"connection to the LDAP server lost mid-read: {err}") from None
        finally:
            # After an unbind ldap3 drops its table of outstanding requests (None).
            outstanding = getattr(self.conn.strategy, "_outstanding", None)
            if outstanding is not None:
                outstanding.pop(self.msgid, None)
            if not self.finished:
                close_connection(self.conn)


def search(conn: ldap3.Connection, *args, **kwargs) -> SearchStream:
    """Send a search and return the stream of its answers (see :class:`SearchStream`)."""
    return SearchStream(conn, *args, **kwargs)


def close_connection(conn: ldap3.Connection) -> None:
    """Unbind (politely, no answer awaited) and close a connection, without raising;
    also fine for a connection whose stream is in an unknown state."""
    try:
        if not conn.closed:
            conn.unbind()
    except Exception:
        pass
    try:
        conn.strategy.close()
    except Exception:
        pass
    try:
        if conn.socket is not None:
            conn.socket.close()
    except Exception:
        pass
    conn.closed = True
    conn.bound = False


# --- Paged results (RFC 2696) -----------------------------------------------------------


def paged_control(size: int, cookie: bytes, *, critical: bool = True) -> Control:
    value = enc(0x30, enc_int(0x02, size) + enc(0x04, cookie))
    return (OID_PAGED, critical, value)


def paged_cookie(done: Done) -> bytes | None:
    """The cookie of a paged-results response control; None if the server sent none."""
    value = done.control(OID_PAGED)
    if value is None:
        return None
    _, n, i = read_tl(value, 0)
    parts = elements(value, i, i + n)
    return parts[1][1] if len(parts) > 1 else b""


class SizeLimitExceeded(SourceError):
    """A search ended in sizeLimitExceeded: the entries read are not the whole result."""

    def __init__(self, text: str, read: int):
        super().__init__(text)
        self.read = read


def result_error(done: Done, base: str, read: int, *, what: str = "search") -> SourceError:
    """A SourceError with one clear line for a search that did not end in success
    (:class:`SizeLimitExceeded` for a size limit)."""
    if done.code == SIZE_LIMIT:
        text = (
            f"{what} hit the server's size limit after {read} entries: the read is "
            "incomplete (raise the bind DN's limit on the server, e.g. slapd 'limits "
            "dn.exact=<bind DN> size=unlimited', or 'size.pr=unlimited "
            "size.prtotal=unlimited' for paged searches)"
        )
        return SizeLimitExceeded(text, read)
    elif done.code == TIME_LIMIT:
        text = f"{what} hit the server's time limit after {read} entries: the read is incomplete"
    elif done.code == ADMIN_LIMIT:
        text = f"{what} hit an administrative limit after {read} entries: the read is incomplete"
    elif done.code == NO_SUCH_OBJECT:
        text = f"base DN {base!r} does not exist (or is not visible to the bind DN)"
    elif done.code == INSUFFICIENT_ACCESS:
        text = f"{what} under {base!r}: insufficient access rights"
    elif done.code == UNAVAILABLE_CRITICAL_EXTENSION:
        text = f"{what}: the server does not support a required control ({done.message})"
    else:
        text = f"{what} under {base!r} failed: {done.name} ({done.code}) {done.message}".strip()
    return SourceError(text)


def paged_search(
    conn: ldap3.Connection,
    base: str,
    filter: str,
    scope: str,
    attributes: Sequence[str] | None,
    *,
    page_size: int,
    extra_controls: Sequence[Control] = (),
    what: str = "search",
    paged: bool = True,
) -> Iterator[Entry]:
    """All entries of a paged search, page by page; raises SourceError unless the whole
    result was read (limit hit, base missing, connection lost: never a short read).
    ``paged=False`` (a server without RFC 2696) sends one plain search instead."""
    cookie = b""
    read = 0
    while True:
        controls = list(extra_controls)
        if paged:
            controls.append(paged_control(page_size, cookie))
        done: Done | None = None
        for msg in search(conn, base, filter, scope, attributes, controls):
            if isinstance(msg, Entry):
                read += 1
                yield msg
            elif isinstance(msg, Done):
                done = msg
            elif isinstance(msg, Reference):
                log.info(
                    "%s under %s: continuation reference to %s not followed",
                    what,
                    base,
                    ", ".join(msg.urls),
                )
        assert done is not None
        if done.code != SUCCESS:
            raise result_error(done, base, read, what=what)
        cookie = paged_cookie(done) if paged else None
        if not cookie:
            return
