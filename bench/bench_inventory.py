"""Benchmark: a full first run and a no-change run of the inventory job, against
`ldapsearch` and against the cron script an administrator would write
(bench/baseline_cron.py: python-ldap paged read + SQLAlchemy upsert), all in the same run.

    .venv/bin/python bench/bench_inventory.py [--sizes 20000,100000] [--repeat 5]
                                              [--db sqlite|postgres]

For each size it loads N generated `device` entries into a private slapd (slapadd),
then measures, each in its own process so peak RSS is that process's alone, `--repeat`
interleaved rounds of:
  * ldapsearch -E pr=1000 dumping them,
  * the cron script's first run (empty table) and `syncd sync inventory`'s first run
    (full read, N creates, fresh state),
  * the cron script's second run (it rewrites every row) and syncd's no-change run.
`--db postgres` puts the target table (and syncd's state) into a private PostgreSQL.
Prints medians of wall time, entries/s, the highest peak RSS, the ratios to ldapsearch
and to the cron script of the same round, the process's CPU time (steadier than wall
time on a shared machine) and the load average. The syncd runs use the bytecode cache
like an installed syncd (see child_env). Needs the bench extra (python-ldap).
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


def _url_and_password(url: str, work: Path) -> str:
    """`url: "..."` for the config, with a PostgreSQL password moved to a file (syncd
    refuses passwords inside URLs)."""
    from sqlalchemy.engine import URL, make_url

    u = make_url(url)
    if not u.password:
        return f'url: "{url}"'
    (work / "dbpw").write_text(str(u.password))
    plain = URL.create(u.drivername, u.username, None, u.host, u.port, u.database)
    plain = plain.render_as_string()
    return f'url: "{plain}", password: {{file: "{work}/dbpw"}}'


def config(slapd: Slapd, work: Path, state_url: str, db_url: str) -> Path:
    (work / "pw").write_text(slapd.root_pw)
    path = work / "syncd.yaml"
    path.write_text(f"""\
version: 1
state: {{{_url_and_password(state_url, work)}}}
connections:
  dir: {{type: ldap, url: "{slapd.url}", bind_dn: "{slapd.root_dn}",
         password: {{file: "{work}/pw"}}, start_tls: false, page_size: 1000}}
  db: {{type: sql, {_url_and_password(db_url, work)}}}
jobs:
  inventory:
    source: {{connection: dir, base: "ou=devices,dc=example,dc=com",
              filter: "(objectClass=device)", changes: full}}
    mapping: {ROOT}/mappings/inventory-openldap-device.yaml
    target: {{connection: db, table: devices}}
""")
    return path


class Databases:
    """Fresh, empty target (and state) databases for each first run: SQLite files in
    the work directory, or databases of a private PostgreSQL cluster."""

    def __init__(self, kind: str, work: Path):
        self.kind, self.work, self.pg = kind, work, None
        if kind == "postgres":
            from tests.servers.postgres import PostgresCluster

            self.pg = PostgresCluster()
            self.pg.setup()
            self.pg.start()

    def fresh(self, name: str) -> str:
        if self.pg is None:
            path = self.work / f"{name}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        self.pg.psql("postgres", f'DROP DATABASE IF EXISTS "{name}"')
        return self.pg.create_database(name)

    def close(self) -> None:
        if self.pg is not None:
            self.pg.__exit__(None, None, None)


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


STEPS = ("ldapsearch", "cron first", "syncd first", "cron again", "syncd no-change")
BASELINE = {"syncd first": "cron first", "syncd no-change": "cron again"}
"""The cron script's run each syncd run is compared with (same round)."""


def devices_slapd(work: Path, n: int) -> Slapd:
    """A private slapd in ``work`` holding ``n`` generated device entries, started (the
    LDIF stays in ``work / "devices.ldif"``)."""
    slapd = Slapd(work / "slapd")
    slapd.setup()
    # Written entry by entry: the benchmark process stays small, so the peak RSS its
    # children report (Linux counts the pre-exec image of a fork) is their own.
    ldif = work / "devices.ldif"
    write_devices(str(ldif), n)
    slapd.slapadd_file(ldif)
    slapd.start()
    return slapd


def run_size(n: int, repeat: int, db: str) -> dict[str, list[tuple[float, float, float]]]:
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        slapd = devices_slapd(work, n)
        dbs = Databases(db, work)
        try:
            base = "ou=devices,dc=example,dc=com"
            dump = ["ldapsearch", "-x", "-LLL", "-H", slapd.url, "-D", slapd.root_dn]
            dump += ["-w", slapd.root_pw, "-b", base, "-E", "pr=1000/noprompt"]
            dump += ["(objectClass=device)"]
            env = child_env()
            warm_bytecode(env)
            python = str(ROOT / ".venv" / "bin" / "python")
            results: dict[str, list[tuple[float, float, float]]] = {s: [] for s in STEPS}
            for _ in range(repeat):
                results["ldapsearch"].append(measure(dump))
                cron_db = dbs.fresh("cron")
                cfg = config(slapd, work, dbs.fresh("state"), dbs.fresh("inventory"))
                cron = [python, str(ROOT / "bench" / "baseline_cron.py"), slapd.url]
                cron += [slapd.root_dn, str(work / "pw"), base, cron_db]
                sync = [SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", "inventory"]
                results["cron first"].append(measure(cron, env=env))
                results["syncd first"].append(measure(sync, env=env))
                results["cron again"].append(measure(cron, env=env))
                results["syncd no-change"].append(measure(sync, env=env))
            return results
        finally:
            dbs.close()
            slapd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = ap.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        load_before = os.getloadavg()
        res = run_size(n, args.repeat, args.db)
        load_after = os.getloadavg()
        print(
            f"\n{n} entries into {args.db} (medians of {args.repeat} interleaved rounds; load "
            f"average {load_before[0]:.1f} before, {load_after[0]:.1f}/{load_after[1]:.1f} "
            f"after (1/5 min), {os.cpu_count()} CPUs):"
        )
        head = ("step", "wall s", "entries/s", "peak MB", "x ldapsearch", "x cron", "CPU s")
        head += ("CPU x cron",)
        print("  {:16} {:>7} {:>10} {:>8} {:>12} {:>7} {:>7} {:>10}".format(*head))
        dump = res["ldapsearch"]
        for name, runs in res.items():
            wall, rss, cpu = median_of(runs)
            # Ratios per round (each against the baseline run beside it), then the median.
            x_dump = statistics.median(r[0] / d[0] for r, d in zip(runs, dump, strict=True))
            base = res.get(BASELINE.get(name, ""))
            x_cron, x_cpu = f"{'':7}", ""
            if base:
                pairs = list(zip(runs, base, strict=True))
                x_cron = f"{statistics.median(r[0] / b[0] for r, b in pairs):7.2f}"
                x_cpu = f"{statistics.median(r[2] / b[2] for r, b in pairs):10.2f}"
            print(
                f"  {name:16} {wall:7.2f} {n / wall:10.0f} {rss:8.1f} {x_dump:12.2f} "
                f"{x_cron} {cpu:7.2f} {x_cpu}"
            )
        print("  (x ldapsearch, x cron: medians of the per-round ratios to the baseline run")
        print("  beside it; CPU s: the process's own user+system time; ldapsearch's excludes")
        print("  slapd's. CPU x cron is the steadier ratio on a loaded machine.)")


if __name__ == "__main__":
    main()
