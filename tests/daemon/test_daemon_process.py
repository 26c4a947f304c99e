"""The daemon as a real process: sd_notify, watchdog, health, SIGHUP, SIGTERM, SQLite lock.

These use a config without connectors, so they test the daemon machinery alone; the
tests with jobs are in test_cluster.py / test_daemon_jobs.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.daemon.helpers import NotifySocket, read_logs, start_daemon, stop, syncd_cmd
from tests.servers.ports import free_port, wait_port

CONFIG = """\
version: 1
state: {{url: "sqlite:///{db}"}}
daemon: {{listen: "127.0.0.1:{port}", node: {node}, log_format: json}}
"""


def _config(tmp_path: Path, port: int, node: str = "n1") -> Path:
    path = tmp_path / "syncd.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "state.db", port=port, node=node))
    return path


def _start(config: Path, notify: NotifySocket | None, **env: str) -> subprocess.Popen:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
    }
    if notify is not None:
        environ["NOTIFY_SOCKET"] = notify.address
    environ.update(env)
    return start_daemon(config, environ)


def _logs(proc: subprocess.Popen) -> list[dict]:
    return read_logs(proc)


def test_ready_watchdog_health_and_clean_stop(tmp_path):
    port = free_port()
    config = _config(tmp_path, port)
    notify = NotifySocket()
    # 1 s watchdog: pings every 0.5 s.
    proc = _start(config, notify, WATCHDOG_USEC="1000000")
    try:
        ready = notify.wait_for("READY", "1")
        assert ready["STATUS"] == "no job has a schedule"
        started = time.monotonic()
        pings = 0
        while time.monotonic() - started < 2.0:
            pings += sum("WATCHDOG" in m for m in notify.poll(0.1))
        assert 3 <= pings <= 6, pings
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        live = httpx.get(f"{base}/healthz")
        assert live.status_code == 200 and "scheduler alive" in live.text
        ready_http = httpx.get(f"{base}/readyz")
        assert ready_http.status_code == 200 and "state store" in ready_http.text
        metrics = httpx.get(f"{base}/metrics")
        assert 'syncd_info{node="n1",version=' in metrics.text
        assert httpx.get(f"{base}/nothing").status_code == 404
        assert stop(proc) == 0
        assert notify.wait_for("STOPPING", "1", timeout=2)
    finally:
        proc.kill()
        notify.close()
    messages = [m["msg"] for m in _logs(proc)]
    assert "stopped" in messages


def test_sighup_with_broken_config_keeps_running_and_logs_every_problem(tmp_path):
    port = free_port()
    config = _config(tmp_path, port)
    notify = NotifySocket()
    proc = _start(config, notify)
    try:
        notify.wait_for("READY", "1")
        good = config.read_text()
        config.write_text(good + "jobs:\n  broken: {mapping: 12}\nbogus: 1\n")
        proc.send_signal(1)  # SIGHUP
        notify.wait_for("RELOADING", "1")
        failed = notify.wait_for("STATUS", contains="reload FAILED")
        assert "READY" in failed  # systemd leaves the reloading state
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        config.write_text(good.replace("node: n1", "node: n1"))
        proc.send_signal(1)
        notify.wait_for("RELOADING", "1")
        ok = notify.wait_for("READY", "1")
        assert "FAILED" not in ok.get("STATUS", "")
        assert stop(proc) == 0
    finally:
        proc.kill()
        notify.close()
    errors = [r["msg"] for r in _logs(proc) if r["level"] == "ERROR"]
    assert any("2 problem(s)" in e or "problem(s)" in e for e in errors), errors
    # Every problem is logged on a line of its own, with file:line.
    assert any("bogus" in e and "syncd.yaml:" in e for e in errors), errors
    assert any("jobs.broken" in e for e in errors), errors


def test_second_daemon_on_the_same_sqlite_state_refuses(tmp_path):
    config = _config(tmp_path, free_port())
    notify = NotifySocket()
    first = _start(config, notify)
    try:
        notify.wait_for("READY", "1")
        second_cfg = tmp_path / "second.yaml"
        second_cfg.write_text(config.read_text().replace(str(_port_of(config)), str(free_port())))
        second = subprocess.run(
            syncd_cmd(second_cfg, "daemon"), capture_output=True, text=True, timeout=30
        )
        assert second.returncode == 7
        assert "SQLite state is single-node; another daemon holds it" in second.stderr
        assert "n1 pid" in second.stderr  # names the holder
        assert first.poll() is None
        assert stop(first) == 0
    finally:
        first.kill()
        notify.close()


def _port_of(config: Path) -> int:
    text = config.read_text()
    return int(text.split("127.0.0.1:")[1].split('"')[0])


def test_unreachable_state_store_is_a_clear_startup_error(tmp_path):
    config = tmp_path / "syncd.yaml"
    dead = free_port()
    config.write_text(
        "version: 1\n"
        f'state: {{url: "postgresql+psycopg://syncd@127.0.0.1:{dead}/x"}}\n'
        "daemon: {log_format: json}\n"
    )
    result = subprocess.run(syncd_cmd(config, "daemon"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "syncd: error: state database" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_config_at_start_lists_problems_and_exits_2(tmp_path):
    config = tmp_path / "syncd.yaml"
    config.write_text("version: 1\ndaemon: {listen: 1, bogus: 2}\n")
    result = subprocess.run(syncd_cmd(config, "daemon"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "bogus" in result.stderr and "Traceback" not in result.stderr


def test_metrics_port_in_use_is_a_clear_startup_error(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = _config(tmp_path, port)
        result = subprocess.run(
            syncd_cmd(config, "daemon"), capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2, result.stderr
    assert f"daemon.listen 127.0.0.1:{port}: cannot listen there" in result.stderr
    assert "Traceback" not in result.stderr
