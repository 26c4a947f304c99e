"""Benchmark: incremental `syncd sync` runs (syncrepl and timestamp) that find 15 changes,
against the full run on the same data, on directories of several sizes.

    .venv/bin/python bench/bench_incremental.py [--sizes 10000,100000] [--rounds 3]
                                                [--profile DIR]

For each size it loads N generated `device` entries into a private slapd (slapadd), then
measures, each `syncd` step in its own process (wall time, CPU time and peak RSS of that
process; all sizes' slapds run at once and the steps alternate between the sizes, so a
loaded machine slows every size alike):
  * ldapsearch -E pr=1000 dumping the N entries (the baseline of the ratio column),
  * `syncd validate` (process start, imports, config and mapping: the fixed cost),
  * job `sr` (changes: syncrepl) first run: a full read, N creates into SQLite,
  * round A: 15 changes through ldapmodify/ldapadd/ldapdelete as the root DN (10 modified,
    3 added, 2 deleted), then the `sr` incremental run,
  * job `ts` (changes: timestamp, its own table) first run: full read, sets the watermark,
  * --rounds times (default 3) round B: 15 other changes, then the `ts` incremental run
    and another `sr` one (medians are reported; the machine may be noisy),
  * `sr --full` and `ts --full` on the same data (complete reconciliation).
Every run's counts are checked from `syncd status --json` (the run fails loudly if the
incremental run did not read about 15 changes and write 10 updates, 3 creates, 2 deletes;
timestamp finds deletes only in full scans, by design, so its incremental run must show
13 changes and no delete, and `ts --full` the 2 deletes of each round). Prints a table per
size and the 100k/10k (largest/smallest size) ratios of the incremental run times, wall and
CPU (issue 3 aims: < 1.5; on a shared machine the CPU ratio is the steadier one).

The syncd under test is this checkout's (PYTHONPATH is set to it for every child), run by
the `syncd` script beside the Python that runs this file; so a copy of a commit
(`git archive HEAD | tar -x -C DIR`) can be measured with the project venv.

--profile DIR: after the measured runs, one more round per method is run under
`py-spy record -f raw` (DIR/<size>-<method>.txt, flame-graph input), not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ldifgen import write_devices  # noqa: E402
from tests.servers.slapd import Slapd  # noqa: E402

BIN = Path(sys.executable).parent
SYNCD = str(BIN / "syncd")
PYSPY = str(BIN / "py-spy")
# Children import syncd and connectors from this checkout, whatever the venv points at.
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
DEVICES = "ou=devices,dc=example,dc=com"
OVERLAP = 60  # timestamp_overlap of job ts (the default)


@dataclass
class Row:
    """One measured step: wall and CPU (user + system) seconds, peak RSS, change method."""

    step: str
    wall: float
    cpu: float
    rss: float
    method: str = ""


def measure(step: str, cmd: list[str]) -> Row:
    """Run cmd as its own process; exits with its stderr if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd} failed ({code}): {proc.stderr.read().decode()[-2000:]}")
    return Row(step, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0)


def config(slapd: Slapd, work: Path) -> Path:
    """Two jobs over the same devices: `sr` (syncrepl) and `ts` (timestamp), each with
    its own SQLite target so neither run's table size depends on the other."""
    (work / "pw").write_text(slapd.root_pw)
    path = work / "syncd.yaml"
    mapping = ROOT / "mappings" / "inventory-openldap-device.yaml"
    src = f'connection: dir, base: "{DEVICES}", filter: "(objectClass=device)"'
    path.write_text(f"""\
version: 1
state: {{url: "sqlite:///{work}/state.db"}}
connections:
  dir: {{type: ldap, url: "{slapd.url}", bind_dn: "{slapd.root_dn}",
         password: {{file: "{work}/pw"}}, start_tls: false, page_size: 1000}}
  db_sr: {{type: sql, url: "sqlite:///{work}/inventory_sr.db"}}
  db_ts: {{type: sql, url: "sqlite:///{work}/inventory_ts.db"}}
jobs:
  sr:
    source: {{{src}, changes: syncrepl}}
    mapping: {mapping}
    target: {{connection: db_sr, table: devices}}
  ts:
    source: {{{src}, changes: timestamp, timestamp_overlap: {OVERLAP}}}
    mapping: {mapping}
    target: {{connection: db_ts, table: devices}}
""")
    return path


def last_run(cfg: Path, job: str) -> dict:
    """The newest run record of job, from `syncd status --json`."""
    out = subprocess.run(
        [SYNCD, "-q", "-c", str(cfg), "status", "--json", "--runs", "1", job],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
    ).stdout
    runs = json.loads(out)[0]["runs"]
    if not runs:
        raise SystemExit(f"job {job}: no run recorded")
    return runs[0]


def check(cfg: Path, job: str, step: str, *, read: tuple[int, int], **want: int) -> dict:
    """Fail loudly unless the last run of job succeeded, read between read[0] and read[1]
    changes and wrote exactly ``want`` (created/updated/deleted) rows."""
    run = last_run(cfg, job)
    counts = run.get("counts") or {}
    got = {k: counts.get(k, 0) for k in ("created", "updated", "deleted")}
    expect = {"created": 0, "updated": 0, "deleted": 0, **want}
    ok = run.get("status") == "ok" and read[0] <= counts.get("read", 0) <= read[1] and got == expect
    if not ok:
        raise SystemExit(
            f"{step}: expected read in {read} and {expect}, got status {run.get('status')}, "
            f"counts {counts}, method {run.get('method')}, notes {run.get('notes')}"
        )
    return run


def round_of_changes(slapd: Slapd, n: int, tag: str, offset: int) -> None:
    """15 changes as the root DN: 10 entries modified, 3 added, 2 deleted (indices spread
    over the whole directory; ``offset`` keeps the rounds apart)."""
    modified = [(n * j) // 10 + 10 * offset for j in range(10)]
    deleted = [(n * j) // 10 + 10 * offset + 5 for j in (3, 7)]
    slapd.modify(
        "\n".join(
            f"dn: cn=dev-{i:07d},{DEVICES}\nchangetype: modify\n"
            f"replace: description\ndescription: Device {i} changed in round {tag}\n-\n"
            f"replace: l\nl: Round {tag}\n"
            for i in modified
        )
    )
    slapd.add(
        "\n".join(
            f"dn: cn=new-{tag}-{j},{DEVICES}\nobjectClass: device\ncn: new-{tag}-{j}\n"
            f"serialNumber: NEW-{tag}-{j}\ndescription: added in round {tag}\n"
            for j in range(3)
        )
    )
    slapd.delete(*(f"cn=dev-{i:07d},{DEVICES}" for i in deleted))


def profile(cmd: list[str], out: Path) -> None:
    """Run cmd under py-spy (raw collapsed stacks, subprocesses too) into out."""
    subprocess.run(
        [PYSPY, "record", "-f", "raw", "-r", "200", "-s", "-o", str(out), "--", *cmd],
        check=True,
        capture_output=True,
        env=ENV,
    )


class Bench:
    """One size: a private slapd with N devices, the syncd config, the measured rows."""

    def __init__(self, n: int, work: Path):
        self.n = n
        self.rows: list[Row] = []
        self.slapd = Slapd(work / "slapd")
        self.slapd.setup()
        ldif = work / "devices.ldif"
        write_devices(str(ldif), n)
        conf = str(self.slapd.conf)
        subprocess.run(
            ["slapadd", "-q", "-w", "-f", conf, "-b", self.slapd.base, "-l", str(ldif)],
            check=True,
            capture_output=True,
        )
        self.loaded = time.time()
        ldif.unlink()
        self.slapd.start()
        self.cfg = config(self.slapd, work)
        self.live = n  # device entries in the directory now

    def baseline(self) -> None:
        s = self.slapd
        dump = ["ldapsearch", "-x", "-LLL", "-H", s.url, "-D", s.root_dn, "-w", s.root_pw]
        dump += ["-b", DEVICES, "-E", "pr=1000/noprompt", "(objectClass=device)"]
        self.rows.append(measure("ldapsearch dump", dump))
        self.rows.append(measure("syncd validate", [SYNCD, "-q", "-c", str(self.cfg), "validate"]))

    def sync(self, step: str, job: str, *extra: str, read: tuple[int, int], **want: int) -> None:
        """A measured `syncd sync` of job, then its counts checked."""
        cmd = [SYNCD, "-q", "-c", str(self.cfg), "sync", "--no-progress", *extra, job]
        row = measure(step, cmd)
        run = check(self.cfg, job, f"{self.n}: {step}", read=read, **want)
        row.method = run.get("method") or ""
        self.rows.append(row)
        print(
            f"  [{self.n}] {step}: {row.wall:.2f}s wall, {row.cpu:.2f}s cpu, {row.rss:.0f} MB, "
            f"counts {run['counts']}",
            flush=True,
        )

    def changes(self, tag: str, offset: int) -> None:
        round_of_changes(self.slapd, self.n, tag, offset)
        self.live += 1

    def profile(self, profile_dir: Path, offset: int) -> None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        self.changes("C", offset)
        for job in ("sr", "ts"):
            out = profile_dir / f"{self.n}-{job}.txt"
            profile([SYNCD, "-q", "-c", str(self.cfg), "sync", "--no-progress", job], out)
            print(f"  [{self.n}] profile of {job} incremental: {out}")

    def table(self) -> str:
        base = self.rows[0].wall
        lines = [f"\n{self.n} entries:"]
        head = ("step", "wall s", "cpu s", "peak RSS MB", "x ldapsearch", "method")
        lines.append("  {:26} {:>8} {:>7} {:>12} {:>13}  {}".format(*head))
        for r in self.rows:
            lines.append(
                f"  {r.step:26} {r.wall:8.2f} {r.cpu:7.2f} {r.rss:12.1f} "
                f"{r.wall / base:13.2f}  {r.method}"
            )
        for job in ("sr", "ts"):
            wall, cpu = self.median(job)
            lines.append(
                f"  {job + ' incremental, median':26} {wall:8.2f} {cpu:7.2f} {'':12} "
                f"{wall / base:13.2f}"
            )
        return "\n".join(lines)

    def median(self, job: str) -> tuple[float, float]:
        """Median wall and CPU seconds of job's incremental runs."""
        rows = [r for r in self.rows if r.step.startswith(f"{job} incremental")]
        return statistics.median(r.wall for r in rows), statistics.median(r.cpu for r in rows)

    def get(self, step: str) -> Row:
        return next(r for r in self.rows if r.step == step)


def run_all(sizes: list[int], rounds: int, profile_dir: Path | None, work: Path) -> list[Bench]:
    """Every size's slapd runs at once and the steps alternate between sizes, so a shared,
    loaded machine slows all sizes alike (the ratio between sizes is what matters)."""
    benches: list[Bench] = []
    try:
        for n in sizes:
            (work / str(n)).mkdir()
            benches.append(Bench(n, work / str(n)))
        for b in benches:
            b.baseline()
            b.sync("sr first run (full)", "sr", read=(b.n, b.n), created=b.n)
        # The timestamp job re-reads what changed within `timestamp_overlap` of its
        # watermark: keep the bulk load out of that window, as in a live directory.
        wait = max(b.loaded for b in benches) + OVERLAP + 2 - time.time()
        if wait > 0:
            print(f"  waiting {wait:.0f}s: bulk load older than the overlap window", flush=True)
            time.sleep(wait)
        for b in benches:
            b.changes("A", 0)
            b.sync("sr incremental (A)", "sr", read=(15, 17), updated=10, created=3, deleted=2)
        for b in benches:
            b.sync("ts first run (full)", "ts", read=(b.live, b.live), created=b.live)
        for r in range(1, rounds + 1):
            for b in benches:
                b.changes(f"B{r}", r)
                # Timestamps cannot see deletes: 13 changes; the full scan below finds them.
                b.sync(f"ts incremental (B{r})", "ts", read=(13, 15), updated=10, created=3)
                b.sync(
                    f"sr incremental (B{r})", "sr", read=(15, 17), updated=10, created=3, deleted=2
                )
        for b in benches:
            b.sync("sr --full", "sr", "--full", read=(b.live, b.live))
            b.sync("ts --full", "ts", "--full", read=(b.live, b.live), deleted=2 * rounds)
        if profile_dir is not None:
            for b in benches:
                b.profile(profile_dir, rounds + 1)
        return benches
    finally:
        for b in benches:
            b.slapd.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=3, help="rounds B (median reported)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-inc-") as tmp:
        benches = run_all(sizes, args.rounds, args.profile, Path(tmp))
    print(f"load average at end: {os.getloadavg()}")
    for b in benches:
        print(b.table())
    if len(benches) > 1:
        small = min(benches, key=lambda b: b.n)
        big = max(benches, key=lambda b: b.n)
        print(f"\nratio {big.n} / {small.n} entries (issue 3 aim for incremental runs: < 1.5):")
        print("  {:26} {:>6} {:>6}".format("step", "wall", "cpu"))
        for job in ("sr", "ts"):
            (bw, bc), (sw, sc) = big.median(job), small.median(job)
            print(f"  {job + ' incremental, median':26} {bw / sw:6.2f} {bc / sc:6.2f}")
        for step in ("syncd validate", "sr first run (full)", "sr --full", "ts --full"):
            bg, sm = big.get(step), small.get(step)
            print(f"  {step:26} {bg.wall / sm.wall:6.2f} {bg.cpu / sm.cpu:6.2f}")


if __name__ == "__main__":
    main()
