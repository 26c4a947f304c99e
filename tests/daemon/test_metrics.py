"""Metrics and health over real HTTP, with numbers from run reports and a real state store."""

from __future__ import annotations

import re
from collections import Counter

import httpx
import pytest

from syncd.engine import RunReport
from syncd.metrics import HealthServer, Metrics, parse_listen
from syncd.state import QuarantineEntry, StateStore


def _value(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name:
            got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    return None


@pytest.fixture
def store(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def _report(job: str, status: str, **counts: int) -> RunReport:
    rep = RunReport(job=job, status=status)
    rep.duration = 2.5
    rep.counts = Counter(counts)
    return rep


def test_metrics_and_health_over_http(store):
    metrics = Metrics("node-a", store)
    metrics.known_jobs(["inventory", "contacts"])
    metrics.record_run(_report("inventory", "ok", read=120, created=3, updated=2, failed=1))
    metrics.record_run(_report("inventory", "ok", read=100, deleted=1))
    metrics.record_failure("contacts", "failed", 0.4)
    metrics.record_busy("contacts")
    store.commit("inventory", cursor="c1")
    store.commit(
        "inventory",
        quarantined=[QuarantineEntry.new("inventory", "s1", "cn=x", "required field empty")],
    )
    live = {"ok": True}
    server = HealthServer(
        "127.0.0.1:0",
        metrics.registry,
        live=lambda: (live["ok"], "alive" if live["ok"] else "stuck"),
        ready=lambda: (True, "ready"),
    )
    server.start()
    try:
        host, port = server.address
        base = f"http://{host}:{port}"
        text = httpx.get(f"{base}/metrics").text
        assert 'syncd_info{node="node-a",version="0.1.0"} 1.0' in text
        assert _value(text, "syncd_job_actions_total", job="inventory", kind="created") == 3
        assert _value(text, "syncd_job_actions_total", job="inventory", kind="deleted") == 1
        assert _value(text, "syncd_job_errors_total", job="inventory") == 1
        assert _value(text, "syncd_job_entries_read_total", job="inventory") == 220
        assert _value(text, "syncd_job_last_run_entries_read", job="inventory") == 100
        assert _value(text, "syncd_job_last_run_duration_seconds", job="inventory") == 2.5
        assert _value(text, "syncd_job_runs_total", job="inventory", status="ok") == 2
        assert _value(text, "syncd_job_runs_total", job="contacts", status="failed") == 1
        assert _value(text, "syncd_job_runs_elsewhere_total", job="contacts") == 1
        assert _value(text, "syncd_job_last_success_timestamp_seconds", job="inventory") > 1e9
        # A job that never succeeded has no last-success sample (alerts use absent()).
        assert _value(text, "syncd_job_last_success_timestamp_seconds", job="contacts") is None
        # From the state store: the cursor just stored, one entry in quarantine.
        age = _value(text, "syncd_job_cursor_age_seconds", job="inventory")
        assert age is not None and 0 <= age < 60
        assert _value(text, "syncd_job_quarantined_entries", job="inventory") == 1
        assert _value(text, "syncd_job_quarantined_entries", job="contacts") == 0

        assert httpx.get(f"{base}/healthz").status_code == 200
        assert httpx.get(f"{base}/readyz").text.strip() == "ready"
        live["ok"] = False
        bad = httpx.get(f"{base}/healthz")
        assert bad.status_code == 503 and "stuck" in bad.text
    finally:
        server.close()


def test_scrape_works_while_the_state_store_is_gone(tmp_path):
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    metrics = Metrics("n", s)
    metrics.known_jobs(["a"])
    s.close()
    (tmp_path / "state.db").unlink()
    (tmp_path / "state.db").mkdir()  # now unreadable as a database
    server = HealthServer(
        "127.0.0.1:0",
        metrics.registry,
        live=lambda: (True, ""),
        ready=lambda: (False, "state store not reachable"),
    )
    server.start()
    try:
        host, port = server.address
        resp = httpx.get(f"http://{host}:{port}/metrics")
        assert resp.status_code == 200 and "syncd_job_runs_total" in resp.text
        ready = httpx.get(f"http://{host}:{port}/readyz")
        assert ready.status_code == 503 and "not reachable" in ready.text
    finally:
        server.close()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("[::1]:9108", ("::1", 9108)),
        (":9108", ("0.0.0.0", 9108)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_listen(listen, expected):
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("bad", ["9108", "host:port", "1.2.3.4:70000"])
def test_parse_listen_refuses_garbage(bad):
    with pytest.raises(ValueError, match="listen"):
        parse_listen(bad)


def test_ipv6_listen():
    metrics = Metrics("n")
    server = HealthServer(
        "[::1]:0", metrics.registry, live=lambda: (True, "ok"), ready=lambda: (True, "ok")
    )
    server.start()
    try:
        _, port = server.address
        assert httpx.get(f"http://[::1]:{port}/healthz").status_code == 200
    finally:
        server.close()
