"""`syncd init`: a commented starter config that loads, secrets as references, mapping
files copied beside it, never an overwrite (issue 11 item 8)."""

from __future__ import annotations

import stat

import pytest
import yaml

from syncd.cli import main
from syncd.config import load_config


def _init(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["init", *args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_init_writes_the_three_jobs_and_their_mappings(tmp_path, capsys):
    path = tmp_path / "etc" / "syncd.yaml"
    path.parent.mkdir()
    code, out, err = _init(capsys, str(path))
    assert code == 0, err
    assert f"wrote {path}" in out
    cfg = load_config(path)  # loads as written: every mapping file is there
    assert sorted(cfg.jobs) == ["addressbook", "hr", "inventory"]
    for job in cfg.jobs.values():
        assert job.mapping_path.parent == path.parent / "mappings"
    text = path.read_text()
    assert text.startswith("# syncd configuration") and text.count("\n#") > 10
    # Secrets are references; the owner alone may read the file.
    data = yaml.safe_load(text)
    for conn in data["connections"].values():
        if "password" in conn:
            assert set(conn["password"]) <= {"credential", "env", "file"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_with_one_job_has_only_its_connections(tmp_path, capsys):
    path = tmp_path / "syncd.yaml"
    code, _, err = _init(capsys, "--job", "inventory", str(path))
    assert code == 0, err
    cfg = load_config(path)
    assert list(cfg.jobs) == ["inventory"]
    assert sorted(cfg.connections) == ["corp-ldap", "inventory-db"]
    assert [p.name for p in (tmp_path / "mappings").iterdir()] == ["inventory-openldap-device.yaml"]


def test_init_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "syncd.yaml"
    path.write_text("mine\n")
    code, _, err = _init(capsys, str(path))
    assert code == 2 and "does not overwrite" in err
    assert path.read_text() == "mine\n"


def test_init_keeps_an_edited_mapping(tmp_path, capsys):
    (tmp_path / "mappings").mkdir()
    edited = tmp_path / "mappings" / "hr-csv-openldap.yaml"
    edited.write_text("# my edits\n")
    code, out, err = _init(capsys, "--job", "hr", str(tmp_path / "syncd.yaml"))
    assert code == 0, err
    assert f"kept {edited}" in out and edited.read_text() == "# my edits\n"
