"""`syncd doctor` against a real slapd (plain, StartTLS, LDAPS) and a real state store.

Each classic mistake gets the right hint: wrong CA, wrong port, wrong password,
a TLS URL on a plaintext port, an unknown host.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from syncd.cli_daemon import doctor_command
from syncd.config import load_config
from syncd.doctor import NetEndpoint, endpoints_of, run_doctor
from tests.servers.ports import free_port

pytestmark = pytest.mark.slapd

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


@click.group()
@click.option("-c", "--config", "config_path")
@click.pass_context
def group(ctx, config_path):
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


group.add_command(doctor_command)


def _config(
    tmp_path: Path,
    url: str,
    *,
    ca_file: str | None = None,
    start_tls: bool = False,
    password_env: str = "SYNCD_TEST_LDAP_PW",
) -> Path:
    shutil.copy(MAPPINGS / "inventory-openldap-device.yaml", tmp_path / "inv.yaml")
    ca = f"    ca_file: {ca_file}\n" if ca_file else ""
    path = tmp_path / "syncd.yaml"
    path.write_text(
        "version: 1\n"
        f"state: {{url: 'sqlite:///{tmp_path / 'state.db'}'}}\n"
        "connections:\n"
        "  dir:\n"
        "    type: ldap\n"
        f"    url: {url}\n"
        "    bind_dn: cn=admin,dc=example,dc=com\n"
        f"    password: {{env: {password_env}}}\n"
        f"    start_tls: {'true' if start_tls else 'false'}\n"
        f"{ca}"
        "    timeout: 5\n"
        "  db: {type: sql, url: 'sqlite:///inventory.db'}\n"
        "jobs:\n"
        "  inventory:\n"
        "    source: {connection: dir, base: 'ou=devices,dc=example,dc=com',\n"
        "             filter: '(objectClass=device)'}\n"
        "    mapping: inv.yaml\n"
        "    target: {connection: db, table: devices}\n"
    )
    return path


def _rows(findings, check_prefix: str):
    return [f for f in findings if f.check.startswith(check_prefix)]


@pytest.fixture
def ldap_pw(monkeypatch, slapd_server):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", slapd_server.root_pw)


@pytest.fixture
def slapd_server(slapd_tls):
    return slapd_tls


def test_all_green_over_ldaps_with_the_right_ca(tmp_path, slapd_tls, ldap_pw):
    cfg = load_config(_config(tmp_path, slapd_tls.ldaps_url, ca_file=slapd_tls.ca_file))
    findings = run_doctor(cfg)
    failed = [f for f in findings if f.failed]
    assert not failed, failed
    checks = {f.check: f for f in findings if f.section == "dir"}
    assert "resolve 127.0.0.1" in checks
    assert checks[f"TCP 127.0.0.1:{slapd_tls.ldaps_port}"].status == "ok"
    assert "verified against CA" in checks["TLS handshake"].detail
    cert = checks["certificate"]
    assert "issuer CN=syncd test CA" in cert.detail and "127.0.0.1" in cert.detail
    assert checks["reach and TLS"].status == "ok" and checks["bind"].status == "ok"
    assert "OpenLDAP" in checks["rootDSE"].detail
    assert checks["base DN"].status == "ok"
    assert checks["paged results control"].status == "ok"
    assert "syncrepl" in checks["change tracking"].detail
    # The state store and the SQL target were checked too.
    assert any(f.section == "state store" and f.status == "ok" for f in findings)
    assert any(f.section == "db" for f in findings)


def test_starttls_on_389(tmp_path, slapd_tls, ldap_pw):
    cfg = load_config(_config(tmp_path, slapd_tls.url, ca_file=slapd_tls.ca_file, start_tls=True))
    findings = run_doctor(cfg, "dir")
    by = {f.check: f for f in findings}
    assert by["StartTLS"].status == "ok"
    assert by["TLS handshake"].status == "ok"
    assert not [f for f in findings if f.failed]


def test_wrong_ca_is_named_with_the_issuer(tmp_path, slapd_tls, ldap_pw):
    from tests.servers.tls import make_ca_and_cert

    other = make_ca_and_cert(tmp_path / "other-ca", hosts=["127.0.0.1"])
    cfg = load_config(_config(tmp_path, slapd_tls.ldaps_url, ca_file=other["ca"]))
    findings = run_doctor(cfg, "dir")
    (tls,) = _rows(findings, "TLS handshake")
    assert tls.failed and "certificate not accepted" in tls.detail
    assert "signed by CN=syncd test CA" in tls.hint and "ca_file" in tls.hint
    # The certificate is still described, to help find the right CA.
    (cert,) = _rows(findings, "certificate")
    assert "issuer CN=syncd test CA" in cert.detail
    # The connector's own connect fails the same way, with the same advice.
    (reach,) = _rows(findings, "reach and TLS")
    assert reach.failed and "ca_file" in reach.hint


def test_wrong_port_says_nothing_listens(tmp_path, slapd, ldap_pw_plain):
    port = free_port()
    cfg = load_config(_config(tmp_path, f"ldap://127.0.0.1:{port}"))
    findings = run_doctor(cfg, "dir")
    (tcp,) = _rows(findings, "TCP")
    assert tcp.failed and "refused" in tcp.detail.lower()
    assert f"nothing listens on 127.0.0.1:{port}" in tcp.hint and "389" in tcp.hint
    # The connector checks are skipped rather than failing again for the same reason.
    assert [f.status for f in findings if f.check == "connector checks"] == ["skip"]


def test_wrong_password_points_at_the_secret(tmp_path, slapd, monkeypatch):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", "not-the-password")
    cfg = load_config(_config(tmp_path, slapd.url))
    findings = run_doctor(cfg, "dir")
    (bind,) = [f for f in findings if f.check == "bind"]
    assert bind.failed and "invalid credentials" in bind.detail
    assert "environment variable SYNCD_TEST_LDAP_PW" in bind.hint
    assert "not-the-password" not in json.dumps([f.__dict__ for f in findings])
    # The network part was fine.
    assert all(f.status == "ok" for f in findings if f.check.startswith(("resolve", "TCP")))


def test_ldaps_url_on_the_plaintext_port(tmp_path, slapd, ldap_pw_plain):
    port = slapd.url.rsplit(":", 1)[1]
    cfg = load_config(_config(tmp_path, f"ldaps://127.0.0.1:{port}"))
    (tls,) = _rows(run_doctor(cfg, "dir"), "TLS handshake")
    assert tls.failed
    assert "does not speak TLS" in tls.hint


def test_starttls_refused_by_a_server_without_tls(tmp_path, slapd, ldap_pw_plain):
    cfg = load_config(_config(tmp_path, slapd.url, start_tls=True))
    (st,) = _rows(run_doctor(cfg, "dir"), "StartTLS")
    assert st.failed and "StartTLS refused" in st.detail
    assert "does not offer TLS" in st.hint


def test_unknown_host(tmp_path, slapd, ldap_pw_plain):
    cfg = load_config(_config(tmp_path, "ldap://no-such-host.invalid:389"))
    (dns,) = _rows(run_doctor(cfg, "dir", timeout=2), "resolve")
    assert dns.failed and "does not resolve" in dns.hint


@pytest.fixture
def ldap_pw_plain(monkeypatch, slapd):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", slapd.root_pw)


def test_cli_exit_codes_and_table(tmp_path, slapd, monkeypatch):
    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", slapd.root_pw)
    config = _config(tmp_path, slapd.url)
    runner = CliRunner()
    ok = runner.invoke(group, ["-c", str(config), "doctor", "dir"])
    assert ok.exit_code == 0, ok.output
    assert "dir: ok" in ok.output and "bind" in ok.output and "rootDSE" in ok.output

    monkeypatch.setenv("SYNCD_TEST_LDAP_PW", "wrong")
    bad = runner.invoke(group, ["-c", str(config), "doctor", "--json", "dir"])
    assert bad.exit_code == 1
    rows = json.loads(bad.stdout)
    assert any(r["check"] == "bind" and r["status"] == "fail" for r in rows)

    unknown = runner.invoke(group, ["-c", str(config), "doctor", "nope"])
    assert unknown.exit_code == 2
    assert "no connection named 'nope' (connections: db, dir)" in unknown.output


def test_endpoints_from_connection_urls():
    from types import SimpleNamespace

    eps = endpoints_of(
        SimpleNamespace(url=["ldap://a.example:3389", "ldaps://b.example"], start_tls=True)
    )
    assert eps == [
        NetEndpoint("ldap://a.example:3389", "ldap", "a.example", 3389, "starttls"),
        NetEndpoint("ldaps://b.example:636", "ldaps", "b.example", 636, "tls"),
    ]
    (pg,) = endpoints_of(SimpleNamespace(url="postgresql+psycopg://u:pw@db.example/x"))
    assert (pg.host, pg.port, pg.tls) == ("db.example", 5432, "none")
    assert "pw" not in pg.url
    assert endpoints_of(SimpleNamespace(url="sqlite:///x.db")) == []
    (https,) = endpoints_of(SimpleNamespace(service_endpoint="https://mail.example/EWS"))
    assert (https.port, https.tls) == (443, "tls")


class _WrongNameSlapd:
    """A real slapd whose certificate names another host (wrong.example)."""

    def __new__(cls, directory):
        from tests.servers.slapd import Slapd
        from tests.servers.tls import make_ca_and_cert

        class WrongName(Slapd):
            def _make_tls(self):
                files = make_ca_and_cert(self.dir / "tls", hosts=["wrong.example"])
                self.ca_file = files["ca"]
                return files

        return WrongName(directory, tls=True)


def test_certificate_for_another_host_names_both(tmp_path, monkeypatch):
    with _WrongNameSlapd(tmp_path / "slapd") as server:
        monkeypatch.setenv("SYNCD_TEST_LDAP_PW", server.root_pw)
        cfg = load_config(_config(tmp_path, server.ldaps_url, ca_file=server.ca_file))
        findings = run_doctor(cfg, "dir")
    (tls,) = _rows(findings, "TLS handshake")
    assert tls.failed and "mismatch" in tls.detail.lower()
    assert "the certificate is for wrong.example, not 127.0.0.1" in tls.hint
