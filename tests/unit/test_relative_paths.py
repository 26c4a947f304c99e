"""Every relative path in a config file is relative to that file, whatever the working
directory; and ``plan`` on a fresh config creates no state store (issue 13 item 3)."""

from __future__ import annotations

import os
import time

import pytest

from syncd.cli import main
from syncd.config import load_config

MAPPING = """\
version: 1
key: employee_id
fields:
  name: given_name
"""

CONFIG = """\
version: 1
state: {url: "sqlite:///state/state.db", password: {file: secrets/state-pw}}
connections:
  hr:
    type: csv
    path: hr.csv
    min_age: 0
  db:
    type: sql
    url: sqlite:///inventory.db
  dir:
    type: ldap
    url: ldap://127.0.0.1:1
    bind_dn: cn=syncd,dc=example,dc=com
    password: {file: secrets/db-pw}
jobs:
  people:
    source: {connection: hr, id_column: employee_id}
    mapping: m.yaml
    target: {connection: db, table: people}
"""


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A config directory and a different working directory."""
    conf = tmp_path / "conf"
    (conf / "secrets").mkdir(parents=True)
    (conf / "secrets" / "db-pw").write_text("db-secret\n")
    (conf / "secrets" / "state-pw").write_text("state-secret\n")
    (conf / "m.yaml").write_text(MAPPING)
    (conf / "syncd.yaml").write_text(CONFIG)
    csv = conf / "hr.csv"
    csv.write_text("employee_id,given_name\n1,Ada\n2,Grace\n")
    past = time.time() - 60
    os.utime(csv, (past, past))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return conf


def test_state_url_and_file_secrets_resolve_against_the_config_file(layout):
    cfg = load_config(layout / "syncd.yaml")
    assert cfg.state_url == f"sqlite:///{layout / 'state' / 'state.db'}"
    assert cfg.state_password is not None
    assert cfg.state_password.reveal() == "state-secret"
    assert cfg.connections["dir"].options.password.reveal() == "db-secret"
    # The other paths already did: the CSV file and the SQL target's SQLite file.
    assert str(cfg.connections["hr"].options.path) == str(layout / "hr.csv")
    assert str(layout / "inventory.db") in cfg.connections["db"].options.url


def test_validate_from_another_directory_finds_file_secrets(layout, capsys):
    with pytest.raises(SystemExit) as info:
        main(["-c", str(layout / "syncd.yaml"), "validate"])
    assert info.value.code == 0, capsys.readouterr().err


def test_plan_on_a_fresh_config_creates_no_state_store(layout, capsys):
    config = layout / "syncd.yaml"
    config.write_text(CONFIG.replace(", password: {file: secrets/state-pw}", ""))
    with pytest.raises(SystemExit) as info:
        main(["-c", str(config), "plan", "people"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    assert "create 2" in out.out
    assert not (layout / "state").exists()
    assert not (layout / "state" / "state.db").exists()
    # The applying run creates it where the config says.
    with pytest.raises(SystemExit) as info:
        main(["-c", str(config), "sync", "--no-progress", "people"])
    assert info.value.code == 0, capsys.readouterr().err
    assert (layout / "state" / "state.db").exists()


def test_doctor_on_a_fresh_config_creates_no_state_store(layout):
    from syncd.doctor import check_state

    findings = check_state(load_config(layout / "syncd.yaml"))
    assert [f.status for f in findings] == ["ok"]
    assert "does not exist yet" in findings[0].detail
    assert not (layout / "state").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--check"],
        ["history", "people"],
        ["quarantine", "list"],
        ["explain", "people", "1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_read_only_commands_on_a_fresh_config_create_no_state_store(layout, capsys, argv):
    config = layout / "syncd.yaml"
    config.write_text(CONFIG.replace(", password: {file: secrets/state-pw}", ""))
    with pytest.raises(SystemExit) as info:
        main(["-c", str(config), *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    # status --check on a job that never ran is a Nagios WARNING (1); the others succeed.
    assert info.value.code == (1 if argv == ["status", "--check"] else 0), out.err
    assert not (layout / "state").exists(), f"{argv} created the state store"
