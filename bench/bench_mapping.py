"""How much mapping one entry costs, per shipped mapping, in microseconds.

    .venv/bin/python bench/bench_mapping.py [-n 100000]

For each mapping it maps N generated entries (realistic values, a fresh Change each)
and prints the best of 3 rounds in CPU microseconds per entry. For comparison it also times the
obvious alternative the mapping avoids: every expression evaluated on its own with
``compile_expression`` in the same sandbox (one call per expression per entry).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syncd.contracts import Change, Op  # noqa: E402
from syncd.mapping import Mapping  # noqa: E402
from syncd.mapping.sandbox import MappingEnvironment  # noqa: E402


def device(i: int) -> Change:
    return Change(
        Op.UPSERT,
        str(uuid.UUID(int=i)),
        f"cn=pc-{i:06d},ou=devices,dc=example,dc=com",
        {
            "cn": [f"pc-{i:06d}"],
            "entryuuid": [str(uuid.UUID(int=i))],
            "serialnumber": [f"SN-{i}"],
            "description": ["Office laptop, 2nd floor"],
            "l": ["Paris"],
            "o": ["Example"],
            "ou": ["IT"],
            "owner": [f"uid=user{i % 500},ou=people,dc=example,dc=com"],
            "iphostnumber": [f"10.0.{i // 250 % 250}.{i % 250}"],
        },
    )


def computer(i: int) -> Change:
    guid = uuid.UUID(int=i)
    sid = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + b"".join(
        n.to_bytes(4, "little") for n in (21, 1004336348, 1177238915, 682003330, 1000 + i)
    )
    return Change(
        Op.UPSERT,
        str(guid),
        f"CN=WS{i:06d},OU=Workstations,DC=example,DC=test",
        {
            "cn": [f"WS{i:06d}"],
            "objectguid": [guid.bytes_le],
            "objectsid": [sid],
            "dnshostname": [f"WS{i:06d}.Example.Test"],
            "operatingsystem": ["Windows 11 Enterprise"],
            "operatingsystemversion": ["10.0 (22631)"],
            "lastlogontimestamp": [str(133497000000000000 + i * 10_000_000)],
            "useraccountcontrol": ["4098" if i % 10 == 0 else "4096"],
            "managedby": ["CN=Smith\\, John,OU=IT,DC=example,DC=test"],
            "description": ["Workstation"],
            "whenchanged": ["20240102030405.0Z"],
        },
    )


def plain_mapping() -> Mapping:
    return Mapping.from_text(
        "version: 1\nkey: entryUUID\nfields:\n  hostname: cn\n  serial: serialNumber\n"
        "  description: description\n  location: l\n  organization: o\n  department: ou\n"
        "required: [hostname]\n",
        "<plain>",
    )


def time_it(fn, changes) -> float:
    # CPU time of this process, best of 3: other work on the machine inflates wall
    # time, not the cost of mapping.
    rounds = []
    for _ in range(3):
        start = time.process_time()
        for c in changes:
            fn(c)
        rounds.append((time.process_time() - start) / len(changes) * 1e6)
    return min(rounds)


def one_by_one(path: Path):
    """The alternative: one compile_expression per expression, called per entry."""
    import yaml

    env = MappingEnvironment()
    doc = yaml.safe_load(path.read_text())
    exprs = []
    for v in [doc.get("key"), *doc["fields"].values(), *(doc.get("skip") or [])]:
        if isinstance(v, str) and v.startswith("{{"):
            exprs.append(env.compile_expression(v.strip()[2:-2]))

    def run(c: Change) -> None:
        names = {k: v for k, v in c.attributes.items()}
        names["dn"] = c.dn
        for e in exprs:
            e(**names)

    return run, len(exprs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()
    n = args.n
    cases = [
        ("plain attributes only (6 fields)", plain_mapping(), [device(i) for i in range(n)], None),
        (
            "inventory-openldap-device.yaml",
            Mapping.load(ROOT / "mappings/inventory-openldap-device.yaml"),
            [device(i) for i in range(n)],
            ROOT / "mappings/inventory-openldap-device.yaml",
        ),
        (
            "inventory-ad-computer.yaml",
            Mapping.load(ROOT / "mappings/inventory-ad-computer.yaml"),
            [computer(i) for i in range(n)],
            ROOT / "mappings/inventory-ad-computer.yaml",
        ),
    ]
    print(f"{n} entries per round, best of 3 rounds (CPU time), Python {sys.version.split()[0]}")
    for label, mapping, changes, path in cases:
        us = time_it(mapping.map, changes)
        line = f"{label:40s} {us:7.1f} us/entry  ({n * us / 1e6:5.2f} s per {n})"
        if path is not None:
            run, count = one_by_one(path)
            alt = time_it(run, changes)
            line += f"   one compile_expression per expression ({count}): {alt:6.1f} us/entry"
        print(line)


if __name__ == "__main__":
    main()
