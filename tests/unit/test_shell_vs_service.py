"""A root shell sees what the service sees: credentials in systemd's credential stores,
and the same default state store as the daemon (issue 11 item 7)."""

from __future__ import annotations

import textwrap

import pytest

from syncd import config as config_mod
from syncd import secrets as secrets_mod
from syncd.config import load_config
from syncd.errors import SecretError
from syncd.secrets import SecretRef


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Private stand-ins for /etc/credstore, /run/credstore and the encrypted ones."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    dirs = {n: tmp_path / n for n in ("etc", "run", "etc.encrypted", "run.encrypted")}
    for d in dirs.values():
        d.mkdir()
    monkeypatch.setattr(secrets_mod, "CREDSTORE_DIRS", (dirs["etc"], dirs["run"]))
    monkeypatch.setattr(
        secrets_mod, "ENCRYPTED_CREDSTORE_DIRS", (dirs["etc.encrypted"], dirs["run.encrypted"])
    )
    return dirs


def test_credential_from_the_credentials_directory_wins(stores, tmp_path, monkeypatch):
    service = tmp_path / "service"
    service.mkdir()
    (service / "ldap").write_text("from-service\n")
    (stores["etc"] / "ldap").write_text("from-etc\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(service))
    assert SecretRef(credential="ldap").reveal() == "from-service"


def test_credential_found_in_etc_credstore_from_a_shell(stores):
    (stores["etc"] / "ldap").write_text("pw-etc\n")
    (stores["run"] / "ldap").write_text("pw-run\n")
    assert SecretRef(credential="ldap").reveal() == "pw-etc"


def test_credential_found_in_run_credstore(stores):
    (stores["run"] / "ldap").write_text("pw-run\n")
    assert SecretRef(credential="ldap").reveal() == "pw-run"


def test_missing_credential_names_every_place_searched(stores):
    with pytest.raises(SecretError) as info:
        SecretRef(credential="ldap").reveal()
    msg = str(info.value)
    assert "$CREDENTIALS_DIRECTORY is not set" in msg
    assert str(stores["etc"] / "ldap") in msg and str(stores["run"] / "ldap") in msg


def test_encrypted_credential_is_named_as_unreadable_without_systemd_creds(stores):
    (stores["etc.encrypted"] / "ldap").write_bytes(b"\x00binary-ciphertext")
    with pytest.raises(SecretError) as info:
        SecretRef(credential="ldap").reveal()
    msg = str(info.value)
    assert str(stores["etc.encrypted"] / "ldap") in msg
    assert "encrypted" in msg and "systemd-creds" in msg
    assert "ciphertext" not in msg


def test_credential_names_cannot_climb_out_of_the_store(stores, tmp_path):
    (tmp_path / "outside").write_text("not a credential")
    with pytest.raises(ValueError):
        SecretRef(credential="../outside")


CONFIG = """\
version: 1
connections:
  db: {type: sql, url: "sqlite:///inv.db"}
"""


def _system_layout(tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "syncd"
    lib = tmp_path / "var" / "lib" / "syncd"
    etc.mkdir(parents=True)
    lib.mkdir(parents=True)
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG_DIR", etc)
    monkeypatch.setattr(config_mod, "SYSTEM_STATE_DIR", lib)
    path = etc / "syncd.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return path, lib


def test_default_state_url_is_the_same_for_shell_and_daemon(tmp_path, monkeypatch):
    path, lib = _system_layout(tmp_path, monkeypatch)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    shell = load_config(path).state_url
    monkeypatch.setenv("STATE_DIRECTORY", str(lib))  # what StateDirectory=syncd sets
    daemon = load_config(path).state_url
    assert shell == daemon == f"sqlite:///{lib / 'state.db'}"


def test_a_config_elsewhere_keeps_its_state_beside_it(tmp_path, monkeypatch):
    _system_layout(tmp_path, monkeypatch)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    own = tmp_path / "project"
    own.mkdir()
    (own / "syncd.yaml").write_text(CONFIG)
    assert load_config(own / "syncd.yaml").state_url == f"sqlite:///{own / 'state.db'}"
