"""Benchmark: a full first run and a no-change run of the inventory job, against
`ldapsearch` dumping the same entries in the same run.

    .venv/bin/python bench/bench_inventory.py [--sizes 20000,100000] [--repeat 1]

For each size it loads N generated `device` entries into a private slapd (slapadd),
then measures, each in its own process so peak RSS is that process's alone:
  * ldapsearch -E pr=1000 dumping them (the baseline),
  * `syncd sync inventory` first run (full read, N creates into SQLite),
  * `syncd sync inventory` second run (no changes).
Prints wall time, entries/s, peak RSS and the ratio to the ldapsearch time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ldifgen import write_devices  # noqa: E402
from tests.servers.slapd import Slapd  # noqa: E402

SYNCD = str(ROOT / ".venv" / "bin" / "syncd")


def measure(cmd: list[str], **kw) -> tuple[float, float]:
    """Run cmd; return (wall seconds, peak RSS in MB of that process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


def config(slapd: Slapd, work: Path) -> Path:
    (work / "pw").write_text(slapd.root_pw)
    path = work / "syncd.yaml"
    path.write_text(f"""\
version: 1
state: {{url: "sqlite:///{work}/state.db"}}
connections:
  dir: {{type: ldap, url: "{slapd.url}", bind_dn: "{slapd.root_dn}",
         password: {{file: "{work}/pw"}}, start_tls: false, page_size: 1000}}
  db: {{type: sql, url: "sqlite:///{work}/inventory.db"}}
jobs:
  inventory:
    source: {{connection: dir, base: "ou=devices,dc=example,dc=com",
              filter: "(objectClass=device)", changes: full}}
    mapping: {ROOT}/mappings/inventory-openldap-device.yaml
    target: {{connection: db, table: devices}}
""")
    return path


def run_size(n: int, repeat: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        slapd = Slapd(work / "slapd")
        slapd.setup()
        # Written entry by entry: the benchmark process stays small, so the peak RSS its
        # children report (Linux counts the pre-exec image of a fork) is their own.
        ldif = work / "devices.ldif"
        write_devices(str(ldif), n)
        subprocess.run(
            ["slapadd", "-q", "-w", "-f", str(slapd.conf), "-b", slapd.base, "-l", str(ldif)],
            check=True,
            capture_output=True,
        )
        slapd.start()
        try:
            cfg = config(slapd, work)
            dump = [
                "ldapsearch",
                "-x",
                "-LLL",
                "-H",
                slapd.url,
                "-D",
                slapd.root_dn,
                "-w",
                slapd.root_pw,
                "-b",
                "ou=devices,dc=example,dc=com",
                "-E",
                "pr=1000/noprompt",
                "(objectClass=device)",
            ]
            base = [measure(dump) for _ in range(repeat)]
            results = {
                "ldapsearch": (statistics.median(w for w, _ in base), max(r for _, r in base))
            }
            firsts, seconds = [], []
            for _ in range(repeat):
                for f in ("state.db", "inventory.db"):
                    (work / f).unlink(missing_ok=True)
                firsts.append(
                    measure([SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", "inventory"])
                )
                seconds.append(
                    measure([SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", "inventory"])
                )
            results["syncd first run"] = (
                statistics.median(w for w, _ in firsts),
                max(r for _, r in firsts),
            )
            results["syncd no-change run"] = (
                statistics.median(w for w, _ in seconds),
                max(r for _, r in seconds),
            )
            return results
        finally:
            slapd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        res = run_size(n, args.repeat)
        baseline = res["ldapsearch"][0]
        print(f"\n{n} entries (median of {args.repeat}):")
        head = ("step", "wall s", "entries/s", "peak RSS MB", "x ldapsearch")
        print("  {:22} {:>8} {:>10} {:>12} {:>13}".format(*head))
        for name, (wall, rss) in res.items():
            print(f"  {name:22} {wall:8.2f} {n / wall:10.0f} {rss:12.1f} {wall / baseline:13.2f}")


if __name__ == "__main__":
    main()
