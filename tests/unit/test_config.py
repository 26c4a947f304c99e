"""The config loader reports every problem at once, each with file and line."""

import textwrap

import pytest

from syncd.config import load_config
from syncd.errors import ConfigError

MAPPING = """\
version: 1
key: entryUUID
fields:
  name: cn
"""


def write(tmp_path, text, mapping=MAPPING):
    (tmp_path / "m.yaml").write_text(mapping)
    path = tmp_path / "syncd.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
version: 1
connections:
  dir:
    type: ldap
    url: ldap://127.0.0.1:3890
    bind_dn: cn=admin,dc=example,dc=com
    password: {env: SYNCD_TEST_PW}
  db:
    type: sql
    url: sqlite:///inv.db
jobs:
  inventory:
    source: {connection: dir, base: "ou=devices,dc=example,dc=com"}
    mapping: m.yaml
    target: {connection: db, table: devices}
    max_deletes: 5%
    schedule: {cron: "*/15 * * * *"}
"""


def problems(path):
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_good_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    job = cfg.job("inventory")
    assert job.max_deletes == pytest.approx(0.05)
    assert job.source.connection.type == "ldap"
    assert job.mapping is not None
    assert cfg.state_url.endswith("state.db")


def test_unknown_job_names_the_known_ones(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match=r"no job named 'nope' \(jobs: inventory\)"):
        cfg.job("nope")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "version: 1\njobs:\n  a: [1, 2\n  b: 3\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:") and "YAML syntax error" in problem


def test_all_problems_at_once_with_lines(tmp_path):
    db_line = "    url: sqlite:///inv.db\n"
    text = GOOD.replace(db_line, db_line + "    colour: red\n")
    text = text.replace("max_deletes: 5%", "max_deletes: lots")
    text = text.replace('"*/15 * * * *"', '"every tuesday"')
    text = text.replace("password: {env: SYNCD_TEST_PW}", "password: hunter2")
    found = problems(write(tmp_path, text))
    joined = "\n".join(found)
    assert len(found) >= 4, joined
    assert any(":11: connections.db.colour: unknown option" in p for p in found), joined
    assert any("max_deletes" in p and ":17:" in p for p in found), joined
    assert any("cron" in p and ":18:" in p for p in found), joined
    assert any("secrets may not be written in the config" in p for p in found), joined
    assert "hunter2" not in joined


def test_dangling_connection_and_missing_mapping(tmp_path):
    text = GOOD.replace("connection: db,", "connection: nosuch,").replace("m.yaml", "gone.yaml")
    found = problems(write(tmp_path, text))
    assert any("no connection named 'nosuch'" in p for p in found)
    assert any("gone.yaml does not exist" in p for p in found)


def test_duplicate_keys_and_unknown_type(tmp_path):
    text = GOOD.replace("    type: sql\n", "    type: sqll\n").replace(
        "jobs:\n", "jobs:\n  inventory: {}\n"
    )
    found = problems(write(tmp_path, text))
    assert any("duplicate key 'inventory'" in p for p in found)
    assert any("unknown connection type 'sqll'" in p for p in found)


def test_missing_version_and_not_a_mapping(tmp_path):
    assert any("version" in p for p in problems(write(tmp_path, "jobs: {}\n")))
    assert any("must be a mapping" in p for p in problems(write(tmp_path, "- 1\n- 2\n")))


def test_missing_file(tmp_path):
    assert "no such file" in problems(tmp_path / "absent.yaml")[0]


def test_ad_change_tracking_needs_the_guid_as_id(tmp_path):
    text = GOOD.replace(
        'base: "ou=devices,dc=example,dc=com"}',
        'base: "ou=devices,dc=example,dc=com", changes: dirsync, id_attribute: entryUUID}',
    )
    [problem] = problems(write(tmp_path, text))
    assert ":13:" in problem and "objectGUID only" in problem


def test_paths_in_connections_are_relative_to_the_config_file(tmp_path):
    text = (
        GOOD.replace("    start_tls", "    start_tls")
        .replace(
            "    password: {env: SYNCD_TEST_PW}\n",
            "    password: {env: SYNCD_TEST_PW}\n    ca_file: certs/ca.pem\n",
        )
        .replace("url: sqlite:///inv.db", "url: sqlite:///data/inv.db")
    )
    cfg = load_config(write(tmp_path, text))
    assert cfg.connections["dir"].options.ca_file == tmp_path / "certs" / "ca.pem"
    assert cfg.connections["db"].options.url == f"sqlite:///{tmp_path}/data/inv.db"
