"""Benchmark: incremental `syncd sync` runs (syncrepl and timestamp) that find 15 changes,
against the full run on the same data, on directories of several sizes.

    .venv/bin/python bench/bench_incremental.py [--sizes 10000,100000] [--rounds 3]
                                                [--profile DIR]

For each size it loads N generated `device` entries into a private slapd (slapadd), then
measures, each `syncd` step in its own process (wall time and that process's peak RSS):
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
size and the 100k/10k (largest/smallest size) ratios of the incremental run times (issue 3
aims: < 1.5).

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


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run cmd; return (wall seconds, peak RSS in MB of that process). Exits on failure."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd} failed ({code}): {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0


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


def run_size(n: int, rounds: int, profile_dir: Path | None) -> list[tuple[str, float, float, str]]:
    """All steps for one size: [(step, wall s, peak RSS MB, method)]."""
    rows: list[tuple[str, float, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="syncd-bench-inc-") as tmp:
        work = Path(tmp)
        slapd = Slapd(work / "slapd")
        slapd.setup()
        ldif = work / "devices.ldif"
        write_devices(str(ldif), n)
        subprocess.run(
            ["slapadd", "-q", "-w", "-f", str(slapd.conf), "-b", slapd.base, "-l", str(ldif)],
            check=True,
            capture_output=True,
        )
        loaded = time.time()
        ldif.unlink()
        slapd.start()
        try:
            cfg = config(slapd, work)
            dump = ["ldapsearch", "-x", "-LLL", "-H", slapd.url, "-D", slapd.root_dn]
            dump += ["-w", slapd.root_pw, "-b", DEVICES, "-E", "pr=1000/noprompt"]
            dump += ["(objectClass=device)"]
            rows.append(("ldapsearch dump", *measure(dump), ""))

            def sync(step: str, job: str, *extra: str, read: tuple[int, int], **want: int):
                cmd = [SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", *extra, job]
                wall, rss = measure(cmd)
                run = check(cfg, job, f"{n}: {step}", read=read, **want)
                rows.append((step, wall, rss, run.get("method") or ""))
                print(f"  [{n}] {step}: {wall:.2f}s, {rss:.0f} MB, counts {run['counts']}")

            rows.append(("syncd validate", *measure([SYNCD, "-q", "-c", str(cfg), "validate"]), ""))
            sync("sr first run (full)", "sr", read=(n, n), created=n)
            # The timestamp job re-reads what changed within `timestamp_overlap` of its
            # watermark: keep the bulk load out of that window, as in a live directory.
            wait = loaded + OVERLAP + 2 - time.time()
            if wait > 0:
                print(f"  [{n}] waiting {wait:.0f}s: bulk load older than the overlap window")
                time.sleep(wait)
            round_of_changes(slapd, n, "A", 0)
            sync("sr incremental (A)", "sr", read=(15, 17), updated=10, created=3, deleted=2)
            sync("ts first run (full)", "ts", read=(n + 1, n + 1), created=n + 1)
            for r in range(1, rounds + 1):
                round_of_changes(slapd, n, f"B{r}", r)
                # Timestamps cannot see deletes: 13 changes; the full scan below finds them.
                sync(f"ts incremental (B{r})", "ts", read=(13, 15), updated=10, created=3)
                sync(
                    f"sr incremental (B{r})", "sr", read=(15, 17), updated=10, created=3, deleted=2
                )
            live = n + 1 + rounds
            sync("sr --full", "sr", "--full", read=(live, live))
            sync("ts --full", "ts", "--full", read=(live, live), deleted=2 * rounds)
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                round_of_changes(slapd, n, "C", rounds + 1)
                for job in ("sr", "ts"):
                    out = profile_dir / f"{n}-{job}.txt"
                    profile([SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", job], out)
                    print(f"  [{n}] profile of {job} incremental: {out}")
            return rows
        finally:
            slapd.stop()


def summary(rows: list[tuple[str, float, float, str]]) -> dict[str, float]:
    """Median wall time of the incremental runs per method, and the other steps."""
    out = {step: wall for step, wall, _, _ in rows}
    for job in ("sr", "ts"):
        walls = [wall for step, wall, _, _ in rows if step.startswith(f"{job} incremental")]
        out[f"{job} incremental, median"] = statistics.median(walls)
        out[f"{job} incremental, best"] = min(walls)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--rounds", type=int, default=3, help="rounds B (median reported)")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles here")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[int, dict[str, float]] = {}
    tables = []
    for n in sizes:
        rows = run_size(n, args.rounds, args.profile)
        results[n] = summary(rows)
        baseline = rows[0][1]
        lines = [f"\n{n} entries (load average {os.getloadavg()[0]:.1f}):"]
        head = ("step", "wall s", "peak RSS MB", "x ldapsearch", "method")
        lines.append("  {:26} {:>8} {:>12} {:>13}  {}".format(*head))
        for step, wall, rss, method in rows:
            lines.append(f"  {step:26} {wall:8.2f} {rss:12.1f} {wall / baseline:13.2f}  {method}")
        for step in ("sr incremental, median", "ts incremental, median"):
            wall = results[n][step]
            lines.append(f"  {step:26} {wall:8.2f} {'':12} {wall / baseline:13.2f}")
        tables.append("\n".join(lines))
        print(tables[-1], flush=True)
    print("\n" + "\n".join(tables))
    if len(sizes) > 1:
        small, big = min(sizes), max(sizes)
        print(f"\nratio of run times, {big} / {small} entries (aim for incremental: < 1.5):")
        for step in (
            "sr incremental, median",
            "sr incremental, best",
            "ts incremental, median",
            "ts incremental, best",
            "syncd validate",
            "sr --full",
        ):
            ratio = results[big][step] / results[small][step]
            print(f"  {step:26} {ratio:6.2f}")


if __name__ == "__main__":
    main()
