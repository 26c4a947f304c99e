"""Benchmark: a full first run and a no-change run of the inventory job, against
`ldapsearch` dumping the same entries in the same run.

    .venv/bin/python bench/bench_inventory.py [--sizes 20000,100000] [--repeat 1]

For each size it loads N generated `device` entries into a private slapd (slapadd),
then measures, each in its own process so peak RSS is that process's alone:
  * ldapsearch -E pr=1000 dumping them (the baseline),
  * `syncd sync inventory` first run (full read, N creates into SQLite),
  * `syncd sync inventory` second run (no changes).
Prints wall time, entries/s, peak RSS, the ratio to the ldapsearch time, the process's
CPU time (steadier than wall time on a shared machine) and the load average. The syncd
runs use the bytecode cache like an installed syncd (see child_env).
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


def measure(cmd: list[str], **kw) -> tuple[float, float, float]:
    """Run cmd; return (wall seconds, peak RSS in MB, CPU seconds (user + system)) of
    that process. CPU time is the steadier figure on a shared, loaded machine."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


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


def child_env() -> dict[str, str]:
    """The environment of the measured syncd runs: like an installed syncd, with the
    bytecode cache on. (With PYTHONDONTWRITEBYTECODE set, as in some dev shells, every
    run recompiles the project's modules: about 0.3 s per process.)"""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_bytecode(env: dict[str, str]) -> None:
    """Import what a sync imports once, untimed, so the bytecode cache is written."""
    modules = (
        "syncd.cli, syncd.engine, syncd.state.store, syncd.connectors.ldap, syncd.connectors.sql"
    )
    python = str(ROOT / ".venv" / "bin" / "python")
    subprocess.run([python, "-c", f"import {modules}"], check=True, env=env, cwd=ROOT)


def median_of(runs: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """Median wall time, highest peak RSS, median CPU time."""
    return (
        statistics.median(w for w, _, _ in runs),
        max(r for _, r, _ in runs),
        statistics.median(c for _, _, c in runs),
    )


def run_size(n: int, repeat: int) -> dict[str, tuple[float, float, float]]:
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
            results = {"ldapsearch": median_of([measure(dump) for _ in range(repeat)])}
            firsts, seconds = [], []
            env = child_env()
            warm_bytecode(env)
            sync = [SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", "inventory"]
            for _ in range(repeat):
                for f in ("state.db", "inventory.db"):
                    (work / f).unlink(missing_ok=True)
                firsts.append(measure(sync, env=env))
                seconds.append(measure(sync, env=env))
            results["syncd first run"] = median_of(firsts)
            results["syncd no-change run"] = median_of(seconds)
            return results
        finally:
            slapd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        load_before = os.getloadavg()[0]
        res = run_size(n, args.repeat)
        baseline = res["ldapsearch"][0]
        print(
            f"\n{n} entries (median of {args.repeat}; load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs):"
        )
        head = ("step", "wall s", "entries/s", "peak RSS MB", "x ldapsearch", "CPU s")
        print("  {:22} {:>8} {:>10} {:>12} {:>13} {:>7}".format(*head))
        for name, (wall, rss, cpu) in res.items():
            print(
                f"  {name:22} {wall:8.2f} {n / wall:10.0f} {rss:12.1f} "
                f"{wall / baseline:13.2f} {cpu:7.2f}"
            )
        print("  (CPU s: the process's own user+system time; ldapsearch's excludes slapd's)")


if __name__ == "__main__":
    main()
