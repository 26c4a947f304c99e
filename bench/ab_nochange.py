"""A/B benchmark: the no-change complete run of the inventory job, two syncd trees.

    .venv/bin/python bench/ab_nochange.py A_DIR B_DIR [--entries 100000] [--rounds 6]

A_DIR and B_DIR each hold a copy of the ``syncd`` package (e.g. ``git archive HEAD~1
syncd | tar -x -C A_DIR``). It loads N generated `device` entries into a private slapd,
makes one first sync with this checkout's syncd, then alternates no-change runs of A and
B (the same state, the same directory), each run its own process with PYTHONPATH set to
its tree. It prints each run's wall time, the medians of wall and CPU time, peak RSS and
the B/A ratio of the medians.

Comparing two trees in one run, interleaved, is what tells a small gain from the noise
of a shared machine; a ratio to the cron script in another run cannot (its own runs vary
by 20%). Both trees must read and write the same state schema.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_inventory import (  # noqa: E402
    SYNCD,
    Databases,
    child_env,
    config,
    devices_slapd,
    measure,
    warm_bytecode,
)


def tree_env(tree: Path) -> dict[str, str]:
    """The environment of a run of ``tree``'s syncd (bytecode cache on)."""
    env = child_env()
    env["PYTHONPATH"] = str(tree)
    return env


def check_tree(tree: Path) -> None:
    """Raise SystemExit unless ``tree`` holds a syncd package that is what runs."""
    if not (tree / "syncd" / "engine.py").is_file():
        raise SystemExit(f"{tree}: no syncd/engine.py (copy the syncd package into it)")
    python = str(ROOT / ".venv" / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import syncd.engine as e; print(e.__file__)"],
        env=tree_env(tree),
        cwd="/",  # not this checkout: `python -c` puts the working directory first
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"{tree}: its syncd is not the one imported ({where})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for tree in trees.values():
        check_tree(tree)
    with tempfile.TemporaryDirectory(prefix="syncd-ab-") as tmp:
        work = Path(tmp)
        slapd = devices_slapd(work, args.entries)
        dbs = Databases("sqlite", work)
        try:
            cfg = config(slapd, work, dbs.fresh("state"), dbs.fresh("inventory"))
            sync = [SYNCD, "-q", "-c", str(cfg), "sync", "--no-progress", "inventory"]
            warm_bytecode(child_env())
            measure(sync, env=child_env())  # the first sync, by this checkout
            for tree in trees.values():
                measure(sync, env=tree_env(tree))  # warms each tree's bytecode cache
            load_before = os.getloadavg()
            runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    runs[name].append(measure(sync, env=tree_env(tree)))
            load_after = os.getloadavg()
        finally:
            dbs.close()
            slapd.stop()
    print(
        f"\nno-change run of {args.entries} entries, {args.rounds} interleaved rounds "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after):"
    )
    medians = {}
    for name, tree in trees.items():
        wall = statistics.median(w for w, _, _ in runs[name])
        cpu = statistics.median(c for _, _, c in runs[name])
        rss = max(r for _, r, _ in runs[name])
        medians[name] = (wall, cpu)
        walls = " ".join(f"{w:.2f}" for w, _, _ in runs[name])
        print(f"  {name} {tree}: wall {walls} | median {wall:.2f} s, CPU {cpu:.2f} s, {rss:.1f} MB")
    print(
        f"  B/A: wall {medians['B'][0] / medians['A'][0]:.3f}, "
        f"CPU {medians['B'][1] / medians['A'][1]:.3f}"
    )


if __name__ == "__main__":
    main()
