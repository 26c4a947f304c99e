"""Crash storm: many kill -9 at random points of `syncd sync`, then one clean run.

For each state backend (SQLite file, PostgreSQL in a private cluster) a job syncs a CSV
export (ROWS rows, stable ids) into a SQLite table in batches of BATCH. Every round
first changes the export (adds, modifies, deletes, restores of deleted rows with their
old values, A -> B -> A reverts), then runs `syncd sync` and kills it with SIGKILL:
half the rounds at a random moment (a timer: anywhere from start-up through read, plan,
apply and commit, up to the length of the last run that finished), half right after the
target applied a random batch and before its state commit (the engine's
SYNCD_TEST_CRASH_AFTER_APPLY test hook). --kills counts real kills: a round whose run
finished before its kill is reported as "ended N" and another round follows (so the
source changes between every kill). After the last kill one clean
`syncd sync` runs; the target is then compared with the export:

* lost:       ids in the export missing from the target
* duplicated: keys the target holds more than once
* stale:      ids whose target values differ from the export
* orphans:    target keys the export does not have
* plan:       actions `syncd plan` still wants after the clean run (0: state converged)

Goal: 0 everywhere. Run from the repository root:
`.venv/bin/python bench/crash_storm.py [--kills 50] [--rows 1000] [--batch 10] [--seed 1]`
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAPPING = "version: 1\nkey: id\nfields:\n  name: name\n  location: location\n"
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Accra", "Quito", "Hanoi", "Perth"]


class Storm:
    def __init__(self, work: Path, state: dict, rows: int, batch: int, rng: random.Random):
        self.work = work
        self.rng = rng
        self.csv = work / "export.csv"
        self.db = work / "target.db"
        self.source: dict[str, tuple[str, str]] = {}
        self.deleted: dict[str, tuple[str, str]] = {}
        self.previous: dict[str, tuple[str, str]] = {}
        self.next_id = 1
        for _ in range(rows):
            self._add()
        (work / "m.yaml").write_text(MAPPING)
        cfg = {
            "version": 1,
            "state": state,
            "connections": {
                "hr": {"type": "csv", "path": str(self.csv), "delimiter": ";", "min_age": 0},
                "out": {"type": "sql", "url": f"sqlite:///{self.db}"},
            },
            "jobs": {
                "people": {
                    "source": {"connection": "hr", "id_column": "id", "max_drop": None},
                    "mapping": "m.yaml",
                    "target": {"connection": "out", "table": "people", "batch_size": batch},
                    "max_deletes": rows,
                }
            },
        }
        self.config = work / "syncd.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        # a round changes about 40 rows (more after a crash): kill within those batches
        self.batches = max(1, 40 // batch)
        self.run_seconds = 1.0  # wall time of the last run that ended by itself
        self.startup_seconds = 0.0  # wall time of `syncd --version`
        self.write()

    def _add(self) -> None:
        sid = str(self.next_id)
        self.next_id += 1
        self.source[sid] = (f"n{sid}-{self.rng.randrange(1000)}", self.rng.choice(CITIES))

    def write(self) -> None:
        lines = ["id;name;location"] + [f"{i};{n};{loc}" for i, (n, loc) in self.source.items()]
        self.csv.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def mutate(self) -> None:
        """Adds, modifies, deletes, restores and A -> B -> A reverts."""
        rng = self.rng
        for _ in range(8):
            self._add()
        for sid in rng.sample(sorted(self.previous), min(5, len(self.previous))):
            if sid in self.source:  # back to A
                self.source[sid] = self.previous.pop(sid)
        for sid in rng.sample(sorted(self.source), 20):
            self.previous[sid] = self.source[sid]
            self.source[sid] = (self.source[sid][0], rng.choice(CITIES) + "-b")
        for sid in rng.sample(sorted(self.deleted), min(3, len(self.deleted))):
            self.source[sid] = self.deleted.pop(sid)  # restored with its old values
        for sid in rng.sample(sorted(self.source), 6):
            self.deleted[sid] = self.source.pop(sid)
            self.previous.pop(sid, None)
        self.write()

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "syncd", "-q", "-c", str(self.config), *args]

    def crash(self, round_no: int) -> str:
        """One run of `syncd sync`, killed by SIGKILL if it is still running at the
        chosen moment; returns "hook", "timer" (killed) or "ended N" (it finished
        first, exit code N: not a kill, the caller runs another round)."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = self._cmd("sync", "--no-progress", "people")
        if round_no % 2:
            env["SYNCD_TEST_CRASH_AFTER_APPLY"] = str(self.rng.randint(1, self.batches))
            proc = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
            return "hook" if proc.returncode == -signal.SIGKILL else f"ended {proc.returncode}"
        # Anywhere after Python's start-up up to the end of a run as long as the last
        # whole one (a kill during the imports would test nothing).
        delay = self.rng.uniform(self.startup_seconds, max(self.startup_seconds, self.run_seconds))
        before = self.target_digest()
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            self.run_seconds = time.monotonic() - started
            return f"ended {proc.returncode}"
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Did the kill land after the run had written to the target?
            return "timer, after writes" if self.target_digest() != before else "timer"

    def target_digest(self) -> int:
        with sqlite3.connect(self.db) as db:
            return hash(tuple(db.execute("SELECT * FROM people ORDER BY 1, 2, 3").fetchall()))

    def clean(self) -> tuple[int, int]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("SYNCD_TEST_CRASH_AFTER_APPLY", None)
        done = subprocess.run(
            self._cmd("sync", "--no-progress", "people"), env=env, capture_output=True, text=True
        )
        plan = subprocess.run(
            self._cmd("plan", "people", "--json"), env=env, capture_output=True, text=True
        )
        return done.returncode, len(json.loads(plan.stdout)["actions"])

    def compare(self) -> dict[str, int]:
        with sqlite3.connect(self.db) as db:
            rows = db.execute('SELECT "key", name, location FROM people').fetchall()
        held: dict[str, list[tuple[str, str]]] = {}
        for key, name, loc in rows:
            held.setdefault(key, []).append((name, loc))
        return {
            "lost": sum(1 for sid in self.source if sid not in held),
            "duplicated": sum(1 for v in held.values() if len(v) > 1),
            "stale": sum(
                1 for sid, want in self.source.items() if sid in held and held[sid][0] != want
            ),
            "orphans": sum(1 for key in held if key not in self.source),
        }


def storm(name: str, state: dict, args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix=f"syncd-storm-{name}-") as tmp:
        s = Storm(Path(tmp), state, args.rows, args.batch, rng)
        first = subprocess.run(
            s._cmd("sync", "--no-progress", "people"), capture_output=True, text=True
        )
        if first.returncode != 0:
            raise SystemExit(f"{name}: first run failed: {first.stderr}")
        outcomes: dict[str, int] = {}
        started = time.monotonic()
        t0 = time.monotonic()
        subprocess.run(s._cmd("--version"), capture_output=True)
        s.startup_seconds = time.monotonic() - t0
        s.mutate()
        t0 = time.monotonic()
        subprocess.run(s._cmd("sync", "--no-progress", "people"), capture_output=True)
        s.run_seconds = time.monotonic() - t0
        # --kills counts real SIGKILLs: a round whose run finished first is counted as
        # "ended" and another round follows (the source changes before every round).
        kills = rounds = 0
        while kills < args.kills:
            if rounds >= 4 * args.kills:
                raise SystemExit(f"{name}: only {kills} kills in {rounds} rounds")
            s.mutate()
            how = s.crash(rounds)
            rounds += 1
            kills += how.startswith(("hook", "timer"))
            outcomes[how] = outcomes.get(how, 0) + 1
        code, left = s.clean()
        result = s.compare()
        result.update(
            backend=name,
            clean_exit=code,
            plan=left,
            kills=kills,
            run_seconds=round(s.run_seconds, 2),
            startup_seconds=round(s.startup_seconds, 2),
            rounds=dict(sorted(outcomes.items())),
            seconds=round(time.monotonic() - started, 1),
        )
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    results = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory(prefix="syncd-storm-state-") as tmp:
                results.append(storm("sqlite", {"url": f"sqlite:///{tmp}/state.db"}, args))
        else:
            from tests.servers.postgres import PostgresCluster

            with PostgresCluster() as pg:
                url = pg.create_database("storm")
                pw = Path(pg.dir) / "statepw"
                pw.write_text(pg.password)
                state = {
                    "url": f"postgresql+psycopg://{pg.user}@127.0.0.1:{pg.port}/storm",
                    "password": {"file": str(pw)},
                }
                del url
                results.append(storm("postgres", state, args))
    print(f"load average: {os.getloadavg()[0]:.2f}")
    for r in results:
        print(json.dumps(r))
    bad = [r for r in results if r["lost"] or r["duplicated"] or r["stale"] or r["orphans"]]
    sys.exit(1 if bad or any(r["plan"] or r["clean_exit"] for r in results) else 0)


if __name__ == "__main__":
    main()
