"""LDAP connection settings and a verified, bound ldap3 connection.

``LdapConnection`` is the ``connections.NAME`` block of a config with ``type: ldap``.
:func:`connect` turns it into a bound ``ldap3.Connection``:

* TLS certificates are verified by default (ldap3's own ``Tls()`` verifies nothing):
  the chain against ``ca_file`` (or the system store) and the host name with Python's
  standard check, SNI sent.
* ``ldap://`` uses StartTLS unless ``start_tls: false``; a simple bind with a password
  over plaintext to a host that is not loopback is refused before any packet is sent,
  unless ``allow_plaintext: true`` (then a warning is logged).
* Every failure is one :class:`syncd.errors.ConnectionFailed` line that never contains
  the password.

Other connectors (AD, LDAP target, doctor) import ``LdapConnection`` and ``connect``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as lexc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.errors import ConnectionFailed
from syncd.paths import ConfigPath
from syncd.secrets import SecretRef
from syncd.urls import redact_url

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}

# Result codes worth a sentence of their own when a bind fails.
_BIND_HINTS = {
    7: "the server does not support simple bind (authMethodNotSupported)",
    8: "the server requires a stronger authentication (strongerAuthRequired): use TLS",
    13: "the server requires TLS for this bind (confidentialityRequired)",
    48: "inappropriate authentication (is the password empty?)",
    49: "invalid credentials (wrong bind DN or password)",
    50: "insufficient access rights",
    51: "the server is busy",
    52: "the server is unavailable",
    53: "the server is unwilling to perform the bind",
}


class LdapConnection(BaseModel):
    """Where and how to reach an LDAP server (``connections.NAME`` with ``type: ldap``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | list[str] = Field(
        description="ldap://host[:port] or ldaps://host[:port]; a list is tried in order "
        "(failover). Example: ldaps://ldap1.example.com"
    )
    bind_dn: str | None = Field(None, description="DN to bind as; none = anonymous bind")
    password: SecretRef | None = Field(
        None, description="bind password as a secret reference: {env: NAME} / {file: PATH}"
    )
    start_tls: bool = Field(True, description="send StartTLS on ldap:// URLs")
    ca_file: ConfigPath | None = Field(
        None,
        description="PEM file of the CA(s) to trust (relative to the config file); "
        "default: the system's trust store",
    )
    verify: bool = Field(True, description="verify the server certificate and host name")
    allow_plaintext: bool = Field(
        False, description="allow a password bind without TLS to a non-loopback host"
    )
    timeout: int = Field(30, ge=1, le=3600, description="connect and receive timeout, seconds")
    page_size: int = Field(500, ge=1, le=100000, description="entries per page (RFC 2696)")

    @field_validator("url")
    @classmethod
    def _check_urls(cls, value: str | list[str]) -> str | list[str]:
        urls = [value] if isinstance(value, str) else value
        if not urls:
            raise ValueError("at least one URL is needed")
        for url in urls:
            parse_url(url)
        return value

    @field_validator("bind_dn")
    @classmethod
    def _check_dn(cls, value: str | None) -> str | None:
        if value:
            from ldap3.utils.dn import parse_dn

            try:
                parse_dn(value)
            except Exception:
                raise ValueError(f"bind_dn {value!r} is not a DN") from None
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> LdapConnection:
        if self.password is not None and not self.bind_dn:
            raise ValueError("password is set but bind_dn is not")
        if self.bind_dn and self.password is None:
            raise ValueError(
                "bind_dn is set but password is not (an unauthenticated bind is refused)"
            )
        return self

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    def describe(self) -> str:
        """The URLs and bind DN, for logs (no secrets)."""
        who = self.bind_dn or "anonymous"
        return f"{', '.join(self.urls)} as {who}"


def parse_url(url: str) -> tuple[str, str, int]:
    """Split ``ldap[s]://host[:port][/]`` into (scheme, host, port). Raises ValueError."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{redact_url(url)!r}: the scheme must be ldap:// or ldaps://")
    if not parts.hostname:
        raise ValueError(f"{redact_url(url)!r}: no host name")
    if parts.username or parts.password:
        raise ValueError(f"{redact_url(url)!r}: credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{redact_url(url)!r}: only scheme, host and port are allowed")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"{redact_url(url)!r}: bad port") from None
    return scheme, parts.hostname, port


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (no name resolution: a name could be
    pointed elsewhere later, so only these count as safe for plaintext)."""
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _VerifiedTls(ldap3.Tls):
    """ldap3 Tls that verifies like a browser: chain + host name via Python's SSLContext
    (IP SANs included), SNI sent. Keeps the original handshake error for the message."""

    def __init__(self, host: str, ca_file: str | None, verify: bool):
        super().__init__(
            validate=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
            ca_certs_file=ca_file,
            sni=host,
        )
        self._host = host
        self._verify = verify
        self._ca_file = ca_file
        self.handshake_error: BaseException | None = None

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self._verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def wrap_socket(self, connection, do_handshake=False):
        try:
            connection.socket = self._context().wrap_socket(
                connection.socket,
                server_side=False,
                server_hostname=self._host,
                do_handshake_on_connect=do_handshake,
            )
        except BaseException as err:
            self.handshake_error = err
            raise


def _tls_problem(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {err.verify_message or err.reason}"
    if isinstance(err, ssl.SSLError):
        return f"TLS handshake failed: {err.reason or err}"
    if isinstance(err, OSError):
        return f"TLS handshake failed: {err.strerror or err}"
    return f"TLS handshake failed: {err}"


def _socket_problem(err: BaseException) -> str:
    text = str(err)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused (nothing listens on that port?)"
    if "timed out" in lowered or "timeout" in lowered:
        return "connection timed out"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "host name not found"
    if "unreachable" in lowered:
        return "network unreachable"
    return f"cannot connect: {text}"


def connect(cfg: LdapConnection, *, bind: bool = True) -> ldap3.Connection:
    """Open, secure and bind a connection to the first URL of ``cfg`` that works.

    The connection uses the SYNC strategy with ``get_info=NONE`` (no schema read),
    (searches must pass ``dereference_aliases=DEREF_NEVER``: see search.py),
    no automatic referral chasing (a referral could lead to an unverified host).

    Raises :class:`ConnectionFailed` (one line, no secret) when no URL gives a bound
    connection, and :class:`syncd.errors.SecretError` when the password is missing.
    """
    password = cfg.password.reveal() if cfg.password is not None else None
    if password == "":
        # An empty password would make a simple bind anonymous (RFC 4513 5.1.2).
        raise ConnectionFailed(f"the bind password ({cfg.password.describe()}) is empty")
    problems: list[str] = []
    for url in cfg.urls:
        try:
            return _connect_one(cfg, url, password, bind=bind)
        except _BindRefused as err:
            # Same credentials everywhere: another server will refuse them too.
            raise ConnectionFailed(str(err)) from None
        except _PlaintextRefused as err:
            raise ConnectionFailed(str(err)) from None
        except ConnectionFailed as err:
            problems.append(str(err))
            if len(cfg.urls) > 1:
                log.warning("%s (trying the next URL)", err)
    if len(problems) == 1:
        raise ConnectionFailed(problems[0])
    raise ConnectionFailed("no LDAP server usable: " + "; ".join(problems))


class _BindRefused(ConnectionFailed):
    pass


class _PlaintextRefused(ConnectionFailed):
    pass


def _connect_one(
    cfg: LdapConnection, url: str, password: str | None, *, bind: bool
) -> ldap3.Connection:
    scheme, host, port = parse_url(url)
    where = f"{scheme}://{host}:{port}"
    use_ssl = scheme == "ldaps"
    tls_on = use_ssl or cfg.start_tls
    if not tls_on and password is not None and not is_loopback(host):
        if not cfg.allow_plaintext:
            raise _PlaintextRefused(
                f"{where}: refusing to send a password without TLS to a non-loopback host; "
                "use ldaps://, start_tls: true, or set allow_plaintext: true"
            )
        log.warning("%s: password bind WITHOUT TLS (allow_plaintext is set)", where)
    ca_file = str(cfg.ca_file) if cfg.ca_file else None
    if ca_file and not Path(ca_file).is_file():
        raise ConnectionFailed(f"{where}: ca_file {ca_file} does not exist")
    tls = _VerifiedTls(host, ca_file, cfg.verify) if tls_on else None
    if tls_on and not cfg.verify:
        log.warning("%s: TLS certificate verification is OFF (verify: false)", where)
    server = ldap3.Server(
        host,
        port=port,
        use_ssl=use_ssl,
        tls=tls,
        get_info=ldap3.NONE,
        connect_timeout=cfg.timeout,
    )
    conn = ldap3.Connection(
        server,
        user=cfg.bind_dn,
        password=password,
        authentication=ldap3.SIMPLE if cfg.bind_dn else ldap3.ANONYMOUS,
        client_strategy=ldap3.SYNC,
        auto_bind=ldap3.AUTO_BIND_NONE,
        raise_exceptions=False,
        auto_referrals=False,
        receive_timeout=cfg.timeout,
        read_only=False,
        return_empty_attributes=False,
    )
    try:
        conn.open(read_server_info=False)
    except lexc.LDAPSocketOpenError as err:
        if tls is not None and tls.handshake_error is not None:
            raise ConnectionFailed(f"{where}: {_tls_problem(tls.handshake_error)}") from None
        raise ConnectionFailed(f"{where}: {_socket_problem(err)}") from None
    except (OSError, lexc.LDAPException) as err:
        raise ConnectionFailed(f"{where}: {_socket_problem(err)}") from None
    try:
        if scheme == "ldap" and cfg.start_tls:
            _start_tls(conn, tls, where)
        if bind:
            bind_connection(conn, cfg)
    except BaseException:
        _close_quietly(conn)
        raise
    log.debug("connected to %s as %s", where, cfg.bind_dn or "anonymous")
    return conn


def _start_tls(conn: ldap3.Connection, tls: _VerifiedTls | None, where: str) -> None:
    try:
        ok = conn.start_tls(read_server_info=False)
    except lexc.LDAPStartTLSError as err:
        if tls is not None and tls.handshake_error is not None:
            raise ConnectionFailed(
                f"{where}: StartTLS: {_tls_problem(tls.handshake_error)}"
            ) from None
        raise ConnectionFailed(f"{where}: StartTLS refused by the server ({err})") from None
    except (OSError, lexc.LDAPException) as err:
        raise ConnectionFailed(f"{where}: StartTLS failed: {_socket_problem(err)}") from None
    if not ok:
        raise ConnectionFailed(f"{where}: StartTLS not possible on this connection")


def bind_connection(conn: ldap3.Connection, cfg: LdapConnection) -> None:
    """Bind an open (``connect(cfg, bind=False)``) connection with ``cfg``'s credentials.
    Raises ConnectionFailed (one line, no secret)."""
    where = f"{'ldaps' if conn.server.ssl else 'ldap'}://{conn.server.host}:{conn.server.port}"
    who = cfg.bind_dn or "anonymous"
    try:
        ok = conn.bind(read_server_info=False)
    except (OSError, lexc.LDAPException) as err:
        raise ConnectionFailed(f"{where}: bind as {who} failed: {_socket_problem(err)}") from None
    if ok:
        return
    result = conn.result or {}
    code = result.get("result")
    reason = _BIND_HINTS.get(code) or (
        f"{result.get('description', 'error')} ({code}): {result.get('message', '')}".strip()
    )
    raise _BindRefused(f"{where}: bind as {who} refused: {reason}")


def _close_quietly(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except Exception:
        pass
    try:
        if conn.socket is not None:
            conn.socket.close()
    except Exception:
        pass


def server_identity(conn: ldap3.Connection) -> str:
    """``host:port`` of the server a connection is talking to (for cursors and logs)."""
    return f"{conn.server.host}:{conn.server.port}"


def settimeout(conn: ldap3.Connection, seconds: float | None) -> None:
    """Change the socket timeout of an open connection (e.g. for long syncrepl waits)."""
    sock: Any = conn.socket
    if isinstance(sock, socket.socket):
        sock.settimeout(seconds)
