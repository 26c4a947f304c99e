"""Sign-in with the real msal library against the emulator's token endpoint: client
secret, certificate (the emulator verifies the assertion's signature and thumbprint),
refused credentials and untrusted TLS, all without leaking a secret."""

from __future__ import annotations

import logging

import pytest

from syncd.connectors.graph.auth import TokenSource, token_roles
from syncd.errors import ConnectionFailed
from tests.servers.fixtures_graph import graph_connection, make_client_certificate, write_secret
from tests.servers.graph_emulator import GraphEmulator, thumbprint_sha1


def test_secret_sign_in_and_token_cache(graph_server, tmp_path):
    src = TokenSource(graph_connection(graph_server, tmp_path))
    tok = src.token()
    assert token_roles(tok) == ["Contacts.ReadWrite", "User.Read.All", "GroupMember.Read.All"]
    assert src.token() == tok  # msal answers from its cache
    assert graph_server.token_requests == 1
    assert src.token(refresh=True)
    assert graph_server.token_requests == 2


def test_wrong_secret_is_refused_without_echo(graph_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    src = TokenSource(graph_connection(graph_server, tmp_path, secret="Not-The-S3cret"))
    with pytest.raises(ConnectionFailed) as err:
        src.token()
    assert "invalid_client" in str(err.value)
    assert "Not-The-S3cret" not in str(err.value)
    assert "Not-The-S3cret" not in caplog.text
    assert graph_server.client_secret not in caplog.text


@pytest.fixture
def cert_server(graph_tls, tmp_path):
    key_pem, cert_pem = make_client_certificate(tmp_path)
    emu = GraphEmulator(graph_tls, client_secret="", certificate=cert_pem).start()
    try:
        yield emu, key_pem, cert_pem
    finally:
        emu.stop()


def test_certificate_sign_in_sha256(cert_server, tmp_path):
    emu, key_pem, cert_pem = cert_server
    (tmp_path / "app.pem").write_text(cert_pem)
    cert = {
        "private_key": write_secret(tmp_path, "app.key", key_pem),
        "certificate_file": str(tmp_path / "app.pem"),
    }
    tok = TokenSource(graph_connection(emu, tmp_path, certificate=cert)).token()
    assert "Contacts.ReadWrite" in token_roles(tok)


def test_certificate_sign_in_sha1_thumbprint(cert_server, tmp_path):
    emu, key_pem, cert_pem = cert_server
    cert = {
        "private_key": write_secret(tmp_path, "app.key", key_pem),
        "thumbprint": thumbprint_sha1(cert_pem),
    }
    assert TokenSource(graph_connection(emu, tmp_path, certificate=cert)).token()


def test_certificate_of_another_key_is_refused(cert_server, tmp_path):
    emu, _key, cert_pem = cert_server
    other_key, _other_cert = make_client_certificate(tmp_path)
    (tmp_path / "app.pem").write_text(cert_pem)  # the registered certificate...
    cert = {  # ...but signed with a key that is not its own
        "private_key": write_secret(tmp_path, "other.key", other_key),
        "certificate_file": str(tmp_path / "app.pem"),
    }
    with pytest.raises(ConnectionFailed) as err:
        TokenSource(graph_connection(emu, tmp_path, certificate=cert)).token()
    assert "invalid_client" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value)


def test_untrusted_tls_is_refused(graph_server, tmp_path):
    conn = graph_connection(graph_server, tmp_path, ca_file=None)
    with pytest.raises(ConnectionFailed) as err:
        TokenSource(conn).token()
    assert "TLS" in str(err.value)
    assert graph_server.token_requests == 0
