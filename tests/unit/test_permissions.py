"""A config file or a {file:} secret others can read is warned about, naming the file
and the fix (issue 9 item 8): in validate, sync and at daemon start."""

from __future__ import annotations

import grp
import os

import pytest

from syncd import permissions
from syncd.cli import main
from syncd.config import load_config
from syncd.permissions import permission_warnings

CONFIG = """\
version: 1
connections:
  dir:
    type: ldap
    url: ldap://127.0.0.1:1
    bind_dn: cn=syncd,dc=example,dc=com
    password: {file: ldap-pw}
"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / "syncd.yaml"
    path.write_text(CONFIG)
    (tmp_path / "ldap-pw").write_text("pw\n")
    path.chmod(0o600)
    (tmp_path / "ldap-pw").chmod(0o600)
    return path


def test_owner_only_files_give_no_warning(conf):
    assert permission_warnings(load_config(conf)) == []


def test_world_readable_secret_is_named_with_the_fix(conf):
    secret = conf.parent / "ldap-pw"
    secret.chmod(0o644)
    warnings = permission_warnings(load_config(conf))
    assert len(warnings) == 1
    assert str(secret) in warnings[0] and "0644" in warnings[0]
    assert f"chmod 600 {secret}" in warnings[0]
    assert "pw" not in warnings[0].replace("ldap-pw", "")  # the name, never the value


def test_world_readable_config_is_named(conf):
    conf.chmod(0o644)
    (warning,) = permission_warnings(load_config(conf))
    assert str(conf) in warning and "chmod 600" in warning and "root:syncd" in warning


def test_group_readable_is_fine_only_for_the_service_group(conf, monkeypatch):
    conf.chmod(0o640)
    assert len(permission_warnings(load_config(conf))) == 1
    own_group = grp.getgrgid(os.stat(conf).st_gid).gr_name
    monkeypatch.setattr(permissions, "SERVICE_GROUP", own_group)
    assert permission_warnings(load_config(conf)) == []
    conf.chmod(0o660)  # group-writable: anyone in it could change what syncd does
    assert len(permission_warnings(load_config(conf))) == 1


def test_validate_prints_the_warning_and_still_succeeds(conf, capsys):
    (conf.parent / "ldap-pw").chmod(0o604)
    with pytest.raises(SystemExit) as info:
        main(["-c", str(conf), "validate"])
    err = capsys.readouterr().err
    assert info.value.code == 0
    assert "warning" in err.lower() and str(conf.parent / "ldap-pw") in err


def test_a_world_readable_credential_in_the_credstore_is_named(tmp_path, monkeypatch):
    from syncd import secrets

    store = tmp_path / "credstore"
    store.mkdir()
    (store / "ldap-bind").write_text("pw\n")
    (store / "ldap-bind").chmod(0o644)
    monkeypatch.setattr(secrets, "CREDSTORE_DIRS", (store,))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "syncd.yaml"
    path.write_text(CONFIG.replace("{file: ldap-pw}", "{credential: ldap-bind}"))
    path.chmod(0o600)
    (warning,) = permission_warnings(load_config(path))
    assert str(store / "ldap-bind") in warning and "chmod 600" in warning
