"""``syncd init``: a commented starter config for the three jobs syncd exists for.

The config it writes loads as it is (``syncd validate`` then reports only the secrets
that are not there yet); every secret is a reference, never a value. The mapping files
the jobs name are copied beside it, into ``mappings/``, for the user to edit. Nothing
existing is overwritten.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from syncd.errors import UserError
from syncd.resources import data_dir

HEADER = """\
# syncd configuration, written by `syncd init`. Every option is described in the
# configuration reference (`syncd reference`, docs/reference.md) and `man syncd`.
#
# Next steps:
#   1. adapt the servers, base DNs and tables below, and the mapping files in mappings/;
#   2. store the secrets where the references below point (never in this file):
#        {credential: NAME}  /etc/credstore/NAME (root only, chmod 600) and, for the
#                            service, LoadCredential=NAME in the systemd unit;
#        {env: NAME}         an environment variable (EnvironmentFile= under systemd);
#        {file: PATH}        a file readable by syncd only (relative to this file);
#   3. `syncd validate`, `syncd doctor`, then `syncd plan JOB` (writes nothing)
#      and `syncd sync JOB`.
# Relative paths in this file (mappings, files, sqlite:///...) are relative to it.
version: 1

# The state store remembers what was synced. Default: state.db in /var/lib/syncd for
# /etc/syncd/syncd.yaml (the service's state directory), else beside this file.
# Several nodes share one PostgreSQL database instead:
#state:
#  url: postgresql+psycopg://syncd@db.example.com/syncd
#  password: {credential: state-db}

daemon:
  # /metrics and /healthz for Prometheus and the load balancer; remove to turn off.
  listen: 127.0.0.1:9108

connections:
"""

CONNECTIONS = {
    "corp-ldap": """\
  # The directory people, groups and devices are read from. ldaps:// (636), or ldap://
  # with StartTLS (the default); the certificate is always verified.
  corp-ldap:
    type: ldap
    url: ldaps://ldap.example.com
    bind_dn: cn=syncd,ou=services,dc=example,dc=com
    password: {credential: ldap-bind}
    #ca_file: /etc/ssl/certs/corp-ca.pem     # the CA that signed the server certificate
""",
    "inventory-db": """\
  # The inventory database (any SQLAlchemy URL, without the password).
  inventory-db:
    type: sql
    url: sqlite:///inventory.db               # or postgresql+psycopg://syncd@db/inventory
    #password: {credential: inventory-db}
""",
    "dav": """\
  # The CardDAV server of the company address book.
  dav:
    type: carddav
    url: https://dav.example.com/             # server root, principal or address book
    username: syncd
    password: {credential: dav}
""",
    "hr-export": """\
  # The HR system's nightly export: a CSV file, or the newest file of a directory.
  hr-export:
    type: csv
    path: /srv/hr/drop
    glob: "hr-export-*.csv"
    encoding: utf-8-sig
    delimiter: ";"
    columns:                                  # export header -> attribute in the mapping
      Personalnummer: employeeId
      Vorname: givenName
      Nachname: surname
      E-Mail: mail
      Abteilung: department
""",
    "directory-writer": """\
  # The directory the HR job writes to: a bind DN that may add and modify people.
  directory-writer:
    type: ldap
    url: ldaps://ldap.example.com
    bind_dn: cn=syncd-hr,ou=services,dc=example,dc=com
    password: {credential: ldap-hr}
""",
}


@dataclass(frozen=True)
class StarterJob:
    """One job of the starter config: its text, connections and mapping files."""

    name: str
    summary: str
    connections: tuple[str, ...]
    mappings: tuple[str, ...]
    text: str


JOBS = {
    "inventory": StarterJob(
        "inventory",
        "LDAP devices -> SQL table",
        ("corp-ldap", "inventory-db"),
        ("inventory-openldap-device.yaml",),
        """\
  # Hardware inventory: LDAP device entries -> one row each in an SQL table.
  # Active Directory computers: mappings/inventory-ad-computer.yaml, filter
  # (objectClass=computer).
  inventory:
    source:
      connection: corp-ldap
      base: ou=devices,dc=example,dc=com
      filter: (objectClass=device)
      changes: auto                           # syncrepl / dirsync / usn / timestamp / full
    mapping: mappings/inventory-openldap-device.yaml
    target:
      connection: inventory-db
      table: devices                          # created if missing
      on_delete: soft                         # keep the row, set deleted_at
    max_deletes: 10%                          # a run deleting more stops before writing
    schedule: {cron: "*/15 * * * *"}
""",
    ),
    "addressbook": StarterJob(
        "addressbook",
        "LDAP people -> CardDAV address book",
        ("corp-ldap", "dav"),
        ("contacts-openldap-vcard.yaml",),
        """\
  # Company address book: LDAP people -> cards in a CardDAV address book.
  # Exchange instead: type: exchange connection, mappings/contacts-openldap-exchange.yaml.
  addressbook:
    source:
      connection: corp-ldap
      base: ou=people,dc=example,dc=com
      filter: (objectClass=inetOrgPerson)
    mapping: mappings/contacts-openldap-vcard.yaml
    target:
      connection: dav
      addressbook: Company directory
    max_deletes: 10%
    schedule: {interval: 1h}
""",
    ),
    "hr": StarterJob(
        "hr",
        "HR CSV export -> LDAP accounts",
        ("hr-export", "directory-writer"),
        ("hr-csv-openldap.yaml",),
        """\
  # Nightly HR reconciliation: joiners get an account, movers are updated, leavers
  # are disabled (never deleted). Try `syncd plan hr` first: it writes nothing.
  hr:
    source:
      connection: hr-export
      id_column: employeeId
      required_columns: [employeeId, givenName, surname, department]
      min_rows: 100                           # fewer rows is a broken export
    mapping: mappings/hr-csv-openldap.yaml
    target:
      connection: directory-writer
      base: ou=people,dc=example,dc=com
      dn_template: "uid={uid},ou=people,dc=example,dc=com"
      on_delete: disable                      # leavers: disabled, never deleted
      disabled_attributes: {employeeType: disabled}
    max_deletes: 2%
    schedule: {cron: "30 2 * * *"}
""",
    ),
}


def render(jobs: list[str]) -> str:
    """The starter config text for ``jobs`` (names from :data:`JOBS`, in that order)."""
    chosen = [JOBS[name] for name in JOBS if name in jobs]
    conns: list[str] = []
    for job in chosen:
        conns += [c for c in job.connections if c not in conns]
    text = HEADER + "".join(CONNECTIONS[c] for c in conns)
    return text + "\njobs:\n" + "\n".join(job.text for job in chosen)


def write_starter(path: Path, jobs: list[str]) -> list[str]:
    """Write the starter config to ``path`` and copy its mapping files beside it.

    Returns one line per file written or left alone. Raises UserError if ``path``
    exists (nothing is overwritten) or a job name is unknown."""
    unknown = [j for j in jobs if j not in JOBS]
    if unknown:
        raise UserError(f"unknown job {', '.join(unknown)} (choose from {', '.join(JOBS)}, or all)")
    if path.exists():
        raise UserError(f"{path} exists; syncd init does not overwrite it (remove it first)")
    try:
        source = data_dir("mappings")
    except FileNotFoundError as err:
        raise UserError(str(err)) from None
    lines: list[str] = []
    mapping_dir = path.parent / "mappings"
    mapping_dir.mkdir(parents=True, exist_ok=True)
    for job in (JOBS[name] for name in JOBS if name in jobs):
        for name in job.mappings:
            target = mapping_dir / name
            if target.exists():
                lines.append(f"kept {target} (exists)")
                continue
            shutil.copyfile(source / name, target)
            lines.append(f"copied {target}")
    with path.open("x", encoding="utf-8") as out:  # "x": never over a file made meanwhile
        out.write(render(jobs))
    path.chmod(0o600)  # see syncd.permissions
    lines.insert(0, f"wrote {path} (jobs: {', '.join(j for j in JOBS if j in jobs)})")
    return lines
