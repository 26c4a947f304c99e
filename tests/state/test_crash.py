"""kill -9 during a loop of commits leaves the old or the new state, never a mix."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncd.state import StateStore

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys
from syncd.state import ObjectState, QuarantineEntry, StateStore

store = StateStore(sys.argv[1])
i = int(store.get_cursor("crash") or 0)
print("ready", flush=True)
while True:
    i += 1
    store.commit(
        "crash",
        upserts=[
            ObjectState(f"sid-{n}", f"key-{n}", f"t-{i}", f"fp-{i}", {"f": str(i)}, None)
            for n in range(400)
        ]
        + [ObjectState(f"extra-{i}", f"x-{i}", None, f"fp-{i}", {}, None)],
        deletes=[f"extra-{i - 1}"],
        quarantined=[QuarantineEntry.new("crash", f"q-{i}", None, f"r{i}")],
        unquarantined=[f"q-{i - 1}"],
        cursor=str(i),
    )
"""


def check_consistent(url: str) -> int:
    with StateStore(url) as store:
        cursor = int(store.get_cursor("crash") or 0)
        states = list(store.iter_objects("crash"))
        quarantined = [q.source_id for q in store.quarantine("crash")]
    if cursor == 0:
        assert states == [] and quarantined == []
        return 0
    fps = {s.fingerprint for s in states}
    assert fps == {f"fp-{cursor}"}, f"mixed state after kill: cursor {cursor}, {sorted(fps)[:5]}"
    extras = sorted(s.source_id for s in states if s.source_id.startswith("extra-"))
    assert extras == [f"extra-{cursor}"]
    assert len(states) == 401
    assert quarantined == [f"q-{cursor}"]
    return cursor


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill_during_commits(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/state.db"
    else:
        url = request.getfixturevalue("postgres_url")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(4)
    last = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.3, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL  # it was still committing when killed
        cursor = check_consistent(url)
        assert cursor > last, "the writer made no progress before the kill"
        last = cursor
