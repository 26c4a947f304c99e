"""Benchmark: contacts into a real Radicale (subprocess) through CardDavTarget.

    .venv/bin/python bench/bench_carddav.py [--count 300] [--photo-bytes 4000]
                                            [--concurrency 4] [--fsync]

HTTP requests are counted with an httpx request event hook (every request syncd sends,
redirect hops included). Two parts:

1. CardDavTarget alone, ``count`` cards with a JPEG-sized photo each, in batches of
   ``target.batch_size``: open (discovery, MKCOL, listing); create all; a no-change pass
   (a fresh target opened as a run does, with nothing to apply); update all; re-apply
   the creates without target ids (state lost: every card found and rewritten); delete
   all. The create is also run with concurrency 1 for comparison.
2. The engine: a private slapd holding ``count`` inetOrgPerson entries, the people job
   with the shipped mapping (mappings/contacts-openldap-vcard.yaml): a first run, a
   no-change run and a run after 10 entries changed.

Radicale writes with fsync off unless --fsync (tests keep it off); it slows down as a
collection grows (see ../shared/FACTS.md), so keep --count to a few hundred.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

import syncd.connectors.carddav.target as target_module  # noqa: E402
from syncd.connectors.carddav import (  # noqa: E402
    CardDavConnection,
    CardDavTarget,
    CardDavTargetOptions,
)
from syncd.connectors.carddav.dav import DavClient  # noqa: E402
from syncd.contracts import Action, ActionKind, batched  # noqa: E402
from tests.servers.radicale import Radicale  # noqa: E402
from tests.servers.slapd import Slapd  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=com"
SENT: Counter[str] = Counter()


def _count(request) -> None:
    SENT[request.method] += 1


class CountingClient(DavClient):
    """DavClient with the counting hook, for targets the engine builds itself."""

    def __init__(self, *args, **kwargs):
        kwargs["event_hooks"] = {"request": [_count]}
        super().__init__(*args, **kwargs)


def line(label: str, seconds: float, items: int) -> None:
    requests = sum(SENT.values())
    per100 = requests * 100 / max(items, 1)
    ops = ", ".join(f"{k} {v}" for k, v in sorted(SENT.items()))
    print(
        f"{label:<38} {seconds:7.2f} s  {requests:5d} HTTP requests "
        f"({per100:6.1f} per 100 items)  [{ops}]"
    )
    SENT.clear()


def record(n: int, photo: bytes, title: str = "Clerk") -> dict:
    return {
        "fn": f"Person {n:05d}",
        "given": "Person",
        "family": f"{n:05d}",
        "org": "Example AG",
        "department": f"Dept {n % 17}",
        "title": title,
        "email": [f"person{n}@example.com"],
        "tel_work": f"+49 30 {n:07d}",
        "locality": "Berlin",
        "photo": photo,
    }


def make_target(server: Radicale, work: Path, book: str, concurrency: int) -> CardDavTarget:
    (work / "dav.pw").write_text(server.password)
    conn = CardDavConnection.model_validate(
        {
            "url": server.url,
            "username": server.user,
            "password": {"file": str(work / "dav.pw")},
        }
    )
    opts = CardDavTargetOptions(addressbook=book, concurrency=concurrency)
    return CardDavTarget(conn, opts, job="bench", event_hooks={"request": [_count]})


def apply_all(target: CardDavTarget, actions: list[Action]) -> list:
    out = []
    for batch in batched(actions, target.batch_size):
        results = target.apply(batch)
        bad = [r.error for r in results if not r.ok]
        assert not bad, bad[:3]
        out += results
    return out


def timed(label: str, items: int, fn):
    SENT.clear()
    start = time.perf_counter()
    result = fn()
    line(label, time.perf_counter() - start, items)
    return result


def bench_target(server: Radicale, work: Path, count: int, photo: bytes, conc: int) -> None:
    creates = [
        Action(ActionKind.CREATE, f"s{n}", f"key-{n:05d}", record(n, photo)) for n in range(count)
    ]
    # concurrency 1 first, into a book of its own
    t1 = make_target(server, work, "bench-c1", 1)
    timed("target: open (discovery + MKCOL)", 1, t1.open)
    timed("target: create, concurrency 1", count, lambda: apply_all(t1, creates))
    t1.close()

    target = make_target(server, work, "bench", conc)
    timed("target: open (discovery + MKCOL)", 1, target.open)
    results = timed(
        f"target: create, concurrency {conc}", count, lambda: apply_all(target, creates)
    )
    target.close()

    fresh = make_target(server, work, "bench", conc)
    timed("target: no-change pass (open only)", count, fresh.open)
    updates = [
        Action(
            ActionKind.UPDATE,
            r.action.source_id,
            r.action.key,
            record(n, photo, "Manager"),
            changed=("title",),
            target_id=r.target_id,
        )
        for n, r in enumerate(results)
    ]
    results = timed("target: update all (If-Match)", count, lambda: apply_all(fresh, updates))
    fresh.close()

    lost = make_target(server, work, "bench", conc)
    lost.open()
    timed("target: re-apply creates (state lost)", count, lambda: apply_all(lost, creates))
    deletes = [
        Action(ActionKind.DELETE, r.action.source_id, r.action.key, target_id=None) for r in results
    ]
    timed("target: delete all (no target ids)", count, lambda: apply_all(lost, deletes))
    assert not [n for n in lost.etags if n.startswith("syncd-")]
    lost.close()


def people_ldif(count: int, photo: bytes) -> str:
    b64 = base64.b64encode(photo).decode()
    return "\n".join(
        f"dn: uid=p{n},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: p{n}\n"
        f"cn: Person {n:05d}\ngivenName: Person\nsn: {n:05d}\n"
        f"mail: p{n}@example.com\ntitle: Clerk\nou: Dept {n % 17}\n"
        f"telephoneNumber: +49 30 {n:07d}\nl: Berlin\njpegPhoto:: {b64}\n"
        for n in range(count)
    )


def bench_engine(server: Radicale, work: Path, count: int, photo: bytes, conc: int) -> None:
    from syncd.config import load_config
    from syncd.engine import run_job

    target_module.DavClient = CountingClient  # count what the engine's target sends
    with Slapd(work / "slapd", ldif=people_ldif(count, photo)) as slapd:
        (work / "ldap.pw").write_text(slapd.root_pw)
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
                "dav": {
                    "type": "carddav",
                    "url": server.url,
                    "username": server.user,
                    "password": {"file": str(work / "dav.pw")},
                },
            },
            "jobs": {
                "people": {
                    "source": {
                        "connection": "dir",
                        "base": PEOPLE,
                        "filter": "(objectClass=inetOrgPerson)",
                    },
                    "mapping": str(ROOT / "mappings" / "contacts-openldap-vcard.yaml"),
                    "target": {
                        "connection": "dav",
                        "addressbook": "engine",
                        "concurrency": conc,
                    },
                }
            },
        }
        path = work / "syncd.yaml"
        path.write_text(yaml.safe_dump(cfg))
        config = load_config(path)

        def run(label: str, items: int) -> None:
            SENT.clear()
            start = time.perf_counter()
            rep = run_job(config, "people")
            took = time.perf_counter() - start
            assert rep.status == "ok", rep.error
            line(label, took, items)
            counts = {k: v for k, v in rep.counts.items() if v}
            print(f"{'':<38} counts {counts}")

        run("engine: first run", count)
        run("engine: no-change run", count)
        ldif = "".join(
            f"dn: uid=p{n},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Manager\n\n"
            for n in range(0, count, max(1, count // 10))
        )
        slapd.modify(ldif)
        run("engine: 10 changed", 10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--photo-bytes", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--fsync", action="store_true", help="let Radicale fsync every write")
    args = ap.parse_args()
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * (args.photo_bytes // 256 + 1)
    photo = photo[: args.photo_bytes]
    print(
        f"{args.count} contacts, photo {len(photo)} bytes each, vCard 3.0, Radicale on "
        f"127.0.0.1 (fsync {'on' if args.fsync else 'off'})"
    )
    with tempfile.TemporaryDirectory(prefix="bench-carddav-") as tmp:
        work = Path(tmp)
        with Radicale(work / "radicale", fsync=args.fsync) as server:
            bench_target(server, work, args.count, photo, args.concurrency)
            bench_engine(server, work, args.count, photo, args.concurrency)


if __name__ == "__main__":
    main()
