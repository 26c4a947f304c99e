"""Monitoring: metrics restored at start, new series, the node_exporter textfile of timer
mode, and the shipped alert rules and Grafana dashboard, checked with promtool and
against the names a real daemon exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.helpers import job_config, start_daemon, stop, syncd_cmd
from tests.servers.ports import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "syncd-alerts.yaml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "syncd-alerts.test.yaml"
DASHBOARD = ROOT / "contrib" / "grafana" / "syncd-dashboard.json"


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")
    }
    env["SYNCD_TEST_DB_PW"] = ""
    return env


def _sync(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        syncd_cmd(config, "sync", "people", "--no-progress", *args),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _sample(families: dict, name: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def _scrape(port: int, want: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if want in text or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/install.d/50-promtool.sh"
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout
    unit = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


def _names_used() -> set[str]:
    """Metric names in the rules' and the dashboard's PromQL expressions."""
    import yaml

    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    names: set[str] = set()
    for expr in exprs:
        names |= set(
            re.findall(r"\b((?:syncd|process)_[a-z0-9_]+|up)\b(?=\s*[{)\[=<>]|\s|$)", expr)
        )
    return names


def test_restart_keeps_last_success_and_rules_use_only_exported_names(tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    data = f"sqlite:///{tmp_path / 'data.db'}"
    port = free_port()
    # An hourly job: the daemon started below does not run it again (the run by hand
    # counts as this period's), so what it shows of the last run comes from the store.
    config = job_config(
        tmp_path, state, data, node="mon", listen=f"127.0.0.1:{port}", interval=3600
    )
    first = _sync(config)
    assert first.returncode == 0, first.stderr
    engine = sa.create_engine(state)
    with engine.connect() as conn:
        finished = conn.execute(sa.text("SELECT max(finished) FROM runs")).scalar()
    engine.dispose()
    proc = start_daemon(config, _env())
    try:
        wait_port(port)
        text = _scrape(port, "syncd_job_last_success_timestamp_seconds{")
        fams = _families(text)
        last = _sample(fams, "syncd_job_last_success_timestamp_seconds", job="people")
        assert last is not None, "the last success must survive a restart"
        from datetime import UTC, datetime

        when = datetime.fromisoformat(str(finished)).replace(tzinfo=UTC).timestamp()
        assert abs(last - when) < 1.0
        assert _sample(fams, "syncd_job_last_run_status", job="people", status="ok") == 1
        assert _sample(fams, "syncd_job_last_run_status", job="people", status="failed") == 0
        assert _sample(fams, "syncd_job_objects", job="people") == 3
        assert _sample(fams, "syncd_job_schedule_period_seconds", job="people") == 3600
        assert _sample(fams, "syncd_job_run_duration_seconds_count", job="people") == 0
        assert (_sample(fams, "process_resident_memory_bytes") or 0) > 1e6
        # Every name the alert rules and the dashboard use is one this daemon exports
        # (`up` is Prometheus's own).
        exported = {s.name for f in fams.values() for s in f.samples} | set(fams)
        used = _names_used()
        assert {"syncd_job_last_success_timestamp_seconds", "up"} <= used
        assert used - exported == {"up"}, used - exported
        assert stop(proc) == 0
    finally:
        proc.kill()


def test_timer_mode_writes_a_node_exporter_textfile(tmp_path):
    state = f"sqlite:///{tmp_path / 'state.db'}"
    data = f"sqlite:///{tmp_path / 'data.db'}"
    config = job_config(tmp_path, state, data, node="timer")
    out = tmp_path / "textfile"
    assert _sync(config, "--textfile", str(out)).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["syncd_people.prom"], "no temp file left"
    fams = _families((out / "syncd_people.prom").read_text())
    ok_at = _sample(fams, "syncd_job_last_success_timestamp_seconds", job="people")
    assert ok_at is not None and abs(ok_at - time.time()) < 60
    assert _sample(fams, "syncd_job_objects", job="people") == 3
    assert _sample(fams, "syncd_job_last_run_actions", job="people", kind="created") == 3
    assert _sample(fams, "syncd_job_last_run_status", job="people", status="ok") == 1
    # Gauges of this job only: no counters, no process or build series (a node_exporter
    # reading the files of several jobs must never see one series twice).
    assert all(f.type == "gauge" for f in fams.values())
    assert "syncd" not in fams and not any(n.startswith("process_") for n in fams)

    # A failed run: the file says so, and keeps the time of the last success.
    engine = sa.create_engine(data)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE people"))
    engine.dispose()
    assert _sync(config, "--textfile", str(out)).returncode != 0
    fams = _families((out / "syncd_people.prom").read_text())
    assert _sample(fams, "syncd_job_last_run_status", job="people", status="failed") == 1
    assert _sample(fams, "syncd_job_last_success_timestamp_seconds", job="people") == ok_at
