"""How a run ends, as status and exit code say it (issue 9.8, issue 13.5).

* a run killed with -9 does not stay "running" in the history for ever: the next run
  of the job marks it "interrupted";
* a run where (nearly) every entry was quarantined is a failure, not "ok": exit 1,
  cursor not advanced (``max_quarantined``);
* a permanently failing write does not make every later run a complete read.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import yaml

from tests.e2e.test_crash_window import ROOT, Setup, export


def runs(s: Setup) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "syncd", "-c", str(s.config), "status", "people", "--json"],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["runs"]


def cursor(s: Setup) -> str | None:
    with sqlite3.connect(s.dir / "state.db") as db:
        row = db.execute("SELECT cursor FROM cursors WHERE job = 'people'").fetchone()
    return row[0] if row else None


def test_killed_run_is_marked_interrupted_by_the_next_run(tmp_path):
    s = Setup(tmp_path, f"sqlite:///{tmp_path}/state.db", "sql")
    export(s.csv, {"1": "Paris", "2": "Rome"})
    assert s.sync(crash=True).returncode < 0
    assert runs(s)[0]["status"] == "running"
    assert s.sync().returncode == 0
    latest, killed = runs(s)[:2]
    assert latest["status"] == "ok"
    assert killed["status"] == "interrupted"
    assert killed["finished"] is not None


def require_uid(s: Setup) -> None:
    (s.dir / "m.yaml").write_text(
        "version: 1\nkey: id\nfields:\n  uid: {value: uid, required: true}\n  location: location\n"
    )


def test_mostly_quarantined_run_fails_and_keeps_the_cursor(tmp_path):
    s = Setup(tmp_path, f"sqlite:///{tmp_path}/state.db", "sql")
    require_uid(s)
    export(s.csv, {str(i): "Paris" for i in range(1, 11)})
    assert s.sync().returncode == 0
    before = cursor(s)
    # the next export lost the uid column's values for 8 of 10 rows
    lines = ["id;uid;location"] + [f"{i};{'' if i <= 8 else f'u{i}'};Rome" for i in range(1, 11)]
    s.csv.write_text("\n".join(lines) + "\n")
    out = s.sync()
    assert out.returncode == 1, out.stdout + out.stderr
    assert "quarantined" in out.stderr and "max_quarantined" in out.stderr
    assert runs(s)[0]["status"] == "failed"
    assert cursor(s) == before

    # a job that accepts it says so in its config
    cfg = yaml.safe_load(s.config.read_text())
    cfg["jobs"]["people"]["max_quarantined"] = "90%"
    s.config.write_text(yaml.safe_dump(cfg))
    assert s.sync().returncode == 0


def test_sigterm_while_reading_exits_non_zero(tmp_path):
    s = Setup(tmp_path, f"sqlite:///{tmp_path}/state.db", "sql")
    export(s.csv, {str(i): "Paris" for i in range(1, 200_001)})  # a read of seconds
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "syncd", "-q", "-c", str(s.config), "sync", "--no-progress"]
    proc = subprocess.Popen([*cmd, "people"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (s.dir / "state.db").exists():
            time.sleep(0.02)
        time.sleep(0.8)  # start-up done, the read is under way
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "stopped" in out
    assert proc.returncode == 8
    assert runs(s)[0]["status"] == "stopped"
