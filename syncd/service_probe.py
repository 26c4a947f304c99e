"""What kind of server answers on a port: LDAP, or something else that is named.

``syncd doctor`` uses it when a connection's port does not behave like the server the
URL promises: a web server or an SSH daemon on the "LDAP" port is told as such, instead
of a bind that times out. Every wait is bounded by the caller's timeout.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

STARTTLS_REQUEST = (
    b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037"
)  # LDAPMessage { id 1, extendedReq { requestName StartTLS } }
HTTP_REQUEST = b"HEAD / HTTP/1.0\r\n\r\n"

_BANNERS = (
    (b"SSH-", "SSH server"),
    (b"220 ", "FTP or SMTP server"),
    (b"220-", "FTP or SMTP server"),
    (b"* OK", "IMAP server"),
    (b"+OK", "POP3 server"),
    (b"HTTP/", "HTTP server"),
)
BANNER_WAIT = 0.5
"""Seconds to wait for a server that speaks first (SSH, SMTP); LDAP servers never do."""


@dataclass
class Service:
    """What answered: ``kind`` is "ldap", a name such as "SSH server", "silent" (no
    answer in time), "closed" (hung up at once) or "unknown"; ``banner`` its first line."""

    kind: str
    banner: str = ""

    @property
    def is_ldap(self) -> bool:
        return self.kind == "ldap"

    def describe(self) -> str:
        """One line for a report (the banner printable, cut to 80 characters)."""
        if self.kind == "silent":
            return "no answer"
        if self.kind == "closed":
            return "the server closed the connection without an answer"
        text = f"an {self.kind}" if self.kind[0] in "AEFHIOS" else f"a {self.kind}"
        if self.kind == "unknown":
            text = "a server that does not speak LDAP"
        return text + (f" ({self.banner})" if self.banner else "")


def _printable(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].strip()
    text = line.decode("ascii", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)[:80]


def _classify(data: bytes) -> Service | None:
    for prefix, kind in _BANNERS:
        if data.startswith(prefix):
            return Service(kind, _printable(data))
    return None


def _recv_some(sock: socket.socket, deadline: float) -> bytes | None:
    """The first bytes the peer sends before ``deadline``; b"" if it closed, None if
    nothing came."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(512)
    except TimeoutError:
        return None
    except OSError:
        return b""


def identify(host: str, port: int, timeout: float) -> Service:
    """Ask ``host:port`` what it is. Each connection and wait is bounded by ``timeout``
    (plus BANNER_WAIT for servers that speak first). Never raises for network errors:
    an unreachable port is ``Service("closed")``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            first = _recv_some(sock, time.monotonic() + min(BANNER_WAIT, timeout))
            if first:
                return _classify(first) or Service("unknown", _printable(first))
            if first == b"":
                return Service("closed")
            sock.sendall(STARTTLS_REQUEST)
            reply = _recv_some(sock, time.monotonic() + timeout)
    except OSError:
        return Service("closed")
    if reply and reply[:1] == b"\x30":
        return Service("ldap")
    if reply:
        return _classify(reply) or Service("unknown", _printable(reply))
    # Silent or hung up on an LDAP request: a web server waits for a request line.
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(HTTP_REQUEST)
            answer = _recv_some(sock, time.monotonic() + timeout)
    except OSError:
        answer = None
    if answer:
        return _classify(answer) or Service("unknown", _printable(answer))
    return Service("silent" if reply is None else "closed")
