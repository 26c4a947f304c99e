"""Benchmark: what showing old -> new values costs `syncd plan` (issue 11.1).

    .venv/bin/python bench/bench_plan.py [--size 5000] [--rounds 3]

Loads N generated `device` entries into a private slapd, syncs them into SQLite, then
changes every entry's `l` (one ldapmodify), so the plan has N updates. Then, in
`--rounds` interleaved rounds, each in its own process:

  * `syncd plan inventory --json`: every action with its old value, read from the
    SQL target in batches (SqlTarget.current, one SELECT per 500 keys);
  * the baseline: the same command with SqlTarget.current replaced by the contract's
    default (old values unknown, as before the change), in the same run.

Prints medians of wall and CPU time, the ratio new / baseline and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_inventory import (  # noqa: E402
    child_env,
    config,
    devices_slapd,
    measure,
    warm_bytecode,
)

PYTHON = str(ROOT / ".venv" / "bin" / "python")
RUN = "from syncd.cli import main; main({argv!r})"
BASELINE = (
    "import syncd.connectors.sql.target as t; from syncd.contracts import Target; "
    "t.SqlTarget.current = Target.current; "
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    env = child_env()
    warm_bytecode(env)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        slapd = devices_slapd(work, args.size)
        ldif = work / "devices.ldif"
        try:
            cfg = config(slapd, work, f"sqlite:///{work}/state.db", f"sqlite:///{work}/t.db")
            subprocess.run(
                [PYTHON, "-c", RUN.format(argv=["-q", "-c", str(cfg), "sync", "inventory"])],
                check=True,
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
            )
            dns = [
                line[4:]
                for line in ldif.read_text(encoding="utf-8").splitlines()
                if line.startswith("dn: ")
            ]
            mods = "\n".join(
                f"dn: {dn}\nchangetype: modify\nreplace: l\nl: Moved-{i}\n"
                for i, dn in enumerate(dns)
            )
            slapd.modify(mods)
            argv = ["-q", "-c", str(cfg), "plan", "inventory", "--json"]
            check = subprocess.run(
                [PYTHON, "-c", RUN.format(argv=argv)],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            plan = json.loads(check.stdout)
            assert plan["counts"].get("update") == args.size, plan["counts"]
            olds = {c["old"] for a in plan["actions"] for c in a["changes"]}
            assert olds and None not in olds, "every old value known"
            results: dict[str, list[tuple[float, float, float]]] = {"new": [], "baseline": []}
            for _ in range(args.rounds):
                for name, prefix in (("baseline", BASELINE), ("new", "")):
                    code = prefix + RUN.format(argv=argv)
                    results[name].append(measure([PYTHON, "-c", code], env=env, cwd=ROOT))
        finally:
            slapd.stop()
    load = os.getloadavg()
    print(f"plan --json, {args.size} updates, {args.rounds} rounds, load {load[0]:.2f}")
    wall = {k: statistics.median(w for w, _, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, _, c in v) for k, v in results.items()}
    for k in ("baseline", "new"):
        print(f"  {k:9} wall {wall[k]:6.2f} s  cpu {cpu[k]:6.2f} s")
    print(
        f"  new/baseline: wall {wall['new'] / wall['baseline']:.2f}x, "
        f"cpu {cpu['new'] / cpu['baseline']:.2f}x"
    )


if __name__ == "__main__":
    main()
