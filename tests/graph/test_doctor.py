"""`syncd doctor` for a Graph connection: TLS to both hosts, token, application
permission, mailbox reachable, folder present; each failure named with a hint."""

from __future__ import annotations

import json

import click
import yaml
from click.testing import CliRunner

from syncd.cli_daemon import doctor_command
from tests.servers.fixtures_graph import MAILBOX, write_secret
from tests.servers.graph_emulator import GraphEmulator


@click.group()
@click.option("-c", "--config", "config_path")
@click.pass_context
def group(ctx, config_path):
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


group.add_command(doctor_command)


def _config(tmp_path, emu, *, secret=None, mailbox=MAILBOX, folder="Company Directory"):
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp_path}/state.db"},
        "connections": {
            "csvsrc": {"type": "csv", "path": str(tmp_path / "people.csv")},
            "m365": {
                "type": "graph",
                "tenant_id": emu.tenant,
                "client_id": emu.client_id,
                "client_secret": write_secret(tmp_path, "g.pw", secret or emu.client_secret),
                "authority_url": emu.authority_url,
                "graph_url": emu.graph_url,
                "ca_file": emu.tls["ca"],
            },
        },
        "jobs": {
            "book": {
                "source": {
                    "connection": "csvsrc",
                    "id_column": "id",
                },
                "mapping": str(tmp_path / "m.yaml"),
                "target": {"connection": "m365", "mailbox": mailbox, "folder": folder},
            }
        },
    }
    (tmp_path / "people.csv").write_text("id,name\n1,A\n")
    (tmp_path / "m.yaml").write_text("version: 1\nkey: id\nfields:\n  display_name: name\n")
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(tmp_path, path):
    res = CliRunner().invoke(group, ["-c", str(path), "doctor", "--json", "m365"])
    assert res.stdout.strip(), res.output
    return res.exit_code, {r["check"]: r for r in json.loads(res.stdout)}


def test_all_green(tmp_path, graph_server):
    graph_server.add_own(MAILBOX, "Company Directory", {"displayName": "x"})  # folder exists
    code, rows = _rows(tmp_path, _config(tmp_path, graph_server))
    assert code == 0, rows
    for check in ("graph token", "graph permission", "graph mailbox", "graph folder"):
        assert rows[check]["status"] == "ok", rows[check]
    assert "Contacts.ReadWrite" in rows["graph permission"]["detail"]


def test_missing_folder_and_unknown_mailbox(tmp_path, graph_server):
    code, rows = _rows(tmp_path, _config(tmp_path, graph_server))
    assert code == 1
    assert rows["graph folder"]["status"] == "fail"
    assert "create_folder" in rows["graph folder"]["hint"]
    assert graph_server.folder_id(MAILBOX, "Company Directory") is None  # doctor creates nothing
    code, rows = _rows(tmp_path, _config(tmp_path, graph_server, mailbox="ghost@contoso.test"))
    assert code == 1 and rows["graph mailbox"]["status"] == "fail"
    assert "ghost@contoso.test" in rows["graph mailbox"]["detail"]


def test_wrong_secret(tmp_path, graph_server):
    code, rows = _rows(tmp_path, _config(tmp_path, graph_server, secret="Bad-S3cret-x"))
    assert code == 1
    assert rows["graph token"]["status"] == "fail"
    assert "invalid_client" in rows["graph token"]["detail"]
    assert "Bad-S3cret-x" not in json.dumps(rows)


def test_missing_permission(tmp_path, graph_tls):
    emu = GraphEmulator(graph_tls, roles=("User.Read.All",)).start()
    try:
        emu.add_mailbox(MAILBOX)
        code, rows = _rows(tmp_path, _config(tmp_path, emu))
    finally:
        emu.stop()
    assert code == 1
    assert rows["graph permission"]["status"] == "fail"
    assert "Contacts.ReadWrite" in rows["graph permission"]["hint"]
