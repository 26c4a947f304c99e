"""Benchmark: the nightly HR job, N HR rows reconciled into an N-entry directory.

    .venv/bin/python bench/bench_hr.py [--rows 10000] [--changed 0.01]

A private slapd is bulk-loaded (slapadd) with N inetOrgPerson entries in 10 department
OUs, a `staff` group holding everyone and one group per department, exactly as the
shipped mapping (mappings/hr-csv-openldap.yaml) would have made them. The HR export
(CSV, like examples/hr-nightly.yaml) lists the same N people. Then, through
`syncd.engine.run_job` (CsvSource -> mapping -> planner -> LdapTarget):

  night 0  first run: every row is correlated to its existing entry (employeeNumber)
           and linked; nothing should need writing except the links' bookkeeping
  night 1  `--changed` of the rows changed: a third joiners, a third movers
           (department -> another OU and department group), a third leavers (disabled)
  night 2  the same export again: nothing to do

Printed per night: wall time and this process's CPU time (slapd's is not in it), the
run's counts, the LDAP operations the target issued
(counted in LdapTarget.ops, by kind) and the writes slapd logged in its accesslog,
and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import ldap3
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from syncd.config import load_config  # noqa: E402
from syncd.connectors.ldap.target import LdapTarget  # noqa: E402
from syncd.engine import run_job  # noqa: E402
from tests.servers.slapd import ROOT_PW, Slapd  # noqa: E402

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
DEPTS = [f"Dept{d}" for d in range(10)]
HEADER = "Personalnummer;Vorname;Nachname;E-Mail;Abteilung;Funktion;Vorgesetzter;Eintritt;Austritt"

TARGETS: list[LdapTarget] = []
_orig_init = LdapTarget.__init__


def _counting_init(self, *args, **kwargs):
    _orig_init(self, *args, **kwargs)
    TARGETS.append(self)


LdapTarget.__init__ = _counting_init  # type: ignore[method-assign]


def person(i: int, dept: str) -> dict:
    return {
        "emp": str(100000 + i),
        "given": f"Given{i}",
        "sur": f"Sur{i}",
        "dept": dept,
        "title": "Engineer" if i % 2 else "Clerk",
    }


def uid(p: dict) -> str:
    return f"{p['given']}.{p['sur']}".lower()


def dn(p: dict) -> str:
    return f"uid={uid(p)},ou={p['dept']},{PEOPLE}"


def directory_ldif(people: list[dict], managers: dict[str, dict]) -> str:
    out = [f"dn: ou=disabled,{BASE}\nobjectClass: organizationalUnit\nou: disabled\n"]
    for d in DEPTS:
        out.append(f"dn: ou={d},{PEOPLE}\nobjectClass: organizationalUnit\nou: {d}\n")
    for p in people:
        lines = [
            f"dn: {dn(p)}",
            "objectClass: inetOrgPerson",
            f"uid: {uid(p)}",
            f"cn: {p['given']} {p['sur']}",
            f"displayName: {p['given']} {p['sur']}",
            f"givenName: {p['given']}",
            f"sn: {p['sur']}",
            f"mail: {uid(p)}@example.com",
            f"title: {p['title']}",
            f"departmentNumber: {p['dept']}",
            f"employeeNumber: {p['emp']}",
        ]
        boss = managers[p["dept"]]
        if boss is not p:
            lines.append(f"manager: {dn(boss)}")
        out.append("\n".join(lines) + "\n")
    groups = {"staff": people, **{f"dept-{d.lower()}": [] for d in DEPTS}}
    for p in people:
        groups[f"dept-{p['dept'].lower()}"].append(p)
    for name, members in groups.items():
        lines = [f"dn: cn={name},{GROUPS}", "objectClass: groupOfNames", f"cn: {name}"]
        lines.append(f"member: cn=nobody,{BASE}")
        lines += [f"member: {dn(m)}" for m in members]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def csv_row(p: dict, managers: dict[str, dict]) -> str:
    boss = managers[p["dept"]]
    mgr = "" if boss["emp"] == p["emp"] else boss["emp"]
    mail = f"{uid(p)}@example.com"
    return f"{p['emp']};{p['given']};{p['sur']};{mail};{p['dept']};{p['title']};{mgr};2020-01-01;"


def write_export(path: Path, people: list[dict], managers: dict[str, dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for p in people:
            f.write(csv_row(p, managers) + "\n")
    past = time.time() - 120
    os.utime(path, (past, past))


def write_config(work: Path, server: Slapd) -> Path:
    pw = work / "root.pw"
    pw.write_text(ROOT_PW + "\n")
    cfg = yaml.safe_load((ROOT / "examples" / "hr-nightly.yaml").read_text())
    cfg["state"] = {"url": f"sqlite:///{work}/state.db"}
    cfg["connections"]["hr_export"].update(path=str(work / "drop"), min_age=0)
    cfg["connections"]["directory"] = {
        "type": "ldap",
        "url": server.url,
        "start_tls": False,
        "bind_dn": server.root_dn,
        "password": {"file": str(pw)},
    }
    job = cfg["jobs"]["hr-nightly"]
    job["mapping"] = str(ROOT / "mappings" / "hr-csv-openldap.yaml")
    job["report_dir"] = str(work / "reports")
    path = work / "hr.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def accesslog_writes(server: Slapd) -> Counter:
    conn = ldap3.Connection(server.url, server.root_dn, server.root_pw, auto_bind=True)
    found: Counter = Counter()
    for e in conn.extend.standard.paged_search(
        "cn=accesslog", "(reqType=*)", attributes=["reqType"], paged_size=1000, generator=True
    ):
        if e.get("type") == "searchResEntry":
            kind = e["attributes"]["reqType"]
            found[kind[0] if isinstance(kind, list) else kind] += 1
    conn.unbind()
    return found


def night(label: str, cfg_path: Path, server: Slapd) -> None:
    cfg = load_config(cfg_path)
    before = accesslog_writes(server)
    TARGETS.clear()
    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    rep = run_job(cfg, "hr-nightly")
    wall = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    ops: Counter = Counter()
    for t in TARGETS:
        ops.update(t.ops)
    writes = accesslog_writes(server) - before
    counts = {k: v for k, v in sorted(rep.counts.items()) if v}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n{label}: {rep.status} in {wall:.2f} s, {cpu:.2f} s CPU of this process "
        f"(peak RSS so far {rss:.0f} MB)"
    )
    print(f"  counts: {counts}")
    print(f"  LDAP ops by the target: {dict(sorted(ops.items()))} = {sum(ops.values())}")
    print(f"  writes in slapd's accesslog: {dict(sorted(writes.items()))}")
    if rep.error:
        print(f"  error: {rep.error}")
    if rep.report_path:
        head = Path(rep.report_path).read_text().splitlines()
        summary = next((line for line in head if line.startswith("summary:")), "")
        print(f"  report: {summary}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--changed", type=float, default=0.01)
    args = parser.parse_args()
    n = args.rows
    people = [person(i, DEPTS[i % len(DEPTS)]) for i in range(n)]
    managers = {d: next(p for p in people if p["dept"] == d) for d in DEPTS}
    with tempfile.TemporaryDirectory(prefix="bench-hr-") as tmp:
        work = Path(tmp)
        (work / "drop").mkdir()
        t0 = time.perf_counter()
        # Index what the job searches by (correlation, key, references), as a
        # production directory would: employeeNumber and mail.
        server = Slapd(
            work / "slapd",
            ldif=directory_ldif(people, managers),
            extra_main="index employeeNumber,mail eq",
        )
        server.setup()
        server.start()
        print(f"slapd loaded with {n} people + 11 groups in {time.perf_counter() - t0:.1f} s")
        try:
            cfg_path = write_config(work, server)
            export = work / "drop" / "hr-export-1.csv"
            write_export(export, people, managers)
            night("night 0 (first run: correlate and link everyone)", cfg_path, server)

            k = max(3, round(n * args.changed))
            third = k // 3
            managers_ids = {m["emp"] for m in managers.values()}
            plain = [p for p in people if p["emp"] not in managers_ids]
            leavers = {p["emp"] for p in plain[:third]}
            movers = {p["emp"] for p in plain[third : 2 * third]}
            tonight = []
            for p in people:
                if p["emp"] in leavers:
                    continue
                if p["emp"] in movers:
                    nxt = DEPTS[(DEPTS.index(p["dept"]) + 1) % len(DEPTS)]
                    p = dict(p, dept=nxt)
                tonight.append(p)
            joiners = k - 2 * third
            tonight += [person(n + j, DEPTS[j % len(DEPTS)]) for j in range(joiners)]
            write_export(export, tonight, managers)
            print(
                f"\nexport changed: {joiners} joiners, {len(movers)} movers, {len(leavers)} leavers"
            )
            night("night 1 (1% changed)", cfg_path, server)
            night("night 2 (same export again)", cfg_path, server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
