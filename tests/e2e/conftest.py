"""End-to-end fixtures: a slapd with devices, a config writer, a CLI runner."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

MAPPING = """\
version: 1
key: entryUUID
fields:
  hostname: cn
  serial: serialNumber
  location: l
  description: description
  owner: "{{ owner | first | dn_value('uid') }}"
required: [hostname, serial]
skip:
  - "{{ 'retired' in (description | join(' ') | lower) }}"
"""


def device(cn: str, serial: str | None = "SN-1", location: str = "Paris", **extra: str) -> str:
    out = (
        f"dn: cn={cn},ou=devices,dc=example,dc=com\nobjectClass: device\ncn: {cn}\nl: {location}\n"
    )
    if serial is not None:
        out += f"serialNumber: {serial}\n"
    for k, v in extra.items():
        out += f"{k}: {v}\n"
    return out


@dataclass
class Setup:
    dir: Path
    config: Path
    slapd: object
    db_url: str

    def syncd(
        self, *args: str, check: bool = True, subprocess_: bool = False
    ) -> subprocess.CompletedProcess:
        """Run syncd with ``args`` on this setup's config and capture its output.

        In-process through the real entry point (``syncd.cli.main``) by default, which
        is fast; ``subprocess_=True`` runs the installed console script instead.
        """
        argv = ["-c", str(self.config), *args]
        if subprocess_:
            cmd = [sys.executable, "-m", "syncd", *argv]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        else:
            result = run_in_process(argv)
        if check and result.returncode != 0:
            raise AssertionError(
                f"syncd {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result


def run_in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """syncd.cli.main(argv) with stdout/stderr captured and its exit code."""
    from syncd.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def write_config(
    work: Path,
    slapd,
    db_url: str,
    *,
    state_url: str | None = None,
    target: dict | None = None,
    job: dict | None = None,
    source: dict | None = None,
    mapping: str = MAPPING,
    db_password: str | None = None,
    state_password: str | None = None,
) -> Path:
    """Write syncd.yaml for an `inventory` job (slapd ou=devices -> table devices)."""
    (work / "pw").write_text(slapd.root_pw + "\n")
    (work / "devices.yaml").write_text(mapping)
    cfg = {
        "version": 1,
        "state": {"url": state_url or f"sqlite:///{work}/state.db"},
        "connections": {
            "dir": {
                "type": "ldap",
                "url": slapd.url,
                "bind_dn": slapd.root_dn,
                "password": {"file": str(work / "pw")},
                "start_tls": False,
            },
            "db": {"type": "sql", "url": db_url},
        },
        "jobs": {
            "inventory": {
                "source": {
                    "connection": "dir",
                    "base": "ou=devices,dc=example,dc=com",
                    "filter": "(objectClass=device)",
                    "changes": "full",
                    **(source or {}),
                },
                "mapping": "devices.yaml",
                "target": {"connection": "db", "table": "devices", **(target or {})},
                "max_deletes": "50%",
                **(job or {}),
            }
        },
    }
    if state_password is not None:
        (work / "statepw").write_text(state_password)
        cfg["state"]["password"] = {"file": str(work / "statepw")}
    if db_password is not None:
        (work / "dbpw").write_text(db_password)
        cfg["connections"]["db"]["password"] = {"file": str(work / "dbpw")}
    path = work / "syncd.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


@pytest.fixture
def inventory(tmp_path, slapd):
    """slapd + a config syncing ou=devices into SQLite."""
    work = tmp_path / "work"
    work.mkdir()
    db_url = f"sqlite:///{work}/inventory.db"
    return Setup(work, write_config(work, slapd, db_url), slapd, db_url)
