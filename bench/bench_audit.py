"""What the audit log adds to a state commit, per applied change.

    .venv/bin/python bench/bench_audit.py [-n 100000] [--batch 500] [--rounds 3]

Commits N object rows to a fresh SQLite state store in batches (as the engine does
after each target batch), once without audit rows and once with one audit row per
object (a create naming 5 fields), and the same N changes as updates. Rounds alternate
the two so machine load hits both alike; it prints the best round of each in
microseconds per change and the ratio with/without (the baseline of the same run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syncd.contracts import Action, ActionKind, ActionResult  # noqa: E402
from syncd.state import ObjectState, StateStore  # noqa: E402
from syncd.state.audit import AuditEntry  # noqa: E402

FIELDS = {"hostname": "pc", "serial": "SN", "location": "Paris", "owner": "ada", "description": ""}


def one_round(n: int, batch: int, audited: bool, kind: ActionKind) -> float:
    """Seconds for committing n changes (a fresh store for creates)."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-audit-") as tmp:
        store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
        try:
            started = time.perf_counter()
            for start in range(0, n, batch):
                upserts, audit = [], []
                for i in range(start, min(n, start + batch)):
                    sid = f"{i:08d}"
                    dn = f"cn=pc-{i},ou=devices,dc=example,dc=com"
                    upserts.append(ObjectState(sid, sid, sid, f"fp{i}", {"hostname": "d"}, dn))
                    if audited:
                        changed = tuple(FIELDS) if kind is ActionKind.CREATE else ("location",)
                        action = Action(kind, sid, sid, FIELDS, changed, sid, dn)
                        result = ActionResult(action, True, target_id=sid)
                        audit.append(AuditEntry.of("inventory", 1, action, result))
                store.commit("inventory", upserts=upserts, audit=audit)
            return time.perf_counter() - started
        finally:
            store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.n} changes, batches of {args.batch}, best of {args.rounds} rounds")
    print(f"{'kind':<8} {'without us/change':>18} {'with audit us/change':>21} {'ratio':>6}")
    for kind in (ActionKind.CREATE, ActionKind.UPDATE):
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.rounds):
            for audited in (False, True):
                best[audited] = min(best[audited], one_round(args.n, args.batch, audited, kind))
        without, with_ = (best[False] / args.n * 1e6, best[True] / args.n * 1e6)
        print(f"{kind.value:<8} {without:>18.1f} {with_:>21.1f} {with_ / without:>6.2f}")


if __name__ == "__main__":
    main()
