"""``syncd doctor [CONNECTION]``: check connections the way an administrator would.

For each connection (or the one named), in the order one debugs "port 389 trouble":

1. **name resolution** of every host in the connection's URL(s);
2. **TCP reach** of host:port (refused / timed out / unreachable each get their hint);
3. **StartTLS** (``ldap://`` with ``start_tls``), sent by hand so a server without TLS is
   told apart from one that is down;
4. **TLS handshake** with the connection's CA (``ca_file``) or the system store, and the
   **certificate**: subject, issuer, expiry, names (wrong CA, wrong host name, expired,
   plaintext port each get their hint);
5. the connector's own checks (``Source.check()`` / ``Target.check()``: bind, rootDSE,
   vendor, base DN, paging and change-tracking controls, table access...), run with the
   options of a job that uses the connection.

Plus the state store (reachable, schema version) when no connection is named. Nothing
here writes anywhere. Results are :class:`Finding` rows: ok, warn (works but look at it)
or fail; ``syncd doctor`` exits non-zero when any row failed.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from syncd.contracts import CheckResult
from syncd.errors import ConfigError
from syncd.service_probe import Service, identify

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
DEFAULT_PORTS = {
    "ldap": 389,
    "ldaps": 636,
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "mysql": 3306,
    "mariadb": 3306,
    "mssql": 1433,
    "oracle": 1521,
}
STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
EXPIRY_WARN_DAYS = 14


@dataclass
class Finding:
    """One row of the report."""

    section: str
    check: str
    status: str  # ok | warn | fail | skip
    detail: str = ""
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class NetEndpoint:
    """Where a connection talks to, from its URL."""

    url: str
    scheme: str
    host: str
    port: int
    tls: str  # "none" | "tls" (TLS from the first byte) | "starttls" (LDAP StartTLS)


# ------------------------------------------------------------------- endpoints
_URL_FIELDS = (
    "url",
    "urls",
    "service_endpoint",
    "endpoint",
    "server_url",
    "base_url",
    "authority_url",  # graph: sign-in host
    "graph_url",
)


def endpoints_of(options: Any) -> list[NetEndpoint]:
    """The network endpoints named in a connection's options (may be empty: SQLite,
    CSV files). Unparseable URLs are skipped; the connector's own check reports them."""
    urls: list[str] = []
    for name in _URL_FIELDS:
        value = getattr(options, name, None)
        if isinstance(value, str):
            urls.append(value)
        elif isinstance(value, list | tuple):
            urls.extend(str(v) for v in value)
    seen, out = set(), []
    start_tls = bool(getattr(options, "start_tls", False))
    for url in urls:
        ep = _endpoint(url, start_tls)
        if ep is not None and (ep.host, ep.port) not in seen:
            seen.add((ep.host, ep.port))
            out.append(ep)
    return out


def _endpoint(url: str, start_tls: bool) -> NetEndpoint | None:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        base = scheme.split("+", 1)[0]
        host = parts.hostname
        port = parts.port or DEFAULT_PORTS.get(base)
    except ValueError:
        return None
    if not host or not port or base in ("sqlite", "file"):
        return None
    if base in ("ldaps", "https"):
        tls = "tls"
    elif base == "ldap" and start_tls:
        tls = "starttls"
    else:
        tls = "none"
    # SQLAlchemy URLs carry a password in the URL: never keep it in the report.
    shown = f"{scheme}://{host}:{port}"
    return NetEndpoint(shown, base, host, port, tls)


# ------------------------------------------------------------------ time bounds
class StepTimeout(Exception):
    """A doctor step did not finish within its time bound."""


def bounded(step: Any, timeout: float) -> Any:
    """``step()``'s result, or StepTimeout once ``timeout`` seconds have passed.

    For calls that take no timeout of their own (name resolution, a connector's checks
    as a whole): the step goes on in a daemon thread, abandoned, and the report goes on.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(step())
        except BaseException as err:
            error.append(err)

    worker = threading.Thread(target=run, name="syncd-doctor-step", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise StepTimeout(f"no answer within {timeout:g}s")
    if error:
        raise error[0]
    return result[0]


def with_timeout(options: Any, timeout: float) -> Any:
    """Connection options whose own ``timeout`` (connect, receive, HTTP) is at most
    ``timeout``, so each network operation of a connector's checks is bounded by
    ``syncd doctor --timeout`` too (options without one are returned unchanged)."""
    current = getattr(options, "timeout", None)
    if not isinstance(current, int | float) or isinstance(current, bool) or current <= timeout:
        return options
    value: float = max(1, math.ceil(timeout)) if isinstance(current, int) else float(timeout)
    return options.model_copy(update={"timeout": value})


# --------------------------------------------------------------- network checks
def check_endpoint(
    ep: NetEndpoint,
    section: str,
    *,
    ca_file: str | None = None,
    verify: bool = True,
    timeout: float = 5.0,
) -> tuple[list[Finding], bool]:
    """DNS, TCP, StartTLS, TLS and certificate checks of one endpoint.

    Returns the findings and whether the endpoint was reachable over TCP.
    """
    where = f"{ep.host}:{ep.port}"
    out: list[Finding] = []
    try:
        infos = bounded(
            lambda: socket.getaddrinfo(ep.host, ep.port, type=socket.SOCK_STREAM), timeout
        )
        addrs = sorted({i[4][0] for i in infos})
        out.append(Finding(section, f"resolve {ep.host}", OK, ", ".join(addrs)))
    except StepTimeout:
        out.append(
            Finding(
                section,
                f"resolve {ep.host}",
                FAIL,
                f"no answer within {timeout:g}s (timed out)",
                "the DNS server does not answer: check /etc/resolv.conf",
            )
        )
        return out, False
    except socket.gaierror as err:
        out.append(
            Finding(
                section,
                f"resolve {ep.host}",
                FAIL,
                err.strerror or str(err),
                "the host name does not resolve: check its spelling, DNS "
                "(/etc/resolv.conf) or /etc/hosts",
            )
        )
        return out, False

    started = time.monotonic()
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
    except OSError as err:
        out.append(Finding(section, f"TCP {where}", FAIL, _oserror(err), _tcp_hint(err, ep)))
        return out, False
    out.append(
        Finding(
            section,
            f"TCP {where}",
            OK,
            f"connected in {(time.monotonic() - started) * 1000:.0f} ms",
        )
    )
    if ep.scheme == "ldap":
        # Before StartTLS or a bind: is it LDAP at all? A web server or sshd on the
        # port would otherwise show up as a bind that times out.
        sock.close()
        service = identify(ep.host, ep.port, timeout)
        if not service.is_ldap:
            out.append(_wrong_service(section, ep, service, timeout))
            return out, False
        out.append(Finding(section, "service", OK, "answers LDAP"))
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=timeout)
        except OSError as err:
            out.append(Finding(section, f"TCP {where}", FAIL, _oserror(err), _tcp_hint(err, ep)))
            return out, False
    with contextlib.closing(sock):
        if ep.tls == "none":
            return out, True
        if ep.tls == "starttls":
            problem = _starttls(sock, timeout)
            if problem:
                out.append(
                    Finding(
                        section,
                        "StartTLS",
                        FAIL,
                        problem,
                        "the server does not offer TLS on this port: configure TLS "
                        "on the server, or use ldaps:// (636) if it offers that",
                    )
                )
                return out, True
            out.append(Finding(section, "StartTLS", OK, "accepted"))
        out.extend(_tls_checks(sock, ep, section, ca_file=ca_file, verify=verify, timeout=timeout))
    return out, True


def _wrong_service(section: str, ep: NetEndpoint, service: Service, timeout: float) -> Finding:
    """The finding for a port where the expected server does not answer."""
    expected = "LDAPS" if ep.scheme == "ldaps" else ep.scheme.upper()
    if service.kind == "silent":
        return Finding(
            section,
            "service",
            FAIL,
            f"no answer to an LDAP request within {timeout:g}s (timed out)",
            "the port accepts connections but nothing answers: a hung server, or a "
            "firewall or proxy in between",
        )
    ports = "LDAP listens on 389 (StartTLS), LDAPS on 636"
    if ep.scheme in ("http", "https"):
        ports = "HTTPS listens on 443"
    return Finding(
        section,
        "service",
        FAIL,
        f"{service.describe()} answers on {ep.host}:{ep.port}",
        f"this is not an {expected} server: check the URL's host and port ({ports})",
    )


def _oserror(err: OSError) -> str:
    if isinstance(err, TimeoutError | socket.timeout):
        return "timed out"
    return err.strerror or str(err)


def _tcp_hint(err: OSError, ep: NetEndpoint) -> str:
    text = _oserror(err).lower()
    if "refused" in text:
        hint = (
            f"nothing listens on {ep.host}:{ep.port}: is the server running, and is "
            "that the right port?"
        )
        if ep.scheme in ("ldap", "ldaps"):
            hint += " LDAP listens on 389 (StartTLS), LDAPS on 636"
        return hint
    if "timed out" in text:
        return "no answer: a firewall drops the packets, or the host is down"
    if "unreachable" in text or "no route" in text:
        return "no route to the host: check the network and the address"
    return "check the host, the port and the firewall"


def _starttls(sock: socket.socket, timeout: float) -> str | None:
    """Send an LDAP StartTLS extended request; None if accepted, else why not."""
    name = b"\x80" + bytes([len(STARTTLS_OID)]) + STARTTLS_OID
    op = b"\x77" + bytes([len(name)]) + name
    body = b"\x02\x01\x01" + op
    sock.settimeout(timeout)
    try:
        sock.sendall(b"\x30" + bytes([len(body)]) + body)
        reply = _read_ber(sock)
    except OSError as err:
        return f"no answer to StartTLS: {_oserror(err)}"
    if reply is None:
        return "the server closed the connection on StartTLS (is this an LDAP port?)"
    code = _extended_result_code(reply)
    if code is None:
        return "the answer to StartTLS is not an LDAP extended response (is this LDAP?)"
    if code != 0:
        return f"StartTLS refused with LDAP result code {code}" + (
            " (unavailable: no TLS certificate configured)"
            if code == 52
            else " (protocolError: StartTLS not supported)"
            if code == 2
            else ""
        )
    return None


def _read_ber(sock: socket.socket) -> bytes | None:
    """Read exactly one BER element (tag, length, content) from the socket."""
    head = _recv_exact(sock, 2)
    if head is None:
        return None
    length = head[1]
    extra = b""
    if length & 0x80:
        count = length & 0x7F
        extra = _recv_exact(sock, count) or b""
        length = int.from_bytes(extra, "big")
    body = _recv_exact(sock, length) if length else b""
    return None if body is None else head + extra + body


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _extended_result_code(msg: bytes) -> int | None:
    """resultCode of an LDAPMessage carrying an ExtendedResponse ([APPLICATION 24])."""
    i = 2 + (msg[1] & 0x7F if msg[1] & 0x80 else 0)  # past SEQUENCE header
    if i + 2 > len(msg) or msg[i] != 0x02:
        return None
    i += 2 + msg[i + 1]  # past messageID
    if i >= len(msg) or msg[i] != 0x78:
        return None
    i += 2 + (msg[i + 1] & 0x7F if msg[i + 1] & 0x80 else 0)
    if i + 3 > len(msg) or msg[i] != 0x0A:
        return None
    return msg[i + 2]


def _tls_checks(
    sock: socket.socket,
    ep: NetEndpoint,
    section: str,
    *,
    ca_file: str | None,
    verify: bool,
    timeout: float,
) -> list[Finding]:
    out: list[Finding] = []
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    trust = f"CA {ca_file}" if ca_file else "the system's trust store"
    sock.settimeout(timeout)
    try:
        with ctx.wrap_socket(sock, server_hostname=ep.host) as tls:
            der = tls.getpeercert(binary_form=True)
            detail = f"{tls.version()} {tls.cipher()[0]}, verified against {trust}"
            if not verify:
                detail = f"{tls.version()}, NOT verified (verify: false)"
            out.append(
                Finding(
                    section,
                    "TLS handshake",
                    OK if verify else WARN,
                    detail,
                    "" if verify else "turn verify back on in production",
                )
            )
            if der:
                out.append(_certificate_finding(der, ep, section))
            return out
    except ssl.SSLCertVerificationError as err:
        cert = _fetch_cert(ep, timeout)
        info = _describe_cert(cert) if cert else ""
        out.append(
            Finding(
                section,
                "TLS handshake",
                FAIL,
                f"certificate not accepted: {err.verify_message or err.reason}",
                _verify_hint(err, ep, ca_file, cert),
            )
        )
        if cert:
            out.append(
                Finding(
                    section,
                    "certificate",
                    WARN,
                    info,
                    "shown without verification, to help find the right CA",
                )
            )
        return out
    except ssl.SSLError as err:
        reason = err.reason or str(err)
        other = identify(ep.host, ep.port, timeout)
        if not other.is_ldap and other.kind not in ("silent", "closed", "unknown"):
            # Plain HTTP on an https:// port, sshd on the LDAPS port...: name it.
            out.append(_wrong_service(section, ep, other, timeout))
            return out
        hint = "the server's TLS settings and this host's do not match"
        plain = _speaks_plain_ldap(ep, timeout) if ep.scheme == "ldaps" else False
        if plain or "WRONG_VERSION_NUMBER" in reason or "record layer" in reason.lower():
            hint = (
                "this port does not speak TLS from the first byte"
                + (" (it answers plain LDAP)" if plain else "")
                + ": use ldap:// with StartTLS on it, or the LDAPS port (636) with ldaps://"
            )
        elif "EOF" in reason:
            hint = (
                "the server hung up during the TLS handshake: it may have no certificate "
                "configured, or this port does not speak TLS"
            )
        out.append(Finding(section, "TLS handshake", FAIL, f"TLS error: {reason}", hint))
    except OSError as err:
        out.append(
            Finding(
                section,
                "TLS handshake",
                FAIL,
                _oserror(err),
                "the server closed the connection during the TLS handshake",
            )
        )
    return out


def _speaks_plain_ldap(ep: NetEndpoint, timeout: float) -> bool:
    """True if host:port answers an LDAP request in plaintext (an ldaps:// URL on 389)."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as sock:
            problem = _starttls(sock, timeout)
    except OSError:
        return False
    return problem is None or "result code" in problem


def _verify_hint(
    err: ssl.SSLCertVerificationError, ep: NetEndpoint, ca_file: str | None, cert: Any
) -> str:
    code = getattr(err, "verify_code", None)
    issuer = _cert_field(cert, "issuer") if cert else "?"
    if code in (18, 19, 20, 21, 2):
        where = f"ca_file ({ca_file}) is not the CA" if ca_file else "no CA this host trusts"
        return (
            f"the certificate is signed by {issuer}, and {where} that signed it: set "
            "ca_file: to that CA's PEM file"
        )
    if code == 62 or "hostname" in str(err).lower() or "ip address mismatch" in str(err).lower():
        names = ", ".join(_cert_names(cert)) if cert else "?"
        return (
            f"the certificate is for {names}, not {ep.host}: connect with a name the "
            "certificate lists, or reissue the certificate with this name"
        )
    if code == 10:
        return "the server certificate has expired: renew it on the server"
    if code == 9:
        return "the certificate is not valid yet: check the clocks of both hosts"
    return "the server certificate cannot be verified with the configured CA"


def _fetch_cert(ep: NetEndpoint, timeout: float) -> Any:
    """The server certificate without verification (only to describe it)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as sock:
            if ep.tls == "starttls" and _starttls(sock, timeout):
                return None
            with ctx.wrap_socket(sock, server_hostname=ep.host) as tls:
                der = tls.getpeercert(binary_form=True)
    except OSError:
        return None
    return _load_cert(der) if der else None


def _load_cert(der: bytes) -> Any:
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography comes with exchangelib
        return None
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        return None


def _cert_field(cert: Any, which: str) -> str:
    name = cert.issuer if which == "issuer" else cert.subject
    return name.rfc4514_string() or "(empty)"


def _cert_names(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [_cert_field(cert, "subject")]
    names = [str(v) for v in san.get_values_for_type(x509.DNSName)]
    names += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    return names


def _not_after(cert: Any) -> _dt.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=_dt.UTC)
    return value


def _describe_cert(cert: Any) -> str:
    expires = _not_after(cert)
    days = (expires - _dt.datetime.now(_dt.UTC)).total_seconds() / 86400
    return (
        f"subject {_cert_field(cert, 'subject')}; issuer {_cert_field(cert, 'issuer')}; "
        f"names {', '.join(_cert_names(cert))}; expires {expires:%Y-%m-%d} "
        f"({'expired' if days < 0 else f'in {days:.0f} days'})"
    )


def _certificate_finding(der: bytes, ep: NetEndpoint, section: str) -> Finding:
    cert = _load_cert(der)
    if cert is None:
        return Finding(section, "certificate", SKIP, "cannot decode (cryptography missing)")
    days = (_not_after(cert) - _dt.datetime.now(_dt.UTC)).total_seconds() / 86400
    if days < EXPIRY_WARN_DAYS:
        return Finding(
            section,
            "certificate",
            WARN,
            _describe_cert(cert),
            f"expires in less than {EXPIRY_WARN_DAYS} days: renew it soon",
        )
    return Finding(section, "certificate", OK, _describe_cert(cert))


# ------------------------------------------------------------ connector checks
def _users(cfg: Any, conn_name: str) -> list[tuple[str, Any, Any]]:
    """(role, job, endpoint) of each job using the connection, sources first."""
    out = []
    for role in ("source", "target"):
        for job in cfg.jobs.values():
            end = getattr(job, role)
            if end.connection.name == conn_name:
                out.append((role, job, end))
    return out


def connector_checks(cfg: Any, conn: Any, *, timeout: float | None = None) -> list[Finding]:
    """Run the connector's Source.check()/Target.check() with the options of every job
    that uses the connection (each job's base DN, scope and limits are its own), each
    network operation bounded by ``timeout`` and each check as a whole by a few times it.

    A connection no job uses is checked with default options when the connector's
    option model has defaults for everything; otherwise that is said.
    """
    section = conn.name
    spec = conn.spec
    attempts: list[tuple[str, str, Any, Any]] = []  # (role, label, class, options)
    seen_options: set[tuple[str, str]] = set()
    for role, job, end in _users(cfg, conn.name):
        try:
            key = (role, end.options.model_dump_json())
        except Exception:  # options a JSON dump cannot show: check them anyway
            key = (role, f"{job.name}")
        if key in seen_options:
            continue  # a job with the same options as one checked: same answers
        seen_options.add(key)
        cls = spec.source_class if role == "source" else spec.target_class
        attempts.append(
            (
                role,
                f"as source of job {job.name}"
                if role == "source"
                else f"as target of job {job.name}",
                cls,
                (end.options, job.name),
            )
        )
    if not attempts:
        for role in ("source", "target"):
            cls = getattr(spec, f"{role}_class")
            model = getattr(spec, f"{role}_model")
            if cls is None or model is None:
                continue
            try:
                options = model.model_validate({}, context={"base_dir": cfg.path.parent})
            except Exception:
                continue
            attempts.append((role, f"as {role} (no job uses it)", cls, (options, "doctor")))
            break
    if not attempts:
        return [Finding(section, "connector checks", SKIP, "no job uses this connection", "")]
    out: list[Finding] = []
    conn_options = conn.options if timeout is None else with_timeout(conn.options, timeout)
    several = len({job for _, _, _, (_, job) in attempts}) > 1
    for role, label, cls, (options, job_name) in attempts:
        try:
            endpoint = cls(conn_options, options, job=job_name)
        except Exception as err:
            out.append(
                Finding(
                    section,
                    f"{role} set-up",
                    FAIL,
                    _first_line(err),
                    "the connection or job options are not usable",
                )
            )
            continue
        try:
            if timeout is None:
                results = endpoint.check()
            else:
                # Bind, rootDSE, base, paging, limits...: each bounded by the connector's
                # timeout; this bounds them together, should one ignore it.
                results = bounded(endpoint.check, timeout * CHECK_STEPS)
        except StepTimeout as err:
            results = [CheckResult(f"{role} checks", False, f"{err} (timed out)", "a hung server?")]
        except Exception as err:
            results = [CheckResult(f"{role} check", False, _first_line(err), "")]
        finally:
            with contextlib.suppress(Exception):
                endpoint.close()
        if not results:
            out.append(
                Finding(
                    section, f"{role} checks", SKIP, f"{spec.name} connector has no checks {label}"
                )
            )
        for res in results:
            name = res.name
            if several and name.startswith(JOB_SPECIFIC):
                name = f"{name} (job {job_name})"
            out.append(
                Finding(
                    section,
                    name,
                    OK if res.ok else FAIL,
                    res.detail,
                    "" if res.ok else _better_hint(res, conn),
                )
            )
    # A connection used both as a source and as a target is checked twice; the same
    # answer twice says nothing new.
    unique: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for f in out:
        if (f.check, f.status, f.detail) not in seen:
            seen.add((f.check, f.status, f.detail))
            unique.append(f)
    return unique


JOB_SPECIFIC = ("base DN", "size limit", "table", "folder", "address book")
"""Checks whose answer depends on the job's options: named with the job when a
connection serves several jobs."""
CHECK_STEPS = 6
"""A connector's checks together may take this many --timeout (bind, rootDSE, base...)."""


def _better_hint(res: CheckResult, conn: Any) -> str:
    """Sharpen a connector's hint from the message it gave (wrong password, CA, port)."""
    text = (res.detail or "").lower()
    secret = getattr(conn.options, "password", None)
    where = f" ({secret.describe()})" if secret is not None and hasattr(secret, "describe") else ""
    if (
        "invalid credentials" in text
        or "password authentication failed" in text
        or "401" in text
        or "unauthorized" in text
    ):
        return (
            f"the server refused the credentials: check the user/bind DN and the "
            f"password secret{where}"
        )
    if "certificate" in text:
        return "set ca_file: to the CA that signed the server certificate (or fix its name)"
    if "refused" in text:
        return "nothing listens there: check the URL's host and port"
    if "secret" in text and "not set" in text:
        return "the secret is missing in this environment (systemd: LoadCredential=)"
    return res.hint


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


# ----------------------------------------------------------------- everything
def check_state(cfg: Any) -> list[Finding]:
    """The state store: reachable, schema version."""
    from syncd.errors import UserError

    section = "state store"
    from syncd.state.store import StateNotReady

    try:
        # As a dry run: the doctor writes nothing, not even a new state file or schema.
        store = cfg.open_state(dry_run=True)
    except StateNotReady as err:
        return [Finding(section, "open", WARN, _first_line(err), "the next sync migrates it")]
    except UserError as err:
        return [
            Finding(
                section,
                "open",
                FAIL,
                _first_line(err),
                "check state.url and that the database server runs",
            )
        ]
    stand_in = getattr(store, "stands_in_for", None)
    if stand_in:
        store.close()
        return [
            Finding(
                section,
                "open",
                OK,
                f"{stand_in} does not exist yet (or has no tables): the first sync creates it",
            )
        ]
    try:
        return [
            Finding(section, "open", OK, f"{store.url}, schema version {store.schema_version()}")
        ]
    except Exception as err:
        return [Finding(section, "open", FAIL, _first_line(err), "")]
    finally:
        store.close()


def run_doctor(cfg: Any, connection: str | None = None, *, timeout: float = 5.0) -> list[Finding]:
    """All findings for one connection or for every connection (+ the state store).

    Raises ConfigError when ``connection`` names no connection.
    """
    if connection is not None and connection not in cfg.connections:
        known = ", ".join(sorted(cfg.connections)) or "none"
        raise ConfigError(f"{cfg.path}: no connection named {connection!r} (connections: {known})")
    names = [connection] if connection else sorted(cfg.connections)
    findings: list[Finding] = []
    if not connection:
        try:
            findings = bounded(lambda: check_state(cfg), timeout * 2)
        except StepTimeout as err:
            findings = [
                Finding("state store", "open", FAIL, f"{err} (timed out)", "check state.url")
            ]
    for name in names:
        conn = cfg.connections[name]
        ca = getattr(conn.options, "ca_file", None)
        verify = bool(getattr(conn.options, "verify", True))
        reachable_any = False
        eps = endpoints_of(conn.options)
        for ep in eps:
            found, reachable = check_endpoint(
                ep, name, ca_file=str(ca) if ca else None, verify=verify, timeout=timeout
            )
            findings.extend(found)
            reachable_any = reachable_any or reachable
        if eps and not reachable_any:
            findings.append(
                Finding(
                    name,
                    "connector checks",
                    SKIP,
                    "skipped: no server of this connection is reachable and answers as expected",
                )
            )
            continue
        findings.extend(connector_checks(cfg, conn, timeout=timeout))
    return findings


_MARKS = {
    OK: "[green]ok[/]",
    WARN: "[yellow]warn[/]",
    FAIL: "[bold red]FAIL[/]",
    SKIP: "[dim]skip[/]",
}


def print_report(findings: list[Finding], console: Any = None) -> None:
    """A rich table per section (connection / state store)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    sections: dict[str, list[Finding]] = {}
    for f in findings:
        sections.setdefault(f.section, []).append(f)
    for section, rows in sections.items():
        failed = sum(r.failed for r in rows)
        title = f"{section}: " + (f"[bold red]{failed} problem(s)[/]" if failed else "ok")
        table = Table(title=title, title_justify="left", show_lines=False, expand=False)
        table.add_column("check", no_wrap=True)
        table.add_column("result", no_wrap=True)
        table.add_column("detail", overflow="fold")
        table.add_column("hint", overflow="fold", style="cyan")
        for r in rows:
            table.add_row(
                escape(r.check), _MARKS.get(r.status, r.status), escape(r.detail), escape(r.hint)
            )
        console.print(table)
