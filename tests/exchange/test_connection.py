"""Exchange connection settings: TLS verification against an https emulator, plaintext
refusal, auth settings, secrets; and the connector's registration."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from syncd.connectors.exchange import CONNECTOR, ExchangeConnection, ExchangeTarget
from syncd.contracts import Action, ActionKind
from syncd.errors import ConnectionFailed
from tests.servers.ews_emulator import EwsEmulator
from tests.servers.fixtures_ews import exchange_target
from tests.servers.tls import make_ca_and_cert

BASE = {
    "endpoint": "https://mail.example.com/EWS/Exchange.asmx",
    "username": "EXAMPLE\\svc",
    "password": {"env": "EWS_PW"},
    "mailbox": "book@example.com",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    good = tmp_path_factory.mktemp("pki-good")
    other = tmp_path_factory.mktemp("pki-other")
    files = make_ca_and_cert(good, hosts=["127.0.0.1", "localhost"])
    files["other_ca"] = make_ca_and_cert(other, hosts=["127.0.0.1"])["ca"]
    return files


@pytest.fixture
def https_server(pki):
    emu = EwsEmulator(tls={"cert": pki["cert"], "key": pki["key"]}).start()
    yield emu
    emu.stop()


def _one_contact(target) -> bool:
    res = target.apply([Action(ActionKind.CREATE, "s1", "k1", {"display_name": "Tls Test"})])
    return res[0].ok


def test_tls_verified_with_ca_file(https_server, pki, tmp_path):
    t = exchange_target(https_server, tmp_path, connection={"ca_file": pki["ca"]})
    t.open()
    assert _one_contact(t)
    assert len(https_server.items_in("Contacts/Company Directory")) == 1


def test_tls_untrusted_certificate_is_refused(https_server, pki, tmp_path):
    t = exchange_target(https_server, tmp_path)  # system trust store: our CA is unknown
    with pytest.raises(ConnectionFailed, match=r"TLS|certificate"):
        t.open()
    t2 = exchange_target(https_server, tmp_path, connection={"ca_file": pki["other_ca"]})
    with pytest.raises(ConnectionFailed, match=r"TLS|certificate"):
        t2.open()
    assert https_server.operations.total() == 0


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_verify_off_works_and_warns(https_server, tmp_path, caplog):
    t = exchange_target(https_server, tmp_path, connection={"verify": False})
    with caplog.at_level(logging.WARNING):
        t.open()
    assert _one_contact(t)
    assert "verification is OFF" in caplog.text


def test_plain_http_only_to_loopback():
    with pytest.raises(ValidationError, match="clear text"):
        ExchangeConnection.model_validate({**BASE, "endpoint": "http://mail.example.com/EWS"})
    ok = ExchangeConnection.model_validate(
        {**BASE, "endpoint": "http://mail.example.com/EWS", "allow_plaintext": True}
    )
    assert ok.allow_plaintext
    assert ExchangeConnection.model_validate({**BASE, "endpoint": "http://127.0.0.1:8080/EWS"})
    with pytest.raises(ValidationError, match="https"):
        ExchangeConnection.model_validate({**BASE, "endpoint": "ftp://mail.example.com/"})
    with pytest.raises(ValidationError, match="credentials do not belong"):
        ExchangeConnection.model_validate({**BASE, "endpoint": "https://u:p@mail.example.com/"})


def test_auth_settings():
    with pytest.raises(ValidationError, match="secrets may not be written"):
        ExchangeConnection.model_validate({**BASE, "password": "inline-secret"})
    with pytest.raises(ValidationError, match="needs username and password"):
        ExchangeConnection.model_validate({**BASE, "password": None})
    with pytest.raises(ValidationError, match="oauth block"):
        ExchangeConnection.model_validate({**BASE, "auth": "oauth", "password": None})
    oauth = ExchangeConnection.model_validate(
        {
            **BASE,
            "auth": "oauth",
            "username": None,
            "password": None,
            "oauth": {"client_id": "cid", "tenant_id": "tid", "client_secret": {"env": "X"}},
        }
    )
    assert "cid" in oauth.describe()
    with pytest.raises(ValidationError, match="extra"):
        ExchangeConnection.model_validate({**BASE, "autodiscover": True})
    with pytest.raises(ValidationError, match="e-mail address"):
        ExchangeConnection.model_validate({**BASE, "mailbox": "book"})


def test_oauth_credentials_are_built_without_a_request(monkeypatch):
    from syncd.connectors.exchange.client import make_account

    monkeypatch.setenv("EWS_CLIENT_SECRET", "very-secret-value")
    conn = ExchangeConnection.model_validate(
        {
            **BASE,
            "auth": "oauth",
            "username": None,
            "password": None,
            "oauth": {
                "client_id": "cid",
                "tenant_id": "tid",
                "client_secret": {"env": "EWS_CLIENT_SECRET"},
            },
        }
    )
    account = make_account(conn)
    assert account.protocol.credentials.client_id == "cid"
    assert account.protocol.credentials.tenant_id == "tid"
    assert "very-secret-value" not in repr(conn) and "very-secret-value" not in conn.describe()


def test_missing_secret_is_a_clear_error(ews_server, tmp_path, monkeypatch):
    from syncd.errors import SecretError

    t = exchange_target(
        ews_server, tmp_path, connection={"password": {"env": "NOT_SET_ANYWHERE_X"}}
    )
    monkeypatch.delenv("NOT_SET_ANYWHERE_X", raising=False)
    with pytest.raises(SecretError, match="NOT_SET_ANYWHERE_X"):
        t.open()


def test_connector_spec_and_registry():
    from syncd import registry

    assert CONNECTOR.name == "exchange"
    assert CONNECTOR.target_class is ExchangeTarget
    assert CONNECTOR.source_class is None
    assert "exchange" in registry.available()
    assert registry.get("exchange").target_class is ExchangeTarget


def test_doctor_check(ews_server, tmp_path):
    t = exchange_target(ews_server, tmp_path, folder="Contacts/Not There")
    login, folder = t.check()
    assert login.ok and login.name == "exchange login"
    assert not folder.ok and "does not exist" in folder.detail and folder.hint
    assert ews_server.folder_by_path("Contacts/Not There") is None  # check creates nothing
    ews_server.make_folder("Contacts/Not There")
    assert [r.ok for r in t.check()] == [True, True]
    bad = exchange_target(ews_server, tmp_path, password="wrong-Pw-1")
    [res] = bad.check()
    assert not res.ok and "401" in res.detail and "wrong-Pw-1" not in res.detail
    assert "password" in res.hint
