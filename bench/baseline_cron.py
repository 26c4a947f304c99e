"""Baseline: the cron script an administrator would write instead of syncd.

    .venv/bin/python bench/baseline_cron.py LDAP_URL BIND_DN PASSWORD_FILE BASE DB_URL

python-ldap paged read of every `device` entry, the same fields as
mappings/inventory-openldap-device.yaml, and a batched SQLAlchemy upsert (1000 rows per
executemany, one transaction) into SQLite or PostgreSQL. It keeps no state, has no plan,
no gates and no deletes: every run rewrites every row. bench_inventory.py times it beside
syncd. Needs the bench extra: `pip install -e '.[bench]'` (python-ldap builds against
Debian's libldap2-dev and libsasl2-dev: `scripts/install.d/90-bench.sh`).
"""

import sys

import ldap
from ldap.controls import SimplePagedResultsControl
from sqlalchemy import Column, MetaData, Table, Text, create_engine

url, bind_dn, pw_file, base, db_url = sys.argv[1:6]
conn = ldap.initialize(url)
with open(pw_file) as f:
    conn.simple_bind_s(bind_dn, f.read().strip())
engine = create_engine(db_url)
names = [
    "hostname",
    "serial",
    "description",
    "location",
    "organization",
    "department",
    "owner",
    "owner_dn",
    "see_also",
    "ip_addresses",
    "container",
]
table = Table(
    "devices", MetaData(), Column("key", Text, primary_key=True), *(Column(n, Text) for n in names)
)
table.create(engine, checkfirst=True)
if engine.dialect.name == "postgresql":
    from sqlalchemy.dialects.postgresql import insert
else:
    from sqlalchemy.dialects.sqlite import insert
stmt = insert(table)
stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={n: stmt.excluded[n] for n in names})
attrs = [
    "entryUUID",
    "cn",
    "serialNumber",
    "description",
    "l",
    "o",
    "ou",
    "owner",
    "seeAlso",
    "ipHostNumber",
]


def first(entry, name):
    values = entry.get(name)
    return values[0].decode() if values else None


def row(dn, e):
    owner = first(e, "owner")
    see_also = "; ".join(v.decode() for v in e.get("seeAlso", ())) or None
    ips = ", ".join(v.decode() for v in e.get("ipHostNumber", ())) or None
    return {
        "key": first(e, "entryUUID"),
        "hostname": first(e, "cn"),
        "serial": first(e, "serialNumber"),
        "description": first(e, "description"),
        "location": first(e, "l"),
        "organization": first(e, "o"),
        "department": first(e, "ou"),
        "owner_dn": owner,
        "owner": owner.split(",", 1)[0].split("=", 1)[1] if owner else None,
        "see_also": see_also,
        "ip_addresses": ips,
        "container": dn.split(",", 1)[1],
    }


page = SimplePagedResultsControl(True, size=1000, cookie=b"")
with engine.begin() as db:
    while True:
        msgid = conn.search_ext(
            base, ldap.SCOPE_SUBTREE, "(objectClass=device)", attrs, serverctrls=[page]
        )
        _, entries, _, controls = conn.result3(msgid)
        rows = [
            row(dn, e)
            for dn, e in entries
            if dn and "retired" not in (first(e, "description") or "").lower()
        ]
        if rows:
            db.execute(stmt, rows)
        cookie = next(c.cookie for c in controls if c.controlType == page.controlType)
        if not cookie:
            break
        page.cookie = cookie
