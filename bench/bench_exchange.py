"""Benchmark: contacts into the EWS emulator through the real exchangelib client.

    .venv/bin/python bench/bench_exchange.py [--count 1000] [--photo-bytes 4000]

Two parts, each counting the HTTP requests the emulator received:

1. ExchangeTarget alone: ``count`` contact creates (with a small JPEG-sized photo each)
   handed to ``apply()`` in batches of ``target.batch_size``, then the same batches
   again (idempotent re-apply after a "crash": every key is found and updated).
2. The engine: a private slapd holding ``count`` inetOrgPerson entries, the people job
   with the shipped mapping (mappings/contacts-openldap-exchange.yaml): a first run,
   a no-change run and a run after 10 entries changed.

Prints wall time and HTTP requests per 100 items for each step. The emulator runs in
this process (a thread), so times include its share of the CPU.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from syncd.contracts import Action, ActionKind, batched  # noqa: E402
from tests.servers.ews_emulator import EwsEmulator  # noqa: E402
from tests.servers.fixtures_ews import exchange_target  # noqa: E402
from tests.servers.slapd import Slapd  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"


def line(label: str, seconds: float, requests: int, items: int, ops: dict) -> None:
    per100 = requests * 100 / max(items, 1)
    opstr = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
    print(
        f"{label:<34} {seconds:7.2f} s  {requests:5d} HTTP requests "
        f"({per100:5.1f} per 100 items)  [{opstr}]"
    )


def record(n: int, photo: bytes) -> dict:
    return {
        "display_name": f"Person {n:05d}",
        "given_name": "Person",
        "surname": f"{n:05d}",
        "company_name": "Example AG",
        "department": f"Dept {n % 17}",
        "job_title": "Clerk",
        "email_addresses": [f"person{n}@example.com"],
        "business_phone": f"+49 30 {n:07d}",
        "business_city": "Berlin",
        "photo": photo,
    }


def bench_target(count: int, photo: bytes, work: Path) -> None:
    emu = EwsEmulator().start()
    try:
        target = exchange_target(emu, work, folder="Contacts/Bench")
        target.open()
        actions = [
            Action(ActionKind.CREATE, f"s{n}", f"key-{n}", record(n, photo)) for n in range(count)
        ]
        for label in ("target: create", "target: re-apply (all found)"):
            emu.reset_counters()
            start = time.perf_counter()
            for batch in batched(actions, target.batch_size):
                results = target.apply(batch)
                assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
            took = time.perf_counter() - start
            stored = len(emu.items_in("Contacts/Bench"))
            assert stored == count, stored
            line(label, took, emu.http_requests, count, dict(emu.operations))
        target.close()
    finally:
        emu.stop()


def people_ldif(count: int, photo: bytes) -> str:
    b64 = base64.b64encode(photo).decode()
    out = []
    for n in range(count):
        out.append(
            f"dn: uid=p{n},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: p{n}\n"
            f"cn: Person {n:05d}\ngivenName: Person\nsn: {n:05d}\n"
            f"mail: p{n}@example.com\ntitle: Clerk\nou: Dept {n % 17}\n"
            f"telephoneNumber: +49 30 {n:07d}\nl: Berlin\njpegPhoto:: {b64}\n"
        )
    return "\n".join(out)


def bench_engine(count: int, photo: bytes, work: Path) -> None:
    from syncd.config import load_config
    from syncd.engine import run_job

    emu = EwsEmulator().start()
    slapd = Slapd(work / "slapd", ldif=people_ldif(count, photo))
    with slapd:
        (work / "ldap.pw").write_text(slapd.root_pw)
        (work / "ews.pw").write_text(emu.password)
        cfg = {
            "version": 1,
            "state": {"url": f"sqlite:///{work}/state.db"},
            "connections": {
                "dir": {
                    "type": "ldap",
                    "url": slapd.url,
                    "bind_dn": slapd.root_dn,
                    "password": {"file": str(work / "ldap.pw")},
                    "start_tls": False,
                },
                "ews": {
                    "type": "exchange",
                    "endpoint": emu.url,
                    "username": emu.username,
                    "password": {"file": str(work / "ews.pw")},
                    "auth": "basic",
                    "mailbox": emu.mailbox,
                },
            },
            "jobs": {
                "people": {
                    "source": {
                        "connection": "dir",
                        "base": PEOPLE,
                        "filter": "(objectClass=inetOrgPerson)",
                    },
                    "mapping": str(ROOT / "mappings" / "contacts-openldap-exchange.yaml"),
                    "target": {"connection": "ews", "folder": "Contacts/Company Directory"},
                }
            },
        }
        path = work / "syncd.yaml"
        path.write_text(yaml.safe_dump(cfg))
        config = load_config(path)

        def run(label: str, items: int) -> None:
            emu.reset_counters()
            start = time.perf_counter()
            rep = run_job(config, "people")
            took = time.perf_counter() - start
            assert rep.status == "ok", rep.error
            counts = {k: v for k, v in rep.counts.items() if v}
            line(label, took, emu.http_requests, items, dict(emu.operations))
            print(f"{'':<34} counts {counts}")

        run("engine: first run", count)
        assert len(emu.items_in("Contacts/Company Directory")) == count
        run("engine: no-change run", count)
        ldif = "".join(
            f"dn: uid=p{n},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Manager\n\n"
            for n in range(0, count, max(1, count // 10))
        )
        slapd.modify(ldif)
        run("engine: 10 changed", 10)
    emu.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--photo-bytes", type=int, default=4000)
    args = ap.parse_args()
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (args.photo_bytes // 256 + 1)
    photo = photo[: args.photo_bytes]
    print(f"{args.count} contacts, photo {len(photo)} bytes each, EWS emulator on 127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="bench-ews-") as tmp:
        work = Path(tmp)
        bench_target(args.count, photo, work)
        bench_engine(args.count, photo, work)


if __name__ == "__main__":
    main()
