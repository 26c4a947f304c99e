"""connect(): TLS verification, StartTLS, plaintext refusal, bind and reach errors,
against a real slapd on loopback."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from syncd.connectors.ldap.connection import LdapConnection, connect, is_loopback
from syncd.errors import ConnectionFailed
from tests.ldap.conftest import conn_cfg, non_loopback_ipv4
from tests.servers.ports import free_port
from tests.servers.slapd import ROOT_PW, Slapd
from tests.servers.tls import make_ca_and_cert

pytestmark = pytest.mark.slapd


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """One TLS slapd for the read-only tests of this module (key generation is slow)."""
    with Slapd(tmp_path_factory.mktemp("tls") / "slapd", tls=True) as server:
        yield server


def whoami(conn) -> str:
    try:
        return conn.extend.standard.who_am_i()
    finally:
        conn.unbind()


def test_ldaps_with_ca_file_verifies_and_binds(tls_server, root_pw_file):
    cfg = conn_cfg(tls_server, root_pw_file, url=tls_server.ldaps_url, ca_file=tls_server.ca_file)
    conn = connect(cfg)
    assert conn.server.ssl is True
    assert whoami(conn) == f"dn:{tls_server.root_dn}"


def test_starttls_with_ca_file(tls_server, root_pw_file):
    cfg = conn_cfg(tls_server, root_pw_file, start_tls=True, ca_file=tls_server.ca_file)
    conn = connect(cfg)
    assert conn.tls_started is True
    assert whoami(conn) == f"dn:{tls_server.root_dn}"


def test_localhost_name_matches_certificate(tls_server, root_pw_file):
    url = f"ldaps://localhost:{tls_server.ldaps_port}"
    conn = connect(conn_cfg(tls_server, root_pw_file, url=url, ca_file=tls_server.ca_file))
    assert whoami(conn) == f"dn:{tls_server.root_dn}"


@pytest.mark.parametrize("use_ldaps", [True, False], ids=["ldaps", "starttls"])
def test_untrusted_ca_is_refused(tls_server, root_pw_file, use_ldaps):
    # No ca_file: the system trust store does not know the private CA.
    kw = {"url": tls_server.ldaps_url} if use_ldaps else {"start_tls": True}
    with pytest.raises(ConnectionFailed) as err:
        connect(conn_cfg(tls_server, root_pw_file, **kw))
    assert "certificate" in str(err.value)
    assert "self-signed" in str(err.value) or "issuer" in str(err.value)


def test_other_ca_is_refused(tls_server, root_pw_file, tmp_path):
    other = make_ca_and_cert(tmp_path / "other", hosts=["127.0.0.1"])
    cfg = conn_cfg(tls_server, root_pw_file, url=tls_server.ldaps_url, ca_file=other["ca"])
    with pytest.raises(ConnectionFailed, match="certificate not accepted"):
        connect(cfg)


class WrongHostSlapd(Slapd):
    """A TLS slapd whose certificate names another host only."""

    def _make_tls(self):
        files = make_ca_and_cert(self.dir / "tls", hosts=["ldap.wrong.example"])
        self.ca_file = files["ca"]
        return files


@pytest.fixture(scope="module")
def wrong_host_slapd(tmp_path_factory):
    with WrongHostSlapd(tmp_path_factory.mktemp("wrong") / "slapd", tls=True) as server:
        yield server


@pytest.mark.parametrize("use_ldaps", [True, False], ids=["ldaps", "starttls"])
def test_wrong_host_name_is_refused(wrong_host_slapd, root_pw_file, use_ldaps):
    s = wrong_host_slapd
    kw = {"url": s.ldaps_url} if use_ldaps else {"start_tls": True}
    with pytest.raises(ConnectionFailed) as err:
        connect(conn_cfg(s, root_pw_file, ca_file=s.ca_file, **kw))
    assert "mismatch" in str(err.value) or "not valid for" in str(err.value)


def test_verify_false_connects_with_a_warning(wrong_host_slapd, root_pw_file, caplog):
    s = wrong_host_slapd
    with caplog.at_level(logging.WARNING, logger="syncd.connectors.ldap.connection"):
        conn = connect(conn_cfg(s, root_pw_file, url=s.ldaps_url, verify=False))
    assert whoami(conn) == f"dn:{s.root_dn}"
    assert "verification is OFF" in caplog.text


def test_plaintext_on_loopback_is_allowed(slapd, root_pw_file):
    conn = connect(conn_cfg(slapd, root_pw_file, start_tls=False))
    assert not conn.tls_started
    assert whoami(conn) == f"dn:{slapd.root_dn}"


class Listener:
    """A TCP listener that counts the connections it accepts (and closes them)."""

    def __init__(self, host: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(5)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def external_listener():
    """A listener on this machine's non-loopback address (traffic stays on this host)."""
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.fail("this machine has no non-loopback IPv4 address for the test")
    listener = Listener(ip)
    listener.ip = ip
    yield listener
    listener.close()


def test_plaintext_password_bind_to_non_loopback_is_refused_before_connecting(
    root_pw_file, external_listener
):
    url = f"ldap://{external_listener.ip}:{external_listener.port}"
    cfg = LdapConnection(
        url=url,
        bind_dn="cn=admin,dc=example,dc=com",
        password={"file": str(root_pw_file)},
        start_tls=False,
        timeout=2,
    )
    with pytest.raises(ConnectionFailed, match="refusing to send a password without TLS"):
        connect(cfg)
    time.sleep(0.3)
    assert external_listener.accepted == 0
    # A host *name* is refused too, before any name resolution.
    cfg = cfg.model_copy(update={"url": "ldap://ldap.example.invalid"})
    with pytest.raises(ConnectionFailed, match="refusing"):
        connect(cfg)


def test_allow_plaintext_connects_and_warns(root_pw_file, external_listener, caplog):
    url = f"ldap://{external_listener.ip}:{external_listener.port}"
    cfg = LdapConnection(
        url=url,
        bind_dn="cn=admin,dc=example,dc=com",
        password={"file": str(root_pw_file)},
        start_tls=False,
        allow_plaintext=True,
        timeout=2,
    )
    with caplog.at_level(logging.WARNING), pytest.raises(ConnectionFailed):
        connect(cfg)  # the listener hangs up: the point is that it was tried, with a warning
    assert "WITHOUT TLS" in caplog.text
    deadline = time.monotonic() + 2
    while external_listener.accepted == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert external_listener.accepted == 1


def test_wrong_password_is_one_clear_line_without_the_password(slapd, tmp_path):
    bad = "Wr0ng-Pa55word-xyz"
    pw = tmp_path / "bad.pw"
    pw.write_text(bad)
    with pytest.raises(ConnectionFailed) as err:
        connect(conn_cfg(slapd, pw))
    text = str(err.value)
    assert "invalid credentials" in text
    assert slapd.root_dn in text
    assert bad not in text and "\n" not in text


def test_empty_password_is_refused_before_binding(slapd, tmp_path):
    pw = tmp_path / "empty.pw"
    pw.write_text("\n")
    with pytest.raises(ConnectionFailed, match="is empty"):
        connect(conn_cfg(slapd, pw))


def test_unreachable_port(root_pw_file, slapd):
    port = free_port()
    with pytest.raises(ConnectionFailed, match="connection refused") as err:
        connect(conn_cfg(slapd, root_pw_file, url=f"ldap://127.0.0.1:{port}"))
    assert str(port) in str(err.value)
    assert ROOT_PW not in str(err.value)


def test_failover_to_the_next_url(slapd, root_pw_file):
    dead = f"ldap://127.0.0.1:{free_port()}"
    conn = connect(conn_cfg(slapd, root_pw_file, url=[dead, slapd.url]))
    assert conn.server.port == slapd.port
    assert whoami(conn) == f"dn:{slapd.root_dn}"


def test_all_urls_failing_lists_each(slapd, root_pw_file):
    a, b = free_port(), free_port()
    urls = [f"ldap://127.0.0.1:{a}", f"ldap://127.0.0.1:{b}"]
    with pytest.raises(ConnectionFailed) as err:
        connect(conn_cfg(slapd, root_pw_file, url=urls))
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_missing_ca_file_is_a_clear_error(slapd, root_pw_file, tmp_path):
    cfg = conn_cfg(slapd, root_pw_file, start_tls=True, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConnectionFailed, match=r"ca_file .* does not exist"):
        connect(cfg)


def test_server_without_tls_refuses_starttls(slapd, root_pw_file):
    with pytest.raises(ConnectionFailed, match="StartTLS"):
        connect(conn_cfg(slapd, root_pw_file, start_tls=True))


# ---- config model ---------------------------------------------------------------------


def test_ca_file_is_relative_to_the_config_dir(tmp_path):
    cfg = LdapConnection.model_validate(
        {"url": "ldaps://ldap.example.com", "ca_file": "certs/ca.pem"},
        context={"base_dir": tmp_path},
    )
    assert cfg.ca_file == tmp_path / "certs" / "ca.pem"
    absolute = LdapConnection.model_validate(
        {"url": "ldaps://ldap.example.com", "ca_file": "/etc/ssl/ca.pem"},
        context={"base_dir": tmp_path},
    )
    assert absolute.ca_file == Path("/etc/ssl/ca.pem")


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"url": "http://ldap.example.com"}, "ldap:// or ldaps://"),
        ({"url": "ldap://"}, "no host"),
        ({"url": "ldap://user:pw@host"}, "credentials"),
        ({"url": []}, "at least one"),
        ({"url": "ldap://h", "password": {"env": "X"}}, "bind_dn is not"),
        ({"url": "ldap://h", "bind_dn": "cn=a"}, "password is not"),
        ({"url": "ldap://h", "bind_dn": "cn=a", "password": "inline"}, "may not be written"),
        ({"url": "ldap://h", "sasl": "x"}, "Extra inputs"),
        ({"url": "ldap://h", "timeout": 0}, "greater than"),
        ({"url": "ldap://h", "bind_dn": "not a dn", "password": {"env": "X"}}, "not a DN"),
    ],
)
def test_bad_connection_config(data, fragment):
    with pytest.raises(ValidationError, match=fragment):
        LdapConnection.model_validate(data)


def test_describe_has_no_secret():
    cfg = LdapConnection(url="ldaps://h", bind_dn="cn=a", password={"env": "LDAP_PW"})
    assert "LDAP_PW" not in cfg.describe() and "cn=a" in cfg.describe()


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.5.0.1") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("192.0.2.2") and not is_loopback("ldap.example.com")
    assert not is_loopback("localhost.example.com")


class SelfSignedSlapd(Slapd):
    """A TLS slapd whose certificate is its own issuer (no CA)."""

    def _make_tls(self):
        d = self.dir / "tls"
        d.mkdir(parents=True, exist_ok=True)
        key, cert = d / "self.key", d / "self.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        key.chmod(0o644)
        self.ca_file = str(cert)
        return {"ca": str(cert), "cert": str(cert), "key": str(key)}


def test_self_signed_certificate_is_refused_unless_pinned(tmp_path, root_pw_file):
    with SelfSignedSlapd(tmp_path / "slapd", tls=True) as s:
        with pytest.raises(ConnectionFailed, match="self-signed certificate"):
            connect(conn_cfg(s, root_pw_file, url=s.ldaps_url))
        # Trusting exactly that certificate (ca_file) is an explicit, verified choice.
        conn = connect(conn_cfg(s, root_pw_file, url=s.ldaps_url, ca_file=s.ca_file))
        assert whoami(conn) == f"dn:{s.root_dn}"


@pytest.mark.parametrize("start_tls", [False, True])
def test_silent_server_times_out(root_pw_file, start_tls):
    with socket.socket() as silent:  # accepts (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        cfg = LdapConnection(
            url=url,
            bind_dn="cn=admin,dc=example,dc=com",
            password={"file": str(root_pw_file)},
            start_tls=start_tls,
            timeout=1,
        )
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match="timed out"):
            connect(cfg)
        assert time.monotonic() - started < 5
