"""Benchmark: the address book job into the Graph emulator (real msal + httpx), counting
the Graph requests the emulator received.

    .venv/bin/python bench/bench_graph.py [--count 1000] [--mailboxes 200] [--photos]

The source is a CSV file of ``count`` people (no LDAP server needed: the cost measured
is the target's), the engine runs the real job. Steps:

1. one mailbox: a first run (goal: <= 6 Graph requests per 100 contacts);
2. ``mailboxes`` mailboxes (fan-out by a list): a first run, a second run (the delta
   query shows syncd's own writes of run 1, so each mailbox is listed once and found
   unchanged), a run without changes (goal: one delta request per mailbox).

Sign-in requests (OpenID configuration, token) go to the login host and are counted
apart. Times include the emulator (a thread of this process); the ratio of each run's
time to the first fan-out run's (the baseline of this same invocation) is printed.
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from syncd.config import load_config  # noqa: E402
from syncd.engine import run_job  # noqa: E402
from tests.servers.fixtures_graph import write_secret  # noqa: E402
from tests.servers.graph_emulator import GraphEmulator  # noqa: E402
from tests.servers.tls import make_ca_and_cert  # noqa: E402

MAPPING = """version: 1
key: id
fields:
  display_name: name
  given_name: given
  surname: sn
  department: dept
  job_title: title
  email_addresses: mail
  business_phones: [phone]
  business_city: city
{photo}"""


def write_people(path: Path, count: int, photos: bool) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "given", "sn", "dept", "title", "mail", "phone", "city", "photo"])
        for n in range(count):
            photo = (
                base64.b64encode(b"\xff\xd8" + bytes([n % 256]) * 4000).decode() if photos else ""
            )
            w.writerow(
                [
                    f"id-{n:06d}",
                    f"Person {n:06d}",
                    "Person",
                    f"{n:06d}",
                    f"Dept {n % 17}",
                    "Clerk",
                    f"p{n}@example.com",
                    f"+49 30 {n:07d}",
                    "Berlin",
                    photo,
                ]
            )


def config(tmp: Path, emu: GraphEmulator, scope: dict, photos: bool) -> Path:
    (tmp / "m.yaml").write_text(
        MAPPING.format(photo='  photo: "{{ photo | first | b64decode }}"\n' if photos else "")
    )
    cfg = {
        "version": 1,
        "state": {"url": f"sqlite:///{tmp}/state-{len(list(tmp.iterdir()))}.db"},
        "connections": {
            "hr": {"type": "csv", "path": str(tmp / "people.csv"), "min_age": 0},
            "m365": {
                "type": "graph",
                "tenant_id": emu.tenant,
                "client_id": emu.client_id,
                "client_secret": write_secret(tmp, "g.pw", emu.client_secret),
                "authority_url": emu.authority_url,
                "graph_url": emu.graph_url,
                "ca_file": emu.tls["ca"],
            },
        },
        "jobs": {
            "book": {
                "source": {"connection": "hr", "id_column": "id"},
                "mapping": str(tmp / "m.yaml"),
                "target": {"connection": "m365", "folder": "Company Directory", **scope},
            }
        },
    }
    path = tmp / f"syncd-{len(list(tmp.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(label: str, cfg, emu: GraphEmulator, contacts: int, mailboxes: int, base: float | None):
    g0, l0 = emu.graph_requests, emu.login_requests
    started = time.perf_counter()
    rep = run_job(cfg, "book")
    took = time.perf_counter() - started
    assert rep.status == "ok", rep.error
    graph = emu.graph_requests - g0
    ratio = f"{took / base:5.2f}x" if base else ("  1.00x (baseline)" if base is None else "")
    print(
        f"{label:<44} {took:7.2f} s {ratio}  {graph:6d} Graph requests "
        f"({graph * 100 / max(contacts * mailboxes, 1):5.2f} per 100 contacts, "
        f"{graph / mailboxes:6.2f} per mailbox), sign-in {emu.login_requests - l0}, "
        f"created {rep.counts['created']}, drifted {rep.counts['drifted']}"
    )
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--mailboxes", type=int, default=200)
    ap.add_argument("--photos", action="store_true", help="a 4 KB photo per contact")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        tls = make_ca_and_cert(tmp / "tls", hosts=["127.0.0.1"])
        emu = GraphEmulator(tls).start()
        try:
            write_people(tmp / "people.csv", args.count, args.photos)
            emu.add_mailbox("book@contoso.test")
            one = load_config(config(tmp, emu, {"mailbox": "book@contoso.test"}, args.photos))
            run(f"1 mailbox, {args.count} contacts: first run", one, emu, args.count, 1, 0.0)
            boxes = [f"user{n:04d}@contoso.test" for n in range(args.mailboxes)]
            for b in boxes:
                emu.add_mailbox(b)
            fan = load_config(config(tmp, emu, {"mailboxes": boxes}, args.photos))
            label = f"{args.mailboxes} mailboxes x {args.count}"
            base = run(f"{label}: first run", fan, emu, args.count, len(boxes), None)
            run(f"{label}: 2nd run (own writes in delta)", fan, emu, args.count, len(boxes), base)
            run(f"{label}: no-change run", fan, emu, args.count, len(boxes), base)
            print(
                f"largest request body: {emu.largest_body} bytes; violations: {len(emu.violations)}"
            )
        finally:
            emu.stop()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
