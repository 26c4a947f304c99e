"""Run syncd's inventory job against a throwaway slapd, step by step, in ./demo-run/.

Started by scripts/demo (which installs slapd and the virtualenv first).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers.radicale import Radicale  # noqa: E402  (the tests' private Radicale)
from tests.servers.slapd import Slapd  # noqa: E402  (the same private slapd the tests use)

RUN = ROOT / "demo-run"
SYNCD = [str(ROOT / ".venv" / "bin" / "syncd"), "-c", str(RUN / "syncd.yaml")]

PEOPLE = [
    ("ada", "Ada", "Lovelace", "Engineering"),
    ("jrenard", "Jérôme", "Renard", "Sales"),
    ("yamada", "太郎", "山田", "Engineering"),
    ("oconnor", "Siobhán", "O'Connor", "IT"),
]
DEVICES = [
    ("laptop-0001", "SN-1001", "Ada's laptop", "Paris", "ada"),
    ("laptop-0002", "SN-1002", "Sales laptop", "Lyon", "jrenard"),
    ("printer-2f", "SN-2001", "Printer, 2nd floor", "Paris", None),
    ("server-db1", "SN-3001", "Database server", "Frankfurt", "oconnor"),
    ("tablet-東京", "SN-4001", "Tokyo tablet", "東京", "yamada"),
]


def ldif() -> str:
    out = []
    for uid, given, sn, dept in PEOPLE:
        out.append(
            f"dn: uid={uid},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n"
            f"uid: {uid}\ncn: {given} {sn}\ngivenName: {given}\nsn: {sn}\n"
            f"ou: {dept}\nmail: {uid}@example.com\n"
        )
    for cn, serial, desc, loc, owner in DEVICES:
        entry = (
            f"dn: cn={cn},ou=devices,dc=example,dc=com\nobjectClass: device\n"
            f"cn: {cn}\nserialNumber: {serial}\ndescription: {desc}\nl: {loc}\n"
        )
        if owner:
            entry += f"owner: uid={owner},ou=people,dc=example,dc=com\n"
        out.append(entry)
    return "\n".join(out)


def config(slapd: Slapd, dav: Radicale) -> str:
    return f"""\
version: 1
state:
  url: sqlite:///{RUN}/state.db
connections:
  demo-ldap:
    type: ldap
    url: {slapd.url}
    bind_dn: {slapd.root_dn}
    password: {{file: {RUN}/ldap-password}}
    start_tls: false          # loopback only; syncd refuses plaintext binds elsewhere
  inventory-db:
    type: sql
    url: sqlite:///{RUN}/inventory.db
  demo-dav:
    type: carddav
    url: {dav.url}
    username: {dav.user}
    password: {{file: {RUN}/dav-password}}
jobs:
  inventory:
    description: devices from the directory into the inventory table
    source:
      connection: demo-ldap
      base: ou=devices,dc=example,dc=com
      filter: (objectClass=device)
    mapping: {ROOT}/mappings/inventory-openldap-device.yaml
    target:
      connection: inventory-db
      table: devices
    max_deletes: 40%
  address-book:
    description: people from the directory into a CardDAV address book
    source:
      connection: demo-ldap
      base: ou=people,dc=example,dc=com
      filter: (objectClass=inetOrgPerson)
    mapping: {ROOT}/mappings/contacts-openldap-vcard.yaml
    target:
      connection: demo-dav
      addressbook: Company directory
    max_deletes: 40%
"""


def step(title: str, *args: str) -> None:
    print(f"\n\033[1m== {title}\033[0m\n$ syncd {' '.join(args)}", flush=True)
    result = subprocess.run([*SYNCD, *args], check=False)
    if result.returncode not in (0,):
        print(f"(exit code {result.returncode})")


def show_table() -> None:
    con = sqlite3.connect(RUN / "inventory.db")
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(devices)")]
        rows = con.execute("SELECT * FROM devices ORDER BY 1").fetchall()
    finally:
        con.close()
    shown = [c for c in cols if c not in ("key",)]
    print("\n-- inventory.db, table devices --")
    print(" | ".join(shown))
    for row in rows:
        values = dict(zip(cols, row, strict=True))
        print(" | ".join("" if values[c] is None else str(values[c]) for c in shown))


def show_cards(dav: Radicale) -> None:
    print("\n-- CardDAV address book 'Company directory' (Radicale) --")
    for card in sorted(dav.storage.rglob("*.vcf")):
        if any(part.startswith(".Radicale") for part in card.parts):
            continue  # Radicale's own caches
        lines = card.read_text(encoding="utf-8").splitlines()
        fn = next((line[3:] for line in lines if line.startswith("FN:")), "?")
        mail = next((line.split(":", 1)[1] for line in lines if line.startswith("EMAIL")), "")
        print(f"{fn:28} {mail}")


def main() -> None:
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir()
    with Slapd(RUN / "slapd", ldif=ldif()) as slapd, Radicale(RUN / "radicale") as dav:
        for name, secret in (("ldap-password", slapd.root_pw), ("dav-password", dav.password)):
            (RUN / name).write_text(secret + "\n")
            (RUN / name).chmod(0o600)
        (RUN / "syncd.yaml").write_text(config(slapd, dav))
        print(f"demo slapd on {slapd.url}; config in {RUN / 'syncd.yaml'}")
        step("check the config", "validate")
        step("what would the first run do?", "plan", "inventory")
        step("first run", "sync", "inventory")
        show_table()
        step("second run right after: nothing to move", "sync", "inventory")
        print("\n== the directory changes: one device moves, one is retired, one is added")
        slapd.modify(
            "dn: cn=laptop-0002,ou=devices,dc=example,dc=com\nchangetype: modify\n"
            "replace: l\nl: Marseille\n"
        )
        slapd.delete("cn=printer-2f,ou=devices,dc=example,dc=com")
        slapd.add(
            "dn: cn=laptop-0003,ou=devices,dc=example,dc=com\nobjectClass: device\n"
            "cn: laptop-0003\nserialNumber: SN-1003\nl: Berlin\n"
        )
        step("plan", "plan", "inventory")
        step("sync", "sync", "inventory")
        show_table()
        step("the address book job: people into CardDAV", "sync", "address-book")
        show_cards(dav)
        step("status", "status")
    print(f"\nDone. The state and inventory databases stay in {RUN}.")


if __name__ == "__main__":
    main()
