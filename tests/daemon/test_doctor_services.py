"""`syncd doctor`: a port that answers another protocol is named (HTTP, SSH), --timeout
bounds every step, every job's base DN is checked, and a bind DN whose size limit is
smaller than the job's scope is reported (issue 11 item 9)."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from syncd.config import load_config
from syncd.doctor import run_doctor
from tests.servers import slapd as slapd_mod
from tests.servers.slapd import Slapd

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def _config(
    tmp_path: Path,
    url: str,
    *,
    start_tls: bool = False,
    bases=None,
    timeout=30,
    bind_dn="cn=admin,dc=example,dc=com",
) -> Path:
    shutil.copy(MAPPINGS / "inventory-openldap-device.yaml", tmp_path / "inv.yaml")
    jobs = ""
    for i, base in enumerate(bases or ["ou=devices,dc=example,dc=com"]):
        jobs += (
            f"  job{i}:\n"
            f"    source: {{connection: dir, base: '{base}', filter: '(objectClass=device)'}}\n"
            "    mapping: inv.yaml\n"
            f"    target: {{connection: db, table: t{i}}}\n"
        )
    path = tmp_path / "syncd.yaml"
    path.write_text(
        "version: 1\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        "connections:\n"
        "  dir:\n"
        "    type: ldap\n"
        f"    url: {url}\n"
        f"    bind_dn: {bind_dn}\n"
        "    password: {env: SYNCD_TEST_LDAP_PW}\n"
        f"    start_tls: {'true' if start_tls else 'false'}\n"
        f"    timeout: {timeout}\n"
        "  db: {type: sql, url: 'sqlite:///inventory.db'}\n"
        "jobs:\n" + jobs
    )
    return path


class _Server:
    """A loopback TCP server running ``handle(conn)`` per connection in threads."""

    def __init__(self, handle):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn):
        try:
            self.handle(conn)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def http_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def ssh_port():
    def banner(conn):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        conn.settimeout(30)
        while conn.recv(4096):
            pass

    server = _Server(banner)
    yield server.port
    server.close()


@pytest.fixture
def ldap_pw(monkeypatch):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", slapd_mod.ROOT_PW)


@pytest.mark.parametrize("start_tls", [False, True])
def test_an_http_server_on_the_ldap_port_is_named(tmp_path, http_port, ldap_pw, start_tls):
    cfg = load_config(_config(tmp_path, f"ldap://127.0.0.1:{http_port}", start_tls=start_tls))
    findings = [f for f in run_doctor(cfg, "dir", timeout=2)]
    failed = [f for f in findings if f.failed]
    assert failed, findings
    assert "HTTP server" in failed[0].detail, failed
    assert "not an LDAP server" in failed[0].hint


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_an_ssh_server_is_named_with_its_banner(tmp_path, ssh_port, ldap_pw, scheme):
    cfg = load_config(_config(tmp_path, f"{scheme}://127.0.0.1:{ssh_port}"))
    failed = [f for f in run_doctor(cfg, "dir", timeout=2) if f.failed]
    assert failed
    assert any(
        "SSH server" in f.detail + f.hint and "OpenSSH_9.2p1" in f.detail + f.hint for f in failed
    ), failed


def _ldap_then_silence(conn):
    """Answers the first LDAP request (StartTLS: protocolError, i.e. "no TLS here") like
    an LDAP server, then never answers again (a hung server behind a load balancer)."""
    conn.settimeout(60)
    first = conn.recv(4096)
    if first[:1] == b"\x30" and b"1.3.6.1.4.1.1466.20037" in first:
        # LDAPMessage { messageID 1, extendedResp { resultCode protocolError(2), "", "" } }
        conn.sendall(b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x02\x04\x00\x04\x00")
    while conn.recv(4096):
        pass


def test_timeout_bounds_every_step(tmp_path, ldap_pw):
    server = _Server(_ldap_then_silence)
    try:
        # The connection's own timeout is 30 s: only doctor's --timeout can end it soon.
        cfg = load_config(_config(tmp_path, f"ldap://127.0.0.1:{server.port}", timeout=30))
        started = time.monotonic()
        findings = run_doctor(cfg, "dir", timeout=1)
        took = time.monotonic() - started
    finally:
        server.close()
    failed = [f for f in findings if f.failed]
    assert failed and any("timed out" in f.detail or "within 1" in f.detail for f in failed)
    assert took < 15, f"doctor --timeout 1 took {took:.1f}s"


def test_every_jobs_base_dn_is_checked(tmp_path, slapd, ldap_pw):
    cfg = load_config(
        _config(
            tmp_path,
            slapd.url,
            bases=["ou=devices,dc=example,dc=com", "ou=nowhere,dc=example,dc=com"],
        )
    )
    bases = [f for f in run_doctor(cfg, "dir") if f.check.startswith("base DN")]
    assert [f.status for f in bases] == ["ok", "fail"], bases
    assert "job0" in bases[0].check and "job1" in bases[1].check
    assert "ou=nowhere" in bases[1].detail


DEVICES = "".join(
    f"dn: cn=dev{i},ou=devices,dc=example,dc=com\nobjectClass: device\ncn: dev{i}\n\n"
    for i in range(10)
)
LIMITED = (
    "dn: cn=limited,dc=example,dc=com\nobjectClass: organizationalRole\n"
    "objectClass: simpleSecurityObject\ncn: limited\nuserPassword: limited-pw\n\n"
)


@pytest.fixture
def slapd_limited(tmp_path, monkeypatch):
    """A slapd where cn=limited may read 3 entries per search (paged or not)."""
    plain = slapd_mod.slapd_conf

    def conf(*args, **kwargs):
        # Limits match in order: this one must come before the general "users" one.
        return plain(*args, **kwargs).replace(
            "limits users",
            'limits dn.exact="cn=limited,dc=example,dc=com" size=3 size.pr=noEstimate '
            "size.prtotal=3\nlimits users",
        )

    monkeypatch.setattr(slapd_mod, "slapd_conf", conf)
    with Slapd(tmp_path / "slapd", ldif=DEVICES + LIMITED) as server:
        yield server


def test_a_size_limit_smaller_than_the_jobs_scope_is_reported(tmp_path, slapd_limited, monkeypatch):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", "limited-pw")
    cfg = load_config(_config(tmp_path, slapd_limited.url, bind_dn="cn=limited,dc=example,dc=com"))
    findings = run_doctor(cfg, "dir")
    assert [f.status for f in findings if f.check == "bind"] == ["ok"]
    (scope,) = [f for f in findings if f.check.startswith("size limit")]
    assert scope.failed and "after 3 entries" in scope.detail
    assert "cn=limited,dc=example,dc=com" in scope.detail and "limits" in scope.hint


def test_an_unlimited_bind_reads_the_whole_scope(tmp_path, slapd_limited, ldap_pw):
    cfg = load_config(_config(tmp_path, slapd_limited.url))
    (scope,) = [f for f in run_doctor(cfg, "dir") if f.check.startswith("size limit")]
    assert scope.status == "ok" and "10 entries" in scope.detail
