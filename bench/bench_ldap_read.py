"""Benchmark: reading N entries with the LDAP source vs `ldapsearch`, in the same run.

    .venv/bin/python bench/bench_ldap_read.py [--sizes 10000,100000] [--repeat 3] [--ldap3]

Loads N generated inetOrgPerson entries (12 attributes each) into a private slapd, then
measures, each in its own process (so peak RSS is that reader's alone):
  * ldapsearch -E pr=1000/noprompt dumping them to /dev/null (the baseline),
  * LdapSource changes: full (paged by 1000), consuming every Change,
  * LdapSource changes: syncrepl initial refresh (one streamed search),
  * with --ldap3: ldap3's own paged_search(generator=True), for comparison.
Prints medians of wall time, entries/s, peak RSS and the ratio to ldapsearch; then the
time of an incremental read (syncrepl and timestamp) that finds 15 changes (10 modified,
3 added, 2 deleted), which should not grow with the directory size.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEOPLE = "ou=people,dc=example,dc=com"


def people_ldif(n: int, offset: int = 0, seed: int = 1) -> str:
    rnd = random.Random(seed + offset)
    first = ["Anna", "Jörg", "Zoë", "Łukasz", "María", "Олег", "太郎", "Amélie", "John"]
    out = []
    for i in range(offset, offset + n):
        f = rnd.choice(first)
        out.append(
            f"dn: uid=u{i:07d},{PEOPLE}\n"
            "objectClass: inetOrgPerson\n"
            f"uid: u{i:07d}\n"
            f"cn: {f} Person{i}\n"
            f"sn: Person{i}\n"
            f"givenName: {f}\n"
            f"mail: u{i}@example.com\n"
            f"telephoneNumber: +33 1 {rnd.randrange(10**8):08d}\n"
            f"title: Engineer level {rnd.randrange(5)}\n"
            f"ou: dept-{rnd.randrange(50)}\n"
            f"l: City {rnd.randrange(100)}\n"
            f"employeeNumber: {100000 + i}\n"
            f"description: Generated person number {i} for the read benchmark\n"
        )
    return "\n".join(out)


def child(mode: str, url: str, pw_file: str, size: int) -> None:
    """Run one reader in this process and check it read every entry."""
    from syncd.connectors.ldap.connection import LdapConnection, connect
    from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions

    cfg = LdapConnection(
        url=url,
        bind_dn="cn=admin,dc=example,dc=com",
        password={"file": pw_file},
        start_tls=False,
        page_size=1000,
    )
    count = 0
    if mode == "ldap3":
        import ldap3

        conn = connect(cfg)
        for _ in conn.extend.standard.paged_search(
            PEOPLE,
            "(objectClass=inetOrgPerson)",
            attributes=["*", "entryUUID"],
            paged_size=1000,
            generator=True,
            dereference_aliases=ldap3.DEREF_NEVER,
        ):
            count += 1
    else:
        opts = LdapSourceOptions(base=PEOPLE, filter="(objectClass=inetOrgPerson)", changes=mode)
        read = LdapSource(cfg, opts, job="bench").read(None)
        for _ in read.changes:
            count += 1
        assert read.outcome is not None and read.outcome.complete
    if count != size:
        raise SystemExit(f"{mode}: read {count} entries, expected {size}")


GNU_TIME = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)


def measure(cmd: list[str], work: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process.

    A forked child's ru_maxrss starts at the parent's RSS (Linux keeps the pre-exec
    high-water mark), so the peak is taken by GNU time, a small process, when present.
    """
    out = work / "rss"
    full = [GNU_TIME, "-f", "%M", "-o", str(out), *cmd] if GNU_TIME else cmd
    start = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:4]} failed: {proc.stderr.read().decode()[-2000:]}")
    if GNU_TIME:
        return wall, int(out.read_text().split()[-1]) / 1024.0
    return wall, usage.ru_maxrss / 1024.0


def incremental(url: str, pw: str, server, mode: str, repeat: int) -> float:
    """Median seconds of an incremental read (mode syncrepl or timestamp) that finds
    15 changes (10 modified, 3 added, 2 deleted), measured in this process."""
    from syncd.connectors.ldap.connection import LdapConnection
    from syncd.connectors.ldap.source import LdapSource, LdapSourceOptions

    cfg = LdapConnection(
        url=url,
        bind_dn="cn=admin,dc=example,dc=com",
        password={"file": pw},
        start_tls=False,
        page_size=1000,
    )
    opts = LdapSourceOptions(
        base=PEOPLE, filter="(objectClass=inetOrgPerson)", changes=mode, timestamp_overlap=0
    )
    source = LdapSource(cfg, opts, job="bench")
    read = source.read(None)
    for _ in read.changes:
        pass
    cursor = read.outcome.cursor
    times = []
    base = 1000 if mode == "syncrepl" else 2000
    for r in range(repeat):
        time.sleep(1.1)  # timestamps have one-second resolution
        mods = "".join(
            f"dn: uid=u{i:07d},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: r{r}\n\n"
            for i in range(10 * r, 10 * r + 10)
        )
        adds = "".join(
            f"dn: uid=new{mode}{r}-{k},{PEOPLE}\nchangetype: add\nobjectClass: inetOrgPerson\n"
            f"uid: new{mode}{r}-{k}\ncn: New {k}\nsn: New\n\n"
            for k in range(3)
        )
        server.modify(mods + adds)
        server.delete(*(f"uid=u{i:07d},{PEOPLE}" for i in (base + 2 * r, base + 1 + 2 * r)))
        start = time.perf_counter()
        read = source.read(cursor)
        count = sum(1 for _ in read.changes)
        times.append(time.perf_counter() - start)
        cursor = read.outcome.cursor
        expected = 15 if mode == "syncrepl" else 13  # timestamps cannot see deletes
        if count != expected:
            raise SystemExit(f"incremental {mode}: {count} changes, expected {expected}")
    return statistics.median(times)


def bench_size(size: int, repeat: int, with_ldap3: bool) -> None:
    from tests.servers.slapd import Slapd

    with tempfile.TemporaryDirectory(prefix="bench-ldap-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        s = Slapd(work / "slapd")
        s.setup()
        # Load in chunks and drop the text: a forked child starts with this process's
        # RSS, which would show up in its peak.
        for start in range(0, size, 20000):
            s.slapadd(people_ldif(min(20000, size - start), offset=start))
        s.start()
        try:
            print(f"\nloaded {size} entries in {time.perf_counter() - t0:.1f} s")
            pw = work / "pw"
            pw.write_text(s.root_pw)
            runs = {
                "ldapsearch": [
                    "ldapsearch",
                    "-x",
                    "-LLL",
                    "-H",
                    s.url,
                    "-D",
                    s.root_dn,
                    "-w",
                    s.root_pw,
                    "-E",
                    "pr=1000/noprompt",
                    "-b",
                    PEOPLE,
                    "(objectClass=inetOrgPerson)",
                    "*",
                    "entryUUID",
                ],
            }
            for mode in ["full", "syncrepl"] + (["ldap3"] if with_ldap3 else []):
                runs[f"syncd {mode}"] = [
                    sys.executable,
                    __file__,
                    "--child",
                    mode,
                    s.url,
                    str(pw),
                    str(size),
                ]
            results: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
            for _ in range(repeat):
                for name, cmd in runs.items():
                    results[name].append(measure(cmd, work))
            inc = {m: incremental(s.url, str(pw), s, m, repeat) for m in ("syncrepl", "timestamp")}
        finally:
            s.stop()
    base = statistics.median(w for w, _ in results["ldapsearch"])
    print(f"{size} entries, median of {repeat}:")
    print(f"{'reader':<18}{'wall s':>9}{'entries/s':>12}{'peak MB':>10}{'x ldapsearch':>14}")
    for name, values in results.items():
        wall = statistics.median(w for w, _ in values)
        rss = max(r for _, r in values)
        print(f"{name:<18}{wall:>9.2f}{size / wall:>12.0f}{rss:>10.1f}{wall / base:>14.2f}")
    for mode, seconds in inc.items():
        print(f"incremental {mode} read of 15 changes: {seconds * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="comma-separated, e.g. 10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ldap3", action="store_true", help="also time ldap3 paged_search")
    parser.add_argument(
        "--child", nargs=4, metavar=("MODE", "URL", "PW", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        mode, url, pw, n = args.child
        child(mode, url, pw, int(n))
        return
    for size in (int(x) for x in args.sizes.split(",")):
        bench_size(size, args.repeat, args.ldap3)


if __name__ == "__main__":
    main()
